//! What an interruption message asks of the cluster, decided from the message and the cache
//! alone: for each instance it names, the node or machine that runs it (if any is
//! nodewright's), the [`Action`], the Event to record, and the spot offering to hold out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use nodewright_scheduling::labels;

use super::messages::{Message, MessageKind};
use crate::apis::Machine;
use crate::cloudprovider::types::instance_id_of;
use crate::settings::RebalanceAction;
use crate::state::ClusterState;

/// What to do about one interrupted instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Delete the node: the termination flow cordons, drains and terminates it, and its pods
    /// are scheduled elsewhere.
    CordonAndDrain,
    /// Record an Event (and the metric), nothing more.
    EventOnly,
    /// Nothing: the message is not actionable or names no instance of ours.
    Ignore,
}

impl Action {
    /// The `action_type` metric label, as Karpenter names the actions; `None` when nothing
    /// was done.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Action::CordonAndDrain => Some("CordonAndDrain"),
            Action::EventOnly => Some("NoAction"),
            Action::Ignore => None,
        }
    }
}

/// The action a message kind calls for: Karpenter's mapping, with `rebalance` deciding what a
/// rebalance recommendation does.
pub fn action_for(kind: &MessageKind, rebalance: RebalanceAction) -> Action {
    match kind {
        MessageKind::SpotInterruption
        | MessageKind::ScheduledChange
        | MessageKind::StateChange { .. } => Action::CordonAndDrain,
        MessageKind::RebalanceRecommendation => match rebalance {
            RebalanceAction::Event => Action::EventOnly,
            RebalanceAction::Drain => Action::CordonAndDrain,
        },
        MessageKind::NoOp { .. } => Action::Ignore,
    }
}

/// The node (or, before it registers, the machine) that runs an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub node: Option<Node>,
    pub machine: Option<Machine>,
    /// Already being deleted: nothing more to start.
    pub deleting: bool,
    /// The node's labels, else the machine's (instance type, zone, capacity type).
    pub labels: BTreeMap<String, String>,
}

impl Target {
    /// `node` or `machine/NAME`, for logs.
    pub fn describe(&self) -> String {
        let name = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            meta.name.clone().unwrap_or_default()
        };
        match (&self.node, &self.machine) {
            (Some(node), _) => format!("node {}", name(&node.metadata)),
            (None, Some(machine)) => format!("machine {}", name(&machine.metadata)),
            (None, None) => "nothing".to_string(),
        }
    }
}

/// An Event to record on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// A spot offering to hold out of scheduling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offering {
    pub instance_type: String,
    pub zone: String,
}

/// The decision for one instance of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub instance_id: String,
    /// `None`: no node or machine of nodewright's runs it.
    pub target: Option<Target>,
    pub action: Action,
    pub notice: Option<Notice>,
    pub hold_out: Option<Offering>,
    /// Delete the target (not when it is already being deleted).
    pub delete: bool,
}

/// The steps for `message`; `find` looks an instance id up (see [`find_target`]).
pub fn decide(
    message: &Message,
    rebalance: RebalanceAction,
    find: impl Fn(&str) -> Option<Target>,
) -> Vec<Step> {
    // Spot pools at risk: the replacement must not land in the same one.
    let at_risk = matches!(
        message.kind,
        MessageKind::SpotInterruption | MessageKind::RebalanceRecommendation
    );
    message
        .instance_ids
        .iter()
        .map(|instance_id| {
            let target = find(instance_id);
            let action = match &target {
                Some(_) => action_for(&message.kind, rebalance),
                None => Action::Ignore,
            };
            let acting = action != Action::Ignore;
            let hold_out = target
                .as_ref()
                .filter(|_| at_risk && action == Action::CordonAndDrain)
                .and_then(spot_offering);
            Step {
                instance_id: instance_id.clone(),
                delete: action == Action::CordonAndDrain
                    && target.as_ref().is_some_and(|t| !t.deleting),
                notice: acting.then(|| notice(&message.kind)).flatten(),
                hold_out,
                target,
                action,
            }
        })
        .collect()
}

/// The Event a message kind records (Karpenter's reasons).
fn notice(kind: &MessageKind) -> Option<Notice> {
    let (warning, reason, message) = match kind {
        MessageKind::SpotInterruption => (
            true,
            "SpotInterrupted",
            "Spot interruption warning: EC2 reclaims the instance in two minutes".to_string(),
        ),
        MessageKind::RebalanceRecommendation => (
            false,
            "SpotRebalanceRecommendation",
            "Spot rebalance recommendation: the instance is at elevated risk of interruption"
                .to_string(),
        ),
        MessageKind::ScheduledChange => (
            true,
            "InstanceUnhealthy",
            "AWS Health scheduled a change (retirement or maintenance) for the instance"
                .to_string(),
        ),
        MessageKind::StateChange { state } if state == "stopping" || state == "stopped" => {
            (true, "InstanceStopping", format!("Instance is {state}"))
        }
        MessageKind::StateChange { state } => {
            (true, "InstanceTerminating", format!("Instance is {state}"))
        }
        MessageKind::NoOp { .. } => return None,
    };
    Some(Notice {
        warning,
        reason,
        message,
    })
}

/// The target's offering, when it is a spot one (an on-demand node has none to hold out).
fn spot_offering(target: &Target) -> Option<Offering> {
    let label = |key: &str| target.labels.get(key).filter(|v| !v.is_empty()).cloned();
    if label(labels::CAPACITY_TYPE).is_some_and(|c| c != labels::CAPACITY_TYPE_SPOT) {
        return None;
    }
    Some(Offering {
        instance_type: label(labels::INSTANCE_TYPE)?,
        zone: label(labels::ZONE)?,
    })
}

/// The node running `instance_id` when it is nodewright's (it has a machine or the provisioner
/// label), else the machine launched as it whose node has not registered yet.
pub fn find_target(state: &ClusterState, instance_id: &str) -> Option<Target> {
    let runs =
        |provider_id: Option<&str>| provider_id.and_then(instance_id_of) == Some(instance_id);
    if let Some(node) = state.nodes().find(|n| runs(n.provider_id.as_deref())) {
        let machine = state.machine_of_node(node).map(|m| m.machine.clone());
        let managed = machine.is_some() || node.core.labels.contains_key(labels::PROVISIONER_NAME);
        return managed.then(|| Target {
            labels: node.node.metadata.labels.clone().unwrap_or_default(),
            deleting: node.deleting,
            node: Some(node.node.clone()),
            machine,
        });
    }
    let machine = state.machines().find(|m| {
        runs(
            m.machine
                .status
                .as_ref()
                .and_then(|s| s.provider_id.as_deref()),
        )
    })?;
    Some(Target {
        labels: machine.machine.metadata.labels.clone().unwrap_or_default(),
        deleting: machine.deleting,
        node: None,
        machine: Some(machine.machine.clone()),
    })
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
