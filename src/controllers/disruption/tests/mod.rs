//! The disruption decisions on hand-built clusters: nodes, pods and provisioners fed to the
//! state cache as watchers would, instance types priced by hand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::jiff::Timestamp;
use nodewright_scheduling::instance_type::{CapacityType, InstanceType, Offering};
use nodewright_scheduling::labels;
use nodewright_scheduling::resources::Resources;
use serde_json::{Value, json};

mod blockers;
mod consolidation;
mod expiry_drift;

use super::command::{Command, Reason};
use super::{Inputs, Pass, decide};
use crate::apis::Provisioner;
use crate::settings::Settings;
use crate::state::{ClusterState, InstanceTypesByProvisioner};

const GIB: i64 = 1 << 30;
const ZONE: &str = "us-east-1a";

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn rfc3339(time: SystemTime) -> String {
    Timestamp::try_from(time)
        .expect("a representable time")
        .to_string()
}

/// An m-family amd64 type with on-demand and spot offerings in one zone.
fn instance_type(name: &str, cpus: i64, on_demand: f64, spot: f64) -> Arc<InstanceType> {
    let offering = |capacity_type, price| Offering {
        zone: ZONE.into(),
        capacity_type,
        price_per_hour: Some(price),
        available: true,
    };
    Arc::new(InstanceType {
        name: name.to_string(),
        labels: [
            (labels::INSTANCE_TYPE, name),
            (labels::ARCH, labels::ARCH_AMD64),
            (labels::OS, labels::OS_LINUX),
            (labels::INSTANCE_CATEGORY, "m"),
            (labels::INSTANCE_GENERATION, "5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        capacity: Resources {
            cpu_millis: cpus * 1000,
            memory_bytes: cpus * 4 * GIB,
            ephemeral_storage_bytes: 20 * GIB,
            pods: 58,
            extended: BTreeMap::new(),
        },
        max_enis: 4,
        ipv4_per_eni: 15,
        offerings: vec![
            offering(CapacityType::OnDemand, on_demand),
            offering(CapacityType::Spot, spot),
        ],
    })
}

/// A cluster under construction, and what a pass reads besides it.
struct Cluster {
    state: ClusterState,
    types: Vec<Arc<InstanceType>>,
    settings: Settings,
    now: SystemTime,
    drifted: BTreeMap<String, String>,
}

impl Cluster {
    /// Provisioner `default` (on-demand, consolidation on) and three sizes of m5.
    fn new() -> Cluster {
        let mut cluster = Cluster {
            state: ClusterState::new(),
            types: vec![
                instance_type("m5.large", 2, 0.096, 0.035),
                instance_type("m5.xlarge", 4, 0.192, 0.070),
                instance_type("m5.2xlarge", 8, 0.384, 0.140),
            ],
            settings: Settings::for_cluster("test"),
            now: start() + Duration::from_secs(3600),
            drifted: BTreeMap::new(),
        };
        cluster.provisioner(json!({"consolidation": {"enabled": true}}));
        cluster
    }

    fn provisioner(&mut self, spec: Value) {
        let provisioner: Provisioner = serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1alpha5", "kind": "Provisioner",
            "metadata": {"name": "default", "uid": "uid-default"},
            "spec": spec,
        }))
        .expect("a provisioner");
        self.state
            .apply_provisioner(&provisioner)
            .expect("the provisioner converts");
    }

    fn provisioner_object(&self) -> Provisioner {
        self.state
            .provisioner("default")
            .expect("the provisioner")
            .provisioner
            .clone()
    }

    /// An initialized node of `type_name` launched by `default`, created at [`start`].
    fn node(&mut self, name: &str, type_name: &str, capacity_type: &str) -> &mut Cluster {
        self.node_with(name, type_name, capacity_type, json!({}))
    }

    fn node_with(
        &mut self,
        name: &str,
        type_name: &str,
        capacity_type: &str,
        metadata: Value,
    ) -> &mut Cluster {
        let cpus = self
            .types
            .iter()
            .find(|t| t.name == type_name)
            .map_or(0, |t| t.capacity.cpu_millis / 1000);
        let mut node = json!({
            "metadata": {
                "name": name,
                "creationTimestamp": rfc3339(start()),
                "labels": {
                    labels::HOSTNAME: name,
                    labels::PROVISIONER_NAME: "default",
                    labels::INITIALIZED: "true",
                    labels::INSTANCE_TYPE: type_name,
                    labels::ZONE: ZONE,
                    labels::CAPACITY_TYPE: capacity_type,
                    labels::ARCH: labels::ARCH_AMD64,
                    labels::OS: labels::OS_LINUX,
                },
            },
            "spec": {"providerID": format!("aws:///{ZONE}/i-{name}")},
            "status": {
                "capacity": {"cpu": cpus.to_string(), "memory": format!("{}Gi", cpus * 4), "pods": "58"},
                "allocatable": {"cpu": format!("{}m", cpus * 1000 - 100), "memory": format!("{}Gi", cpus * 4 - 1), "pods": "58"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        });
        merge(&mut node["metadata"], metadata);
        self.state
            .apply_node(&serde_json::from_value(node).expect("a node"))
            .expect("the node converts");
        self
    }

    /// A running pod of ReplicaSet `web` on `node`.
    fn pod(&mut self, name: &str, node: &str, cpu: &str) -> &mut Cluster {
        self.pod_with(name, node, cpu, json!({}))
    }

    fn pod_with(&mut self, name: &str, node: &str, cpu: &str, metadata: Value) -> &mut Cluster {
        let mut pod = json!({
            "metadata": {
                "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "labels": {"app": "web"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                     "uid": "uid-web", "controller": true}],
            },
            "spec": {"nodeName": node, "containers": [{"name": "app",
                "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}]},
            "status": {"phase": "Running"},
        });
        merge(&mut pod["metadata"], metadata);
        self.state
            .apply_pod(&serde_json::from_value(pod).expect("a pod"))
            .expect("the pod converts");
        self
    }

    fn catalog(&self) -> InstanceTypesByProvisioner {
        [("default".to_string(), self.types.clone())].into()
    }

    fn with_inputs<T>(&self, f: impl FnOnce(&Inputs) -> T) -> T {
        let types = self.catalog();
        let nominated = |_: &str| false;
        let inputs = Inputs {
            types: &types,
            settings: &self.settings,
            now: self.now,
            drifted: &self.drifted,
            nominated: &nominated,
        };
        f(&inputs)
    }

    fn decide(&self) -> Pass {
        self.with_inputs(|inputs| decide(&self.state, inputs))
    }

    fn command(&self) -> Command {
        let pass = self.decide();
        pass.command
            .unwrap_or_else(|| panic!("a disruption is decided; blocked: {:?}", pass.blocked))
    }
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}

fn replacement_types(command: &Command) -> Vec<&str> {
    command.replacements[0]
        .instance_types
        .iter()
        .map(String::as_str)
        .collect()
}
