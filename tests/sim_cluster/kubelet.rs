//! The simulated kubelets against the fake cloud: registration, pods, removal; and with the
//! scheduler, a pending pod running on a freshly booted instance.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use nodewright::cloudprovider::fake::FakeCloudProvider;
use nodewright::cloudprovider::{CloudProvider, LaunchRequest, LaunchedInstance, ManualClock};
use nodewright::sim::kubelet::{self, KubeletSettings, Kubelets, SyncReport};
use nodewright::sim::{ApiServer, ApiServerConfig};
use nodewright_scheduling::instance_type::{CapacityType, InstanceType, Offering};
use nodewright_scheduling::labels;
use nodewright_scheduling::resources::Resources;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::timeout;

use crate::support::{Cluster, PATIENCE, node_of, pod};

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

    /// Launches an instance and lets its node register: the node's name.
    async fn booted(&mut self, machine: &str) -> String {
        self.booted_instance(machine).await.0
    }

    /// [`Kubelet::booted`], with the instance id.
    async fn booted_instance(&mut self, machine: &str) -> (String, String) {
        let instance = launch(&self.cloud, machine).await;
        self.sync().await;
        self.clock.advance(BOOT_DELAY);
        let report = self.sync().await;
        let name = instance.hostname.clone().expect("a private DNS name");
        assert_eq!(report.registered, vec![name.clone()]);
        (name, instance.instance_id)
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
    // Named by its private DNS name, as EKS names nodes.
    let name = instance.hostname.clone().expect("a private DNS name");
    assert!(name.starts_with("ip-192-168-"), "{name}");
    assert_eq!(sim.sync().await.registered, vec![name.clone()]);
    assert_eq!(sim.sync().await, SyncReport::default(), "registered once");

    let node = nodes.get(&name).await.expect("the node");
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
    assert_eq!(node_labels.get(labels::HOSTNAME), Some(&name));
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
    let (gone, gone_instance) = sim.booted_instance("machine-1").await;
    let kept = sim.booted("machine-2").await;
    sim.bound_pod("on-gone", &gone).await;
    sim.bound_pod("on-kept", &kept).await;
    sim.sync().await;
    sim.cloud.reclaim(&gone_instance);
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
    let node_name = instance.hostname.clone().expect("a private DNS name");
    timeout(PATIENCE, async {
        loop {
            clock.advance(BOOT_DELAY);
            if nodes.get_opt(&node_name).await.expect("a get").is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the node registers");
    let pod = cluster.pod_when(&name, is_ready_and_running).await;
    assert_eq!(node_of(&pod), Some(node_name));
    let _ = stop.send(());
    timeout(PATIENCE, kubelets)
        .await
        .expect("the kubelets stop")
        .expect("no panic");
    cluster.stop().await;
}
