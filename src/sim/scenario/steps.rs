//! What each step does, through a real `kube::Client` like kubectl would: apply is
//! create-or-replace, scale patches `deployments/scale`, delete deletes (and does not wait),
//! wait sleeps on the simulated clock, until polls the counts (kept by watches).

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures::{StreamExt, stream};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use nodewright_scheduling::labels;
use serde_json::json;
use tokio::task::JoinHandle;

use super::{Action, ApplyObject, Count, Until};
use crate::clock::{self, Clock};

/// Why a step did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepFailure {
    /// An `until` whose counts did not match within its timeout.
    TimedOut(String),
    /// The API server refused what the scenario asked for (an invalid object, a missing
    /// deployment or namespace): a bad scenario.
    Refused(String),
    /// Anything else (the API server unreachable, conflicts that did not settle).
    Failed(String),
    /// Not run because an earlier step failed.
    Skipped,
}

impl StepFailure {
    /// What the process exit code is when this failure ends the run.
    pub fn exit_code(&self) -> u8 {
        match self {
            StepFailure::Refused(_) => super::ScenarioError::EXIT_CODE,
            _ => 1,
        }
    }

    pub fn message(&self) -> String {
        match self {
            StepFailure::TimedOut(message)
            | StepFailure::Refused(message)
            | StepFailure::Failed(message) => message.clone(),
            StepFailure::Skipped => "skipped: an earlier step failed".to_string(),
        }
    }
}

/// The counts an `until` step compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pods_running: usize,
    pub nodes: usize,
    pub managed_nodes: usize,
    pub pending_pods: usize,
}

impl Counts {
    pub fn get(&self, count: Count) -> usize {
        match count {
            Count::PodsRunning => self.pods_running,
            Count::Nodes => self.nodes,
            Count::ManagedNodes => self.managed_nodes,
            Count::PendingPods => self.pending_pods,
        }
    }
}

/// The pods and nodes an `until` step counts, kept by watches: a look costs no list of every
/// pod (a 3,000-pod run looked hundreds of times). Like any watcher it trails the API server
/// by the events in flight, which an `until` (a condition that must come to hold) tolerates.
#[derive(Clone)]
pub struct ClusterView {
    pods: reflector::Store<Pod>,
    nodes: reflector::Store<Node>,
}

impl ClusterView {
    /// Starts the watches; the task ends when `shutdown` completes.
    pub fn start(
        client: &Client,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (ClusterView, JoinHandle<()>) {
        let (pods, pod_writer) = reflector::store();
        let (nodes, node_writer) = reflector::store();
        let pod_events = reflector(
            pod_writer,
            watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
        )
        .default_backoff()
        .map(|_| ());
        let node_events = reflector(
            node_writer,
            watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
        )
        .default_backoff()
        .map(|_| ());
        let task = tokio::spawn(async move {
            let events = stream::select(pod_events, node_events).take_until(shutdown);
            let mut events = pin!(events);
            while events.next().await.is_some() {}
        });
        (ClusterView { pods, nodes }, task)
    }

    /// The counts, once both watches have listed.
    pub async fn counts(&self) -> Result<Counts, String> {
        for ready in [
            self.pods.wait_until_ready().await,
            self.nodes.wait_until_ready().await,
        ] {
            ready.map_err(|error| format!("the cluster's watch ended: {error}"))?;
        }
        let pods = self.pods.state();
        let nodes = self.nodes.state();
        let mut counts = Counts {
            nodes: nodes.len(),
            managed_nodes: nodes
                .iter()
                .filter(|node| node.labels().contains_key(labels::PROVISIONER_NAME))
                .count(),
            ..Counts::default()
        };
        let live = pods
            .iter()
            .filter(|pod| pod.meta().deletion_timestamp.is_none());
        for pod in live {
            let bound = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|node| !node.is_empty());
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            match phase {
                Some("Running") => counts.pods_running += 1,
                None | Some("Pending") if !bound => counts.pending_pods += 1,
                _ => {}
            }
        }
        Ok(counts)
    }
}

/// Runs one step; `Ok` carries a short note for the text output (may be empty).
pub(crate) async fn execute(
    client: &Client,
    view: &ClusterView,
    clock: &dyn Clock,
    poll: Duration,
    action: &Action,
) -> Result<String, StepFailure> {
    match action {
        Action::Apply(objects) => {
            let mut done = Vec::new();
            for object in objects {
                let how = apply(client, object).await?;
                done.push((how, object));
            }
            Ok(applied_note(&done))
        }
        Action::Scale {
            namespace,
            deployment,
            replicas,
        } => {
            let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
            let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
            api.patch_scale(deployment, &PatchParams::default(), &patch)
                .await
                .map_err(|error| {
                    classify(&format!("deployment {namespace}/{deployment}"), error)
                })?;
            Ok(String::new())
        }
        Action::Delete {
            resource,
            namespace,
            name,
        } => {
            let api: Api<DynamicObject> = match namespace {
                Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
                None => Api::all_with(client.clone(), resource),
            };
            api.delete(name, &DeleteParams::default())
                .await
                .map_err(|error| classify(&format!("{} {name}", resource.kind), error))?;
            Ok(String::new())
        }
        Action::Wait(duration) => {
            clock::sleep(clock, *duration).await;
            Ok(String::new())
        }
        Action::Until(until) => wait_until(view, clock, poll, until).await,
    }
}

