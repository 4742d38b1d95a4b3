//! The simulated kube-scheduler: binds pending pods to Ready nodes they fit and marks the rest
//! `PodScheduled=False` with reason `Unschedulable`, as kube-scheduler does, so that
//! nodewright's provisioner sees them.
//!
//! Each pass is `observe → decide → act`: list pods and nodes (a fresh, consistent read, so a
//! binding of the previous pass is never placed twice), let the scheduling core place every
//! pending pod in one batch on the existing nodes (its fit checks are the only ones: resources,
//! selectors, affinity, taints, spread), then post the bindings and the status changes. Watches
//! on pods and nodes only trigger passes, once a burst of changes settles; changes that arrive
//! during a pass fold into the next.
//! Like the deployment controller it reacts to changes and needs no clock.
//!
//! Simplified: no preemption, no nominated nodes, no scoring beyond the core's packing, and
//! pods on NotReady or cordoned nodes do not count for spread or affinity (kube-scheduler counts
//! them).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use nodewright_scheduling::node::ExistingNode;
use nodewright_scheduling::{ScheduleInput, schedule};
use serde_json::{Value, json};

use crate::convert;

/// The `spec.schedulerName` this scheduler serves (an empty name means it too).
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// The pod condition a scheduler owns.
pub const POD_SCHEDULED: &str = "PodScheduled";
/// kube-scheduler's reason for a pod no node can take.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";
/// Bindings or status writes of one pass in flight at once: a pass over thousands of pending
/// pods must not wait out one round trip per pod.
const WRITES_IN_FLIGHT: usize = 16;
/// How soon a failed pass is retried.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// A pass waits until changes stop arriving for this long (at most [`SETTLE_AT_MOST`]): a burst
/// of thousands of pod events is then one pass, not one per chunk of the watch stream, each
/// listing every pod.
const SETTLED_AFTER: Duration = Duration::from_millis(10);
const SETTLE_AT_MOST: Duration = Duration::from_secs(1);
/// The core's clause for "no provisioner": this scheduler never launches nodes, so it is noise.
const NO_PROVISIONER: &str = "no provisioner can launch a node";

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("cannot list {what}: {source}")]
    List {
        what: &'static str,
        source: kube::Error,
    },
    #[error("cannot bind pod {pod} to node {node}: {source}")]
    Bind {
        pod: String,
        node: String,
        source: kube::Error,
    },
    #[error("cannot mark pod {pod} unschedulable: {source}")]
    Status { pod: String, source: kube::Error },
}

/// A pod to bind to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub namespace: String,
    pub pod: String,
    pub node: String,
}

/// A pod to mark `PodScheduled=False`, reason `Unschedulable`, with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub namespace: String,
    pub pod: String,
    pub message: String,
}

/// What one pass decided. Refusals already recorded on the pod with the same message are left
/// out, so a pass that changes nothing writes nothing (and triggers no further pass).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    pub bindings: Vec<Assignment>,
    pub refusals: Vec<Refusal>,
}

/// Runs the scheduler until `shutdown` completes.
pub async fn run(client: Client, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let changes = stream::select(
        watcher(pods, watcher::Config::default())
            .default_backoff()
            .map(|_| ()),
        watcher(nodes, watcher::Config::default())
            .default_backoff()
            .map(|_| ()),
    );
    let mut changes = pin!(changes);
    let mut shutdown = pin!(shutdown);
    let mut retry = false;
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            change = changes.next() => {
                if change.is_none() {
                    return;
                }
            }
            () = tokio::time::sleep(RETRY_AFTER), if retry => {}
        }
        // Everything delivered until the changes settle is covered by the pass about to run.
        let settle_by = tokio::time::Instant::now() + SETTLE_AT_MOST;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                change = changes.next() => {
                    if change.is_none() {
                        return;
                    }
                }
                () = tokio::time::sleep(SETTLED_AFTER) => break,
                () = tokio::time::sleep_until(settle_by) => break,
            }
        }
        retry = match schedule_pass(&client).await {
            Ok(_) => false,
            Err(error) => {
                tracing::debug!(%error, "simulated kube-scheduler");
                true
            }
        };
    }
}

