//! Node termination, behind the `karpenter.sh/termination` finalizer: cordon, drain through the
//! Eviction API (PDBs are the API server's to enforce: a refused eviction is retried with
//! backoff), wait for the pods to go, terminate the instance, wait until it is gone, then remove
//! the finalizer so the node object goes last. A NotReady node is drained like any other unless
//! the cloud says its instance is gone; pods stuck terminating past their grace period (a
//! kubelet that no longer answers) no longer hold the drain up.
//!
//! [`next_step`] decides from the cache alone; the loop acts, one node at a time per node.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, EvictParams, Patch, PatchParams};
use nodewright_scheduling::labels;
use nodewright_scheduling::taints::{Taint, TaintEffect};
use serde_json::json;
use tokio::sync::watch;

use crate::apis::Machine;
use crate::apis::common::CONDITION_TRUE;
use crate::cloudprovider::{CloudProviderError, DeleteStatus, MachineId};
use crate::controllers::context::Context;
use crate::controllers::error::ControllerError;
use crate::controllers::events::{pod_reference, reference};
use crate::controllers::work::{Outcome, Work};
use crate::controllers::write;
use crate::state::{ClusterState, NodeEntry, PodEntry};

const CONTROLLER: &str = "node.termination";
/// How often a drain or an instance termination is looked at again.
const POLL: Duration = Duration::from_secs(2);
/// Real time one eviction may take before the loop gives up on it and tries again later. The
/// eviction client does not retry, so only a stuck connection takes this long.
const EVICTION_PATIENCE: Duration = Duration::from_secs(10);
/// Annotation a disruption writes on a node it deletes, so the metric can say why.
pub const TERMINATION_REASON_ANNOTATION: &str = "karpenter.sh/disruption-reason";

/// What to do next for a node being deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminationStep {
    /// Not ours to finalize (no termination finalizer, or not being deleted).
    None,
    Cordon,
    /// Evict these pods (`namespace/name`).
    Evict(Vec<String>),
    /// Evicted pods are still shutting down.
    WaitForPods(usize),
    /// Drained (or nothing to drain): terminate the instance, then release the node.
    Terminate,
}

/// How long past its grace period a pod being deleted still holds up a drain. Past that, its
/// kubelet is taken to be gone (partitioned or NotReady) and the pod as good as gone; Karpenter
/// uses the same minute.
pub const STUCK_TERMINATING_AFTER: Duration = Duration::from_secs(60);

/// The next termination step for `node`, whose pods are `pods`, at `now`. A NotReady node is
/// drained like any other: only the cloud can say its instance is gone (see [`act`]), and a
/// kubelet blip must not take pods down without their disruption budgets.
pub fn next_step(node: &NodeEntry, pods: &[&PodEntry], now: SystemTime) -> TerminationStep {
    let has_finalizer = node
        .node
        .metadata
        .finalizers
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .any(|f| f == labels::TERMINATION_FINALIZER);
    if !node.deleting || !has_finalizer {
        return TerminationStep::None;
    }
    // Created early and never registered: no kubelet runs there, its pods are released instead.
    if crate::controllers::lifecycle::early::awaits_kubelet(&node.node) {
        return TerminationStep::Terminate;
    }
    let cordoned = node
        .node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !cordoned {
        return TerminationStep::Cordon;
    }
    let drainable: Vec<&&PodEntry> = pods.iter().filter(|p| must_drain(p, now)).collect();
    let to_evict: Vec<String> = drainable
        .iter()
        .filter(|p| !p.deleting)
        .map(|p| format!("{}/{}", p.pod.namespace, p.pod.name))
        .collect();
    if !to_evict.is_empty() {
        return TerminationStep::Evict(to_evict);
    }
    if !drainable.is_empty() {
        return TerminationStep::WaitForPods(drainable.len());
    }
    TerminationStep::Terminate
}

/// Whether the drain waits for `pod`. Left out: daemon and mirror pods (their controllers put
/// them back), pods that tolerate the cordon (they would come straight back after each eviction,
/// so the drain would never end), and pods stuck terminating well past their grace period.
fn must_drain(pod: &PodEntry, now: SystemTime) -> bool {
    let unschedulable = Taint::new(labels::TAINT_UNSCHEDULABLE, "", TaintEffect::NoSchedule);
    let tolerates_cordon = pod
        .pod
        .placement
        .tolerations
        .iter()
        .any(|t| t.tolerates(&unschedulable));
    let stuck = pod
        .deletion_deadline
        .is_some_and(|deadline| now > deadline + STUCK_TERMINATING_AFTER);
    !pod.daemon && !pod.mirror && !tolerates_cordon && !stuck && !pod.terminal
}

