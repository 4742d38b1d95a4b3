//! The simulated cluster's components (`nodewright::sim::{scheduler, kubelet}`) against the simulated
//! API server, through a real `kube::Client` over HTTP.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use nodewright::cloudprovider::fake::FakeCloudProvider;
use nodewright::cloudprovider::{CloudProvider, LaunchRequest, LaunchedInstance, ManualClock};
use nodewright::sim::kubelet::{self, KubeletSettings, Kubelets, SyncReport};
use nodewright::sim::scheduler::{self, POD_SCHEDULED, REASON_UNSCHEDULABLE};
use nodewright::sim::{ApiServer, ApiServerConfig};
use nodewright_scheduling::instance_type::{CapacityType, InstanceType, Offering};
use nodewright_scheduling::labels;
use nodewright_scheduling::resources::Resources;
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

// ---- kubelets ------------------------------------------------------------------------------

const BOOT_DELAY: Duration = Duration::from_secs(30);

fn cloud(clock: Arc<ManualClock>) -> Arc<FakeCloudProvider> {
    let m5_large = InstanceType {
        name: "m5.large".into(),
        labels: [(labels::INSTANCE_TYPE.to_string(), "m5.large".to_string())].into(),
        capacity: Resources {
            cpu_millis: 2000,
            memory_bytes: 8 << 30,
            pods: 29,
            ..Resources::default()
        },
        max_enis: 3,
        ipv4_per_eni: 10,
        offerings: vec![Offering {
            zone: "zone-a".into(),
            capacity_type: CapacityType::OnDemand,
            price_per_hour: Some(0.096),
            available: true,
        }],
    };
    Arc::new(FakeCloudProvider::new(vec![m5_large], "test-1", clock))
}

async fn launch(cloud: &FakeCloudProvider, machine: &str) -> LaunchedInstance {
    let request = LaunchRequest {
        machine_name: machine.into(),
        machine_uid: format!("uid-{machine}"),
        provisioner_name: "default".into(),
        instance_types: vec!["m5.large".into()],
        ..LaunchRequest::default()
    };
    cloud.create(&request).await.expect("the instance launches")
}

struct Kubelet {
    server: ApiServer,
    client: Client,
    clock: Arc<ManualClock>,
    cloud: Arc<FakeCloudProvider>,
    kubelets: Kubelets,
}

async fn kubelet() -> Kubelet {
    let server = ApiServer::start(ApiServerConfig::default())
        .await
        .expect("the API server starts");
    let client = server.client().expect("a client");
    let clock = Arc::new(ManualClock::fixed());
    let cloud = cloud(clock.clone());
    let settings = KubeletSettings {
        boot_delay: BOOT_DELAY,
        ..KubeletSettings::default()
    };
    let kubelets = Kubelets::new(client.clone(), cloud.clone(), clock.clone(), settings);
    Kubelet {
        server,
        client,
        clock,
        cloud,
        kubelets,
    }
}

impl Kubelet {
    async fn sync(&mut self) -> SyncReport {
        self.kubelets.sync().await.expect("a kubelet pass")
    }

    /// Launches an instance and lets its node register.
    async fn booted(&mut self, machine: &str) -> String {
        let instance = launch(&self.cloud, machine).await;
        self.sync().await;
        self.clock.advance(BOOT_DELAY);
        let report = self.sync().await;
        assert_eq!(report.registered, vec![instance.instance_id.clone()]);
        instance.instance_id
    }

    fn pods(&self) -> Api<Pod> {
        Api::default_namespaced(self.client.clone())
    }

    async fn bound_pod(&self, name: &str, node: &str) {
        let pod: Pod =
            serde_json::from_value(pod(name, "1", json!({"nodeName": node}))).expect("a valid pod");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("the pod is created");
    }
}

