//! Which nodes a voluntary disruption may touch, and why the others may not. Pure: reads the
//! cluster state cache only.
//!
//! A node is a candidate when nodewright launched it (it carries a provisioner's name), its
//! provisioner still exists, it is initialized, not being deleted, no pods were just nominated
//! to it, and every pod on it may be evicted: none annotated `karpenter.sh/do-not-evict`, every
//! one owned by a controller that recreates it, and none covered by a PodDisruptionBudget that
//! allows no disruption now. Consolidation also stays away from nodes annotated
//! `karpenter.sh/do-not-consolidate`.

use std::time::SystemTime;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nodewright_scheduling::instance_type::CapacityType;
use nodewright_scheduling::labels;
use nodewright_scheduling::pod::{LabelSelector, LabelSelectorRequirement, Pod, SelectorOperator};

use super::Reason;
use crate::state::{ClusterState, InstanceTypesByProvisioner, NodeEntry, PodEntry};

/// A node a disruption may act on, with what deciding needs to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub node: String,
    pub provisioner: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: Option<CapacityType>,
    /// Its offering's price; `None` when the price (or the offering) is unknown.
    pub price_per_hour: Option<f64>,
    /// The pods that would have to move (not daemon, mirror or finished pods).
    pub pods: Vec<Pod>,
    /// `metadata.creationTimestamp`.
    pub created: Option<SystemTime>,
}

impl Candidate {
    /// The price, or 0 when unknown (for ordering and sums that only compare).
    pub fn price_or_zero(&self) -> f64 {
        self.price_per_hour.unwrap_or(0.0)
    }

    pub fn is_spot(&self) -> bool {
        self.capacity_type == Some(CapacityType::Spot)
    }
}

/// A node that would be disrupted but may not be, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub node: String,
    pub reason: String,
    /// Passes by itself (the node is still coming up or already going): not worth an Event.
    pub transient: bool,
}

impl Blocked {
    /// A node that must go (expired, drifted) but whose pods would have nowhere to run.
    pub fn cannot_replace(node: &str, why: &str) -> Blocked {
        Blocked {
            node: node.to_string(),
            reason: format!("no replacement can be launched: {why}"),
            transient: false,
        }
    }
}

/// Why one node may not be disrupted now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    pub reason: String,
    pub transient: bool,
}

impl Blocker {
    fn lasting(reason: String) -> Blocker {
        Blocker {
            reason,
            transient: false,
        }
    }

    fn transient(reason: &str) -> Blocker {
        Blocker {
            reason: reason.to_string(),
            transient: true,
        }
    }
}

/// How many more pods each PodDisruptionBudget lets go now, computed once per pass.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    budgets: Vec<Budget>,
}

#[derive(Debug, Clone)]
struct Budget {
    key: String,
    namespace: String,
    /// `None`: the budget selects no pod (a missing selector).
    selector: Option<LabelSelector>,
    allowed: i64,
}

impl Budgets {
    /// Reads every budget in `state`: `status.disruptionsAllowed` once the disruption
    /// controller has written it, else computed from the spec and the pods in the cache.
    pub fn new(state: &ClusterState) -> Budgets {
        let budgets = state
            .pdbs()
            .map(|pdb| {
                let namespace = pdb.metadata.namespace.clone().unwrap_or_default();
                let selector = pdb
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .map(core_selector);
                let allowed = match &pdb.status {
                    Some(status) if status.observed_generation.is_some() => {
                        i64::from(status.disruptions_allowed)
                    }
                    _ => computed_allowance(pdb, &namespace, selector.as_ref(), state),
                };
                Budget {
                    key: format!(
                        "{namespace}/{}",
                        pdb.metadata.name.as_deref().unwrap_or_default()
                    ),
                    namespace,
                    selector,
                    allowed,
                }
            })
            .collect();
        Budgets { budgets }
    }

    /// The budget that lets no more of `pod`'s kind go now, if one covers it.
    pub fn blocking(&self, pod: &Pod) -> Option<&str> {
        self.budgets
            .iter()
            .filter(|b| b.allowed <= 0 && b.namespace == pod.namespace)
            .find(|b| b.selector.as_ref().is_some_and(|s| s.matches(&pod.labels)))
            .map(|b| b.key.as_str())
    }
}

/// Healthy pods minus the pods the budget wants healthy (never below 0).
fn computed_allowance(
    pdb: &PodDisruptionBudget,
    namespace: &str,
    selector: Option<&LabelSelector>,
    state: &ClusterState,
) -> i64 {
    let Some(selector) = selector else {
        return i64::MAX;
    };
    let matching: Vec<&PodEntry> = state
        .pods()
        .filter(|p| !p.terminal && p.pod.namespace == namespace)
        .filter(|p| selector.matches(&p.pod.labels))
        .collect();
    let expected = matching.len() as i64;
    let healthy = matching
        .iter()
        .filter(|p| &*p.phase == "Running" && !p.deleting)
        .count() as i64;
    let spec = pdb.spec.as_ref();
    let desired = match (
        spec.and_then(|s| s.min_available.as_ref()),
        spec.and_then(|s| s.max_unavailable.as_ref()),
    ) {
        (Some(min), _) => scaled(min, expected),
        (None, Some(max)) => expected - scaled(max, expected),
        (None, None) => 0,
    };
    (healthy - desired).max(0)
}

