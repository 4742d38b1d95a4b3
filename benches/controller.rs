//! The controller's two headline figures, measured against the simulated API server:
//!
//! - footprint: `nodewright controller` as its own process, watching a cluster of 1,000 nodes
//!   and 30,000 running pods; its resident memory once its caches are synced (target ≤ 64 MiB);
//! - burst: 1,000 pods turn unschedulable at once; the time from the last of them to the first
//!   instance launch (target ≤ the 1 s batch idle window + 50 ms), in-process on the fake cloud.
//!
//! `cargo bench --bench controller` (both), or `-- footprint` / `-- burst`. Figures vary with the
//! machine; medians of several runs are printed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use nodewright::apis::Provisioner;
use nodewright::apis::node_template::AwsNodeTemplateStatus;
use nodewright::clock::SystemClock;
use nodewright::cloudprovider::fake::FakeCloudProvider;
use nodewright::cloudprovider::{
    BoxFuture, CloudProvider, DeleteStatus, DriftReason, LaunchRequest, LaunchedInstance,
    MachineId, NodeTemplate, Result as CloudResult,
};
use nodewright::controllers::manager::Manager;
use nodewright::metrics::Metrics;
use nodewright::settings::Settings;
use nodewright::sim::{ApiServer, ApiServerConfig};
use nodewright_scheduling::instance_type::InstanceType;
use serde_json::json;
use tokio::sync::watch;

const NODES: usize = 1_000;
/// Pods per node (30 → 30,000 pods); `NODEWRIGHT_BENCH_PODS_PER_NODE` overrides it, to see
/// what the pods cost apart from the rest.
fn pods_per_node() -> usize {
    std::env::var("NODEWRIGHT_BENCH_PODS_PER_NODE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}
const BURST: usize = 1_000;

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if let Ok(filter) = std::env::var("NODEWRIGHT_BENCH_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    if wants("burst") {
        runtime.block_on(burst());
    }
    if wants("footprint") {
        runtime.block_on(footprint());
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn server() -> ApiServer {
    ApiServer::start(ApiServerConfig {
        event_history: 200_000,
        watch_buffer: 200_000,
        ..ApiServerConfig::default()
    })
    .await
    .expect("the API server starts")
}

fn provisioner() -> Provisioner {
    serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1alpha5",
        "kind": "Provisioner",
        "metadata": {"name": "default"},
        "spec": {
            "provider": {
                "subnetSelector": {"karpenter.sh/discovery": "bench"},
                "securityGroupSelector": {"karpenter.sh/discovery": "bench"},
            },
        },
    }))
    .expect("a provisioner")
}

fn pod(name: &str, node: Option<&str>) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "bench"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "bench",
                "uid": "bench-uid", "controller": true}],
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "public.ecr.aws/eks-distro/kubernetes/pause:3.7",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
        },
    }))
    .expect("a pod")
}

/// Creates `count` objects with a few requests in flight at once.
async fn create_all<K>(api: &Api<K>, objects: Vec<K>)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use futures::StreamExt;
    futures::stream::iter(objects)
        .for_each_concurrent(16, |object| async move {
            api.create(&PostParams::default(), &object)
                .await
                .expect("the object is created");
        })
        .await;
}

/// Seeds 1,000 Ready nodes with 30 running pods each.
async fn seed_cluster(client: &Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node_objects: Vec<Node> = (0..NODES)
        .map(|i| {
            serde_json::from_value(json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": format!("node-{i}"), "labels": {
                    "kubernetes.io/hostname": format!("node-{i}"),
                    "node.kubernetes.io/instance-type": "m5.2xlarge",
                    "topology.kubernetes.io/zone": "us-east-1a",
                }},
                "spec": {"providerID": format!("aws:///us-east-1a/i-{i:017}")},
                "status": {
                    "capacity": {"cpu": "8", "memory": "32Gi", "pods": "58"},
                    "allocatable": {"cpu": "7910m", "memory": "30Gi", "pods": "58"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }))
            .expect("a node")
        })
        .collect();
    create_all(&nodes, node_objects).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod_objects: Vec<Pod> = (0..NODES * pods_per_node())
        .map(|i| {
            pod(
                &format!("web-{i}"),
                Some(&format!("node-{}", i / pods_per_node())),
            )
        })
        .collect();
    create_all(&pods, pod_objects).await;
}