fn is_ready_and_running(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[tokio::test]
async fn running_instance_registers_a_ready_node_after_the_boot_delay() {
    let mut sim = kubelet().await;
    let instance = launch(&sim.cloud, "machine-1").await;
    let nodes: Api<Node> = Api::all(sim.client.clone());

    assert_eq!(sim.sync().await.registered, Vec::<String>::new());
    sim.clock.advance(BOOT_DELAY - Duration::from_secs(1));
    assert_eq!(sim.sync().await.registered, Vec::<String>::new());
    assert!(
        nodes
            .list(&Default::default())
            .await
            .expect("nodes")
            .items
            .is_empty()
    );
    sim.clock.advance(Duration::from_secs(1));
    assert_eq!(
        sim.sync().await.registered,
        vec![instance.instance_id.clone()]
    );
    assert_eq!(sim.sync().await, SyncReport::default(), "registered once");

    let node = nodes.get(&instance.instance_id).await.expect("the node");
    let spec = node.spec.clone().unwrap_or_default();
    assert_eq!(
        spec.provider_id.as_deref(),
        Some(format!("aws:///zone-a/{}", instance.instance_id).as_str())
    );
    let node_labels = node.labels();
    assert_eq!(
        node_labels.get(labels::INSTANCE_TYPE).map(String::as_str),
        Some("m5.large")
    );
    assert_eq!(
        node_labels.get(labels::ZONE).map(String::as_str),
        Some("zone-a")
    );
    assert_eq!(
        node_labels.get(labels::HOSTNAME),
        Some(&instance.instance_id)
    );
    let status = node.status.clone().unwrap_or_default();
    let allocatable = status.allocatable.unwrap_or_default();
    assert_eq!(allocatable.get("cpu").map(|q| q.0.as_str()), Some("2"));
    assert_eq!(allocatable.get("pods").map(|q| q.0.as_str()), Some("29"));
    let ready = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    assert!(ready, "the node is Ready");
    sim.server.shutdown().await.expect("the server stops");
}

#[tokio::test]
async fn pods_bound_to_an_owned_node_become_running_and_ready() {
    let mut sim = kubelet().await;
    let node = sim.booted("machine-1").await;
    sim.bound_pod("mine", &node).await;
    sim.bound_pod("elsewhere", "someone-elses-node").await;
    let report = sim.sync().await;
    assert_eq!(report.started, vec!["default/mine".to_string()]);
    let mine = sim.pods().get("mine").await.expect("the pod");
    assert!(is_ready_and_running(&mine), "{:?}", mine.status);
    let elsewhere = sim.pods().get("elsewhere").await.expect("the pod");
    assert!(!is_ready_and_running(&elsewhere));
    assert_eq!(
        sim.sync().await.started,
        Vec::<String>::new(),
        "started once"
    );
    sim.server.shutdown().await.expect("the server stops");
}

#[tokio::test]
async fn terminating_pod_on_an_owned_node_is_finished() {
    let mut sim = kubelet().await;
    let node = sim.booted("machine-1").await;
    sim.bound_pod("leaving", &node).await;
    sim.pods()
        .delete("leaving", &DeleteParams::default())
        .await
        .expect("deletion starts");
    let terminating = sim.pods().get("leaving").await.expect("still there");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(
        sim.sync().await.finished,
        vec!["default/leaving".to_string()]
    );
    assert_eq!(sim.pods().get_opt("leaving").await.expect("a get"), None);
    sim.server.shutdown().await.expect("the server stops");
}

#[tokio::test]
async fn node_of_a_terminated_instance_is_deleted_with_its_pods() {
    let mut sim = kubelet().await;
    let gone = sim.booted("machine-1").await;
    let kept = sim.booted("machine-2").await;
    sim.bound_pod("on-gone", &gone).await;
    sim.bound_pod("on-kept", &kept).await;
    sim.sync().await;
    sim.cloud.reclaim(&gone);
    let report = sim.sync().await;
    assert_eq!(report.removed, vec![gone.clone()]);
    let nodes: Api<Node> = Api::all(sim.client.clone());
    assert_eq!(nodes.get_opt(&gone).await.expect("a get"), None);
    assert!(nodes.get_opt(&kept).await.expect("a get").is_some());
    assert_eq!(sim.pods().get_opt("on-gone").await.expect("a get"), None);
    assert!(
        sim.pods()
            .get_opt("on-kept")
            .await
            .expect("a get")
            .is_some()
    );
    sim.server.shutdown().await.expect("the server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_pod_runs_once_a_launched_instance_has_booted() {
    let cluster = Cluster::with_scheduler().await;
    let clock = Arc::new(ManualClock::fixed());
    let cloud = cloud(clock.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let kubelets = tokio::spawn(kubelet::run(
        cluster.client.clone(),
        cloud.clone(),
        clock.clone(),
        KubeletSettings {
            boot_delay: BOOT_DELAY,
            poll_interval: Duration::from_millis(20),
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let name = cluster.add_pod(pod("web", "1", json!({}))).await;
    cluster.refusal(&name).await;
    let instance = launch(&cloud, "machine-1").await;
    // Simulated time passes until the node registers: the loop may first see the instance
    // on either side of an advance, so one advance alone would race it.
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    timeout(PATIENCE, async {
        loop {
            clock.advance(BOOT_DELAY);
            if nodes
                .get_opt(&instance.instance_id)
                .await
                .expect("a get")
                .is_some()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the node registers");
    let pod = cluster.pod_when(&name, is_ready_and_running).await;
    assert_eq!(node_of(&pod), Some(instance.instance_id.clone()));
    let _ = stop.send(());
    timeout(PATIENCE, kubelets)
        .await
        .expect("the kubelets stop")
        .expect("no panic");
    cluster.stop().await;
}
