//! A simulated cluster for the controller: the API server on a sped-up clock, the simulated
//! kube-scheduler and kubelets, the fake cloud priced from the shared price table, and the
//! controller itself, started and stopped by the tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use nodewright::apis::{Machine, Provisioner};
use nodewright::clock::ScaledClock;
use nodewright::cloudprovider::fake::FakeCloudProvider;
use nodewright::cloudprovider::{CloudProvider, LaunchedInstance};
use nodewright::controllers::context::{client_without_retries, identified, with_user_agent};
use nodewright::controllers::global_settings::GlobalSettings;
use nodewright::controllers::manager::Manager;
use nodewright::leader::{self, Leadership, LeaseSettings};
use nodewright::metrics::Metrics;
use nodewright::settings::Settings;
use nodewright::sim::kubelet::{self, KubeletSettings};
use nodewright::sim::{ApiServer, ApiServerConfig, deployments, scheduler};
use nodewright_scheduling::catalog::PriceTable;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

/// A safety net for waits on observable conditions; never a synchronisation device. It only
/// bounds how long a failure takes to show, so it is generous: a loaded CI machine is slow.
pub const PATIENCE: Duration = Duration::from_secs(300);
/// Simulated seconds per real second: a 30 s boot takes 0.75 s.
pub const SPEED: f64 = 40.0;
/// The simulated kube-scheduler's User-Agent, so a test can fail its requests alone.
pub const SCHEDULER_AGENT: &str = "kube-scheduler/sim";

