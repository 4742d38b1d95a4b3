//! Consolidation as a pure decision: delete nodes whose pods fit on the other nodes, or replace
//! one or more nodes with one cheaper node, decided by the scheduling core on the cluster minus
//! the candidates.
//!
//! Candidates go in order of savings per disrupted pod (their price over the pods that would
//! move). Several nodes at once are tried first (the longest prefix of that order, up to
//! [`MAX_MULTI_NODE`], that one action can remove, found by bisection), then one node at a
//! time. Anti-churn rules for a replacement:
//! - a node is never replaced with its own instance type (nor several nodes with the type of
//!   one of them: deleting the others does that with less churn);
//! - the replacement must save at least `min_saving_fraction` of the candidates' $/h: only
//!   instance types whose cheapest allowed offering is that much cheaper are kept;
//! - spot nodes are replaced only with spot, only with the SpotToSpotConsolidation gate, and
//!   only when at least [`MIN_SPOT_TO_SPOT_TYPES`] cheaper types are left to choose from (a
//!   short list would pick the type most likely to be interrupted again).
//!
//! Before the scheduling core runs for a set, [`Room`] rules out sets whose pods cannot fit
//! even ignoring every constraint, so a packed cluster costs one cheap check per node.
//!
//! Each search has a time budget, Karpenter's: the multi-node search keeps the best it found
//! when its minute is up, the single-node search stops after three. A pass over 1,000 nodes
//! takes about a tenth of a second, so only a pathological cluster meets them; the loop must
//! still come back to emptiness, expiry and drift.

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use nodewright_scheduling::ScheduleInput;
use nodewright_scheduling::instance_type::CapacityType;
use nodewright_scheduling::labels;
use nodewright_scheduling::plan::PlannedNode;
use nodewright_scheduling::requirements::{
    NodeSelectorRequirement, Operator, Requirements, ValueSet,
};

use super::candidates::Candidate;
use super::command::{Command, Reason, dollars};
use super::room::Room;
use super::simulate;
use crate::state::capacity_type_value;

/// At most this many nodes are considered for one multi-node action (Karpenter's bound).
pub const MAX_MULTI_NODE: usize = 100;
/// A spot node is replaced only when at least this many cheaper spot types are on offer.
pub const MIN_SPOT_TO_SPOT_TYPES: usize = 15;

/// Real time the multi-node search may take (Karpenter's bound).
pub const MULTI_NODE_BUDGET: Duration = Duration::from_secs(60);
/// Real time the single-node search may take (Karpenter's bound).
pub const SINGLE_NODE_BUDGET: Duration = Duration::from_secs(180);

/// The knobs consolidation reads from the settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsolidationSettings {
    /// A replacement must save this fraction of the candidates' $/h.
    pub min_saving_fraction: f64,
    /// The SpotToSpotConsolidation feature gate.
    pub spot_to_spot: bool,
    /// How long each search may run: [`MULTI_NODE_BUDGET`], [`SINGLE_NODE_BUDGET`].
    pub multi_node_budget: Duration,
    pub single_node_budget: Duration,
}

impl ConsolidationSettings {
    pub fn new(min_saving_fraction: f64, spot_to_spot: bool) -> ConsolidationSettings {
        ConsolidationSettings {
            min_saving_fraction,
            spot_to_spot,
            multi_node_budget: MULTI_NODE_BUDGET,
            single_node_budget: SINGLE_NODE_BUDGET,
        }
    }
}

/// Candidates by savings per disrupted pod, highest first; ties by node name.
pub fn order(candidates: &mut [Candidate]) {
    let per_pod = |c: &Candidate| c.price_or_zero() / c.pods.len().max(1) as f64;
    candidates.sort_by(|a, b| {
        per_pod(b)
            .partial_cmp(&per_pod(a))
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.node.cmp(&b.node))
    });
}

