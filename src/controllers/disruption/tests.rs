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

use super::candidates::{self, Budgets};
use super::command::{Command, Reason};
use super::consolidation::{self, MIN_SPOT_TO_SPOT_TYPES};
use super::{Inputs, Pass, decide, drift, expiry, revalidate};
use crate::apis::Provisioner;
use crate::controllers::provisioning::decide::provisioner_hash;
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

#[test]
fn a_node_whose_pods_fit_on_another_node_is_deleted() {
    let mut cluster = Cluster::new();
    cluster
        .node("busy", "m5.2xlarge", "on-demand")
        .pod("a", "busy", "6")
        .node("idle", "m5.xlarge", "on-demand")
        .pod("b", "idle", "500m");
    let command = cluster.command();
    assert_eq!(command.reason, Reason::Consolidation);
    assert_eq!(command.node_names(), ["idle"]);
    assert!(command.replacements.is_empty(), "{command:?}");
    assert_eq!(command.action(), "delete");
    assert!((command.savings() - 0.192).abs() < 1e-9);
    assert_eq!(
        command.describe(),
        "Consolidating: deleting node idle (m5.xlarge, $0.1920/h), saves $0.1920/h"
    );
}

#[test]
fn two_half_empty_nodes_are_replaced_by_one_cheaper_node() {
    let mut cluster = Cluster::new();
    cluster
        .node("one", "m5.2xlarge", "on-demand")
        .pod("a", "one", "1")
        .node("two", "m5.2xlarge", "on-demand")
        .pod("b", "two", "1");
    let command = cluster.command();
    assert_eq!(command.node_names(), ["one", "two"]);
    assert_eq!(command.replacements.len(), 1);
    let replacement = &command.replacements[0];
    assert_eq!(replacement.instance_type, "m5.xlarge", "{replacement:?}");
    assert!(command.savings() > 0.5, "{}", command.describe());
}

#[test]
fn an_oversized_node_is_replaced_by_a_cheaper_type_and_never_by_its_own() {
    let mut cluster = Cluster::new();
    cluster
        .node("big", "m5.2xlarge", "on-demand")
        .pod("a", "big", "1");
    let command = cluster.command();
    assert_eq!(command.action(), "replace");
    let types = replacement_types(&command);
    assert!(!types.contains(&"m5.2xlarge"), "{types:?}");
    assert_eq!(command.replacements[0].instance_type, "m5.large");
    assert!(
        command.describe().starts_with(
            "Consolidating: replacing node big (m5.2xlarge, $0.3840/h) with m5.large ($0.0960/h)"
        ),
        "{}",
        command.describe()
    );

    // Only its own type fits its pods: nothing to do.
    let mut snug = Cluster::new();
    snug.node("snug", "m5.xlarge", "on-demand")
        .pod("a", "snug", "3");
    let pass = snug.decide();
    assert!(pass.command.is_none(), "{:?}", pass.command);
}

#[test]
fn a_replacement_must_save_the_minimum_fraction() {
    let mut cluster = Cluster::new();
    // A type 5% cheaper than the node's, big enough for its pod.
    cluster.types = vec![
        instance_type("m5.xlarge", 4, 0.200, 0.07),
        instance_type("m6.xlarge", 4, 0.190, 0.07),
    ];
    cluster
        .node("node", "m5.xlarge", "on-demand")
        .pod("a", "node", "3");
    assert!(
        cluster.decide().command.is_none(),
        "5% is below the 10% asked"
    );

    cluster.settings.consolidation_min_saving_fraction = 0.04;
    let command = cluster.command();
    assert_eq!(replacement_types(&command), ["m6.xlarge"]);
}

#[test]
fn spot_nodes_are_replaced_only_with_the_gate_and_a_choice_of_spot_types() {
    let mut cluster = Cluster::new();
    cluster.provisioner(json!({
        "consolidation": {"enabled": true},
        "requirements": [{"key": labels::CAPACITY_TYPE, "operator": "In", "values": ["spot", "on-demand"]}],
    }));
    cluster
        .node("spot", "m5.2xlarge", "spot")
        .pod("a", "spot", "1");
    assert!(
        cluster.decide().command.is_none(),
        "spot to spot needs the SpotToSpotConsolidation gate"
    );

    cluster.settings.feature_gates.spot_to_spot_consolidation = true;
    assert!(
        cluster.decide().command.is_none(),
        "one cheaper spot type is too few to choose from"
    );

    // Enough cheaper spot types: the replacement is spot, the cheapest that fits first.
    cluster.types.extend(
        (0..MIN_SPOT_TO_SPOT_TYPES)
            .map(|i| instance_type(&format!("m5.t{i:02}"), 4, 0.2, 0.05 + 0.001 * i as f64)),
    );
    let command = cluster.command();
    let replacement = &command.replacements[0];
    assert_eq!(replacement.capacity_type, CapacityType::Spot);
    assert_eq!(replacement.instance_type, "m5.large");
    assert_eq!(replacement.price_per_hour, 0.035);
    assert!(replacement.instance_types.len() > MIN_SPOT_TO_SPOT_TYPES);
    assert!(
        replacement
            .requirements
            .iter()
            .any(|r| r.key == labels::CAPACITY_TYPE && r.values == [labels::CAPACITY_TYPE_SPOT])
    );
}

