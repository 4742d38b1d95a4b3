//! Turning a packing into a [`Plan`]: each machine's launch (capacity type, candidate types
//! cheapest first, expected type, zone, price), the pods per node, and the lower bound.

use std::collections::BTreeSet;

use crate::cost::{CoverOption, lower_bound, lower_bound_apart};
use crate::instance_type::CapacityType;
use crate::labels;
use crate::plan::{ExistingAssignment, Plan, PlannedNode, UnschedulablePod};
use crate::requirements::{Requirements, ValueSet};

use super::apart;
use super::model::Model;
use super::place::Stop;
use super::provisioners::{OfferingModel, ProvModel, capacity_type_label, ct_index, score};
use super::state::{Machine, NodeKind, PackState};
use super::vector::{CPU, MEMORY};

/// How a machine is expected to launch.
pub(crate) struct Launch {
    pub capacity_type: CapacityType,
    /// Candidate types, cheapest first, at most the configured number.
    pub candidates: Vec<usize>,
    pub zone: String,
    pub price: Option<f64>,
}

/// The cheapest offerings a machine's requirements allow, fast when they narrow no further
/// than the provisioner's.
pub(crate) struct Offers<'a> {
    p: &'a ProvModel,
    reqs: &'a Requirements,
    narrowed: bool,
    mask: u128,
}

impl<'a> Offers<'a> {
    pub(crate) fn new(p: &'a ProvModel, reqs: &'a Requirements) -> Offers<'a> {
        let narrowed = [labels::ZONE, labels::CAPACITY_TYPE]
            .iter()
            .any(|k| reqs.get(k) != p.reqs.get(k));
        Offers {
            p,
            reqs,
            narrowed,
            mask: if narrowed { p.offer_mask(reqs) } else { 0 },
        }
    }

    pub(crate) fn best(&self, t: usize, ct: CapacityType) -> Option<&'a OfferingModel> {
        let type_model = &self.p.types[t];
        let index = if self.narrowed {
            // Offerings are sorted cheapest first.
            type_model
                .offerings
                .iter()
                .position(|o| o.capacity_type == ct && self.p.offer_in(o, self.mask, self.reqs))
        } else {
            type_model.best_offer[ct_index(ct)]
        };
        index.map(|i| &type_model.offerings[i])
    }

    /// Spot when the requirements allow it and a candidate has a spot offering.
    pub(crate) fn capacity_type(&self, candidates: &[usize]) -> CapacityType {
        let spot_allowed = self
            .reqs
            .get(labels::CAPACITY_TYPE)
            .is_none_or(|s| s.allows(Some(labels::CAPACITY_TYPE_SPOT)));
        if spot_allowed
            && candidates
                .iter()
                .any(|&t| self.best(t, CapacityType::Spot).is_some())
        {
            CapacityType::Spot
        } else {
            CapacityType::OnDemand
        }
    }
}

/// The comparable cost of a machine's expected launch, without ranking every candidate.
pub(crate) fn launch_score(p: &ProvModel, machine: &Machine) -> f64 {
    let offers = Offers::new(p, &machine.reqs);
    let ct = offers.capacity_type(&machine.candidates);
    machine
        .candidates
        .iter()
        .filter_map(|&t| offers.best(t, ct).map(|o| score(o.price, &p.types[t])))
        .fold(f64::INFINITY, f64::min)
}

/// Spot when the requirements allow it and a candidate has a spot offering; then every
/// candidate ranked by its cheapest offering of that capacity type.
pub(crate) fn launch(p: &ProvModel, machine: &Machine, max_types: usize) -> Launch {
    let offers = Offers::new(p, &machine.reqs);
    let capacity_type = offers.capacity_type(&machine.candidates);
    let best_offer = |t: usize, ct: CapacityType| offers.best(t, ct);
    // (no offering of that capacity type, price, size, name, type index)
    type Rank<'a> = (bool, f64, (i64, i64), &'a str, usize);
    let mut ranked: Vec<Rank<'_>> = machine
        .candidates
        .iter()
        .map(|&t| {
            let offer = best_offer(t, capacity_type);
            let type_model = &p.types[t];
            (
                offer.is_none(),
                offer.map_or(f64::INFINITY, |o| score(o.price, type_model)),
                type_model.size(),
                type_model.name(),
                t,
            )
        })
        .collect();
    let order = |a: &Rank<'_>, b: &Rank<'_>| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.total_cmp(&b.1))
            .then_with(|| a.2.cmp(&b.2))
            .then_with(|| a.3.cmp(b.3))
    };
    // Only the cheapest `max_types` are handed on: select them, then sort those.
    if ranked.len() > max_types && max_types > 0 {
        ranked.select_nth_unstable_by(max_types - 1, order);
        ranked.truncate(max_types);
    }
    ranked.sort_by(order);
    ranked.truncate(max_types);
    let candidates: Vec<usize> = ranked.iter().map(|r| r.4).collect();
    let expected = candidates
        .first()
        .and_then(|&t| best_offer(t, capacity_type).map(|o| (t, o)));
    match expected {
        Some((_, offer)) => Launch {
            capacity_type,
            zone: offer.zone.clone(),
            price: offer.price,
            candidates,
        },
        None => Launch {
            capacity_type,
            candidates,
            zone: String::new(),
            price: None,
        },
    }
}