/// Objects named one by one up to this many; past it, counted by kind (`created 1000 Pods`).
const NAMED_OBJECTS: usize = 5;

/// What an apply did, for the step's line.
pub(crate) fn applied_note(done: &[(&str, &ApplyObject)]) -> String {
    if done.len() <= NAMED_OBJECTS {
        let named: Vec<String> = done
            .iter()
            .map(|(how, object)| format!("{how} {}", object.describe()))
            .collect();
        return named.join(", ");
    }
    // In order of first appearance, so the line reads like the file.
    let mut counted: Vec<(&str, &str, usize)> = Vec::new();
    for (how, object) in done {
        let kind = object.resource.kind.as_str();
        match counted.iter_mut().find(|(h, k, _)| h == how && *k == kind) {
            Some((_, _, count)) => *count += 1,
            None => counted.push((how, kind, 1)),
        }
    }
    let parts: Vec<String> = counted
        .iter()
        .map(|(how, kind, count)| match count {
            1 => format!("{how} 1 {kind}"),
            _ => format!("{how} {count} {kind}s"),
        })
        .collect();
    parts.join(", ")
}

/// How many times a replace is retried when the object changes under it.
const REPLACE_ATTEMPTS: usize = 5;

/// Creates the object, or replaces it (at its current resourceVersion) when it exists.
async fn apply(client: &Client, object: &ApplyObject) -> Result<&'static str, StepFailure> {
    let api: Api<DynamicObject> = match object.namespace() {
        Some(namespace) => Api::namespaced_with(client.clone(), &namespace, &object.resource),
        None => Api::all_with(client.clone(), &object.resource),
    };
    let what = format!("{}: {}", object.origin, object.describe());
    let wanted: DynamicObject = serde_json::from_value(object.object.clone())
        .map_err(|error| StepFailure::Refused(format!("{what}: {error}")))?;
    match api.create(&PostParams::default(), &wanted).await {
        Ok(_) => return Ok("created"),
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(classify(&what, error)),
    }
    let name = wanted.metadata.name.clone().unwrap_or_default();
    for _ in 0..REPLACE_ATTEMPTS {
        let current = api.get(&name).await.map_err(|e| classify(&what, e))?;
        let mut replacement = wanted.clone();
        replacement.metadata.resource_version = current.metadata.resource_version;
        match api
            .replace(&name, &PostParams::default(), &replacement)
            .await
        {
            Ok(_) => return Ok("replaced"),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(classify(&what, error)),
        }
    }
    Err(StepFailure::Failed(format!(
        "{what}: still conflicting after {REPLACE_ATTEMPTS} replace attempts"
    )))
}

/// Refusals of what the scenario asked for are the scenario's fault; the rest is the run's.
fn classify(what: &str, error: kube::Error) -> StepFailure {
    match &error {
        kube::Error::Api(status) if matches!(status.code, 400 | 403 | 404 | 405 | 409 | 422) => {
            StepFailure::Refused(format!("{what}: {}", status.message))
        }
        _ => StepFailure::Failed(format!("{what}: {error}")),
    }
}

async fn wait_until(
    view: &ClusterView,
    clock: &dyn Clock,
    poll: Duration,
    until: &Until,
) -> Result<String, StepFailure> {
    let deadline = clock.now() + until.timeout;
    loop {
        // Read the clock before the counts, so counts that match at the deadline still pass.
        let now = clock.now();
        let started = std::time::Instant::now();
        let counts = view
            .counts()
            .await
            .map_err(|error| StepFailure::Failed(format!("cannot read the cluster: {error}")))?;
        if until
            .conditions
            .iter()
            .all(|(count, wanted)| counts.get(*count) == *wanted)
        {
            return Ok(String::new());
        }
        if now >= deadline {
            let found: Vec<String> = until
                .conditions
                .iter()
                .map(|(count, _)| format!("{}={}", count.key(), counts.get(*count)))
                .collect();
            return Err(StepFailure::TimedOut(format!(
                "timed out after {}; found {}",
                humanize(until.timeout),
                found.join(", ")
            )));
        }
        let left = deadline.duration_since(now).unwrap_or_default();
        let pause = crate::sim::poll_pause(poll, started.elapsed(), clock);
        tokio::time::sleep(pause.min(clock.real_duration(left))).await;
    }
}

/// `5m`, `90s`, `1m30s`, `1.5s`.
pub fn humanize(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if duration.subsec_nanos() != 0 {
        return format!("{seconds}s");
    }
    let whole = duration.as_secs();
    match (whole / 60, whole % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}
