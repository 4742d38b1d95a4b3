//! Drift: a node that no longer matches what its provisioner would launch today is replaced
//! (the Drift feature gate, on by default). Three signs, cheapest first:
//! - the `karpenter.sh/provisioner-hash` its machine was launched with differs from the
//!   provisioner's hash now (labels, annotations, taints, kubelet settings, node template);
//! - a label of the node is no longer allowed by the provisioner's requirements;
//! - the cloud provider says the instance no longer matches its node template (AMI, subnet),
//!   asked at most every [`CLOUD_RECHECK`] per node.
//!
//! [`static_drift`] and [`drift`] are pure; [`CloudDrift`] holds the cloud's answers.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use nodewright_scheduling::ScheduleInput;
use nodewright_scheduling::labels;
use nodewright_scheduling::requirements::normalize_labels;

use super::candidates::{Blocked, Candidate};
use super::command::{Command, Reason};
use super::simulate;
use crate::cloudprovider::{MachineId, NodeTemplate};
use crate::controllers::context::{Context, node_template};
use crate::controllers::provisioning::decide::provisioner_hash;
use crate::state::{ClusterState, MachineEntry, NodeEntry, ProvisionerEntry};

const CONTROLLER: &str = "disruption";
/// How long a cloud provider's drift answer for a node is trusted.
pub const CLOUD_RECHECK: Duration = Duration::from_secs(300);

/// Why `node` no longer matches `provisioner`, from the cache alone.
pub fn static_drift(
    node: &NodeEntry,
    machine: Option<&MachineEntry>,
    provisioner: &ProvisionerEntry,
) -> Option<String> {
    let launched_with = machine
        .and_then(|m| m.machine.metadata.annotations.as_ref())
        .and_then(|a| a.get(labels::PROVISIONER_HASH))
        .or_else(|| {
            node.node
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(labels::PROVISIONER_HASH))
        });
    if let (Some(then), Some(now)) = (launched_with, provisioner_hash(&provisioner.provisioner))
        && *then != now
    {
        return Some(format!(
            "provisioner {} changed since it was launched",
            provisioner.core.name
        ));
    }
    // Only keys the node carries: a requirement on a label nodes never get is not drift.
    let node_labels = normalize_labels(&node.core.labels);
    let requirements = provisioner.core.node_requirements();
    requirements.iter().find_map(|(key, allowed)| {
        let value = node_labels.get(key)?;
        (!allowed.allows(Some(value))).then(|| {
            format!(
                "its label {key}={value} is no longer allowed by provisioner {}",
                provisioner.core.name
            )
        })
    })
}

/// Drift of every managed node the cache can judge: by node name, why.
pub fn drifted(state: &ClusterState, cloud: &CloudDrift) -> BTreeMap<String, String> {
    state
        .nodes()
        .filter_map(|node| {
            let provisioner = state.provisioner(node.core.labels.get(labels::PROVISIONER_NAME)?)?;
            let why = static_drift(node, state.machine_of_node(node), provisioner)
                .or_else(|| cloud.reason(&node.core.name).map(str::to_string))?;
            Some((node.core.name.clone(), why))
        })
        .collect()
}

/// The first drifted candidate that can be replaced, with its command; `reasons` by node.
/// Those before it that cannot be replaced are added to `unreplaceable`.
pub fn drift(
    base: &mut ScheduleInput,
    candidates: &[Candidate],
    reasons: &BTreeMap<String, String>,
    unreplaceable: &mut Vec<Blocked>,
) -> Option<Command> {
    candidates.iter().find_map(|candidate| {
        let why = reasons.get(&candidate.node)?;
        simulate::replace_or_delete(base, candidate, Reason::Drift, why.clone())
            .map_err(|why| unreplaceable.push(Blocked::cannot_replace(&candidate.node, &why)))
            .ok()
    })
}

/// The cloud provider's drift answers, by node, with when each was asked.
#[derive(Debug, Default)]
pub struct CloudDrift {
    answers: HashMap<String, (SystemTime, Option<String>)>,
}

impl CloudDrift {
    pub fn reason(&self, node: &str) -> Option<&str> {
        self.answers.get(node)?.1.as_deref()
    }

    /// Asks the cloud provider about every managed, initialized node not asked within
    /// [`CLOUD_RECHECK`]; forgets nodes that are gone. A failed call leaves the old answer.
    pub async fn refresh(&mut self, ctx: &Context) {
        let now = ctx.clock.now();
        let due: Vec<(String, MachineId, NodeTemplate)> = {
            let state = ctx.state.read();
            self.answers.retain(|node, _| state.node(node).is_some());
            state
                .nodes()
                .filter(|n| n.initialized && !n.deleting)
                .filter(|n| {
                    self.answers.get(&n.core.name).is_none_or(|(asked, _)| {
                        now.duration_since(*asked).unwrap_or_default() >= CLOUD_RECHECK
                    })
                })
                .filter_map(|n| {
                    let provisioner =
                        state.provisioner(n.core.labels.get(labels::PROVISIONER_NAME)?)?;
                    let template =
                        node_template(&state, &provisioner.provisioner, &ctx.settings).ok()?;
                    let machine = state.machine_of_node(n)?;
                    Some((
                        n.core.name.clone(),
                        MachineId::from(&machine.machine),
                        template,
                    ))
                })
                .collect()
        };
        for (node, id, template) in due {
            let instance = match ctx.cloud_call(CONTROLLER, "Get", ctx.cloud.get(&id)).await {
                Ok(instance) => instance,
                Err(error) => {
                    tracing::debug!(node = %node, %error, "cannot look the instance up for drift");
                    continue;
                }
            };
            let drifted = ctx.cloud.is_drifted(&instance, &template);
            match ctx.cloud_call(CONTROLLER, "IsDrifted", drifted).await {
                Ok(reason) => {
                    self.answers
                        .insert(node, (now, reason.map(|r| r.to_string())));
                }
                Err(error) => {
                    tracing::debug!(node = %node, %error, "cannot check the instance for drift");
                }
            }
        }
    }
}
