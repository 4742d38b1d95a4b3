//! The simulated kubelets (and the part of EKS's cloud node controller that removes nodes): one
//! loop that polls the cloud provider and keeps a Node per running instance.
//!
//! Each pass is `observe → act`:
//! - an instance the cloud reports running registers a Node once it has been seen for the boot
//!   delay (on the injected clock): named after the instance, `spec.providerID`
//!   `aws:///ZONE/INSTANCE-ID`, the instance's labels, capacity and allocatable from its
//!   capacity, Ready;
//! - pods bound to such a node become Running and Ready; those being deleted are finished
//!   (deleted with grace period 0), as a kubelet does once their containers stop;
//! - a node whose instance is gone is deleted, and the pods bound to it with it (the pod
//!   garbage collector's part).
//!
//! Simplified: allocatable equals capacity (no kube/system reservations), no startup taints,
//! pods start at once.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use nodewright_scheduling::labels;
use serde_json::json;

use crate::clock::{Clock, expired};
use crate::cloudprovider::{CloudProvider, CloudProviderError, InstanceState, LaunchedInstance};
use crate::controllers::resource_list;

/// How the simulated kubelets behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletSettings {
    /// Simulated time from first seeing a running instance to its node registering.
    pub boot_delay: Duration,
    /// Time between passes of [`run`] (real time on a real-time clock, else simulated).
    pub poll_interval: Duration,
}

impl Default for KubeletSettings {
    fn default() -> Self {
        KubeletSettings {
            boot_delay: Duration::from_secs(30),
            poll_interval: Duration::from_millis(100),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("cannot list instances: {0}")]
    Cloud(CloudProviderError),
    #[error("cannot {action}: {source}")]
    Api { action: String, source: kube::Error },
}

/// What one pass changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Nodes registered, by name.
    pub registered: Vec<String>,
    /// Pods (`namespace/name`) that became Running.
    pub started: Vec<String>,
    /// Terminating pods (`namespace/name`) whose deletion was finished.
    pub finished: Vec<String>,
    /// Nodes deleted because their instance is gone.
    pub removed: Vec<String>,
}

/// The kubelets of every instance one cloud provider reports.
pub struct Kubelets {
    client: Client,
    cloud: Arc<dyn CloudProvider>,
    clock: Arc<dyn Clock>,
    settings: KubeletSettings,
    /// When each running instance was first seen, by instance id.
    first_seen: BTreeMap<String, SystemTime>,
    /// Nodes these kubelets registered or adopted: node name → instance id.
    owned: BTreeMap<String, String>,
    /// Real time the last pass spent reading (instances, nodes, pods): what paces the polls.
    observed: Duration,
}

/// Pod writes of one pass in flight at once (a new node starts hundreds of pods).
const WRITES_IN_FLIGHT: usize = 16;

impl Kubelets {
    pub fn new(
        client: Client,
        cloud: Arc<dyn CloudProvider>,
        clock: Arc<dyn Clock>,
        settings: KubeletSettings,
    ) -> Kubelets {
        Kubelets {
            client,
            cloud,
            clock,
            settings,
            first_seen: BTreeMap::new(),
            owned: BTreeMap::new(),
            observed: Duration::ZERO,
        }
    }