/// The first consolidation that holds over `candidates` (ordered with [`order`]), if any.
pub fn consolidate(
    base: &mut ScheduleInput,
    candidates: &[Candidate],
    settings: &ConsolidationSettings,
) -> Option<Command> {
    consolidate_timed(base, candidates, settings).command
}

/// The search that ran out of time (`karpenter_deprovisioning_consolidation_timeouts`).
pub const MULTI_NODE: &str = "multi-machine";
pub const SINGLE_NODE: &str = "single-machine";

/// What a consolidation search found, besides its command.
#[derive(Debug, Default, PartialEq)]
pub struct Searched {
    pub command: Option<Command>,
    /// The searches ([`MULTI_NODE`], [`SINGLE_NODE`]) that ran out of time.
    pub timed_out: Vec<&'static str>,
    /// Nodes tried one at a time that cannot be consolidated, with why (the `Unconsolidatable`
    /// Event).
    pub unconsolidatable: Vec<(String, String)>,
}

/// [`consolidate`], with what else the search found.
pub fn consolidate_timed(
    base: &mut ScheduleInput,
    candidates: &[Candidate],
    settings: &ConsolidationSettings,
) -> Searched {
    let mut searched = Searched::default();
    let room = Room::new(base);
    let (found, out_of_time) = multi_node(base, &room, candidates, settings);
    if out_of_time {
        searched.timed_out.push(MULTI_NODE);
    }
    if found.is_some() {
        searched.command = found;
        return searched;
    }
    let started = Instant::now();
    for (tried, candidate) in candidates.iter().enumerate() {
        if started.elapsed() >= settings.single_node_budget {
            tracing::info!(
                "Abandoning single-node consolidation after {tried} of {} nodes: out of time",
                candidates.len()
            );
            searched.timed_out.push(SINGLE_NODE);
            return searched;
        }
        if let Some(why) = room.why_not(&[candidate], settings) {
            searched
                .unconsolidatable
                .push((candidate.node.clone(), why));
            continue;
        }
        match evaluate(base, &[candidate], settings) {
            Ok(command) => {
                searched.command = Some(command);
                return searched;
            }
            Err(why) => searched
                .unconsolidatable
                .push((candidate.node.clone(), why)),
        }
    }
    searched
}

/// The longest prefix of two or more candidates that one action removes, and whether the
/// search ran out of time.
fn multi_node(
    base: &mut ScheduleInput,
    room: &Room,
    candidates: &[Candidate],
    settings: &ConsolidationSettings,
) -> (Option<Command>, bool) {
    let most = candidates.len().min(MAX_MULTI_NODE);
    if most < 2 {
        return (None, false);
    }
    let (mut low, mut high) = (2, most);
    let mut best = None;
    let started = Instant::now();
    let mut out_of_time = false;
    while low <= high {
        if started.elapsed() >= settings.multi_node_budget {
            tracing::info!(
                "Stopping multi-node consolidation: out of time, keeping the best set found"
            );
            out_of_time = true;
            break;
        }
        let mid = (low + high) / 2;
        let prefix: Vec<&Candidate> = candidates[..mid].iter().collect();
        let decided = if room.may_consolidate(&prefix, settings) {
            evaluate(base, &prefix, settings).ok()
        } else {
            None
        };
        match decided {
            Some(command) => {
                best = Some(command);
                low = mid + 1;
            }
            None => high = mid - 1,
        }
    }
    (best, out_of_time)
}

/// Whether `set` can go at once: deleted (its pods fit on the other nodes) or replaced with
/// one cheaper node; else why not.
pub fn evaluate(
    base: &mut ScheduleInput,
    set: &[&Candidate],
    settings: &ConsolidationSettings,
) -> Result<Command, String> {
    let new_nodes = simulate::new_nodes_for(base, set)?;
    let command = |replacements: Vec<PlannedNode>| Command {
        reason: Reason::Consolidation,
        candidates: set.iter().map(|c| (*c).clone()).collect(),
        replacements,
        detail: String::new(),
    };
    match new_nodes.len() {
        0 => Ok(command(Vec::new())),
        1 => {
            let planned = new_nodes.into_iter().next().ok_or("no new node")?;
            let replacement = cheaper_replacement(base, set, planned, settings)?;
            Ok(command(vec![replacement]))
        }
        n => Err(format!("its pods would need {n} new nodes")),
    }
}

