//! One trial: start the processes, run waves of deployments under a seeded storm of faults,
//! let each wave settle, scale to zero, and report every invariant that broke.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::apiproxy::Weather;
use crate::cluster::Cluster;
use crate::invariants::{Snapshot, managed_nodes, snapshot};
use crate::rng::Rng;
use crate::support::proxy::Fault;
use crate::workload::{self, GUARDED_REPLICAS, ProvisionerShape, SCALED};

/// An instance may live this long without a Machine: the GC's 30 s grace, its 10 s period, and
/// room for a launch whose Machine write was slowed by the faults.
const ORPHAN_GRACE: Duration = Duration::from_secs(90);
/// An instance whose Machine has no Node may live this long: the machine registration TTL
/// (15 min, `MACHINE_REGISTRATION_TTL`) and the GC's grace. How soon the simulated kubelet
/// registers a node depends on how busy the machine is, so a shorter bound would measure the
/// machine, not the controller.
const UNREGISTERED_GRACE: Duration = Duration::from_secs(15 * 60 + 90);
/// How long a wave may take to settle once the faults stop: longer than an offering held out
/// for insufficient capacity (3 min) plus the 30 s until waiting pods are planned again and a
/// launch, since a pod may legitimately wait that long when every offering it fits was held out.
const SETTLE: Duration = Duration::from_secs(420);
/// Pods left pending at the limit for this long are the limit's doing, not ours.
const AT_LIMIT_FOR: Duration = Duration::from_secs(20);
/// The biggest pod fits a node of this many vCPUs: headroom this large means capacity could exist.
const ROOM_FOR_ANY_POD: u64 = 4;
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

pub struct TrialReport {
    pub seed: u64,
    pub summary: String,
    pub elapsed: Duration,
    pub faults: BTreeMap<&'static str, u64>,
    /// Kind → (times seen, first detail).
    pub violations: BTreeMap<String, (u64, String)>,
    pub dir: PathBuf,
}

#[derive(Default)]
struct Armed {
    kill_on_launch: bool,
    kill_mid_drain: bool,
    not_ready_mid_drain: bool,
}

struct Shared {
    limit: u64,
    faults: Mutex<BTreeMap<&'static str, u64>>,
    violations: Mutex<BTreeMap<String, (u64, String)>>,
    armed: Mutex<Armed>,
    /// Kills the sampler asks the chaos loop for, with why.
    kills: Mutex<Vec<&'static str>>,
    guarded_up: AtomicBool,
    checking_budget: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    fn fault(&self, kind: &'static str) {
        self.faults_of(kind, 1);
    }

    fn faults_of(&self, kind: &'static str, count: u64) {
        *self.faults.lock().expect("faults").entry(kind).or_default() += count;
    }

    fn violation(&self, kind: &str, detail: String) {
        let mut violations = self.violations.lock().expect("violations");
        let entry = violations.entry(kind.to_string()).or_insert((0, detail));
        entry.0 += 1;
    }
}

pub async fn run(seed: u64, base: &Path) -> TrialReport {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let shape = ProvisionerShape::draw(&mut rng);
    let replicas = rng.range(1, 2) as usize;
    let waves = rng.range(2, 3);
    let summary = format!(
        "{replicas} replica(s), {waves} waves, {}, limit {} cpu, {}{}",
        if shape.spot { "spot" } else { "on-demand" },
        shape.cpu_limit,
        if shape.consolidation {
            "consolidation"
        } else {
            "ttlSecondsAfterEmpty 5"
        },
        shape
            .expire_after
            .map(|s| format!(", expiry {s}s"))
            .unwrap_or_default(),
    );
    let dir = base.join(format!("trial-{seed}"));
    let shared = Arc::new(Shared {
        limit: shape.cpu_limit,
        faults: Mutex::default(),
        violations: Mutex::default(),
        armed: Mutex::default(),
        kills: Mutex::default(),
        guarded_up: AtomicBool::new(false),
        checking_budget: AtomicBool::new(true),
        stop: AtomicBool::new(false),
    });
    if let Err(error) = drive(&dir, &shape, replicas, waves, &mut rng, &shared).await {
        shared.violation("trial could not run", error);
    }
    let faults = shared.faults.lock().expect("faults").clone();
    let violations = shared.violations.lock().expect("violations").clone();
    if violations.is_empty() && std::env::var_os("CHAOS_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    TrialReport {
        seed,
        summary,
        elapsed: started.elapsed(),
        faults,
        violations,
        dir,
    }
}

