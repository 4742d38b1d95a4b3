//! "Where would these nodes' pods go?": the scheduling core run on the cluster minus some
//! nodes, with their pods added to the pods still pending. Every disruption asks it.
//!
//! The base input is built once per pass (`ClusterState::schedule_input`) and borrowed
//! mutably: the candidates' nodes are taken out and put back in place, so a pass over a
//! thousand nodes never copies the other nodes' pods.

use std::collections::HashSet;

use nodewright_scheduling::plan::PlannedNode;
use nodewright_scheduling::{Plan, ScheduleInput, schedule};

use super::candidates::Candidate;
use super::command::{Command, Reason};

/// Plans `candidates`' pods (plus the pending ones) on `base` without `candidates`' nodes.
/// `base` is left as it was.
pub fn without(base: &mut ScheduleInput, candidates: &[&Candidate]) -> Plan {
    let names: HashSet<&str> = candidates.iter().map(|c| c.node.as_str()).collect();
    let mut taken = Vec::new();
    // Backwards, so earlier indices stay valid; put back in the opposite order.
    for index in (0..base.nodes.len()).rev() {
        if names.contains(base.nodes[index].name.as_str()) {
            taken.push((index, base.nodes.remove(index)));
        }
    }
    let pending = base.pods.len();
    base.pods
        .extend(candidates.iter().flat_map(|c| c.pods.iter().cloned()));
    let plan = schedule(base);
    base.pods.truncate(pending);
    for (index, node) in taken.into_iter().rev() {
        base.nodes.insert(index, node);
    }
    plan
}

/// Where the candidates' pods would go: the new nodes that would hold any of them (pending
/// pods may share those), or the first of their pods no node could take, with why.
pub fn new_nodes_for(
    base: &mut ScheduleInput,
    candidates: &[&Candidate],
) -> Result<Vec<PlannedNode>, String> {
    let plan = without(base, candidates);
    let moving: HashSet<String> = candidates
        .iter()
        .flat_map(|c| c.pods.iter().map(|p| p.key()))
        .collect();
    if let Some(stuck) = plan.unschedulable.iter().find(|u| moving.contains(&u.pod)) {
        return Err(format!(
            "pod {} would not schedule elsewhere: {}",
            stuck.pod, stuck.reason
        ));
    }
    Ok(plan
        .nodes
        .into_iter()
        .filter(|n| n.pods.iter().any(|p| moving.contains(p)))
        .collect())
}

/// Expiry's and drift's decision for one node: delete it when its pods fit elsewhere, else
/// launch the new nodes they need first; no price rule (the node must go either way).
pub fn replace_or_delete(
    base: &mut ScheduleInput,
    candidate: &Candidate,
    reason: Reason,
    detail: String,
) -> Result<Command, String> {
    let replacements = new_nodes_for(base, &[candidate])?;
    Ok(Command {
        reason,
        candidates: vec![candidate.clone()],
        replacements,
        detail,
    })
}