#[test]
fn candidates_go_in_order_of_savings_per_disrupted_pod() {
    let mut cluster = Cluster::new();
    cluster
        .node("crowded", "m5.2xlarge", "on-demand")
        .node("sparse", "m5.xlarge", "on-demand");
    for i in 0..8 {
        cluster.pod(&format!("c{i}"), "crowded", "100m");
    }
    cluster.pod("s", "sparse", "100m");
    let mut found = cluster
        .with_inputs(|inputs| super::partition(&cluster.state, Reason::Consolidation, inputs).0);
    consolidation::order(&mut found);
    let names: Vec<&str> = found.iter().map(|c| c.node.as_str()).collect();
    // 0.192 for one pod beats 0.384 for eight.
    assert_eq!(names, ["sparse", "crowded"]);
}

#[test]
fn do_not_evict_pods_and_do_not_consolidate_nodes_block_consolidation() {
    let mut cluster = Cluster::new();
    cluster
        .node("keep", "m5.2xlarge", "on-demand")
        .pod_with(
            "precious",
            "keep",
            "1",
            json!({"annotations": {labels::DO_NOT_EVICT: "true"}}),
        )
        .node_with(
            "pinned",
            "m5.2xlarge",
            "on-demand",
            json!({"annotations": {labels::DO_NOT_CONSOLIDATE: "true"}}),
        )
        .pod("b", "pinned", "1");
    let pass = cluster.decide();
    assert!(pass.command.is_none(), "{:?}", pass.command);
    let reasons: BTreeMap<&str, &str> = pass
        .blocked
        .iter()
        .map(|(_, b)| (b.node.as_str(), b.reason.as_str()))
        .collect();
    assert!(reasons["keep"].contains("do-not-evict"), "{reasons:?}");
    assert!(
        reasons["pinned"].contains("do-not-consolidate"),
        "{reasons:?}"
    );
}

#[test]
fn pods_without_a_controller_and_exhausted_budgets_block_disruption() {
    let mut cluster = Cluster::new();
    cluster
        .node("bare", "m5.2xlarge", "on-demand")
        .pod_with("lonely", "bare", "1", json!({"ownerReferences": []}))
        .node("guarded", "m5.2xlarge", "on-demand")
        .pod_with("db-0", "guarded", "1", json!({"labels": {"app": "db"}}));
    let budget = |name: &str, spec: Value, status: Option<Value>| {
        let mut pdb = json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        });
        if let Some(status) = status {
            pdb["status"] = status;
        }
        serde_json::from_value(pdb).expect("a budget")
    };
    // Computed from the cache: one healthy db pod, one wanted.
    cluster.state.apply_pdb(&budget(
        "db",
        json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}),
        None,
    ));
    let reasons = |cluster: &Cluster| -> Vec<String> {
        let pass = cluster.decide();
        assert!(pass.command.is_none(), "{:?}", pass.command);
        pass.blocked.iter().map(|(_, b)| b.reason.clone()).collect()
    };
    let found = reasons(&cluster);
    assert!(
        found
            .iter()
            .any(|r| r.contains("default/lonely has no controller")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|r| r.contains("PodDisruptionBudget default/db")),
        "{found:?}"
    );
    // The disruption controller's own count wins once it has written one.
    cluster.state.apply_pdb(&budget(
        "db",
        json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}),
        Some(json!({"observedGeneration": 1, "disruptionsAllowed": 1,
                    "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2})),
    ));
    let budgets = Budgets::new(&cluster.state);
    let pod = cluster.state.pod("default", "db-0").expect("the pod");
    assert_eq!(budgets.blocking(&pod.pod), None);
}

#[test]
fn nodes_not_initialized_or_deleting_are_transiently_blocked() {
    let mut cluster = Cluster::new();
    cluster.node_with(
        "new",
        "m5.2xlarge",
        "on-demand",
        json!({"labels": {labels::PROVISIONER_NAME: "default", labels::INSTANCE_TYPE: "m5.2xlarge"}}),
    );
    let types = cluster.catalog();
    let (found, blocked) = candidates::partition(
        &cluster.state,
        Reason::Consolidation,
        &types,
        &|_| false,
        |_| true,
    );
    assert!(found.is_empty());
    assert_eq!(blocked.len(), 1);
    assert!(blocked[0].transient && blocked[0].reason.contains("not initialized"));
}