/// An absolute number, or a percentage of `total` rounded up (as the disruption controller
/// rounds). An unreadable percentage counts as everything, which blocks: the safe reading.
fn scaled(value: &IntOrString, total: i64) -> i64 {
    match value {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(text) => text
            .trim_end_matches('%')
            .parse::<i64>()
            .map(|pct| (pct * total + 99) / 100)
            .unwrap_or(total),
    }
}

fn core_selector(selector: &meta::LabelSelector) -> LabelSelector {
    LabelSelector {
        match_labels: selector.match_labels.clone().unwrap_or_default(),
        match_expressions: selector
            .match_expressions
            .iter()
            .flatten()
            .map(|e| LabelSelectorRequirement {
                key: e.key.clone(),
                operator: match e.operator.as_str() {
                    "In" => SelectorOperator::In,
                    "NotIn" => SelectorOperator::NotIn,
                    "Exists" => SelectorOperator::Exists,
                    // DoesNotExist, and anything unknown: select nothing rather than all.
                    _ => SelectorOperator::DoesNotExist,
                },
                values: e.values.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// `node` as a candidate for `reason`, or why it may not be disrupted. `None` for nodes
/// nodewright does not manage (not a blocker worth reporting).
pub fn candidate(
    state: &ClusterState,
    node: &NodeEntry,
    reason: Reason,
    budgets: &Budgets,
    types: &InstanceTypesByProvisioner,
    nominated: &dyn Fn(&str) -> bool,
) -> Option<Result<Candidate, Blocker>> {
    let provisioner = node.core.labels.get(labels::PROVISIONER_NAME)?;
    Some(check(
        state,
        node,
        provisioner,
        reason,
        budgets,
        types,
        nominated,
    ))
}

fn check(
    state: &ClusterState,
    node: &NodeEntry,
    provisioner: &str,
    reason: Reason,
    budgets: &Budgets,
    types: &InstanceTypesByProvisioner,
    nominated: &dyn Fn(&str) -> bool,
) -> Result<Candidate, Blocker> {
    let name = &node.core.name;
    if state.provisioner(provisioner).is_none() {
        return Err(Blocker::transient("its provisioner does not exist"));
    }
    if node.deleting {
        return Err(Blocker::transient("it is being deleted"));
    }
    if !node.initialized {
        return Err(Blocker::transient("it is not initialized yet"));
    }
    if nominated(name) {
        return Err(Blocker::transient("pods were just nominated to it"));
    }
    if reason == Reason::Consolidation
        && annotation(node, labels::DO_NOT_CONSOLIDATE) == Some("true")
    {
        return Err(Blocker::lasting(format!(
            "it is annotated {}: \"true\"",
            labels::DO_NOT_CONSOLIDATE
        )));
    }
    let mut pods = Vec::new();
    for entry in state.pods_on_node(name) {
        let key = entry.pod.key();
        if entry.do_not_evict {
            return Err(Blocker::lasting(format!(
                "pod {key} is annotated {}: \"true\"",
                labels::DO_NOT_EVICT
            )));
        }
        if entry.daemon || entry.mirror || entry.deleting {
            continue;
        }
        if entry.pod.owner.is_none() {
            return Err(Blocker::lasting(format!(
                "pod {key} has no controller to recreate it elsewhere"
            )));
        }
        if let Some(budget) = budgets.blocking(&entry.pod) {
            return Err(Blocker::lasting(format!(
                "PodDisruptionBudget {budget} allows no disruption of pod {key} now"
            )));
        }
        pods.push(Pod::clone(&entry.pod));
    }
    let label = |key: &str| node.core.labels.get(key).cloned().unwrap_or_default();
    let instance_type = label(labels::INSTANCE_TYPE);
    let zone = label(labels::ZONE);
    let capacity_type = match node
        .core
        .labels
        .get(labels::CAPACITY_TYPE)
        .map(String::as_str)
    {
        Some(labels::CAPACITY_TYPE_SPOT) => Some(CapacityType::Spot),
        Some(labels::CAPACITY_TYPE_ON_DEMAND) => Some(CapacityType::OnDemand),
        _ => None,
    };
    let price_per_hour = capacity_type.and_then(|capacity_type| {
        types
            .get(provisioner)?
            .iter()
            .find(|t| t.name == instance_type)?
            .offerings
            .iter()
            .find(|o| o.zone == zone && o.capacity_type == capacity_type)?
            .price_per_hour
    });
    Ok(Candidate {
        node: name.clone(),
        provisioner: provisioner.to_string(),
        instance_type,
        zone,
        capacity_type,
        price_per_hour,
        pods,
        created: node
            .node
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| SystemTime::from(t.0)),
    })
}

fn annotation<'a>(node: &'a NodeEntry, key: &str) -> Option<&'a str> {
    node.node
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// Every managed node as a candidate for `reason` or blocked, for nodes `eligible` keeps
/// (e.g. those past their expiry), in node-name order.
pub fn partition(
    state: &ClusterState,
    reason: Reason,
    types: &InstanceTypesByProvisioner,
    nominated: &dyn Fn(&str) -> bool,
    eligible: impl Fn(&NodeEntry) -> bool,
) -> (Vec<Candidate>, Vec<Blocked>) {
    let budgets = Budgets::new(state);
    let mut candidates = Vec::new();
    let mut blocked = Vec::new();
    for node in state.nodes().filter(|n| eligible(n)) {
        match candidate(state, node, reason, &budgets, types, nominated) {
            None => {}
            Some(Ok(c)) => candidates.push(c),
            Some(Err(why)) => blocked.push(Blocked {
                node: node.core.name.clone(),
                reason: why.reason,
                transient: why.transient,
            }),
        }
    }
    (candidates, blocked)
}
