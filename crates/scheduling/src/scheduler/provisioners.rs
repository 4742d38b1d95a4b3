//! Provisioners compiled for packing: their requirements, which label keys they define and how,
//! and the instance types they can launch with effective capacity (allocatable less daemonset
//! overhead) and allowed offerings.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::instance_type::{CapacityType, InstanceType};
use crate::labels;
use crate::pod::DaemonSet;
use crate::provisioner::ProvisionerInput;
use crate::requirements::{Requirements, ValueSet};
use crate::resources::Resources;
use crate::taints::{Taint, tolerates_all};

use super::vector::{Dims, ResVec};

/// One way to buy a type that the provisioner allows and EC2 currently offers.
#[derive(Debug, Clone)]
pub(crate) struct OfferingModel {
    pub zone: String,
    pub capacity_type: CapacityType,
    pub price: Option<f64>,
    /// Its bit in offer masks (zone index × 2 + capacity type), when masks are exact.
    pub bit: u32,
}

impl OfferingModel {
    pub(crate) fn capacity_type_label(&self) -> &'static str {
        capacity_type_label(self.capacity_type)
    }
}

pub(crate) fn capacity_type_label(capacity_type: CapacityType) -> &'static str {
    match capacity_type {
        CapacityType::Spot => labels::CAPACITY_TYPE_SPOT,
        CapacityType::OnDemand => labels::CAPACITY_TYPE_ON_DEMAND,
    }
}

/// An instance type as one provisioner would launch it.
#[derive(Debug, Clone)]
pub(crate) struct TypeModel {
    pub it: Arc<InstanceType>,
    /// Allocatable less the daemonsets that would run on it.
    pub alloc: ResVec,
    pub overhead: Resources,
    /// What counts against limits.
    pub capacity: Resources,
    pub offerings: Vec<OfferingModel>,
    /// Cheapest offering price, if every offering is priced.
    pub cheapest: Option<f64>,
    /// Index of the cheapest offering per capacity type (spot, on-demand), ties by zone.
    pub best_offer: [Option<usize>; 2],
    /// Bits of its offerings (see [`ProvModel::offer_mask`]).
    pub mask: u128,
}

impl TypeModel {
    pub(crate) fn name(&self) -> &str {
        &self.it.name
    }

    /// A label value the type's nodes will carry (instance-type falls back to the name).
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        type_label(&self.it, key)
    }

    /// Size order for ranking without prices: vCPU, then memory.
    pub(crate) fn size(&self) -> (i64, i64) {
        (self.it.capacity.cpu_millis, self.it.capacity.memory_bytes)
    }
}

/// A label value nodes of type `it` will carry (instance-type falls back to the name).
pub(crate) fn type_label<'a>(it: &'a InstanceType, key: &str) -> Option<&'a str> {
    match it.labels.get(key) {
        Some(v) => Some(v.as_str()),
        None if key == labels::INSTANCE_TYPE => Some(&it.name),
        None => None,
    }
}

/// How a label key gets its value on a new node of a provisioner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyClass<'a> {
    /// Zone or capacity type: chosen among the offerings.
    Offering,
    /// Fixed by the instance type (absent when the type lacks the label).
    TypeLabel,
    /// A fresh hostname that no pod can name in advance.
    Hostname,
    /// Set by the provisioner (its labels, its name).
    Fixed(&'a str),
    /// A custom key the provisioner's requirements allow values for.
    Flexible,
    /// Nothing defines it: the node will not have the label.
    Undefined,
}

/// A provisioner ready for packing.
#[derive(Debug, Clone)]
pub(crate) struct ProvModel {
    pub name: String,
    /// Requirements with labels folded in and the provisioner's own name.
    pub reqs: Requirements,
    pub fixed: BTreeMap<String, String>,
    pub flexible: BTreeSet<String>,
    pub type_keys: BTreeSet<String>,
    pub taints: Vec<Taint>,
    /// Types its requirements allow and that have an available offering, largest first.
    pub types: Vec<TypeModel>,
    /// Types before requirements and offerings narrowed them.
    pub all_types: usize,
    /// Types its requirements and offerings allow but whose allocatable cannot hold the
    /// daemonsets that would run on them: never candidates, kept to explain why.
    pub crowded_out: Vec<Arc<InstanceType>>,
    pub limits: BTreeMap<String, i64>,
    pub usage: Resources,
    /// Zones its types are offered in, sorted: an offering's bit is its zone's index × 2 plus
    /// its capacity type.
    pub zones: Vec<String>,
    /// False past 64 zones, where bits run out and offerings are checked one by one.
    pub exact_masks: bool,
}