/// The plan for a finished packing.
pub(crate) fn plan(state: &PackState<'_>, stops: &[Option<Stop>], strategy: &str) -> Plan {
    let model = state.model;
    let pod_key = |i: usize| model.pods[i].key();
    let mut nodes = Vec::new();
    let mut existing = Vec::new();
    let mut prices_known = true;
    let mut total = 0.0;
    let mut demand_cpu = 0.0;
    let mut demand_memory = 0.0;
    let mut on_new = vec![0usize; model.groups.len()];
    for node in state.nodes.iter().filter(|n| !n.pods.is_empty()) {
        match &node.kind {
            NodeKind::Existing(i) => existing.push(ExistingAssignment {
                node: model.existing[*i].name.clone(),
                pods: node.pods.iter().map(|&p| pod_key(p)).collect(),
            }),
            NodeKind::New(machine) => {
                let p = &model.provs[machine.prov];
                let launch = launch(p, machine, model.max_instance_types);
                prices_known &= launch.price.is_some();
                let price = launch.price.unwrap_or(0.0);
                total += price;
                demand_cpu += node.used.0[CPU] as f64;
                demand_memory += node.used.0[MEMORY] as f64;
                for &i in &node.pods {
                    on_new[model.group_of[i]] += 1;
                }
                let mut requests = model.dims.resources(&node.used);
                if let Some(&t) = launch.candidates.first() {
                    requests += &p.types[t].overhead;
                }
                nodes.push(PlannedNode {
                    provisioner: p.name.clone(),
                    instance_type: launch
                        .candidates
                        .first()
                        .map(|&t| p.types[t].name().to_string())
                        .unwrap_or_default(),
                    instance_types: launch
                        .candidates
                        .iter()
                        .map(|&t| p.types[t].name().to_string())
                        .collect(),
                    zone: launch.zone.clone(),
                    capacity_type: launch.capacity_type,
                    price_per_hour: price,
                    pods: node.pods.iter().map(|&i| pod_key(i)).collect(),
                    requests,
                    requirements: machine_requirements(p, machine, &launch),
                });
            }
        }
    }
    let mut unschedulable = Vec::new();
    for (g, group) in model.groups.iter().enumerate() {
        if state.remaining(g) == 0 {
            continue;
        }
        let reason = crate::explain::reason(state, g, stops[g].as_ref());
        for &i in &group.pods[state.placed[g]..] {
            unschedulable.push(UnschedulablePod {
                pod: pod_key(i),
                reason: reason.clone(),
            });
        }
    }
    let (cover_bound_per_hour, lower_bound_per_hour) = if prices_known && !nodes.is_empty() {
        let (keys, options): (Vec<(usize, usize)>, Vec<CoverOption>) =
            cover_options(model).into_iter().unzip();
        let holds = |g: usize, o: usize| {
            let (prov, t) = keys[o];
            let group = &model.groups[g];
            group.tolerates[prov] && group.req.fits(&model.provs[prov].types[t].alloc)
        };
        let apart = apart::constraints(model, &on_new, options.len(), holds);
        (
            lower_bound(&options, demand_cpu, demand_memory),
            lower_bound_apart(&options, demand_cpu, demand_memory, &apart),
        )
    } else {
        (None, None)
    };
    let total = if prices_known { total } else { 0.0 };
    if !prices_known {
        for node in &mut nodes {
            node.price_per_hour = 0.0;
        }
    }
    Plan {
        nodes,
        existing,
        unschedulable,
        total_price_per_hour: total,
        cost_ratio: lower_bound_per_hour.filter(|b| *b > 0.0).map(|b| total / b),
        lower_bound_per_hour,
        cover_bound_per_hour,
        prices_known,
        strategy: strategy.to_string(),
    }
}

/// Every priced type of every provisioner at its cheapest allowed offering, with its effective
/// capacity, keyed by (provisioner, type).
pub(crate) fn cover_options(model: &Model<'_>) -> Vec<((usize, usize), CoverOption)> {
    model
        .provs
        .iter()
        .enumerate()
        .flat_map(|(prov, p)| p.types.iter().enumerate().map(move |(t, ty)| (prov, t, ty)))
        .filter_map(|(prov, t, ty)| {
            let price = ty
                .offerings
                .iter()
                .filter_map(|o| o.price)
                .min_by(f64::total_cmp)?;
            let option = CoverOption {
                price,
                cpu: ty.alloc.0[CPU] as f64,
                memory: ty.alloc.0[MEMORY] as f64,
            };
            Some(((prov, t), option))
        })
        .collect()
}

/// The machine's requirements with zone and capacity type narrowed to what its candidates
/// offer. The instance types are `instanceTypes`; they are not repeated here.
fn machine_requirements(
    p: &ProvModel,
    machine: &Machine,
    launch: &Launch,
) -> Vec<crate::requirements::NodeSelectorRequirement> {
    let mut reqs = machine.reqs.clone();
    let mut zones: BTreeSet<&str> = BTreeSet::new();
    let mut capacity_types: BTreeSet<&str> = BTreeSet::new();
    let mask = p.offer_mask(&machine.reqs);
    if p.exact_masks {
        // Union the candidates' offer bits, then name each zone and capacity type once.
        let offered = launch
            .candidates
            .iter()
            .fold(0u128, |acc, &t| acc | (p.types[t].mask & mask));
        for (i, zone) in p.zones.iter().enumerate() {
            for ct in [CapacityType::Spot, CapacityType::OnDemand] {
                if (offered >> (i * 2 + ct_index(ct))) & 1 == 1 {
                    zones.insert(zone);
                    capacity_types.insert(capacity_type_label(ct));
                }
            }
        }
    } else {
        for &t in &launch.candidates {
            for o in p.types[t]
                .offerings
                .iter()
                .filter(|o| p.offer_in(o, mask, &machine.reqs))
            {
                zones.insert(&o.zone);
                capacity_types.insert(capacity_type_label(o.capacity_type));
            }
        }
    }
    reqs.add(labels::ZONE, &ValueSet::of(zones));
    reqs.add(labels::CAPACITY_TYPE, &ValueSet::of(capacity_types));
    reqs.to_node_selector()
}
