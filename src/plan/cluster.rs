//! From `plan` input to the scheduler's input: which pods are pending, which already run where,
//! and which are not nodewright's to place.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod as K8sPod;
use nodewright_scheduling::allocatable::AllocatableSettings;
use nodewright_scheduling::instance_type::InstanceType;
use nodewright_scheduling::plan::{ExistingAssignment, Plan, UnschedulablePod};
use nodewright_scheduling::pod::Pod;
use nodewright_scheduling::provisioner::ProvisionerInput;
use nodewright_scheduling::{ScheduleInput, SchedulerSettings};

use super::input::ClusterInput;
use crate::convert::{self, ConvertError};
use crate::state::{ClusterState, object_key};

/// The scheduler's input, and the pods of the input that the scheduler does not see but the
/// plan must still account for (every input pod appears exactly once in a plan).
#[derive(Debug)]
pub struct Placement {
    pub schedule: ScheduleInput,
    /// Pods already bound, by node name, in input order.
    bound: BTreeMap<String, Vec<String>>,
    /// Pods nodewright does not place, with the reason.
    not_placed: Vec<UnschedulablePod>,
}

impl Placement {
    pub fn build(
        input: &ClusterInput,
        instance_types: &[Arc<InstanceType>],
        allocatable: &AllocatableSettings,
        settings: SchedulerSettings,
    ) -> Result<Placement, ConvertError> {
        // Nodes and the pods bound to them go through the controller's own cache, so the plan
        // sees them as the controller does: a node being deleted takes no pods and its pods
        // need a new home; a node still coming up is seen without its startup and not-ready
        // taints.
        let mut state = ClusterState::new();
        for provisioner in &input.provisioners {
            state.apply_provisioner(provisioner)?;
        }
        for node in &input.nodes {
            state.apply_node(node)?;
        }
        let mut pending = Vec::new();
        let mut bound: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut not_placed = Vec::new();
        for pod in &input.pods {
            let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            if let Some(node) = node_name {
                state.apply_pod(pod)?;
                let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
                let name = pod.metadata.name.as_deref().unwrap_or_default();
                match state.pod(namespace, name) {
                    Some(entry) if state.must_move(entry) => {
                        pending.push(Pod::clone(&entry.pod));
                    }
                    _ => bound
                        .entry(node)
                        .or_default()
                        .push(object_key(namespace, name)),
                }
                continue;
            }
            let core = convert::pod::pod(pod)?;
            match why_not_placed(pod) {
                Some(reason) => not_placed.push(UnschedulablePod {
                    pod: core.key(),
                    reason: reason.to_string(),
                }),
                None => pending.push(core),
            }
        }
        let nodes = state.existing_nodes();
        let provisioners = input
            .provisioners
            .iter()
            .map(|p| {
                Ok(ProvisionerInput::new(
                    convert::provisioner::provisioner(p)?,
                    instance_types,
                    allocatable,
                ))
            })
            .collect::<Result<Vec<_>, ConvertError>>()?;
        for daemonset in &input.daemonsets {
            state.apply_daemonset(daemonset)?;
        }
        let daemonsets = state.daemonset_overheads();
        Ok(Placement {
            schedule: ScheduleInput {
                pods: pending,
                nodes,
                provisioners,
                daemonsets,
                settings,
            },
            bound,
            not_placed,
        })
    }

    /// The scheduler's plan with the pods it did not see put back: bound pods under their
    /// node (before the pods the plan adds), the rest as unschedulable with their reason.
    pub fn complete(&self, mut plan: Plan) -> Plan {
        let mut existing: BTreeMap<String, Vec<String>> = self.bound.clone();
        for assignment in plan.existing.drain(..) {
            existing
                .entry(assignment.node)
                .or_default()
                .extend(assignment.pods);
        }
        plan.existing = existing
            .into_iter()
            .map(|(node, pods)| ExistingAssignment { node, pods })
            .collect();
        plan.unschedulable.extend(self.not_placed.iter().cloned());
        plan
    }
}

/// Why a pod without a node is not nodewright's to place, if it is not.
fn why_not_placed(pod: &K8sPod) -> Option<&'static str> {
    if is_finished(pod) {
        return Some("pod has finished");
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("pod is being deleted");
    }
    if convert::pod::is_daemon_pod(pod) {
        return Some("daemonset pods are placed by their DaemonSet on every node it selects");
    }
    None
}

fn is_finished(pod: &K8sPod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}
