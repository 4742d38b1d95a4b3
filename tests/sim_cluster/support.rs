//! The cluster the tests run against: the API server with the scheduler, and fixtures.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use nodewright::sim::scheduler::{self, POD_SCHEDULED, REASON_UNSCHEDULABLE};
use nodewright::sim::{ApiServer, ApiServerConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::timeout;

/// A safety net for waits on observable conditions; never a synchronisation device.
pub const PATIENCE: Duration = Duration::from_secs(120);

pub struct Cluster {
    _server: ApiServer,
    pub client: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    /// A server with the scheduler running against it.
    pub async fn with_scheduler() -> Cluster {
        let server = ApiServer::start(ApiServerConfig::default())
            .await
            .expect("the API server starts");
        let client = server.client().expect("a client");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(scheduler::run(client.clone(), async move {
            let _ = stopped.await;
        }));
        Cluster {
            _server: server,
            client,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::default_namespaced(self.client.clone())
    }

    pub async fn add_node(&self, node: NodeFixture) {
        let api: Api<Node> = Api::all(self.client.clone());
        let (object, status) = node.build();
        let name = object.name_any();
        api.create(&PostParams::default(), &object)
            .await
            .expect("the node is created");
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .expect("the node reports its status");
    }

    pub async fn add_pod(&self, pod: Value) -> String {
        let pod: Pod = serde_json::from_value(pod).expect("a valid pod");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("the pod is created")
            .name_any()
    }

    /// The pod once `done` holds for it (a watch, no polling).
    pub async fn pod_when(&self, name: &str, done: impl Fn(&Pod) -> bool) -> Pod {
        let found = timeout(
            PATIENCE,
            await_condition(self.pods(), name, move |pod: Option<&Pod>| {
                pod.is_some_and(&done)
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("pod {name} reaches the wanted state in time"))
        .expect("watching the pod");
        found.unwrap_or_else(|| panic!("pod {name} exists"))
    }

    pub async fn bound_node(&self, name: &str) -> String {
        let pod = self.pod_when(name, |pod| node_of(pod).is_some()).await;
        node_of(&pod).unwrap_or_default()
    }

    /// Waits for the pod's Unschedulable mark and returns its message; the pod is unbound.
    pub async fn refusal(&self, name: &str) -> String {
        let pod = self
            .pod_when(name, |pod| unschedulable_message(pod).is_some())
            .await;
        assert_eq!(node_of(&pod), None, "pod {name} stays unbound");
        unschedulable_message(&pod).unwrap_or_default()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            timeout(PATIENCE, task)
                .await
                .expect("the scheduler stops")
                .expect("no panic");
        }
    }
}

pub struct NodeFixture {
    name: String,
    cpu: String,
    labels: Value,
    taints: Value,
    ready: bool,
    cordoned: bool,
}

pub fn node(name: &str, cpu: &str) -> NodeFixture {
    NodeFixture {
        name: name.to_string(),
        cpu: cpu.to_string(),
        labels: json!({"kubernetes.io/hostname": name}),
        taints: json!([]),
        ready: true,
        cordoned: false,
    }
}

impl NodeFixture {
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels[key] = json!(value);
        self
    }

    pub fn tainted(mut self, key: &str, value: &str) -> Self {
        self.taints = json!([{"key": key, "value": value, "effect": "NoSchedule"}]);
        self
    }

    pub fn not_ready(mut self) -> Self {
        self.ready = false;
        self
    }

    pub fn cordoned(mut self) -> Self {
        self.cordoned = true;
        self
    }

    pub fn build(self) -> (Node, Value) {
        let node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels},
            "spec": {"taints": self.taints, "unschedulable": self.cordoned},
        }))
        .expect("a valid node");
        let resources = json!({"cpu": self.cpu, "memory": "16Gi", "pods": "110"});
        let ready = if self.ready { "True" } else { "False" };
        let status = json!({"status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady"}],
        }});
        (node, status)
    }
}

/// A pod requesting `cpu`, with `spec` merged into its spec.
pub fn pod(name: &str, cpu: &str, spec: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9",
            "resources": {"requests": {"cpu": cpu}}}]},
    });
    if let (Some(into), Value::Object(extra)) = (pod["spec"].as_object_mut(), spec) {
        into.extend(extra);
    }
    pod
}

pub fn node_of(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .node_name
        .clone()
        .filter(|node| !node.is_empty())
}

pub fn unschedulable_message(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| {
            c.type_ == POD_SCHEDULED
                && c.status == "False"
                && c.reason.as_deref() == Some(REASON_UNSCHEDULABLE)
        })
        .map(|c| c.message.clone().unwrap_or_default())
}