fn data_dir() -> PathBuf {
    std::env::var("NODEWRIGHT_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

pub struct Sim {
    pub server: ApiServer,
    /// The test's and the simulated cluster's client.
    pub client: Client,
    /// The controller's own client, with its User-Agent (what `nodewright controller` builds).
    pub controller_client: Client,
    /// Evicts without retrying 429, as `nodewright controller` does.
    pub evictions: Client,
    pub clock: Arc<ScaledClock>,
    pub cloud: Arc<FakeCloudProvider>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// A running controller.
pub struct Controller {
    pub metrics: Arc<Metrics>,
    pub running: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    leadership: Option<Leadership>,
}

impl Controller {
    /// Stops it as a crash would: its tasks are dropped mid-flight.
    pub fn kill(self) {
        self.task.abort();
        drop(self.shutdown);
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        timeout(PATIENCE, self.task)
            .await
            .expect("the controller stops")
            .expect("no panic");
        if let Some(leadership) = self.leadership {
            timeout(PATIENCE, leadership.stopped())
                .await
                .expect("the lease is released");
        }
    }

    /// Whether its acting loops run now.
    pub fn is_running(&self) -> bool {
        *self.running.borrow()
    }
}

fn scheduler_client(server: &ApiServer) -> Client {
    let config = with_user_agent(server.kube_config().expect("a config"), SCHEDULER_AGENT);
    Client::try_from(config).expect("the kube-scheduler's client")
}

pub fn settings() -> Settings {
    let mut settings = Settings::for_cluster("sim");
    settings.region = Some("us-east-1".to_string());
    settings.leader_elect = false;
    // Creating a burst of pods over HTTP takes real milliseconds, which are simulated seconds
    // at this speed: a wider window keeps one burst in one batch, as in a real cluster.
    settings.batch_idle_duration = Duration::from_secs(5);
    settings
}

impl Sim {
    pub async fn start() -> Sim {
        let mut sim = Sim::without_kubelets().await;
        sim.start_kubelets();
        sim
    }

    /// The cluster with no kubelet running yet: instances launch but no node registers until
    /// [`Sim::start_kubelets`], so a test can look at what happens before a node comes up.
    pub async fn without_kubelets() -> Sim {
        Sim::without_kubelets_on(ApiServerConfig::default()).await
    }

    /// [`Sim::start`] on an API server configured from `config` (its clock is the sim's).
    pub async fn start_on(config: ApiServerConfig) -> Sim {
        let mut sim = Sim::without_kubelets_on(config).await;
        sim.start_kubelets();
        sim
    }

    async fn without_kubelets_on(config: ApiServerConfig) -> Sim {
        if let Ok(filter) = std::env::var("NODEWRIGHT_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let clock = Arc::new(ScaledClock::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            SPEED,
        ));
        let server = ApiServer::start(ApiServerConfig {
            clock: clock.clone(),
            ..config
        })
        .await
        .expect("the API server starts");
        let client = server.client().expect("a client");
        let controller_config = identified(server.kube_config().expect("a config"));
        let controller_client =
            Client::try_from(controller_config.clone()).expect("the controller's client");
        let evictions = client_without_retries(controller_config).expect("an eviction client");
        let prices = std::fs::read_to_string(data_dir().join("prices-us-east-1.json"))
            .expect("the shared price table is readable");
        let prices = PriceTable::from_json(&prices).expect("the price table parses");
        let cloud = Arc::new(
            FakeCloudProvider::from_catalog("us-east-1", Some(&prices), clock.clone())
                .expect("the embedded catalog loads"),
        );
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(deployments::run(
                client.clone(),
                until_stopped(stopped.clone()),
            )),
            tokio::spawn(scheduler::run(
                scheduler_client(&server),
                until_stopped(stopped),
            )),
        ];
        Sim {
            server,
            controller_client,
            evictions,
            client,
            clock,
            cloud,
            stop,
            tasks,
        }
    }

    /// Starts the simulated kubelets: booted instances register as nodes and run their pods.
    pub fn start_kubelets(&mut self) {
        self.tasks.push(tokio::spawn(kubelet::run(
            self.client.clone(),
            self.cloud.clone() as Arc<dyn CloudProvider>,
            self.clock.clone(),
            KubeletSettings {
                poll_interval: Duration::from_millis(50),
                ..KubeletSettings::default()
            },
            until_stopped(self.stop.subscribe()),
        )));
    }

    /// Starts a controller that leads while `leader` says so.
    pub fn controller_with(&self, settings: Settings, leader: watch::Receiver<bool>) -> Controller {
        let (shutdown, stopped) = watch::channel(false);
        self.start_controller(settings, None, leader, (shutdown, stopped))
    }

    /// A single controller that always leads, reading and watching the settings ConfigMap
    /// `name` in namespace `karpenter` over `settings`, as `nodewright controller` does.
    pub async fn controller_with_settings_configmap(
        &self,
        settings: Settings,
        name: &str,
    ) -> Controller {
        let (shutdown, stopped) = watch::channel(false);
        let (settings, updates) = GlobalSettings::new(
            self.controller_client.clone(),
            "karpenter",
            name,
            settings,
            Default::default(),
        )
        .start(stopped.clone())
        .await
        .expect("the settings load");
        let leadership = Leadership::always();
        let mut controller = self.start_controller(
            settings,
            Some(updates),
            leadership.subscribe(),
            (shutdown, stopped),
        );
        controller.leadership = Some(leadership);
        controller
    }

    fn start_controller(
        &self,
        settings: Settings,
        updates: Option<watch::Receiver<Settings>>,
        leader: watch::Receiver<bool>,
        (shutdown, stopped): (watch::Sender<bool>, watch::Receiver<bool>),
    ) -> Controller {
        let metrics = Arc::new(Metrics::new().expect("metrics register"));
        let mut manager = Manager::new(
            self.controller_client.clone(),
            self.cloud.clone(),
            self.clock.clone(),
            settings,
            metrics.clone(),
        )
        .with_eviction_client(self.evictions.clone());
        if let Some(updates) = updates {
            manager = manager.with_settings_updates(updates);
        }
        let running = manager.running();
        let task = tokio::spawn(manager.run(leader, stopped));
        Controller {
            metrics,
            running,
            shutdown,
            task,
            leadership: None,
        }
    }

    /// A single controller that always leads.
    pub fn controller(&self) -> Controller {
        self.controller_with_settings(settings())
    }

    /// A single controller that always leads, with `settings`.
    pub fn controller_with_settings(&self, settings: Settings) -> Controller {
        let leadership = Leadership::always();
        let mut controller = self.controller_with(settings, leadership.subscribe());
        controller.leadership = Some(leadership);
        controller
    }

    /// A replica that acts only while it holds the leader Lease (real time). The lease and
    /// renew deadline are the production ones, so a replica starved for a second on a loaded
    /// machine keeps leading; a short retry period makes a hand-over after a stop quick.
    pub fn replica(&self, identity: &str) -> Controller {
        let (stop_election, election_stopped) = watch::channel(false);
        let lease = LeaseSettings {
            identity: identity.to_string(),
            retry_period: Duration::from_millis(200),
            ..LeaseSettings::new("kube-system")
        };
        let leadership = leader::spawn(self.controller_client.clone(), lease, async move {
            let mut stopped = election_stopped;
            let _ = stopped.wait_for(|s| *s).await;
        })
        .expect("valid lease settings");
        let mut controller = self.controller_with(settings(), leadership.subscribe());
        // The election stops with the controller.
        let mut shutdown = controller.shutdown.subscribe();
        tokio::spawn(async move {
            let _ = shutdown.wait_for(|s| *s).await;
            let _ = stop_election.send(true);
        });
        controller.leadership = Some(leadership);
        controller
    }

    pub async fn apply_provisioner(&self, provisioner: Value) {
        let provisioner: Provisioner =
            serde_json::from_value(provisioner).expect("a valid provisioner");
        Api::<Provisioner>::all(self.client.clone())
            .create(&PostParams::default(), &provisioner)
            .await
            .expect("the provisioner is created");
    }

    pub async fn add_pods(&self, prefix: &str, count: usize, cpu: &str, spec: Value) {
        let pods: Api<Pod> = Api::default_namespaced(self.client.clone());
        for i in 0..count {
            let pod: Pod = serde_json::from_value(pod(&format!("{prefix}-{i}"), cpu, spec.clone()))
                .expect("a valid pod");
            pods.create(&PostParams::default(), &pod)
                .await
                .expect("the pod is created");
        }
    }

    /// A Deployment of `replicas` pods labelled `app: NAME`, each requesting `cpu`.
    pub async fn add_deployment(&self, name: &str, replicas: i32, cpu: &str) {
        let deployment: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app",
                        "image": "public.ecr.aws/eks-distro/kubernetes/pause:3.7",
                        "resources": {"requests": {"cpu": cpu}}}]},
                },
            },
        }))
        .expect("a valid deployment");
        Api::default_namespaced(self.client.clone())
            .create(&PostParams::default(), &deployment)
            .await
            .expect("the deployment is created");
    }

    /// A PodDisruptionBudget keeping `min_available` pods labelled `app: NAME`.
    pub async fn add_pdb(&self, name: &str, min_available: i32) {
        let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget =
            serde_json::from_value(json!({
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": name},
                "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": name}}},
            }))
            .expect("a valid PDB");
        Api::default_namespaced(self.client.clone())
            .create(&PostParams::default(), &pdb)
            .await
            .expect("the PDB is created");
    }

    pub async fn pods(&self) -> Vec<Pod> {
        Api::<Pod>::default_namespaced(self.client.clone())
            .list(&ListParams::default())
            .await
            .expect("pods list")
            .items
    }

    pub async fn machines(&self) -> Vec<Machine> {
        Api::<Machine>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .expect("machines list")
            .items
    }

    pub async fn nodes(&self) -> Vec<Node> {
        Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .expect("nodes list")
            .items
    }

    /// Live instances in the fake cloud.
    pub async fn instances(&self) -> Vec<LaunchedInstance> {
        self.cloud.list().await.expect("the fake cloud lists")
    }

    /// Polls `check` until it returns `Some`, within [`PATIENCE`].
    pub async fn eventually<T, F, Fut>(&self, what: &str, check: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let found = timeout(PATIENCE, async {
            loop {
                if let Some(value) = check().await {
                    return value;
                }
                sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("{what} within {PATIENCE:?}"))
    }

    /// Waits until `count` pods run; returns them.
    pub async fn running_pods(&self, count: usize) -> Vec<Pod> {
        self.eventually(&format!("{count} pods running"), || async {
            let running: Vec<Pod> = self
                .pods()
                .await
                .into_iter()
                .filter(|p| phase(p) == "Running")
                .collect();
            (running.len() >= count).then_some(running)
        })
        .await
    }

    /// Waits until `metrics` has a `name{...}` series whose labels contain `label`; returns its
    /// value. Loops count an action after the change a test waits for, so a counter read at
    /// once can lag a moment behind on a loaded machine.
    pub async fn metric(&self, metrics: &Metrics, name: &str, label: &str) -> f64 {
        self.eventually(&format!("a {name} series with {label}"), || async {
            metric_value(&metrics.encode().expect("metrics encode"), name, label)
        })
        .await
    }

    /// Waits until `count` pods are marked unschedulable by the kube-scheduler. A controller
    /// started after this finds them all in its first batch: a burst stays one batch however
    /// slowly a loaded machine creates it (the batch window is simulated time, the API calls
    /// take real time).
    pub async fn unschedulable_pods(&self, count: usize) {
        self.eventually(&format!("{count} pods unschedulable"), || async {
            let waiting = self
                .pods()
                .await
                .iter()
                .filter(|p| is_unschedulable(p))
                .count();
            (waiting >= count).then_some(())
        })
        .await
    }

    /// Lets `simulated` time pass.
    pub async fn wait(&self, simulated: Duration) {
        sleep(simulated.div_f64(SPEED)).await;
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = timeout(PATIENCE, task).await;
        }
    }
}