/// One pass over the whole cluster; returns what it decided (and carried out).
pub async fn schedule_pass(client: &Client) -> Result<Decisions, SchedulerError> {
    // observe
    let pod_api: Api<Pod> = Api::all(client.clone());
    let pods = pod_api
        .list(&ListParams::default())
        .await
        .map_err(|source| SchedulerError::List {
            what: "pods",
            source,
        })?
        .items;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|source| SchedulerError::List {
            what: "nodes",
            source,
        })?
        .items;
    // decide
    let decisions = decide(&pods, &nodes);
    // act: bindings first, as nodes with room should fill before anything else is written
    write_all(
        client,
        &decisions.bindings,
        |client, assignment| async move { bind(&client, &assignment).await },
    )
    .await?;
    write_all(client, &decisions.refusals, |client, refusal| async move {
        mark_unschedulable(&client, &refusal).await
    })
    .await?;
    Ok(decisions)
}

/// Carries out `write` for every item, [`WRITES_IN_FLIGHT`] at a time; stops at the first error.
/// (Owned clones: futures borrowing across `buffer_unordered` defeat `tokio::spawn`.)
async fn write_all<T, F, Fut>(client: &Client, items: &[T], write: F) -> Result<(), SchedulerError>
where
    T: Clone,
    F: Fn(Client, T) -> Fut,
    Fut: Future<Output = Result<(), SchedulerError>>,
{
    let writes = items
        .iter()
        .cloned()
        .map(|item| write(client.clone(), item));
    stream::iter(writes)
        .buffer_unordered(WRITES_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Where each pending pod goes, given every pod and node of the cluster. Pure.
pub fn decide(pods: &[Pod], nodes: &[Node]) -> Decisions {
    let mut decisions = Decisions::default();
    let mut bound: BTreeMap<&str, Vec<nodewright_scheduling::pod::Pod>> = BTreeMap::new();
    let mut pending = Vec::new();
    let mut by_key: BTreeMap<String, &Pod> = BTreeMap::new();
    for pod in pods.iter().filter(|pod| !is_finished(pod)) {
        let deleting = pod.meta().deletion_timestamp.is_some();
        match node_name(pod) {
            // A terminating pod holds its place until it is gone.
            Some(node) => {
                if let Ok(core) = convert::pod::pod(pod) {
                    bound.entry(node).or_default().push(core);
                }
            }
            None if is_ours(pod) && !deleting => match convert::pod::pod(pod) {
                Ok(core) => {
                    by_key.insert(format!("{}/{}", core.namespace, core.name), pod);
                    pending.push(core);
                }
                Err(error) => push_refusal(&mut decisions, pod, error.to_string()),
            },
            None => {}
        }
    }
    if pending.is_empty() {
        return decisions;
    }
    // Only Ready, schedulable nodes are candidates (their pods then count for spread and
    // affinity); the others are only counted for the message, in kube-scheduler's words.
    let mut excluded = Excluded::default();
    let mut existing: Vec<ExistingNode> = Vec::new();
    for node in nodes {
        if !is_ready(node) {
            excluded.not_ready += 1;
            continue;
        }
        let cordoned = node.spec.as_ref().and_then(|spec| spec.unschedulable) == Some(true);
        if cordoned || node.meta().deletion_timestamp.is_some() {
            excluded.unschedulable += 1;
            continue;
        }
        let pods = bound.remove(node.name_any().as_str()).unwrap_or_default();
        match convert::node::existing_node(node, pods.into_iter().map(Arc::new).collect()) {
            Ok(node) => existing.push(node),
            Err(error) => {
                tracing::debug!(%error, "simulated kube-scheduler skips a node");
                excluded.unreadable += 1;
            }
        }
    }
    excluded.total = nodes.len();
    let plan = schedule(&ScheduleInput {
        pods: pending,
        nodes: existing,
        ..ScheduleInput::default()
    });
    for assignment in &plan.existing {
        for key in &assignment.pods {
            if let Some(pod) = by_key.get(key) {
                decisions.bindings.push(Assignment {
                    namespace: pod.namespace().unwrap_or_default(),
                    pod: pod.name_any(),
                    node: assignment.node.clone(),
                });
            }
        }
    }
    let refusals = plan
        .unschedulable
        .iter()
        .map(|refused| (refused.pod.as_str(), refused.reason.as_str()))
        // With no provisioners the core plans no new node; should it, the pod still waits.
        .chain(plan.nodes.iter().flat_map(|planned| {
            planned
                .pods
                .iter()
                .map(|pod| (pod.as_str(), "no existing node fits"))
        }));
    for (key, reason) in refusals {
        if let Some(pod) = by_key.get(key) {
            push_refusal(&mut decisions, pod, excluded.message(reason));
        }
    }
    decisions
}

/// Nodes left out of a pass, by why.
#[derive(Debug, Default)]
struct Excluded {
    total: usize,
    not_ready: usize,
    unschedulable: usize,
    unreadable: usize,
}

impl Excluded {
    /// kube-scheduler's wording: "0/N nodes are available: WHY."
    fn message(&self, reason: &str) -> String {
        let counted = [
            (self.not_ready, "node(s) were not ready"),
            (self.unschedulable, "node(s) were unschedulable"),
            (self.unreadable, "node(s) could not be read"),
        ];
        let mut why: Vec<String> = counted
            .iter()
            .filter(|(count, _)| *count > 0)
            .map(|(count, what)| format!("{count} {what}"))
            .collect();
        why.extend(
            reason
                .split("; ")
                .filter(|part| !part.is_empty() && *part != NO_PROVISIONER)
                .map(str::to_string),
        );
        let why = match why.is_empty() {
            true => "no node fits".to_string(),
            false => why.join("; "),
        };
        format!("0/{} nodes are available: {why}.", self.total)
    }
}

fn push_refusal(decisions: &mut Decisions, pod: &Pod, message: String) {
    if already_refused(pod, &message) {
        return;
    }
    decisions.refusals.push(Refusal {
        namespace: pod.namespace().unwrap_or_default(),
        pod: pod.name_any(),
        message,
    });
}

async fn bind(client: &Client, assignment: &Assignment) -> Result<(), SchedulerError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &assignment.namespace);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": assignment.pod, "namespace": assignment.namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": assignment.node},
    });
    match pods
        .create_subresource::<Value, Value>(
            "binding",
            &assignment.pod,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => {
            tracing::debug!(pod = %assignment.pod, node = %assignment.node, "bound");
            Ok(())
        }
        // Gone, bound or being deleted since the list: the next pass sees the new state.
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(()),
        Err(source) => Err(SchedulerError::Bind {
            pod: format!("{}/{}", assignment.namespace, assignment.pod),
            node: assignment.node.clone(),
            source,
        }),
    }
}