/// Zones an offer mask can hold.
const MASK_ZONES: usize = 64;

impl ProvModel {
    pub(crate) fn build(
        input: &ProvisionerInput,
        region: Option<&str>,
        daemonsets: &[DaemonSet],
        dims: &Dims,
        usage: Resources,
    ) -> ProvModel {
        let p = &input.provisioner;
        let mut type_keys: BTreeSet<String> = labels::WELL_KNOWN_LABELS
            .iter()
            .filter(|k| {
                ![
                    labels::ZONE,
                    labels::CAPACITY_TYPE,
                    labels::HOSTNAME,
                    labels::PROVISIONER_NAME,
                    labels::REGION,
                ]
                .contains(k)
            })
            .map(|k| k.to_string())
            .collect();
        for t in &input.instance_types {
            type_keys.extend(t.instance_type.labels.keys().cloned());
        }
        let mut fixed: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &p.labels {
            fixed.insert(labels::normalize_key(k).to_string(), v.clone());
        }
        fixed.insert(labels::PROVISIONER_NAME.to_string(), p.name.clone());
        if let Some(region) = region
            && !type_keys.contains(labels::REGION)
        {
            fixed.insert(labels::REGION.to_string(), region.to_string());
        }
        let mut reqs = p.node_requirements();
        reqs.add(labels::PROVISIONER_NAME, &ValueSet::one(p.name.clone()));
        let flexible = reqs
            .iter()
            .map(|(k, _)| k.to_string())
            .filter(|k| {
                !type_keys.contains(k)
                    && !fixed.contains_key(k)
                    && k != labels::ZONE
                    && k != labels::CAPACITY_TYPE
                    && k != labels::HOSTNAME
            })
            .collect();
        let mut model = ProvModel {
            name: p.name.clone(),
            reqs,
            fixed,
            flexible,
            type_keys,
            taints: p.taints.clone(),
            types: Vec::new(),
            all_types: input.instance_types.len(),
            crowded_out: Vec::new(),
            limits: p.limits.clone(),
            usage,
            zones: Vec::new(),
            exact_masks: true,
        };
        let daemons: Vec<(&DaemonSet, Vec<Requirements>)> = daemonsets
            .iter()
            .filter(|ds| tolerates_all(&p.taints, &ds.tolerations))
            .map(|ds| (ds, ds.required_terms()))
            .collect();
        let mut types = Vec::new();
        for option in &input.instance_types {
            let it = &option.instance_type;
            let offerings: Vec<OfferingModel> = it
                .offerings
                .iter()
                .filter(|o| o.available)
                .map(|o| OfferingModel {
                    zone: o.zone.clone(),
                    capacity_type: o.capacity_type,
                    price: o.price_per_hour,
                    bit: 0,
                })
                .filter(|o| model.offering_allowed(o, &model.reqs))
                .collect();
            let mut candidate = TypeModel {
                it: Arc::clone(it),
                alloc: ResVec::ZERO,
                overhead: Resources::default(),
                capacity: it.capacity.clone(),
                cheapest: None,
                best_offer: [None, None],
                mask: 0,
                offerings,
            };
            if candidate.offerings.is_empty() || !model.type_labels_allowed(&candidate, &model.reqs)
            {
                continue;
            }
            let mut overhead = Resources::default();
            for (ds, terms) in &daemons {
                let lands = terms.iter().any(|term| {
                    let combined = model.reqs.intersect(term);
                    model
                        .keys_satisfiable(&combined, term.iter().map(|(k, _)| k))
                        .is_ok()
                        && model.type_labels_allowed(&candidate, &combined)
                        && candidate
                            .offerings
                            .iter()
                            .any(|o| model.offering_allowed(o, &combined))
                });
                if lands {
                    overhead += &ds.requests;
                }
            }
            // Daemonsets run on every node of the type, so a type that cannot hold them
            // cannot hold any pod either (Karpenter adds them to every pod's requests).
            if !overhead.fits(&option.allocatable) {
                model.crowded_out.push(Arc::clone(it));
                continue;
            }
            candidate.alloc = dims.vector(&(&option.allocatable - &overhead));
            candidate.overhead = overhead;
            candidate.cheapest = candidate
                .offerings
                .iter()
                .map(|o| o.price)
                .try_fold(f64::INFINITY, |best, p| p.map(|p| best.min(p)));
            types.push(candidate);
        }
        types.sort_by(|a, b| b.size().cmp(&a.size()).then_with(|| a.name().cmp(b.name())));
        let zones: std::collections::BTreeSet<String> = types
            .iter()
            .flat_map(|t| t.offerings.iter().map(|o| o.zone.clone()))
            .collect();
        model.zones = zones.into_iter().collect();
        model.exact_masks = model.zones.len() <= MASK_ZONES;
        for t in &mut types {
            for o in &mut t.offerings {
                let zone = model.zones.binary_search(&o.zone).unwrap_or(MASK_ZONES);
                o.bit = (zone.min(MASK_ZONES - 1) * 2 + ct_index(o.capacity_type)) as u32;
                t.mask |= 1u128 << o.bit;
            }
            // Cheapest first, so the first allowed offering is the best.
            let sizes = t.size();
            t.offerings.sort_by(|a, b| {
                score_sized(a.price, sizes)
                    .total_cmp(&score_sized(b.price, sizes))
                    .then_with(|| a.zone.cmp(&b.zone))
                    .then_with(|| ct_index(a.capacity_type).cmp(&ct_index(b.capacity_type)))
            });
            let best = [CapacityType::Spot, CapacityType::OnDemand]
                .map(|ct| t.offerings.iter().position(|o| o.capacity_type == ct));
            t.best_offer = best;
        }
        model.types = types;
        model
    }