#[test]
fn an_expired_node_is_replaced_first_when_its_pods_fit_nowhere_else() {
    let mut cluster = Cluster::new();
    cluster.provisioner(json!({"ttlSecondsUntilExpired": 1800}));
    cluster
        .node("old", "m5.xlarge", "on-demand")
        .pod("a", "old", "3");
    let command = cluster.command();
    assert_eq!(command.reason, Reason::Expiration);
    assert_eq!(command.action(), "replace");
    assert_eq!(command.detail, "3600s old, ttlSecondsUntilExpired 1800");
    assert!(
        replacement_types(&command).contains(&"m5.xlarge"),
        "expiry may relaunch the same type: {command:?}"
    );

    // Young enough: nothing.
    cluster.now = start() + Duration::from_secs(1000);
    assert!(cluster.decide().command.is_none());
    assert_eq!(
        expiry::expired_for(Some(start()), Duration::from_secs(1000), cluster.now),
        Some(Duration::from_secs(1000))
    );
}

#[test]
fn an_expired_node_whose_pods_fit_elsewhere_is_just_deleted() {
    let mut cluster = Cluster::new();
    cluster.provisioner(json!({"ttlSecondsUntilExpired": 1800}));
    cluster
        .node("old", "m5.xlarge", "on-demand")
        .pod("a", "old", "1")
        .node("roomy", "m5.2xlarge", "on-demand");
    // The roomy node is just as old; the oldest-first tie goes by name.
    let command = cluster.command();
    assert_eq!(command.node_names(), ["old"]);
    assert!(command.replacements.is_empty());
}

#[test]
fn drift_is_a_changed_provisioner_hash_or_a_label_no_longer_allowed() {
    let mut cluster = Cluster::new();
    cluster.provisioner(json!({"labels": {"team": "a"}}));
    let hash = provisioner_hash(&cluster.provisioner_object()).expect("a hash");
    cluster.node_with(
        "n",
        "m5.xlarge",
        "on-demand",
        json!({"annotations": {labels::PROVISIONER_HASH: hash}}),
    );
    let entry = |cluster: &Cluster| {
        let state = &cluster.state;
        let node = state.node("n").expect("the node");
        drift::static_drift(
            node,
            None,
            state.provisioner("default").expect("provisioner"),
        )
    };
    assert_eq!(entry(&cluster), None);

    cluster.provisioner(json!({"labels": {"team": "b"}}));
    let why = entry(&cluster).expect("drifted");
    assert!(why.contains("changed since it was launched"), "{why}");

    // Without a hash to compare, the requirements still tell.
    cluster.node("m", "m5.xlarge", "spot");
    cluster.provisioner(json!({}));
    let state = &cluster.state;
    let why = drift::static_drift(
        state.node("m").expect("node"),
        None,
        state.provisioner("default").expect("provisioner"),
    )
    .expect("a spot node under an on-demand provisioner");
    assert!(why.contains("karpenter.sh/capacity-type=spot"), "{why}");
}

#[test]
fn a_drifted_node_is_replaced_and_expiry_goes_before_drift() {
    let mut cluster = Cluster::new();
    cluster
        .node("drifted", "m5.xlarge", "on-demand")
        .pod("a", "drifted", "3");
    cluster
        .drifted
        .insert("drifted".into(), "AMI changed".into());
    let command = cluster.command();
    assert_eq!(command.reason, Reason::Drift);
    assert_eq!(command.detail, "AMI changed");
    assert_eq!(command.action(), "replace");

    cluster.provisioner(json!({"ttlSecondsUntilExpired": 60}));
    assert_eq!(cluster.command().reason, Reason::Expiration);
}

#[test]
fn a_decision_taken_again_holds_unless_the_cluster_changed() {
    let mut cluster = Cluster::new();
    cluster
        .node("busy", "m5.2xlarge", "on-demand")
        .pod("a", "busy", "6")
        .node("idle", "m5.xlarge", "on-demand")
        .pod("b", "idle", "500m");
    let decided = cluster.command();
    let again = cluster
        .with_inputs(|inputs| revalidate(&cluster.state, inputs, &decided))
        .expect("still valid");
    assert!(decided.still_holds(&again));

    // The busy node filled up meanwhile: the idle node's pod has nowhere to go.
    cluster.pod("late", "busy", "1500m");
    let again = cluster.with_inputs(|inputs| revalidate(&cluster.state, inputs, &decided));
    assert!(
        again.as_ref().is_none_or(|a| !decided.still_holds(a)),
        "{again:?}"
    );
}

#[test]
fn nothing_is_decided_while_a_managed_node_terminates() {
    let mut cluster = Cluster::new();
    cluster
        .node_with(
            "going",
            "m5.xlarge",
            "on-demand",
            json!({"deletionTimestamp": rfc3339(start()), "finalizers": [labels::TERMINATION_FINALIZER]}),
        )
        .node("idle", "m5.xlarge", "on-demand");
    let pass = cluster.decide();
    assert!(pass.command.is_none());
    assert_eq!(
        pass.settling.as_deref(),
        Some("node going is still terminating")
    );
}
