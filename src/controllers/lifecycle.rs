//! The machine lifecycle as a pure decision: given a machine, the node with its provider id (if
//! any) and the time, what comes next — launch it, wait, adopt its node (Registered), mark the
//! node ready for pods (Initialized), or give up on it (deleted after the launch or
//! registration TTL, its pods going back to the next batch).
//!
//! Launched → Registered → Initialized, as Karpenter: registration puts the machine's labels,
//! taints and startup taints, the termination finalizer, an owner reference and the
//! `karpenter.sh/registered` label on the node (taints only the first time, so startup taints
//! that were removed never come back); initialization waits for the node to be Ready, its
//! startup taints gone and every requested resource reported, then labels it
//! `karpenter.sh/initialized`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::Resource;
use nodewright_scheduling::labels;

use crate::apis::Machine;
use crate::apis::common::{CONDITION_FALSE, CONDITION_TRUE, Condition, find_condition};
use crate::apis::machine::{MACHINE_INITIALIZED, MACHINE_LAUNCHED, MACHINE_REGISTERED};
use crate::settings::Settings;
use crate::state::{MachineEntry, NodeEntry};

pub mod early;
pub mod run;

/// Why a machine is given up (`karpenter_machines_terminated{reason}` and the Event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Not launched within the launch TTL.
    LaunchTimeout,
    /// Launched, but no node registered within the registration TTL.
    RegistrationTimeout,
}

impl GiveUp {
    /// The metric `reason` label (Karpenter counts both as `liveness`).
    pub fn metric_reason(self) -> &'static str {
        "liveness"
    }

    pub fn message(self, ttl: Duration) -> String {
        match self {
            GiveUp::LaunchTimeout => {
                format!("not launched within {}s; deleting it", ttl.as_secs())
            }
            GiveUp::RegistrationTimeout => format!(
                "no node registered within {}s of launch; deleting it",
                ttl.as_secs()
            ),
        }
    }
}

/// What the lifecycle loop does next for one machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Being deleted: the termination controller's business.
    Terminating,
    /// Call the CloudProvider (idempotent on the machine's UID), then record the launch.
    Launch,
    /// Delete the machine (and so its instance).
    Delete(GiveUp),
    /// Nothing to do before `deadline` unless something changes.
    WaitForNode { deadline: SystemTime },
    /// Patch the node, then mark the machine Registered with its node name.
    Register(NodeRegistration),
    /// The node is up but not ready for pods yet; `missing` says what it waits for.
    WaitForInitialization { missing: String },
    /// Label the node initialized, then mark the machine Initialized.
    Initialize { node: String },
    /// Initialized: nothing more to do here.
    Settled,
}

/// What to put on a node to adopt it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRegistration {
    pub node: String,
    /// Labels to set (the machine's, plus `karpenter.sh/registered`).
    pub labels: BTreeMap<String, String>,
    /// Taints to add (the machine's taints and startup taints the node lacks); empty when the
    /// node was registered before.
    pub taints: Vec<Taint>,
    pub add_finalizer: bool,
    /// The machine as the node's owner, unless the node has it already.
    pub owner: Option<OwnerReference>,
}

