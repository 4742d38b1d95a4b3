//! A cheap necessary condition for a consolidation, asked of every candidate set before the
//! scheduling core (about 10 ms a run on a 1,000-node cluster) is: could the set's pods fit,
//! counting only cpu, memory and pod slots and ignoring every placement constraint, on the
//! room the other nodes have left plus at most one new node cheap enough to be worth it?
//!
//! Constraints only take placements away, so a set this bound refuses cannot be consolidated;
//! a set it lets through is decided by the scheduling core as before. Room is counted only on
//! nodes where the set's smallest pod would fit, so a packed cluster's crumbs (a tenth of a
//! cpu here and there) never add up to a node.

use std::collections::HashSet;

use nodewright_scheduling::ScheduleInput;
use nodewright_scheduling::instance_type::CapacityType;
use nodewright_scheduling::labels;
use nodewright_scheduling::provisioner::TypeOption;
use nodewright_scheduling::resources::Resources;

use super::candidates::Candidate;
use super::consolidation::ConsolidationSettings;
use crate::state::capacity_type_value;

/// cpu millicores, memory bytes, pod slots.
type Vector = [i64; 3];

fn vector(resources: &Resources) -> Vector {
    [resources.cpu_millis, resources.memory_bytes, resources.pods]
}

fn fits(need: &Vector, room: &Vector) -> bool {
    need.iter().zip(room).all(|(n, r)| n <= r)
}

fn add(a: &mut Vector, b: &Vector) {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.saturating_add(*y);
    }
}

/// What the cluster has left and what could be launched, computed once per pass.
pub struct Room {
    /// Each schedulable node's free cpu, memory and pod slots.
    nodes: Vec<(String, Vector)>,
    /// Every type a provisioner's requirements allow: its allocatable there, its cheapest
    /// on-demand and spot prices in the zones and capacity types that provisioner allows.
    types: Vec<(String, Vector, Option<f64>, Option<f64>)>,
}

impl Room {
    pub fn new(base: &ScheduleInput) -> Room {
        let nodes = base
            .nodes
            .iter()
            .filter(|n| !n.unschedulable)
            .map(|n| {
                let used = vector(&n.requested());
                let mut free = vector(&n.allocatable);
                for (f, u) in free.iter_mut().zip(used) {
                    *f = (*f - u).max(0);
                }
                (n.name.clone(), free)
            })
            .collect();
        let types = base
            .provisioners
            .iter()
            .flat_map(|p| {
                let requirements = p.provisioner.node_requirements();
                let zones = requirements.get_or_any(labels::ZONE);
                let capacity_types = requirements.get_or_any(labels::CAPACITY_TYPE);
                // Only the labels a type carries: offerings decide zone and capacity type.
                let allowed = move |option: &&TypeOption| {
                    requirements.iter().all(|(key, set)| {
                        option
                            .instance_type
                            .labels
                            .get(key)
                            .is_none_or(|value| set.allows(Some(value)))
                    })
                };
                p.instance_types
                    .iter()
                    .filter(allowed)
                    .map(move |option| (option, zones.clone(), capacity_types.clone()))
            })
            .map(|(option, zones, capacity_types)| {
                let cheapest = |capacity_type| {
                    if !capacity_types.allows(Some(capacity_type_value(capacity_type))) {
                        return None;
                    }
                    option
                        .instance_type
                        .offerings
                        .iter()
                        .filter(|o| o.available && o.capacity_type == capacity_type)
                        .filter(|o| zones.allows(Some(&o.zone)))
                        .filter_map(|o| o.price_per_hour)
                        .reduce(f64::min)
                };
                (
                    option.instance_type.name.clone(),
                    vector(&option.allocatable),
                    cheapest(CapacityType::OnDemand),
                    cheapest(CapacityType::Spot),
                )
            })
            .collect();
        Room { nodes, types }
    }

    /// False when `set` certainly cannot be deleted nor replaced by one cheaper node.
    pub fn may_consolidate(&self, set: &[&Candidate], settings: &ConsolidationSettings) -> bool {
        self.why_not(set, settings).is_none()
    }

    /// Why `set` certainly cannot be deleted nor replaced by one cheaper node; `None` when it
    /// may be.
    pub fn why_not(&self, set: &[&Candidate], settings: &ConsolidationSettings) -> Option<String> {
        let mut need: Vector = [0; 3];
        let mut smallest: Vector = [i64::MAX; 3];
        for pod in set.iter().flat_map(|c| &c.pods) {
            let mut v = vector(&pod.requests);
            v[2] = v[2].max(1);
            add(&mut need, &v);
            for (s, x) in smallest.iter_mut().zip(v) {
                *s = (*s).min(x);
            }
        }
        if need == [0; 3] {
            return None;
        }
        let names: HashSet<&str> = set.iter().map(|c| c.node.as_str()).collect();
        let mut free: Vector = [0; 3];
        for (name, room) in &self.nodes {
            if !names.contains(name.as_str()) && fits(&smallest, room) {
                add(&mut free, room);
            }
        }
        if fits(&need, &free) {
            return None;
        }
        // One new node must take the rest, at the price consolidation would pay.
        let Some(price) = set.iter().map(|c| c.price_per_hour).sum::<Option<f64>>() else {
            return Some("other nodes cannot hold its pods and its price is unknown".to_string());
        };
        let spot_only = set.iter().all(|c| c.is_spot());
        if spot_only && !settings.spot_to_spot {
            return Some(
                "other nodes cannot hold its pods, and spot nodes are replaced only with the \
                 SpotToSpotConsolidation feature gate"
                    .to_string(),
            );
        }
        let threshold = price * (1.0 - settings.min_saving_fraction);
        let cheaper_fits = self
            .types
            .iter()
            .any(|(name, allocatable, on_demand, spot)| {
                let cheapest = if spot_only {
                    *spot
                } else {
                    match (on_demand, spot) {
                        (Some(a), Some(b)) => Some(a.min(*b)),
                        (a, b) => a.or(*b),
                    }
                };
                let mut with_new = free;
                add(&mut with_new, allocatable);
                !set.iter().any(|c| &c.instance_type == name)
                    && cheapest.is_some_and(|p| p <= threshold)
                    && fits(&need, &with_new)
            });
        (!cheaper_fits).then(|| {
            "other nodes cannot hold its pods and no cheaper instance type could".to_string()
        })
    }
}
