//! What one EC2 Fleet launch asks for, decided without I/O: the capacity type (spot whenever it
//! is allowed and on offer, else on-demand) and the overrides (the cheapest instance types
//! first, at most 60, each in the chosen subnet of every allowed zone that offers it), grouped by
//! the image each type needs.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use nodewright_scheduling::instance_type::{CapacityType, InstanceType};

use super::ami::{ImageVariant, variant_of};
use super::ec2::{FleetError, FleetOverride, Subnet};
use super::errors::{Ec2ErrorKind, classify};
use super::unavailable::UnavailableOfferings;

/// EC2 Fleet accepts a limited number of overrides; Karpenter sends at most 60 types.
pub const MAX_INSTANCE_TYPES: usize = 60;

/// One planned launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetPlan {
    pub capacity_type: CapacityType,
    /// Overrides per image variant, cheapest type first.
    pub overrides: BTreeMap<ImageVariant, Vec<FleetOverride>>,
}

/// Whether an offering can be bought now: listed, available, not held out.
fn offered(
    instance_type: &InstanceType,
    zone: &str,
    capacity_type: CapacityType,
    unavailable: &UnavailableOfferings,
) -> bool {
    instance_type
        .offerings
        .iter()
        .any(|o| o.zone == zone && o.capacity_type == capacity_type && o.available)
        && !unavailable.is_unavailable(&instance_type.name, zone, capacity_type)
}

/// The cheapest price of a type's offerings in `zones`, `None` when none is priced.
fn cheapest(
    instance_type: &InstanceType,
    zones: &BTreeSet<&str>,
    capacity_type: CapacityType,
) -> Option<f64> {
    instance_type
        .offerings
        .iter()
        .filter(|o| o.capacity_type == capacity_type && zones.contains(o.zone.as_str()))
        .filter_map(|o| o.price_per_hour)
        .min_by(f64::total_cmp)
}

/// Cheapest first; types without a price after the priced ones, smallest first.
fn by_price(a: (Option<f64>, &InstanceType), b: (Option<f64>, &InstanceType)) -> Ordering {
    let size = |t: &InstanceType| (t.capacity.cpu_millis, t.capacity.memory_bytes);
    match (a.0, b.0) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => size(a.1).cmp(&size(b.1)),
    }
    .then_with(|| a.1.name.cmp(&b.1.name))
}

/// Plans a launch over `types` into the subnets of `subnets` (zone → subnet; already narrowed to
/// the allowed zones). `None` when no allowed offering is left.
pub fn plan(
    types: &[InstanceType],
    subnets: &BTreeMap<String, Subnet>,
    capacity_types: &BTreeSet<CapacityType>,
    unavailable: &UnavailableOfferings,
) -> Option<FleetPlan> {
    let allows = |ct| capacity_types.is_empty() || capacity_types.contains(&ct);
    let launchable =
        |t: &InstanceType, ct| subnets.keys().any(|zone| offered(t, zone, ct, unavailable));
    let capacity_type = [CapacityType::Spot, CapacityType::OnDemand]
        .into_iter()
        .filter(|ct| allows(*ct))
        .find(|ct| {
            types
                .iter()
                .any(|t| variant_of(t).is_some() && launchable(t, *ct))
        })?;

    let zones: BTreeSet<&str> = subnets.keys().map(String::as_str).collect();
    let mut candidates: Vec<(Option<f64>, &InstanceType)> = types
        .iter()
        .filter(|t| variant_of(t).is_some() && launchable(t, capacity_type))
        .map(|t| (cheapest(t, &zones, capacity_type), t))
        .collect();
    candidates.sort_by(|a, b| by_price(*a, *b));
    candidates.truncate(MAX_INSTANCE_TYPES);

    let mut overrides: BTreeMap<ImageVariant, Vec<FleetOverride>> = BTreeMap::new();
    for (_, instance_type) in candidates {
        let Some(variant) = variant_of(instance_type) else {
            continue;
        };
        for (zone, subnet) in subnets {
            if offered(instance_type, zone, capacity_type, unavailable) {
                overrides.entry(variant).or_default().push(FleetOverride {
                    instance_type: instance_type.name.clone(),
                    subnet_id: subnet.id.clone(),
                    zone: zone.clone(),
                });
            }
        }
    }
    Some(FleetPlan {
        capacity_type,
        overrides,
    })
}

/// What a fleet error means for the next attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetErrorAction {
    /// Hold this offering out and try the others.
    HoldOutOffering {
        instance_type: String,
        zone: String,
        capacity_type: CapacityType,
    },
    /// The subnet has no free addresses: hold it out.
    HoldOutSubnet(String),
    /// A launch template vanished: forget it and create it again.
    RecreateLaunchTemplates,
    /// Nothing to learn; report it if nothing launched.
    Report,
}

/// How to react to one fleet error. `zone_of_subnet` finds a zone when EC2 named only a subnet.
pub fn action_for(
    error: &FleetError,
    requested: CapacityType,
    zone_of_subnet: impl Fn(&str) -> Option<String>,
) -> FleetErrorAction {
    match classify(&error.code) {
        Ec2ErrorKind::InsufficientCapacity => {
            let zone = error
                .zone
                .clone()
                .or_else(|| error.subnet_id.as_deref().and_then(&zone_of_subnet));
            match (&error.instance_type, zone) {
                (Some(instance_type), Some(zone)) => FleetErrorAction::HoldOutOffering {
                    instance_type: instance_type.clone(),
                    zone,
                    capacity_type: error.capacity_type.unwrap_or(requested),
                },
                _ => FleetErrorAction::Report,
            }
        }
        Ec2ErrorKind::SubnetFull => match &error.subnet_id {
            Some(subnet) => FleetErrorAction::HoldOutSubnet(subnet.clone()),
            None => FleetErrorAction::Report,
        },
        Ec2ErrorKind::NotFound if error.code.starts_with("InvalidLaunchTemplate") => {
            FleetErrorAction::RecreateLaunchTemplates
        }
        _ => FleetErrorAction::Report,
    }
}

#[cfg(test)]
mod tests;