/// Completes once `stopped` turns true (or its sender is gone).
async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

pub fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

/// Whether the kube-scheduler gave up on `pod` (PodScheduled False, Unschedulable).
pub fn is_unschedulable(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
        })
}

pub fn node_of(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .node_name
        .clone()
        .filter(|n| !n.is_empty())
}

/// A pod requesting `cpu`, with `spec` merged into its spec.
pub fn pod(name: &str, cpu: &str, spec: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "public.ecr.aws/eks-distro/kubernetes/pause:3.7",
            "resources": {"requests": {"cpu": cpu}}}]},
    });
    if let (Some(into), Value::Object(extra)) = (pod["spec"].as_object_mut(), spec) {
        into.extend(extra);
    }
    pod
}

/// The tutorial's provisioner (spot, cpu limit 1000, inline provider), with `spec` merged in.
pub fn provisioner(name: &str, spec: Value) -> Value {
    let mut provisioner = json!({
        "apiVersion": "karpenter.sh/v1alpha5",
        "kind": "Provisioner",
        "metadata": {"name": name},
        "spec": {
            "requirements": [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}],
            "limits": {"resources": {"cpu": "1000"}},
            "provider": {
                "subnetSelector": {"karpenter.sh/discovery": "sim"},
                "securityGroupSelector": {"karpenter.sh/discovery": "sim"},
                "instanceProfile": "KarpenterNodeInstanceProfile-sim",
            },
        },
    });
    if let (Some(into), Value::Object(extra)) = (provisioner["spec"].as_object_mut(), spec) {
        into.extend(extra);
    }
    provisioner
}

pub fn label(object: &impl ResourceExt, key: &str) -> Option<String> {
    object.labels().get(key).cloned()
}

/// Events about the object named `name`, as `(reason, message)`.
pub async fn events_about(client: &Client, name: &str) -> Vec<(String, String)> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::all(client.clone());
    events
        .list(&ListParams::default())
        .await
        .expect("events list")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

/// CPU capacity (millicores) of the nodes carrying `provisioner`'s label.
pub fn cpu_of_nodes(nodes: &[Node], provisioner: &str) -> i64 {
    nodes
        .iter()
        .filter(|n| {
            label(*n, nodewright_scheduling::labels::PROVISIONER_NAME).as_deref()
                == Some(provisioner)
        })
        .filter_map(|n| n.status.as_ref()?.capacity.as_ref()?.get("cpu").cloned())
        .filter_map(|q| nodewright_scheduling::resources::parse_quantity(&q.0).ok())
        .map(|q| q.millis())
        .sum()
}

/// The value of the first `name{...}` series whose labels contain `label`.
pub fn metric_value(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}
