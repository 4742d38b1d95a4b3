//! The simulated cluster's components (`nodewright::sim::scheduler`) against the simulated
//! API server, through a real `kube::Client` over HTTP.

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
const PATIENCE: Duration = Duration::from_secs(20);

struct Cluster {
    _server: ApiServer,
    client: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    /// A server with the scheduler running against it.
    async fn with_scheduler() -> Cluster {
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

    fn pods(&self) -> Api<Pod> {
        Api::default_namespaced(self.client.clone())
    }

    async fn add_node(&self, node: NodeFixture) {
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

    async fn add_pod(&self, pod: Value) -> String {
        let pod: Pod = serde_json::from_value(pod).expect("a valid pod");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("the pod is created")
            .name_any()
    }

    /// The pod once `done` holds for it (a watch, no polling).
    async fn pod_when(&self, name: &str, done: impl Fn(&Pod) -> bool) -> Pod {
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

    async fn bound_node(&self, name: &str) -> String {
        let pod = self.pod_when(name, |pod| node_of(pod).is_some()).await;
        node_of(&pod).unwrap_or_default()
    }

    /// Waits for the pod's Unschedulable mark and returns its message; the pod is unbound.
    async fn refusal(&self, name: &str) -> String {
        let pod = self
            .pod_when(name, |pod| unschedulable_message(pod).is_some())
            .await;
        assert_eq!(node_of(&pod), None, "pod {name} stays unbound");
        unschedulable_message(&pod).unwrap_or_default()
    }

    async fn stop(mut self) {
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

struct NodeFixture {
    name: String,
    cpu: String,
    labels: Value,
    taints: Value,
    ready: bool,
    cordoned: bool,
}

fn node(name: &str, cpu: &str) -> NodeFixture {
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
    fn label(mut self, key: &str, value: &str) -> Self {
        self.labels[key] = json!(value);
        self
    }

    fn tainted(mut self, key: &str, value: &str) -> Self {
        self.taints = json!([{"key": key, "value": value, "effect": "NoSchedule"}]);
        self
    }

    fn not_ready(mut self) -> Self {
        self.ready = false;
        self
    }

    fn cordoned(mut self) -> Self {
        self.cordoned = true;
        self
    }

    fn build(self) -> (Node, Value) {
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
fn pod(name: &str, cpu: &str, spec: Value) -> Value {
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

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .node_name
        .clone()
        .filter(|node| !node.is_empty())
}

fn unschedulable_message(pod: &Pod) -> Option<String> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_pod_is_bound_to_a_ready_node_it_fits() {
    let cluster = Cluster::with_scheduler().await;
    cluster.add_node(node("small", "1")).await;
    cluster.add_node(node("big", "8")).await;
    let name = cluster.add_pod(pod("web", "2", json!({}))).await;
    assert_eq!(cluster.bound_node(&name).await, "big");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_that_fits_no_node_is_marked_unschedulable() {
    let cluster = Cluster::with_scheduler().await;
    cluster.add_node(node("small", "1")).await;
    let name = cluster.add_pod(pod("huge", "4", json!({}))).await;
    let message = cluster.refusal(&name).await;
    assert!(
        message.starts_with("0/1 nodes are available:"),
        "kube-scheduler's wording: {message}"
    );
    assert!(message.contains("without room"), "says why: {message}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_one_batch_and_bound_pods_share_a_node_capacity() {
    let cluster = Cluster::with_scheduler().await;
    cluster.add_node(node("only", "3")).await;
    let first = cluster.add_pod(pod("first", "1", json!({}))).await;
    assert_eq!(cluster.bound_node(&first).await, "only");
    let mut names = Vec::new();
    for i in 0..3 {
        names.push(
            cluster
                .add_pod(pod(&format!("more-{i}"), "1", json!({})))
                .await,
        );
    }
    let mut bound = 0;
    let mut refused = 0;
    for name in &names {
        let pod = cluster
            .pod_when(name, |pod| {
                node_of(pod).is_some() || unschedulable_message(pod).is_some()
            })
            .await;
        match node_of(&pod) {
            Some(_) => bound += 1,
            None => refused += 1,
        }
    }
    assert_eq!((bound, refused), (2, 1), "3 cpu hold three 1-cpu pods");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_or_cordoned_nodes_take_nothing() {
    let cluster = Cluster::with_scheduler().await;
    cluster.add_node(node("booting", "8").not_ready()).await;
    cluster.add_node(node("draining", "8").cordoned()).await;
    let name = cluster.add_pod(pod("web", "1", json!({}))).await;
    let message = cluster.refusal(&name).await;
    assert!(message.starts_with("0/2 nodes"), "{message}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pod_is_bound_once_a_node_that_fits_is_ready() {
    let cluster = Cluster::with_scheduler().await;
    let name = cluster.add_pod(pod("web", "1", json!({}))).await;
    let message = cluster.refusal(&name).await;
    assert!(message.starts_with("0/0 nodes"), "{message}");
    cluster.add_node(node("late", "2")).await;
    assert_eq!(cluster.bound_node(&name).await, "late");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tainted_node_takes_only_tolerating_pods() {
    let cluster = Cluster::with_scheduler().await;
    cluster
        .add_node(node("gpu", "8").tainted("nvidia.com/gpu", "true"))
        .await;
    let plain = cluster.add_pod(pod("plain", "1", json!({}))).await;
    let tolerating = cluster
        .add_pod(pod(
            "trainer",
            "1",
            json!({"tolerations": [{"key": "nvidia.com/gpu", "operator": "Equal",
                "value": "true", "effect": "NoSchedule"}]}),
        ))
        .await;
    assert_eq!(cluster.bound_node(&tolerating).await, "gpu");
    let message = cluster.refusal(&plain).await;
    assert!(message.contains("taint"), "{message}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_is_honoured() {
    let cluster = Cluster::with_scheduler().await;
    cluster
        .add_node(node("amd", "8").label("kubernetes.io/arch", "amd64"))
        .await;
    cluster
        .add_node(node("arm", "8").label("kubernetes.io/arch", "arm64"))
        .await;
    let arm = cluster
        .add_pod(pod(
            "arm-app",
            "1",
            json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}),
        ))
        .await;
    let nowhere = cluster
        .add_pod(pod(
            "s390-app",
            "1",
            json!({"nodeSelector": {"kubernetes.io/arch": "s390x"}}),
        ))
        .await;
    assert_eq!(cluster.bound_node(&arm).await, "arm");
    let message = cluster.refusal(&nowhere).await;
    assert!(message.starts_with("0/2 nodes"), "{message}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_another_scheduler_are_left_alone() {
    let cluster = Cluster::with_scheduler().await;
    cluster.add_node(node("any", "8")).await;
    let foreign = cluster
        .add_pod(pod(
            "foreign",
            "1",
            json!({"schedulerName": "my-scheduler"}),
        ))
        .await;
    let ours = cluster.add_pod(pod("ours", "1", json!({}))).await;
    assert_eq!(cluster.bound_node(&ours).await, "any");
    // Passes run one after another: once a later pod is bound, the pass that saw both
    // `foreign` and `ours` has finished all its writes.
    let later = cluster.add_pod(pod("later", "1", json!({}))).await;
    assert_eq!(cluster.bound_node(&later).await, "any");
    let pod = cluster.pods().get(&foreign).await.expect("the pod");
    assert_eq!(node_of(&pod), None);
    assert_eq!(unschedulable_message(&pod), None);
    cluster.stop().await;
}