fn is_ready(node: &NodeEntry) -> bool {
    node.node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == CONDITION_TRUE)
}

/// Deletes the pods bound early to a node that never came up, so their controllers recreate
/// them elsewhere (a pod is never left on a node that does not exist).
async fn release_early_pods(ctx: &Context, node: &str) -> Result<(), ControllerError> {
    let pods: Vec<String> = ctx
        .state
        .read()
        .pods_on_node(node)
        .into_iter()
        .filter(|p| !p.daemon)
        .map(|p| format!("{}/{}", p.pod.namespace, p.pod.name))
        .collect();
    for key in pods {
        let (namespace, pod) = key.split_once('/').unwrap_or(("default", &key));
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
        match api
            .delete(pod, &kube::api::DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => {
                return Err(ControllerError::api(
                    format!("delete pod {key} from node {node}"),
                    e,
                ));
            }
        }
        ctx.events.warning(
            pod_reference(&key),
            REASON_NODE_NEVER_CAME,
            format!("node {node} never came up; deleting the pod so its controller recreates it"),
        );
    }
    Ok(())
}

/// Event reason on a pod bound early to a node that never registered.
pub const REASON_NODE_NEVER_CAME: &str = "NodeNeverRegistered";

/// Runs until `stop` turns true.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let mut changes = ctx.state.changed();
    let mut work = Work::counted(CONTROLLER, ctx.metrics.clone());
    loop {
        let now = ctx.clock.now();
        changes.borrow_and_update();
        let steps: Vec<(NodeEntry, Option<Machine>, TerminationStep)> = {
            let state = ctx.state.read();
            state
                .nodes()
                .filter(|n| n.deleting && work.is_idle(&n.core.name, now))
                .map(|n| {
                    let pods = state.pods_on_node(&n.core.name);
                    let machine = machine_of(&state, n);
                    (n.clone(), machine, next_step(n, &pods, now))
                })
                .filter(|(_, _, step)| *step != TerminationStep::None)
                .collect()
        };
        for (node, machine, step) in steps {
            let ctx = ctx.clone();
            work.spawn(node.core.name.clone(), async move {
                act(&ctx, &node, machine.as_ref(), step).await
            });
        }
        let clock = ctx.clock.as_ref();
        if !work
            .wait(clock, &mut changes, &mut stop, None, "node termination")
            .await
        {
            return;
        }
        let state = ctx.state.read();
        work.retain(|name| state.node(name).is_some());
    }
}

fn machine_of(state: &ClusterState, node: &NodeEntry) -> Option<Machine> {
    state.machine_of_node(node).map(|m| m.machine.clone())
}