    /// The offerings `reqs` allows, as bits (zones × capacity types).
    pub(crate) fn offer_mask(&self, reqs: &Requirements) -> u128 {
        let zone = reqs.get(labels::ZONE);
        let ct = reqs.get(labels::CAPACITY_TYPE);
        let mut mask = 0u128;
        for (i, z) in self.zones.iter().enumerate().take(MASK_ZONES) {
            if zone.is_none_or(|s| s.allows(Some(z))) {
                for capacity_type in [CapacityType::Spot, CapacityType::OnDemand] {
                    if ct.is_none_or(|s| s.allows(Some(capacity_type_label(capacity_type)))) {
                        mask |= 1u128 << (i * 2 + ct_index(capacity_type));
                    }
                }
            }
        }
        mask
    }

    /// Whether `reqs` (whose mask is `mask`) allows the offering.
    pub(crate) fn offer_in(&self, o: &OfferingModel, mask: u128, reqs: &Requirements) -> bool {
        if self.exact_masks {
            (mask >> o.bit) & 1 == 1
        } else {
            self.offering_allowed(o, reqs)
        }
    }

    /// Whether type `t` has an offering `reqs` (whose mask is `mask`) allows.
    pub(crate) fn type_offered(&self, t: &TypeModel, mask: u128, reqs: &Requirements) -> bool {
        if self.exact_masks {
            t.mask & mask != 0
        } else {
            t.offerings.iter().any(|o| self.offering_allowed(o, reqs))
        }
    }