async fn drive(
    dir: &Path,
    shape: &ProvisionerShape,
    replicas: usize,
    waves: u64,
    rng: &mut Rng,
    shared: &Arc<Shared>,
) -> Result<(), String> {
    let mut cluster = Cluster::start(dir, replicas, rng).await?;
    let client = cluster.client.clone();
    workload::create_provisioner(&client, &cluster.env.cluster, shape).await?;
    workload::create_deployments(&client).await?;
    let sampler = tokio::spawn(sample(
        shared.clone(),
        client.clone(),
        cluster.env.ec2.clone(),
        cluster.env.cluster.clone(),
    ));
    for _ in 0..waves {
        let mut desired = GUARDED_REPLICAS;
        for (name, _) in SCALED {
            let replicas = rng.range(0, 12) as usize;
            workload::scale(&client, name, replicas).await?;
            desired += replicas;
        }
        let storm = rng.millis(10_000, 25_000);
        chaos(&mut cluster, shared, rng, storm).await?;
        settle(&cluster, shared, desired).await;
    }
    shared.checking_budget.store(false, Ordering::SeqCst);
    workload::delete_all(&client).await?;
    scale_to_zero(&cluster, shared).await;
    shared.stop.store(true, Ordering::SeqCst);
    let _ = sampler.await;
    let counts = cluster.api.counts();
    for (kind, count) in [
        ("API connection refused", &counts.refused),
        ("API request answered 500 or 429", &counts.errored),
        ("API connection cut (watches ended)", &counts.cut),
    ] {
        shared.faults_of(kind, count.load(Ordering::Relaxed));
    }
    for line in cluster.panics() {
        shared.violation("panic", line);
    }
    for line in cluster.crashed() {
        shared.violation("controller exited", line);
    }
    cluster.stop();
    Ok(())
}