    /// Runs passes every `poll_interval` until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = pin!(shutdown);
        loop {
            if let Err(error) = self.sync().await {
                tracing::debug!(%error, "simulated kubelet");
            }
            let pause = super::poll_pause(
                self.settings.poll_interval,
                self.observed,
                self.clock.as_ref(),
            );
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One pass: register booted instances, start and finish pods, remove nodes of gone
    /// instances.
    pub async fn sync(&mut self) -> Result<SyncReport, KubeletError> {
        let mut report = SyncReport::default();
        // observe
        let reading = Instant::now();
        let instances: BTreeMap<String, LaunchedInstance> = self
            .cloud
            .list()
            .await
            .map_err(KubeletError::Cloud)?
            .into_iter()
            .filter(|instance| instance.state == InstanceState::Running)
            .map(|instance| (instance.instance_id.clone(), instance))
            .collect();
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(api("list nodes"))?
            .items;
        self.observed = reading.elapsed();
        let now = self.clock.now();
        self.first_seen.retain(|id, _| instances.contains_key(id));
        for id in instances.keys() {
            self.first_seen.entry(id.clone()).or_insert(now);
        }
        // A node for one of the instances (registered earlier, or by another process) is ours.
        let by_provider_id: BTreeMap<&str, &str> = instances
            .values()
            .map(|i| (i.provider_id.as_str(), i.instance_id.as_str()))
            .collect();
        let mut registered: BTreeSet<String> = BTreeSet::new();
        for node in &nodes {
            let provider_id = node.spec.as_ref().and_then(|s| s.provider_id.as_deref());
            // A node object created before its kubelet started (early binding) is adopted
            // when the instance has booted, not taken as registered.
            if !reports_status(node) {
                continue;
            }
            if let Some(id) = provider_id.and_then(|p| by_provider_id.get(p)) {
                self.owned.insert(node.name_any(), (*id).to_string());
                registered.insert((*id).to_string());
            }
        }
        // act
        for (id, instance) in &instances {
            let booted = self
                .first_seen
                .get(id)
                .is_some_and(|seen| expired(*seen, self.settings.boot_delay, now));
            if booted && !registered.contains(id) {
                let name = self.register(instance).await?;
                self.owned.insert(name.clone(), id.clone());
                report.registered.push(name);
            }
        }
        let gone: Vec<String> = self
            .owned
            .iter()
            .filter(|(_, id)| !instances.contains_key(*id))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &gone {
            self.remove_node(name).await?;
            self.owned.remove(name);
            report.removed.push(name.clone());
        }
        self.tend_pods(&gone, &mut report).await?;
        Ok(report)
    }

    async fn register(&self, instance: &LaunchedInstance) -> Result<String, KubeletError> {
        let name = instance
            .hostname
            .clone()
            .unwrap_or_else(|| instance.instance_id.clone());
        let mut node_labels = instance.labels.clone();
        node_labels.insert(labels::HOSTNAME.to_string(), name.clone());
        let resources = resource_list(&instance.capacity);
        let status = json!({
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }],
        });
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": node_labels},
            "spec": {"providerID": instance.provider_id},
            "status": status,
        }))
        .map_err(|error| KubeletError::Api {
            action: format!("build node {name}"),
            source: kube::Error::SerdeError(error),
        })?;
        let nodes: Api<Node> = Api::all(self.client.clone());
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            // Registered already (e.g. by an earlier pass whose answer was lost), or created
            // ahead of the kubelet: adopt it, dropping the not-ready taint the kubelet clears.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = nodes
                    .get(&name)
                    .await
                    .map_err(api(&format!("get node {name}")))?;
                let taints: Vec<_> = existing
                    .spec
                    .and_then(|s| s.taints)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| t.key != labels::TAINT_NOT_READY)
                    .collect();
                nodes
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"taints": taints}})),
                    )
                    .await
                    .map_err(api(&format!("adopt node {name}")))?;
            }
            Err(source) => {
                return Err(KubeletError::Api {
                    action: format!("register node {name}"),
                    source,
                });
            }
        }
        // A kubelet posts its status separately; the API server may drop it on create.
        nodes
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
            .map_err(api(&format!("report the status of node {name}")))?;
        tracing::debug!(node = %name, "registered node");
        Ok(name)
    }

    async fn remove_node(&self, name: &str) -> Result<(), KubeletError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        match nodes.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(KubeletError::Api {
                action: format!("delete node {name}"),
                source,
            }),
        }
    }

    /// Starts the pods on owned nodes, finishes those being deleted, and deletes the pods of
    /// `removed` nodes.
    async fn tend_pods(
        &mut self,
        removed: &[String],
        report: &mut SyncReport,
    ) -> Result<(), KubeletError> {
        let listing = Instant::now();
        let pods = Api::<Pod>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(api("list pods"))?
            .items;
        self.observed += listing.elapsed();
        let mut chores = Vec::new();
        for pod in &pods {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
                continue;
            };
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            let orphaned = removed.iter().any(|name| name == node);
            if !orphaned && !self.owned.contains_key(node) {
                continue;
            }
            let chore = if orphaned || pod.meta().deletion_timestamp.is_some() {
                PodChore::Finish
            } else if !is_running(pod) {
                PodChore::Start
            } else {
                continue;
            };
            chores.push((chore, pod.namespace().unwrap_or_default(), pod.name_any()));
        }
        let now = self.clock.now();
        let done = chores.into_iter().map(|(chore, namespace, name)| {
            let client = self.client.clone();
            async move { chore.carry_out(client, namespace, name, now).await }
        });
        let done: Vec<Option<(PodChore, String)>> = stream::iter(done)
            .buffer_unordered(WRITES_IN_FLIGHT)
            .try_collect()
            .await?;
        for (chore, key) in done.into_iter().flatten() {
            match chore {
                PodChore::Start => report.started.push(key),
                PodChore::Finish => report.finished.push(key),
            }
        }
        // The writes finish in any order; the report does not.
        report.started.sort();
        report.finished.sort();
        Ok(())
    }
}

