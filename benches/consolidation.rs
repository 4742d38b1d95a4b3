//! One consolidation evaluation over 1,000 nodes and 30,000 pods (target ≤ 1 s): a whole pass
//! of the disruption loop's pure decision, `disruption::decide`, on a cluster cache filled as
//! the watchers fill it. Two clusters:
//!
//! - `shrunk`: load went away from a tenth of the nodes, which now run 3 small pods each (the
//!   others 33); the pass finds a multi-node consolidation;
//! - `packed`: every node runs 30 pods using 7.8 of its 7.91 allocatable cpu, on the cheapest
//!   amd64 type of its size; nothing can go, so the pass tries every candidate (the worst case).
//!
//! Instance types: the embedded us-east-1 catalog priced from `prices-us-east-1.json`, read in
//! place from `$NODEWRIGHT_DATA` (default: `shared/data` beside the repository).
//!
//! Run: `cargo bench --bench consolidation [-- shrunk|packed]`; prints the median of 5 runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use nodewright::apis::Provisioner;
use nodewright::controllers::disruption::{Inputs, decide};
use nodewright::settings::Settings;
use nodewright::state::{ClusterState, InstanceTypesByProvisioner};
use nodewright_scheduling::catalog::{Catalog, PriceTable};
use nodewright_scheduling::instance_type::InstanceType;
use nodewright_scheduling::labels;
use serde_json::json;

const NODES: usize = 1_000;
const RUNS: usize = 5;
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
/// 8 vCPU, 32 GiB: the cheapest amd64 type of that size (m6a.2xlarge saves under 10%).
const NODE_TYPE: &str = "m5a.2xlarge";

fn data_dir() -> PathBuf {
    std::env::var_os("NODEWRIGHT_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

fn types() -> Result<Vec<Arc<InstanceType>>, String> {
    let path = data_dir().join("prices-us-east-1.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let prices = PriceTable::from_json(&text).map_err(|e| e.to_string())?;
    let catalog = Catalog::embedded().map_err(|e| e.to_string())?;
    Ok(catalog
        .instance_types("us-east-1", Some(&prices))
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(Arc::new)
        .collect())
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid fixture")
}

/// A cluster of [`NODES`] nodes; `small_nodes` of them hold `small` pods, the rest `pods` pods;
/// each pod asks for `cpu` and 800Mi.
fn cluster(small_nodes: usize, small: usize, pods: usize, cpu: &str) -> ClusterState {
    let mut state = ClusterState::new();
    let provisioner: Provisioner = from_json(json!({
        "apiVersion": "karpenter.sh/v1alpha5", "kind": "Provisioner",
        "metadata": {"name": "default", "uid": "uid-default"},
        "spec": {"consolidation": {"enabled": true}},
    }));
    state
        .apply_provisioner(&provisioner)
        .expect("the provisioner converts");
    let created = Timestamp::try_from(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .expect("a time")
        .to_string();
    let mut pod_index = 0;
    for n in 0..NODES {
        let name = format!("ip-10-0-{}-{}.ec2.internal", n / 250, n % 250);
        let zone = ZONES[n % ZONES.len()];
        let node: Node = from_json(json!({
            "metadata": {
                "name": name,
                "creationTimestamp": created,
                "labels": {
                    labels::HOSTNAME: name,
                    labels::PROVISIONER_NAME: "default",
                    labels::INITIALIZED: "true",
                    labels::INSTANCE_TYPE: NODE_TYPE,
                    labels::ZONE: zone,
                    labels::CAPACITY_TYPE: labels::CAPACITY_TYPE_ON_DEMAND,
                    labels::ARCH: labels::ARCH_AMD64,
                    labels::OS: labels::OS_LINUX,
                },
            },
            "spec": {"providerID": format!("aws:///{zone}/i-{n:017}")},
            "status": {
                "capacity": {"cpu": "8", "memory": "32Gi", "pods": "58"},
                "allocatable": {"cpu": "7910m", "memory": "30Gi", "pods": "58"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }));
        state.apply_node(&node).expect("the node converts");
        let count = if n < small_nodes { small } else { pods };
        for _ in 0..count {
            let app = format!("svc-{}", pod_index % 300);
            let pod: Pod = from_json(json!({
                "metadata": {
                    "name": format!("{app}-{pod_index}"), "namespace": "default",
                    "uid": format!("uid-{pod_index}"), "labels": {"app": app},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": app, "uid": format!("uid-{app}"), "controller": true}],
                },
                "spec": {"nodeName": name, "containers": [{"name": "app",
                    "resources": {"requests": {"cpu": cpu, "memory": "800Mi"}}}]},
                "status": {"phase": "Running"},
            }));
            state.apply_pod(&pod).expect("the pod converts");
            pod_index += 1;
        }
    }
    state
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn run(name: &str, state: &ClusterState, types: &InstanceTypesByProvisioner) {
    let settings = Settings::for_cluster("bench");
    let drifted = Default::default();
    let nominated = |_: &str| false;
    let inputs = Inputs {
        types,
        settings: &settings,
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_003_600),
        drifted: &drifted,
        nominated: &nominated,
    };
    let mut samples = Vec::new();
    let mut outcome = String::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let pass = std::hint::black_box(decide(state, &inputs));
        samples.push(started.elapsed());
        outcome = match &pass.command {
            Some(command) => command.describe(),
            None => "nothing to consolidate".to_string(),
        };
    }
    let pods = state.pods().count();
    println!(
        "{name}: {} nodes, {pods} pods: median {:.3} s over {RUNS} runs (min {:.3} s, max {:.3} s)",
        state.nodes().count(),
        median(samples.clone()).as_secs_f64(),
        samples
            .iter()
            .min()
            .copied()
            .unwrap_or_default()
            .as_secs_f64(),
        samples
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64(),
    );
    println!("  decided: {}", truncate(&outcome, 200));
}

fn truncate(text: &str, at: usize) -> String {
    if text.len() <= at {
        return text.to_string();
    }
    let cut = (0..=at)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}…", &text[..cut])
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let types = match types() {
        Ok(types) => types,
        Err(error) => {
            eprintln!("cannot load instance types: {error}");
            std::process::exit(1);
        }
    };
    let types: InstanceTypesByProvisioner = [("default".to_string(), types)].into();
    if wanted("shrunk") {
        run("shrunk", &cluster(NODES / 10, 3, 33, "200m"), &types);
    }
    if wanted("packed") {
        run("packed", &cluster(0, 0, 30, "260m"), &types);
    }
}