/// `nodewright controller` as its own process against 1,000 nodes and 30,000 pods.
async fn footprint() {
    let server = server().await;
    let client = server.client().expect("a client");
    let seeding = Instant::now();
    seed_cluster(&client).await;
    Api::<Provisioner>::all(client.clone())
        .create(&PostParams::default(), &provisioner())
        .await
        .expect("the provisioner is created");
    eprintln!(
        "footprint: seeded {NODES} nodes, {} pods in {:.1}s",
        NODES * pods_per_node(),
        seeding.elapsed().as_secs_f64()
    );
    let dir = std::env::temp_dir().join(format!("nodewright-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let kubeconfig = dir.join("kubeconfig");
    server
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig written");
    let health_port = free_port();
    let metrics_port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .args([
            "controller",
            "--leader-elect=false",
            "--kubernetes-version",
            "1.27",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("CLUSTER_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        // No EC2 is needed while nothing is pending; calls fail fast instead of waiting.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("HEALTH_PROBE_PORT", health_port.to_string())
        .env("METRICS_PORT", metrics_port.to_string())
        .env("LOG_LEVEL", "warn")
        .spawn()
        .expect("the controller starts");
    let started = Instant::now();
    while !ready(health_port).await {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the controller never got ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let synced = started.elapsed();
    // Let the loops take a few passes, then sample.
    let mut samples = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        samples.push(rss_mib(child.id(), "VmRSS"));
    }
    let peak = rss_mib(child.id(), "VmHWM");
    let (heap, mapped) = (
        rss_mib(child.id(), "RssAnon"),
        rss_mib(child.id(), "RssFile"),
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "footprint: caches synced in {:.2}s; RSS median {:.1} MiB (anonymous {heap:.1}, file-backed {mapped:.1}), peak {:.1} MiB (target ≤ 64 MiB) with {NODES} nodes / {} pods",
        synced.as_secs_f64(),
        median(samples),
        peak,
        NODES * pods_per_node()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn ready(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    answer.starts_with("HTTP/1.1 200")
}

fn rss_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The fake cloud, noting when the first launch arrives.
struct Timed {
    inner: FakeCloudProvider,
    first_create: Mutex<Option<Instant>>,
}

impl CloudProvider for Timed {
    fn create<'a>(
        &'a self,
        request: &'a LaunchRequest,
    ) -> BoxFuture<'a, CloudResult<LaunchedInstance>> {
        self.first_create
            .lock()
            .map(|mut first| *first.get_or_insert_with(Instant::now))
            .ok();
        self.inner.create(request)
    }
    fn delete<'a>(&'a self, machine: &'a MachineId) -> BoxFuture<'a, CloudResult<DeleteStatus>> {
        self.inner.delete(machine)
    }
    fn get<'a>(&'a self, machine: &'a MachineId) -> BoxFuture<'a, CloudResult<LaunchedInstance>> {
        self.inner.get(machine)
    }
    fn list(&self) -> BoxFuture<'_, CloudResult<Vec<LaunchedInstance>>> {
        self.inner.list()
    }
    fn instance_types<'a>(
        &'a self,
        template: &'a NodeTemplate,
    ) -> BoxFuture<'a, CloudResult<Vec<InstanceType>>> {
        self.inner.instance_types(template)
    }
    fn is_drifted<'a>(
        &'a self,
        instance: &'a LaunchedInstance,
        template: &'a NodeTemplate,
    ) -> BoxFuture<'a, CloudResult<Option<DriftReason>>> {
        self.inner.is_drifted(instance, template)
    }
    fn template_status<'a>(
        &'a self,
        template: &'a NodeTemplate,
    ) -> BoxFuture<'a, CloudResult<AwsNodeTemplateStatus>> {
        self.inner.template_status(template)
    }
    fn name(&self) -> &'static str {
        "fake"
    }
}

/// 1,000 pods turn unschedulable; time from the last to the first launch.
async fn burst() {
    let mut latencies = Vec::new();
    for run in 0..5 {
        let server = server().await;
        let client = server.client().expect("a client");
        Api::<Provisioner>::all(client.clone())
            .create(&PostParams::default(), &provisioner())
            .await
            .expect("the provisioner is created");
        let clock = Arc::new(SystemClock);
        let cloud = Arc::new(Timed {
            inner: FakeCloudProvider::from_catalog("us-east-1", None, clock.clone())
                .expect("catalog"),
            first_create: Mutex::new(None),
        });
        let mut settings = Settings::for_cluster("bench");
        settings.region = Some("us-east-1".to_string());
        settings.leader_elect = false;
        let manager = Manager::new(
            client.clone(),
            cloud.clone(),
            clock,
            settings,
            Arc::new(Metrics::new().expect("metrics")),
        );
        let state = manager.state();
        let (_leading, leader) = watch::channel(true);
        let (stop, stopped) = watch::channel(false);
        let controller = tokio::spawn(manager.run(leader, stopped));
        state.wait_synced().await;
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        create_all(
            &pods,
            (0..BURST)
                .map(|i| pod(&format!("burst-{i}"), None))
                .collect(),
        )
        .await;
        // What kube-scheduler writes on each pod it cannot place; the last write starts the clock.
        let unschedulable = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/0 nodes are available"}]}});
        let mut last = Instant::now();
        for i in 0..BURST {
            pods.patch_status(
                &format!("burst-{i}"),
                &PatchParams::default(),
                &Patch::Merge(&unschedulable),
            )
            .await
            .expect("the status is written");
            last = Instant::now();
        }
        let first = loop {
            if let Some(first) = cloud.first_create.lock().ok().and_then(|f| *f) {
                break first;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let latency = first.saturating_duration_since(last).as_secs_f64() * 1000.0;
        eprintln!("burst run {run}: {latency:.0} ms from the last pod to the first launch");
        latencies.push(latency);
        let _ = stop.send(true);
        let _ = controller.await;
    }
    println!(
        "burst: {BURST} pods, last pod → first launch median {:.0} ms (target ≤ 1050 ms: the 1 s idle window + 50 ms)",
        median(latencies)
    );
}