async fn mark_unschedulable(client: &Client, refusal: &Refusal) -> Result<(), SchedulerError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &refusal.namespace);
    // A strategic merge patch merges conditions by type, leaving the others alone.
    let patch = json!({"status": {"conditions": [{
        "type": POD_SCHEDULED,
        "status": "False",
        "reason": REASON_UNSCHEDULABLE,
        "message": refusal.message,
        "lastProbeTime": null,
    }]}});
    match pods
        .patch_status(
            &refusal.pod,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(SchedulerError::Status {
            pod: format!("{}/{}", refusal.namespace, refusal.pod),
            source,
        }),
    }
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|node| !node.is_empty())
}

/// Served by this scheduler: no scheduler named, or the default one.
fn is_ours(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.scheduler_name.as_deref())
        .is_none_or(|name| name.is_empty() || name == SCHEDULER_NAME)
}

/// Succeeded or failed: holds no place on a node.
fn is_finished(pod: &Pod) -> bool {
    let phase = pod
        .status
        .as_ref()
        .and_then(|status| status.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|condition| condition.type_ == "Ready" && condition.status == "True")
}

fn already_refused(pod: &Pod, message: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|condition| {
            condition.type_ == POD_SCHEDULED
                && condition.status == "False"
                && condition.reason.as_deref() == Some(REASON_UNSCHEDULABLE)
                && condition.message.as_deref() == Some(message)
        })
}