/// Samples the invariants that must hold at every moment, and fires the armed triggers.
async fn sample(
    shared: Arc<Shared>,
    client: kube::Client,
    ec2: aws_sdk_ec2::Client,
    cluster: String,
) {
    while !shared.stop.load(Ordering::SeqCst) {
        // A read that fails under the trial's own load is not a finding; the next one counts.
        if let Ok(snap) = snapshot(&client, &ec2, &cluster).await {
            check(&shared, &snap);
            fire(&shared, &client, &snap).await;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

fn check(shared: &Shared, snap: &Snapshot) {
    let launched = snap.launched_cpu();
    if launched > shared.limit {
        let types: Vec<&str> = snap
            .instances
            .iter()
            .map(|i| i.instance_type.as_str())
            .collect();
        shared.violation(
            "limit exceeded",
            format!(
                "{launched} vCPU launched under a limit of {}: {types:?}",
                shared.limit
            ),
        );
    }
    for duplicate in snap.duplicate_launches() {
        shared.violation("more than one instance per Machine", duplicate);
    }
    for orphan in snap.orphans(SystemTime::now(), ORPHAN_GRACE, UNREGISTERED_GRACE) {
        shared.violation(
            "instance without a Machine, or a Machine without a Node",
            orphan,
        );
    }
    let ready = snap.guarded_ready();
    if ready >= GUARDED_REPLICAS {
        shared.guarded_up.store(true, Ordering::SeqCst);
    }
    if shared.guarded_up.load(Ordering::SeqCst)
        && shared.checking_budget.load(Ordering::SeqCst)
        && ready + 1 < GUARDED_REPLICAS
    {
        shared.violation(
            "PodDisruptionBudget violated",
            format!("{ready} of {GUARDED_REPLICAS} guarded pods ready, maxUnavailable 1"),
        );
    }
}

async fn fire(shared: &Shared, client: &kube::Client, snap: &Snapshot) {
    let draining = snap.draining();
    let mut not_ready = None;
    {
        let mut armed = shared.armed.lock().expect("armed");
        let mut kills = shared.kills.lock().expect("kills");
        if armed.kill_on_launch && snap.launching() {
            armed.kill_on_launch = false;
            kills.push("kill -9 of the leader between Machine create and launch");
        }
        if armed.kill_mid_drain && !draining.is_empty() {
            armed.kill_mid_drain = false;
            kills.push("kill -9 of the leader mid-drain");
        }
        if armed.not_ready_mid_drain && !draining.is_empty() {
            armed.not_ready_mid_drain = false;
            not_ready = draining.first().cloned();
        }
    }
    if let Some(node) = not_ready {
        let patch = json!({"status": {"conditions": [{
            "type": "Ready", "status": "False", "reason": "KubeletStopped",
            "message": "injected by the chaos harness",
        }]}});
        let nodes: Api<Node> = Api::all(client.clone());
        if nodes
            .patch_status(&node, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .is_ok()
        {
            shared.fault("node NotReady mid-drain");
        }
    }
}

const EC2_ACTIONS: [&str; 5] = [
    "CreateFleet",
    "DescribeInstances",
    "TerminateInstances",
    "CreateLaunchTemplate",
    "DescribeLaunchTemplates",
];
const TYPES: [&str; 6] = [
    "c5.large",
    "c5.xlarge",
    "c5.2xlarge",
    "m5.large",
    "m5.xlarge",
    "m5.2xlarge",
];

/// Faults for `duration`, then calm with every replica up.
async fn chaos(
    cluster: &mut Cluster,
    shared: &Shared,
    rng: &mut Rng,
    duration: Duration,
) -> Result<(), String> {
    let end = Instant::now() + duration;
    let mut restart_at: Option<Instant> = None;
    let mut calm_at: Option<Instant> = None;
    let mut next = Instant::now() + rng.millis(500, 4_000);
    while Instant::now() < end {
        let kills: Vec<&'static str> = std::mem::take(&mut *shared.kills.lock().expect("kills"));
        for why in kills {
            if kill_leader(cluster).await {
                shared.fault(why);
                restart_at.get_or_insert(Instant::now() + rng.millis(1_000, 8_000));
            }
        }
        if restart_at.is_some_and(|at| Instant::now() >= at) {
            cluster.restart_dead()?;
            restart_at = None;
        }
        if calm_at.is_some_and(|at| Instant::now() >= at) {
            cluster.api.set_weather(Weather::default());
            calm_at = None;
        }
        if Instant::now() >= next {
            next = Instant::now() + rng.millis(1_000, 5_000);
            match rng.range(0, 7) {
                0 => {
                    if kill_leader(cluster).await {
                        shared.fault("kill -9 of the leader");
                        restart_at.get_or_insert(Instant::now() + rng.millis(1_000, 8_000));
                    }
                }
                1 => shared.armed.lock().expect("armed").kill_on_launch = true,
                2 => shared.armed.lock().expect("armed").kill_mid_drain = true,
                3 => {
                    cluster.api.set_weather(Weather {
                        refuse: rng.range(5, 30) as f64 / 100.0,
                        error: rng.range(5, 30) as f64 / 100.0,
                        cut: rng.range(5, 30) as f64 / 100.0,
                    });
                    calm_at = Some(Instant::now() + rng.millis(3_000, 10_000));
                    shared.fault("API server refusing, failing and cutting requests");
                }
                4 => {
                    let action = EC2_ACTIONS[rng.range(0, EC2_ACTIONS.len() as u64 - 1) as usize];
                    let times = rng.range(1, 4) as usize;
                    cluster.ec2_faults.inject(
                        action,
                        Fault::Error {
                            status: 503,
                            code: "RequestLimitExceeded",
                        },
                        Some(times),
                    );
                    shared.fault("EC2 throttling");
                }
                5 => {
                    let instance_types: Vec<String> = TYPES
                        .iter()
                        .filter(|_| rng.chance(0.5))
                        .map(|t| t.to_string())
                        .collect();
                    if !instance_types.is_empty() {
                        let times = rng.range(1, 3) as usize;
                        cluster.ec2_faults.inject(
                            "CreateFleet",
                            Fault::NoCapacity { instance_types },
                            Some(times),
                        );
                        shared.fault("EC2 insufficient capacity");
                    }
                }
                6 => shared.armed.lock().expect("armed").not_ready_mid_drain = true,
                _ => {
                    if delete_a_node(cluster, rng).await {
                        shared.fault("kubectl delete node");
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.api.set_weather(Weather::default());
    // An EC2 fault not yet met would otherwise strike during the settle, which is timed from
    // here: an insufficient-capacity error then holds offerings out for 3 more minutes.
    cluster.ec2_faults.clear();
    *shared.armed.lock().expect("armed") = Armed::default();
    cluster.restart_dead()?;
    Ok(())
}

async fn kill_leader(cluster: &mut Cluster) -> bool {
    match cluster.leader().await {
        Some(index) => cluster.kill(index),
        None => false,
    }
}

async fn delete_a_node(cluster: &Cluster, rng: &mut Rng) -> bool {
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let Ok(list) = nodes.list(&Default::default()).await else {
        return false;
    };
    let managed = managed_nodes(&list.items);
    if managed.is_empty() {
        return false;
    }
    let name = &managed[rng.range(0, managed.len() as u64 - 1) as usize];
    nodes.delete(name, &DeleteParams::default()).await.is_ok()
}

/// Waits for every pod to run, or for the pending ones to be held back by the limit alone.
async fn settle(cluster: &Cluster, shared: &Shared, desired: usize) {
    let started = Instant::now();
    let mut at_limit_since: Option<Instant> = None;
    let mut last = String::from("no snapshot");
    while started.elapsed() < SETTLE {
        if let Ok(snap) = snapshot(&cluster.client, &cluster.env.ec2, &cluster.env.cluster).await {
            let pending = snap.pending();
            if pending.is_empty() && snap.running() == desired {
                return;
            }
            let headroom = shared.limit.saturating_sub(snap.launched_cpu());
            if !pending.is_empty() && headroom < ROOM_FOR_ANY_POD {
                let since = *at_limit_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= AT_LIMIT_FOR {
                    return;
                }
            } else {
                at_limit_since = None;
            }
            last = format!(
                "{} of {desired} pods running, {} pending ({:?}…), {} vCPU launched of {}",
                snap.running(),
                pending.len(),
                pending.iter().take(3).collect::<Vec<_>>(),
                snap.launched_cpu(),
                shared.limit
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    shared.violation("pods pending that capacity could hold", last);
}

/// Everything goes once the deployments are at zero: instances, Machines and nodes.
async fn scale_to_zero(cluster: &Cluster, shared: &Shared) {
    let started = Instant::now();
    let mut last = String::from("no snapshot");
    while started.elapsed() < SETTLE {
        if let Ok(snap) = snapshot(&cluster.client, &cluster.env.ec2, &cluster.env.cluster).await {
            let nodes = snap.managed_nodes();
            if snap.instances.is_empty() && snap.machines.is_empty() && nodes.is_empty() {
                return;
            }
            last = format!(
                "{} instances, {} machines, nodes {nodes:?}",
                snap.instances.len(),
                snap.machines.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    shared.violation("something left after scale to zero", last);
}