/// The next step for `machine`, whose node (by provider id) is `node`.
pub fn next_step(
    machine: &MachineEntry,
    node: Option<&NodeEntry>,
    now: SystemTime,
    settings: &Settings,
) -> Step {
    if machine.deleting {
        return Step::Terminating;
    }
    let object = &machine.machine;
    let created = object
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| SystemTime::from(t.0))
        .unwrap_or(now);
    let age = now.duration_since(created).unwrap_or_default();
    let conditions = object
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    let is_true = |type_: &str| find_condition(conditions, type_).is_some_and(Condition::is_true);
    let launched = is_true(MACHINE_LAUNCHED)
        || object
            .status
            .as_ref()
            .is_some_and(|s| s.provider_id.is_some());
    if !launched {
        return if age >= settings.launch_ttl {
            Step::Delete(GiveUp::LaunchTimeout)
        } else {
            Step::Launch
        };
    }
    // A node created ahead of its kubelet (early binding) is not registered until it reports.
    let node = node.filter(|n| !early::awaits_kubelet(&n.node));
    let Some(node) = node else {
        return if age >= settings.registration_ttl {
            Step::Delete(GiveUp::RegistrationTimeout)
        } else {
            Step::WaitForNode {
                deadline: created + settings.registration_ttl,
            }
        };
    };
    let node_labels = node.node.metadata.labels.clone().unwrap_or_default();
    let node_registered = node_labels.get(labels::REGISTERED).map(String::as_str) == Some("true");
    if !node_registered || !is_true(MACHINE_REGISTERED) {
        return Step::Register(registration(object, node, node_registered));
    }
    if is_true(MACHINE_INITIALIZED) && node.initialized {
        return Step::Settled;
    }
    match not_initialized_because(machine, node) {
        Some(missing) => Step::WaitForInitialization { missing },
        None => Step::Initialize {
            node: node.core.name.clone(),
        },
    }
}

fn registration(machine: &Machine, node: &NodeEntry, registered_before: bool) -> NodeRegistration {
    let mut labels = machine.metadata.labels.clone().unwrap_or_default();
    labels.insert(labels::REGISTERED.to_string(), "true".to_string());
    let present = node
        .node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let taints = if registered_before {
        Vec::new()
    } else {
        let mut missing: Vec<Taint> = Vec::new();
        for taint in machine
            .spec
            .taints
            .iter()
            .chain(&machine.spec.startup_taints)
        {
            let same = |t: &Taint| t.key == taint.key && t.effect == taint.effect;
            if !present.iter().any(same) && !missing.iter().any(same) {
                missing.push(taint.clone());
            }
        }
        missing
    };
    let finalizers = node.node.metadata.finalizers.as_deref().unwrap_or(&[]);
    let uid = machine.metadata.uid.clone();
    let owned = node
        .node
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .any(|o| Some(&o.uid) == uid.as_ref());
    NodeRegistration {
        node: node.core.name.clone(),
        labels,
        taints,
        add_finalizer: !finalizers
            .iter()
            .any(|f| f == labels::TERMINATION_FINALIZER),
        owner: uid.filter(|_| !owned).map(|uid| OwnerReference {
            api_version: Machine::api_version(&()).into_owned(),
            kind: Machine::kind(&()).into_owned(),
            name: machine.metadata.name.clone().unwrap_or_default(),
            uid,
            block_owner_deletion: Some(true),
            controller: None,
        }),
    }
}

/// Why the node is not ready for pods yet, or `None` when it is: Ready, no startup taint left,
/// every resource the machine was launched for reported in allocatable.
fn not_initialized_because(machine: &MachineEntry, node: &NodeEntry) -> Option<String> {
    let ready = node
        .node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == CONDITION_TRUE);
    if !ready {
        return Some("node is not Ready".to_string());
    }
    if let Some(taint) = machine.startup_taints.iter().find(|s| {
        node.core
            .taints
            .iter()
            .any(|t| t.key == s.key && t.effect == s.effect)
    }) {
        return Some(format!("startup taint {} is still on the node", taint.key));
    }
    machine
        .requests
        .iter()
        .find(|(resource, _)| node.core.allocatable.get(resource) == 0)
        .map(|(resource, _)| format!("resource {resource} is not reported yet"))
}

/// `conditions` with `type_` set to `status`; the transition time moves only when the status
/// changes.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: Time,
) {
    let status = if ok { CONDITION_TRUE } else { CONDITION_FALSE };
    let condition = Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        severity: None,
        last_transition_time: Some(now),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let since = if existing.status == status {
                existing.last_transition_time.clone()
            } else {
                None
            };
            *existing = Condition {
                last_transition_time: since.or(condition.last_transition_time.clone()),
                ..condition
            };
        }
        None => conditions.push(condition),
    }
}