    pub(crate) fn key_class(&self, key: &str) -> KeyClass<'_> {
        if key == labels::ZONE || key == labels::CAPACITY_TYPE {
            KeyClass::Offering
        } else if key == labels::HOSTNAME {
            KeyClass::Hostname
        } else if self.type_keys.contains(key) {
            KeyClass::TypeLabel
        } else if let Some(v) = self.fixed.get(key) {
            KeyClass::Fixed(v)
        } else if self.flexible.contains(key) {
            KeyClass::Flexible
        } else {
            KeyClass::Undefined
        }
    }

    /// Checks the keys that do not depend on the instance type: the first key (of `keys`)
    /// whose set cannot be met by any node of this provisioner.
    pub(crate) fn keys_satisfiable<'k>(
        &self,
        reqs: &Requirements,
        keys: impl Iterator<Item = &'k str>,
    ) -> Result<(), &'k str> {
        for key in keys {
            let Some(set) = reqs.get(key) else { continue };
            let ok = match self.key_class(key) {
                // Every node has a zone and a capacity type.
                KeyClass::Offering => !set.no_present_value(),
                // A type may lack the label (no GPUs, no local NVMe): `DoesNotExist` holds
                // there; which types qualify is decided type by type.
                KeyClass::TypeLabel => !set.is_empty(),
                KeyClass::Hostname => set.allows_unlisted(),
                KeyClass::Fixed(value) => set.allows(Some(value)),
                KeyClass::Flexible => !set.is_empty(),
                KeyClass::Undefined => set.allows(None),
            };
            if !ok {
                return Err(key);
            }
        }
        Ok(())
    }

    pub(crate) fn offering_allowed(&self, o: &OfferingModel, reqs: &Requirements) -> bool {
        reqs.get(labels::ZONE)
            .is_none_or(|s| s.allows(Some(&o.zone)))
            && reqs
                .get(labels::CAPACITY_TYPE)
                .is_none_or(|s| s.allows(Some(o.capacity_type_label())))
    }

    pub(crate) fn type_labels_allowed(&self, t: &TypeModel, reqs: &Requirements) -> bool {
        reqs.iter()
            .filter(|(k, _)| self.type_keys.contains(*k))
            .all(|(k, set)| set.allows(t.label(k)))
    }

    /// Whether a node of type `t` can meet `reqs`: its labels and one of its offerings.
    pub(crate) fn type_allowed(&self, t: &TypeModel, reqs: &Requirements) -> bool {
        self.type_labels_allowed(t, reqs) && self.type_offered(t, self.offer_mask(reqs), reqs)
    }

    /// Values a new node could take for `key` among `candidates` under `reqs`, with the best
    /// price (or size rank) that value allows. `None` when the values are not enumerable.
    pub(crate) fn domain_options<'a>(
        &'a self,
        key: &str,
        reqs: &'a Requirements,
        candidates: impl Iterator<Item = usize>,
    ) -> Option<BTreeMap<String, f64>> {
        let mut out: BTreeMap<&str, f64> = BTreeMap::new();
        fn offer<'v>(out: &mut BTreeMap<&'v str, f64>, value: &'v str, score: f64) {
            let entry = out.entry(value).or_insert(f64::INFINITY);
            *entry = entry.min(score);
        }
        match self.key_class(key) {
            KeyClass::Offering if self.exact_masks => {
                // Best score per offering bit first; strings only once per value.
                let mask = self.offer_mask(reqs);
                let mut best = [f64::INFINITY; 128];
                for i in candidates {
                    let t = &self.types[i];
                    let mut bits = t.mask & mask;
                    if bits == 0 {
                        continue;
                    }
                    for o in &t.offerings {
                        if (bits >> o.bit) & 1 == 1 {
                            let b = o.bit as usize;
                            best[b] = best[b].min(score(o.price, t));
                            bits &= !(1u128 << o.bit);
                            if bits == 0 {
                                break;
                            }
                        }
                    }
                }
                for (bit, &value_score) in best.iter().enumerate() {
                    if value_score.is_finite() {
                        let value = if key == labels::ZONE {
                            self.zones[bit / 2].as_str()
                        } else if bit % 2 == ct_index(CapacityType::Spot) {
                            labels::CAPACITY_TYPE_SPOT
                        } else {
                            labels::CAPACITY_TYPE_ON_DEMAND
                        };
                        offer(&mut out, value, value_score);
                    }
                }
            }
            KeyClass::Offering => {
                for i in candidates {
                    let t = &self.types[i];
                    for o in t
                        .offerings
                        .iter()
                        .filter(|o| self.offering_allowed(o, reqs))
                    {
                        let value = if key == labels::ZONE {
                            o.zone.as_str()
                        } else {
                            o.capacity_type_label()
                        };
                        offer(&mut out, value, score(o.price, t));
                    }
                }
            }
            KeyClass::TypeLabel => {
                for i in candidates {
                    let t = &self.types[i];
                    if let Some(value) = t.label(key) {
                        offer(&mut out, value, score(t.cheapest, t));
                    }
                }
            }
            KeyClass::Fixed(value) => offer(&mut out, value, 0.0),
            KeyClass::Flexible => {
                for value in reqs.get(key)?.finite_values()? {
                    offer(&mut out, value, 0.0);
                }
            }
            KeyClass::Hostname => return None,
            KeyClass::Undefined => {}
        }
        let mut out: BTreeMap<String, f64> =
            out.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        if let Some(set) = reqs.get(key) {
            out.retain(|value, _| set.allows(Some(value)));
        }
        Some(out)
    }
}

/// Index into [`TypeModel::best_offer`].
pub(crate) fn ct_index(ct: CapacityType) -> usize {
    match ct {
        CapacityType::Spot => 0,
        CapacityType::OnDemand => 1,
    }
}

/// A comparable cost for choosing among values: the price, or a size rank when unpriced.
pub(crate) fn score(price: Option<f64>, t: &TypeModel) -> f64 {
    score_sized(price, t.size())
}

fn score_sized(price: Option<f64>, (cpu, memory): (i64, i64)) -> f64 {
    match price {
        Some(p) => p,
        None => 1e6 + (cpu as f64) / 1000.0 + (memory as f64) / 1e12,
    }
}