async fn act(
    ctx: &Context,
    node: &NodeEntry,
    machine: Option<&Machine>,
    step: TerminationStep,
) -> Outcome {
    let name = node.core.name.clone();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let draining = matches!(
        step,
        TerminationStep::Evict(_) | TerminationStep::WaitForPods(_)
    );
    // Nothing runs on a node whose instance is gone: no drain to wait for.
    if draining && !is_ready(node) && instance_gone(ctx, node, machine).await? {
        tracing::info!(node = %name, "Instance of NotReady node is gone; skipping the drain");
        return terminate(ctx, node, machine).await;
    }
    match step {
        TerminationStep::None => Ok(None),
        TerminationStep::Cordon => {
            let patched = nodes
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "spec": { "unschedulable": true } })),
                )
                .await
                .map_err(|e| ControllerError::api(format!("cordon node {name}"), e))?;
            ctx.state.apply(&patched);
            tracing::info!(node = %name, "Cordoned node");
            Ok(None)
        }
        TerminationStep::Evict(pods) => {
            let mut refused = 0;
            for key in &pods {
                let (namespace, pod) = key.split_once('/').unwrap_or(("default", key));
                let api: Api<Pod> = Api::namespaced(ctx.evictions.clone(), namespace);
                let answer = tokio::time::timeout(
                    EVICTION_PATIENCE,
                    api.evict(pod, &EvictParams::default()),
                )
                .await;
                match answer {
                    Ok(Ok(_)) => {
                        ctx.metrics.pod_evicted();
                        ctx.events
                            .normal(pod_reference(key), "Evicted", "Evicted pod");
                    }
                    Ok(Err(kube::Error::Api(status))) if status.code == 404 => {}
                    // 429: a PDB allows no disruption now; try again later.
                    Ok(Err(kube::Error::Api(status))) if status.code == 429 => refused += 1,
                    Err(_) => refused += 1,
                    Ok(Err(e)) => {
                        return Err(ControllerError::api(format!("evict pod {key}"), e));
                    }
                }
            }
            if refused > 0 {
                // Karpenter's event; repeats within the events' window are dropped.
                ctx.events.warning(
                    reference(&node.node),
                    "FailedDraining",
                    format!("Failed to drain node, {refused} pods are waiting to be evicted"),
                );
                return Err(ControllerError::Blocked(format!(
                    "{refused} eviction(s) from node {name} refused for now (disruption budget)"
                )));
            }
            Ok(Some(ctx.clock.now() + POLL))
        }
        TerminationStep::WaitForPods(_) => Ok(Some(ctx.clock.now() + POLL)),
        TerminationStep::Terminate => terminate(ctx, node, machine).await,
    }
}

fn machine_id(node: &NodeEntry, machine: Option<&Machine>) -> MachineId {
    match machine {
        Some(machine) => MachineId::from(machine),
        None => MachineId::new(node.core.name.clone(), node.provider_id.clone()),
    }
}

/// Whether the cloud says the node's instance no longer exists.
async fn instance_gone(
    ctx: &Context,
    node: &NodeEntry,
    machine: Option<&Machine>,
) -> Result<bool, ControllerError> {
    let id = machine_id(node, machine);
    match ctx.cloud_call(CONTROLLER, "Get", ctx.cloud.get(&id)).await {
        Ok(_) => Ok(false),
        Err(CloudProviderError::NotFound { .. }) => Ok(true),
        Err(e) => Err(ControllerError::cloud(
            format!(
                "tell whether the instance of NotReady node {} is gone",
                node.core.name
            ),
            e,
        )),
    }
}

async fn terminate(ctx: &Context, node: &NodeEntry, machine: Option<&Machine>) -> Outcome {
    let name = node.core.name.clone();
    let id = machine_id(node, machine);
    match ctx
        .cloud_call(CONTROLLER, "Delete", ctx.cloud.delete(&id))
        .await
    {
        Ok(DeleteStatus::Terminating) => return Ok(Some(ctx.clock.now() + POLL)),
        Ok(DeleteStatus::Gone) | Err(CloudProviderError::NotFound { .. }) => {}
        Err(e) => {
            return Err(ControllerError::cloud(
                format!("terminate the instance of node {name}"),
                e,
            ));
        }
    }
    if crate::controllers::lifecycle::early::awaits_kubelet(&node.node) {
        release_early_pods(ctx, &name).await?;
    }
    if let Some(machine) = machine
        && machine.metadata.deletion_timestamp.is_none()
    {
        let machines: Api<Machine> = Api::all(ctx.client.clone());
        match machines
            .delete(&machine.name_any(), &Default::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => {
                return Err(ControllerError::api(
                    format!("delete machine {}", machine.name_any()),
                    e,
                ));
            }
        }
    }
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let released = write::release_cached(&ctx.state, &nodes, &node.node)
        .await
        .map_err(|e| ControllerError::api(format!("release node {name}"), e))?;
    if !released {
        // Released already, by an earlier pass whose answer was lost.
        return Ok(None);
    }
    let provisioner = node
        .core
        .labels
        .get(labels::PROVISIONER_NAME)
        .cloned()
        .unwrap_or_default();
    let reason = node
        .node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TERMINATION_REASON_ANNOTATION).cloned())
        .unwrap_or_else(|| "deleted".to_string());
    let took = node
        .node
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|deleted| ctx.clock.now().duration_since(deleted.0.into()).ok())
        .unwrap_or_default();
    ctx.metrics.node_terminated(&provisioner, took);
    tracing::info!(node = %name, %reason, "Deleted node");
    Ok(None)
}