/// `planned` narrowed to the instance types that keep every anti-churn rule, cheapest first.
fn cheaper_replacement(
    base: &ScheduleInput,
    set: &[&Candidate],
    mut planned: PlannedNode,
    settings: &ConsolidationSettings,
) -> Result<PlannedNode, String> {
    let mut price = 0.0;
    for candidate in set {
        match candidate.price_per_hour {
            Some(p) => price += p,
            None => {
                return Err(format!(
                    "the price of node {} ({}) is unknown",
                    candidate.node, candidate.instance_type
                ));
            }
        }
    }
    let spot_only = set.iter().all(|c| c.is_spot());
    if spot_only && !settings.spot_to_spot {
        return Err(
            "spot nodes are replaced only with the SpotToSpotConsolidation feature gate"
                .to_string(),
        );
    }
    let mut requirements = Requirements::from_node_selector(&planned.requirements);
    if spot_only {
        requirements.add(
            labels::CAPACITY_TYPE,
            &ValueSet::one(labels::CAPACITY_TYPE_SPOT),
        );
    }
    let threshold = price * (1.0 - settings.min_saving_fraction);
    let types = base
        .provisioners
        .iter()
        .find(|p| p.provisioner.name == planned.provisioner)
        .map(|p| p.instance_types.as_slice())
        .unwrap_or_default();
    let zones = requirements.get_or_any(labels::ZONE);
    let capacity_types = requirements.get_or_any(labels::CAPACITY_TYPE);
    // Several nodes into one of their own type: deleting all but one does that with less churn.
    let own_type = |name: &str| set.iter().any(|c| c.instance_type == name);
    // (price, type, zone, capacity type) of each kept type's cheapest allowed offering.
    let mut kept: Vec<(f64, &str, &str, CapacityType)> = planned
        .instance_types
        .iter()
        .filter(|name| !own_type(name))
        .filter_map(|name| {
            let option = types.iter().find(|t| &t.instance_type.name == name)?;
            option
                .instance_type
                .offerings
                .iter()
                .filter(|o| o.available && zones.allows(Some(&o.zone)))
                .filter(|o| capacity_types.allows(Some(capacity_type_value(o.capacity_type))))
                .filter_map(|o| Some((o.price_per_hour?, o)))
                .min_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal))
                .map(|(p, o)| (p, name.as_str(), o.zone.as_str(), o.capacity_type))
        })
        .filter(|(p, ..)| *p <= threshold)
        .collect();
    kept.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    let Some(&(cheapest, name, zone, capacity_type)) = kept.first() else {
        return Err(format!(
            "no other instance type for its pods costs {} or less ({:.0}% below {})",
            dollars(threshold),
            settings.min_saving_fraction * 100.0,
            dollars(price)
        ));
    };
    if spot_only && kept.len() < MIN_SPOT_TO_SPOT_TYPES {
        return Err(format!(
            "only {} cheaper spot instance types (spot-to-spot needs {MIN_SPOT_TO_SPOT_TYPES})",
            kept.len()
        ));
    }
    planned.instance_type = name.to_string();
    planned.zone = zone.to_string();
    planned.capacity_type = capacity_type;
    planned.price_per_hour = cheapest;
    planned.instance_types = kept.iter().map(|(_, n, ..)| n.to_string()).collect();
    if spot_only {
        planned
            .requirements
            .retain(|r| labels::normalize_key(&r.key) != labels::CAPACITY_TYPE);
        planned.requirements.push(NodeSelectorRequirement::new(
            labels::CAPACITY_TYPE,
            Operator::In,
            [labels::CAPACITY_TYPE_SPOT],
        ));
    }
    Ok(planned)
}