/// What a kubelet does for one pod of its node.
#[derive(Debug, Clone, Copy)]
enum PodChore {
    /// Its containers stopped: the deletion is finished (grace period 0).
    Finish,
    /// Report it Running and Ready.
    Start,
}

impl PodChore {
    /// Does it; `None` when the pod was gone already.
    async fn carry_out(
        self,
        client: Client,
        namespace: String,
        name: String,
        now: SystemTime,
    ) -> Result<Option<(PodChore, String)>, KubeletError> {
        let key = format!("{namespace}/{name}");
        let api: Api<Pod> = Api::namespaced(client, &namespace);
        let outcome = match self {
            PodChore::Finish => api
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await
                .map(|_| ()),
            PodChore::Start => {
                // The transition time is what startup metrics measure to.
                let since = Time(Timestamp::try_from(now).unwrap_or(Timestamp::UNIX_EPOCH));
                let conditions: Vec<_> = [
                    "Initialized",
                    "Ready",
                    "ContainersReady",
                    "PodScheduled",
                ]
                .map(|kind| json!({"type": kind, "status": "True", "lastTransitionTime": since}))
                .into();
                let patch = json!({"status": {"phase": "Running", "conditions": conditions}});
                api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                    .await
                    .map(|_| ())
            }
        };
        match outcome {
            Ok(()) => Ok(Some((self, key))),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(source) => Err(KubeletError::Api {
                action: match self {
                    PodChore::Finish => format!("finish deleting pod {key}"),
                    PodChore::Start => format!("start pod {key}"),
                },
                source,
            }),
        }
    }
}

/// Runs [`Kubelets::run`] until `shutdown` completes (the shape of the other sim components).
pub async fn run(
    client: Client,
    cloud: Arc<dyn CloudProvider>,
    clock: Arc<dyn Clock>,
    settings: KubeletSettings,
    shutdown: impl Future<Output = ()> + Send,
) {
    Kubelets::new(client, cloud, clock, settings)
        .run(shutdown)
        .await;
}

fn api(action: &str) -> impl FnOnce(kube::Error) -> KubeletError + '_ {
    move |source| KubeletError::Api {
        action: action.to_string(),
        source,
    }
}

/// Whether a kubelet has reported the node's status (a Ready condition, true or not).
fn reports_status(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"))
}

/// Running and Ready: nothing left for the kubelet to report.
fn is_running(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}
