//! The cluster state index, fed objects as watchers would, checked through its derived views.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use nodewright_scheduling::instance_type::{CapacityType, InstanceType, Offering};
use nodewright_scheduling::labels;
use nodewright_scheduling::resources::Resources;
use nodewright_scheduling::schedule;
use serde_json::{Value, json};

use super::{ClusterState, InstanceTypesByProvisioner, shrink};
use crate::apis::{Machine, Provisioner};
use crate::metrics::PodStateLabels;
use crate::settings::Settings;

const GIB: i64 = 1 << 30;

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("fixture deserializes")
}

/// A pending pod the kube-scheduler has not looked at yet.
fn pod(name: &str, cpu: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]},
        "status": {"phase": "Pending"}
    })
}

fn unschedulable(mut pod: Value) -> Value {
    pod["status"]["conditions"] = json!([{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available"
    }]);
    pod
}

fn bound_to(mut pod: Value, node: &str) -> Value {
    pod["spec"]["nodeName"] = json!(node);
    pod["status"] =
        json!({"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]});
    pod
}

fn owned_by(mut pod: Value, kind: &str, name: &str) -> Value {
    pod["metadata"]["ownerReferences"] = json!([{
        "apiVersion": if kind == "Node" { "v1" } else { "apps/v1" },
        "kind": kind, "name": name, "uid": "owner-uid", "controller": true
    }]);
    pod
}

fn node(name: &str, provider_id: &str, provisioner: Option<&str>) -> Value {
    let mut labels = json!({"kubernetes.io/hostname": name});
    if let Some(p) = provisioner {
        labels[labels::PROVISIONER_NAME] = json!(p);
    }
    json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"providerID": provider_id},
        "status": {
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "58"},
            "allocatable": {"cpu": "3920m", "memory": "15Gi", "pods": "58"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    })
}

fn machine(name: &str, provisioner: &str, types: &[&str]) -> Value {
    json!({
        "apiVersion": "karpenter.sh/v1alpha5", "kind": "Machine",
        "metadata": {"name": name, "uid": format!("uid-{name}"),
                     "labels": {labels::PROVISIONER_NAME: provisioner}},
        "spec": {
            "requirements": [
                {"key": labels::INSTANCE_TYPE, "operator": "In", "values": types},
                {"key": labels::CAPACITY_TYPE, "operator": "In", "values": ["on-demand"]}
            ],
            "resources": {"requests": {"cpu": "1", "memory": "1Gi", "pods": "1"}},
            "taints": [{"key": "team", "value": "a", "effect": "NoSchedule"}],
            "startupTaints": [{"key": "cni-not-ready", "effect": "NoSchedule"}]
        }
    })
}

fn launched(mut machine: Value, provider_id: &str) -> Value {
    machine["status"] = json!({
        "providerID": provider_id,
        "capacity": {"cpu": "8", "memory": "32Gi", "pods": "58"},
        "allocatable": {"cpu": "7910m", "memory": "30Gi", "pods": "58"}
    });
    machine
}

fn provisioner(name: &str) -> Value {
    json!({
        "apiVersion": "karpenter.sh/v1alpha5", "kind": "Provisioner",
        "metadata": {"name": name, "uid": format!("uid-{name}")},
        "spec": {"providerRef": {"name": "default"}, "limits": {"resources": {"cpu": "100"}}}
    })
}

/// A priced instance type with on-demand offerings in one zone.
fn instance_type(name: &str, cpus: i64, price: f64) -> Arc<InstanceType> {
    Arc::new(InstanceType {
        name: name.to_string(),
        labels: [(labels::INSTANCE_TYPE.to_string(), name.to_string())].into(),
        capacity: Resources {
            cpu_millis: cpus * 1000,
            memory_bytes: cpus * 4 * GIB,
            ephemeral_storage_bytes: 20 * GIB,
            pods: 58,
            extended: BTreeMap::new(),
        },
        max_enis: 4,
        ipv4_per_eni: 15,
        offerings: vec![Offering {
            zone: "us-east-1a".into(),
            capacity_type: CapacityType::OnDemand,
            price_per_hour: Some(price),
            available: true,
        }],
    })
}

fn catalog() -> InstanceTypesByProvisioner {
    [(
        "default".to_string(),
        vec![
            instance_type("m5.large", 2, 0.096),
            instance_type("m5.xlarge", 4, 0.192),
            instance_type("m5.2xlarge", 8, 0.384),
        ],
    )]
    .into()
}

fn apply_pod(state: &mut ClusterState, pod: Value) {
    state.apply_pod(&from_json(pod)).expect("pod applies");
}

fn apply_machine(state: &mut ClusterState, machine: Value) {
    state
        .apply_machine(&from_json(machine))
        .expect("machine applies");
}

fn provisionable_names(state: &ClusterState) -> Vec<String> {
    state
        .provisionable_pods()
        .iter()
        .map(|p| p.name.clone())
        .collect()
}

#[test]
fn a_pod_becomes_provisionable_when_unschedulable_and_stops_once_bound() {
    let mut state = ClusterState::new();
    apply_pod(&mut state, pod("web-1", "1"));
    assert!(provisionable_names(&state).is_empty(), "not looked at yet");
    apply_pod(&mut state, unschedulable(pod("web-1", "1")));
    assert_eq!(provisionable_names(&state), ["web-1"]);
    apply_pod(&mut state, bound_to(pod("web-1", "1"), "n1"));
    assert!(provisionable_names(&state).is_empty());
    assert_eq!(state.pods_on_node("n1").len(), 1);
    state.delete_pod("default", "web-1");
    assert!(state.pods_on_node("n1").is_empty());
    assert!(state.pod("default", "web-1").is_none());
}

#[test]
fn daemon_and_mirror_pods_are_never_provisionable() {
    let mut state = ClusterState::new();
    apply_pod(
        &mut state,
        owned_by(unschedulable(pod("ds-1", "100m")), "DaemonSet", "aws-node"),
    );
    apply_pod(
        &mut state,
        owned_by(unschedulable(pod("static-1", "100m")), "Node", "n1"),
    );
    let mut annotated = unschedulable(pod("static-2", "100m"));
    annotated["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
    apply_pod(&mut state, annotated);
    assert!(provisionable_names(&state).is_empty());
    assert!(state.pod("default", "ds-1").is_some_and(|e| e.daemon));
    assert!(state.pod("default", "static-2").is_some_and(|e| e.mirror));
}

#[test]
fn preempting_deleting_and_finished_pods_are_not_provisionable() {
    let mut state = ClusterState::new();
    let mut preempting = unschedulable(pod("a", "1"));
    preempting["status"]["nominatedNodeName"] = json!("n1");
    let mut deleting = unschedulable(pod("b", "1"));
    deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    let mut finished = unschedulable(pod("c", "1"));
    finished["status"]["phase"] = json!("Failed");
    for p in [preempting, deleting, finished] {
        apply_pod(&mut state, p);
    }
    apply_pod(&mut state, unschedulable(pod("d", "1")));
    assert_eq!(provisionable_names(&state), ["d"]);
}

#[test]
fn a_machine_without_a_node_is_in_flight_and_counted_once_when_it_registers() {
    let mut state = ClusterState::new();
    state
        .apply_provisioner(&from_json::<Provisioner>(provisioner("default")))
        .expect("applies");
    apply_machine(
        &mut state,
        launched(
            machine("default-abcde", "default", &["m5.2xlarge"]),
            "aws:///us-east-1a/i-1",
        ),
    );
    let settings = Settings::for_cluster("test");
    let input = state.schedule_input(&catalog(), &settings);
    assert_eq!(input.nodes.len(), 1);
    let flying = &input.nodes[0];
    assert!(flying.in_flight);
    assert_eq!(flying.name, "default-abcde");
    assert_eq!(
        flying.allocatable.cpu_millis, 7910,
        "from the machine's status"
    );
    assert_eq!(flying.labels[labels::PROVISIONER_NAME], "default");
    assert_eq!(flying.labels[labels::HOSTNAME], "default-abcde");
    assert_eq!(flying.labels[labels::INSTANCE_TYPE], "m5.2xlarge");
    assert_eq!(flying.taints.len(), 1, "taints but not startup taints");

    let registered: Node = from_json(node(
        "ip-10-0-0-1.ec2.internal",
        "aws:///us-east-1a/i-1",
        Some("default"),
    ));
    state.apply_node(&registered).expect("node applies");
    let input = state.schedule_input(&catalog(), &settings);
    assert_eq!(input.nodes.len(), 1, "the node replaces the machine");
    assert!(!input.nodes[0].in_flight);
    assert_eq!(input.nodes[0].name, "ip-10-0-0-1.ec2.internal");
    let usage = state.provisioner_usage(&catalog());
    assert_eq!(usage["default"].cpu_millis, 8000, "machine capacity, once");
}

#[test]
fn before_launch_a_machine_is_sized_by_its_cheapest_candidate_and_reserves_its_largest() {
    let mut state = ClusterState::new();
    state
        .apply_provisioner(&from_json::<Provisioner>(provisioner("default")))
        .expect("applies");
    apply_machine(
        &mut state,
        machine("default-xyz12", "default", &["m5.2xlarge", "m5.xlarge"]),
    );
    let input = state.schedule_input(&catalog(), &Settings::for_cluster("test"));
    let flying = &input.nodes[0];
    assert_eq!(flying.capacity.cpu_millis, 4000, "m5.xlarge is cheaper");
    assert!(flying.allocatable.cpu_millis < 4000 && flying.allocatable.cpu_millis > 3000);
    assert_eq!(
        state.provisioner_usage(&catalog())["default"].cpu_millis,
        8000,
        "limits count the largest type it may become"
    );
    let provisioner = &input.provisioners[0].provisioner;
    assert_eq!(provisioner.usage.as_ref().map(|u| u.cpu_millis), Some(8000));
}

#[test]
fn a_machine_whose_types_are_unknown_counts_its_requests() {
    let mut state = ClusterState::new();
    apply_machine(&mut state, machine("default-q", "default", &["x9.huge"]));
    let usage = state.provisioner_usage(&InstanceTypesByProvisioner::new());
    assert_eq!(usage["default"].cpu_millis, 1000);
    let nodes = state.in_flight_nodes(&[]);
    assert_eq!(nodes[0].allocatable.cpu_millis, 1000);
}

#[test]
fn usage_never_falls_below_the_provisioners_status() {
    let mut state = ClusterState::new();
    let mut with_status = provisioner("default");
    with_status["status"] = json!({"resources": {"cpu": "40"}});
    state
        .apply_provisioner(&from_json::<Provisioner>(with_status))
        .expect("applies");
    let input = state.schedule_input(&catalog(), &Settings::for_cluster("test"));
    let usage = input.provisioners[0].provisioner.usage.clone();
    assert_eq!(usage.map(|u| u.cpu_millis), Some(40_000));
}

#[test]
fn nodes_nodewright_launched_without_a_machine_count_toward_usage() {
    let mut state = ClusterState::new();
    state
        .apply_node(&from_json(node(
            "n1",
            "aws:///us-east-1a/i-9",
            Some("default"),
        )))
        .expect("applies");
    state
        .apply_node(&from_json(node("n2", "aws:///us-east-1a/i-8", None)))
        .expect("applies");
    let usage = state.provisioner_usage(&catalog());
    assert_eq!(usage.len(), 1);
    assert_eq!(usage["default"].cpu_millis, 4000);
}

#[test]
fn existing_nodes_carry_their_running_pods_and_deleting_nodes_take_no_more() {
    let mut state = ClusterState::new();
    let mut doomed = node("n2", "aws:///us-east-1a/i-2", None);
    doomed["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    state.apply_node(&from_json(doomed)).expect("applies");
    state
        .apply_node(&from_json(node("n1", "aws:///us-east-1a/i-1", None)))
        .expect("applies");
    apply_pod(&mut state, bound_to(pod("a", "1"), "n1"));
    let mut done = bound_to(pod("b", "1"), "n1");
    done["status"]["phase"] = json!("Succeeded");
    apply_pod(&mut state, done);
    let nodes = state.existing_nodes();
    let n1 = nodes.iter().find(|n| n.name == "n1").expect("n1");
    assert_eq!(n1.pods.len(), 1, "finished pods hold nothing");
    assert_eq!(n1.pods[0].name, "a");
    assert!(!n1.unschedulable);
    assert!(nodes.iter().any(|n| n.name == "n2" && n.unschedulable));
}

#[test]
fn pods_on_a_node_being_deleted_need_new_capacity_at_once() {
    let mut state = ClusterState::new();
    let mut doomed = node("n2", "aws:///us-east-1a/i-2", Some("default"));
    doomed["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    state.apply_node(&from_json(doomed)).expect("applies");
    apply_pod(&mut state, bound_to(pod("web", "1"), "n2"));
    apply_pod(
        &mut state,
        owned_by(bound_to(pod("agent", "100m"), "n2"), "DaemonSet", "agent"),
    );
    let mut leaving = bound_to(pod("evicted", "1"), "n2");
    leaving["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    apply_pod(&mut state, leaving);
    assert_eq!(
        provisionable_names(&state),
        vec!["web"],
        "only the pod that must move; daemons stay, evicted pods are replaced by their owners"
    );
    let nodes = state.existing_nodes();
    let n2 = nodes.iter().find(|n| n.name == "n2").expect("n2");
    assert!(
        n2.pods.iter().all(|p| p.name != "web"),
        "a pod that must move is not also counted on its old node"
    );
}

#[test]
fn a_node_coming_up_is_seen_without_its_startup_and_not_ready_taints() {
    let mut state = ClusterState::new();
    apply_machine(
        &mut state,
        launched(
            machine("default-abcde", "default", &["m5.2xlarge"]),
            "aws:///us-east-1a/i-1",
        ),
    );
    let mut joining = node("n1", "aws:///us-east-1a/i-1", Some("default"));
    joining["spec"]["taints"] = json!([
        {"key": "cni-not-ready", "effect": "NoSchedule"},
        {"key": labels::TAINT_NOT_READY, "effect": "NoSchedule"},
        {"key": "team", "value": "a", "effect": "NoSchedule"}
    ]);
    joining["status"]["allocatable"] = json!({});
    state
        .apply_node(&from_json(joining.clone()))
        .expect("applies");
    let nodes = state.existing_nodes();
    let keys: Vec<&str> = nodes[0].taints.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["team"]);
    assert_eq!(
        nodes[0].allocatable.cpu_millis, 7910,
        "what the machine promises until the node reports it"
    );
    joining["metadata"]["labels"][labels::INITIALIZED] = json!("true");
    state.apply_node(&from_json(joining)).expect("applies");
    assert_eq!(
        state.existing_nodes()[0].taints.len(),
        3,
        "initialized: as is"
    );
}

#[test]
fn an_unreadable_pod_is_reported_and_left_out_until_fixed() {
    let mut state = ClusterState::new();
    let broken = unschedulable(pod("bad", "lots"));
    let err = state
        .apply_pod(&from_json(broken))
        .expect_err("cpu: lots is no quantity");
    assert_eq!(err.field, "spec.containers");
    assert!(state.invalid_objects().contains_key("pod default/bad"));
    assert!(provisionable_names(&state).is_empty());
    apply_pod(&mut state, unschedulable(pod("bad", "1")));
    assert!(state.invalid_objects().is_empty());
    assert_eq!(provisionable_names(&state), ["bad"]);
}

#[test]
fn deleted_or_deleting_provisioners_get_no_new_nodes() {
    let mut state = ClusterState::new();
    let mut going = provisioner("old");
    going["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    going["metadata"]["finalizers"] = json!(["karpenter.sh/termination"]);
    state
        .apply_provisioner(&from_json::<Provisioner>(going))
        .expect("applies");
    state
        .apply_provisioner(&from_json::<Provisioner>(provisioner("default")))
        .expect("applies");
    state
        .apply_provisioner(&from_json::<Provisioner>(provisioner("gone")))
        .expect("applies");
    state.delete_provisioner("gone");
    let input = state.schedule_input(&catalog(), &Settings::for_cluster("test"));
    let names: Vec<&str> = input
        .provisioners
        .iter()
        .map(|p| p.provisioner.name.as_str())
        .collect();
    assert_eq!(names, ["default"]);
}

/// A pod as a busy cluster stores it: managed fields, env, probes, mounts, status noise.
fn bulky(pod: Value) -> Value {
    let mut pod = pod;
    let env: Vec<Value> = (0..40)
        .map(|i| json!({"name": format!("VAR_{i}"), "value": "x".repeat(64)}))
        .collect();
    pod["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Apply",
        "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:containers": {}}}}]);
    pod["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": "{".to_string() + &"\"k\":1,".repeat(200) + "}",
        labels::DO_NOT_EVICT: "true"
    });
    pod["metadata"]["labels"] = json!({"app": "web"});
    let container = &mut pod["spec"]["containers"][0];
    container["image"] = json!("registry.example.com/web:1.2.3");
    container["command"] = json!(["/bin/web", "--serve"]);
    container["args"] = json!(["--port=8080"]);
    container["env"] = json!(env);
    container["ports"] =
        json!([{"containerPort": 8080}, {"containerPort": 9090, "hostPort": 9090}]);
    container["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    container["livenessProbe"] = json!({"httpGet": {"path": "/healthz", "port": 8080}});
    pod["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    pod["spec"]["tolerations"] = json!([{"key": "team", "operator": "Equal", "value": "a"}]);
    pod
}

#[test]
fn shrinking_a_bulky_pod_keeps_every_decision() {
    let original: Pod = from_json(bulky(unschedulable(pod("web-1", "1"))));
    let shrunk = shrink::pod(original.clone());
    let size = |p: &Pod| serde_json::to_string(p).map(|s| s.len()).unwrap_or(0);
    assert!(
        size(&shrunk) * 4 < size(&original),
        "{} bytes shrank only to {}",
        size(&original),
        size(&shrunk)
    );
    let container = &shrunk.spec.as_ref().expect("spec").containers[0];
    assert!(container.env.is_none() && container.command.is_none());
    assert_eq!(
        container.ports.as_ref().map(Vec::len),
        Some(1),
        "host ports stay"
    );
    assert!(shrunk.metadata.managed_fields.is_none());
    let annotations = shrunk.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.len(), 1, "only karpenter.sh annotations stay");

    let mut full = ClusterState::new();
    let mut small = ClusterState::new();
    full.apply_pod(&original).expect("applies");
    small.apply_pod(&shrunk).expect("applies");
    let a = full.pod("default", "web-1").expect("stored");
    let b = small.pod("default", "web-1").expect("stored");
    assert_eq!(a, b, "the same core pod and facts");
    assert!(b.provisionable && b.do_not_evict);
}

#[test]
fn shrinking_every_object_leaves_the_plan_unchanged() {
    let objects = |shrunk: bool| {
        let mut state = ClusterState::new();
        let prov: Provisioner = from_json(provisioner("default"));
        let mut n: Node = from_json(node("n1", "aws:///us-east-1a/i-1", Some("default")));
        n.status.get_or_insert_default().images = Some(vec![Default::default(); 50]);
        let m: Machine = from_json(launched(
            machine("default-abcde", "default", &["m5.2xlarge"]),
            "aws:///us-east-1a/i-7",
        ));
        let pods: Vec<Pod> = (0..6)
            .map(|i| from_json(bulky(unschedulable(pod(&format!("p{i}"), "1500m")))))
            .chain(std::iter::once(from_json(bulky(bound_to(
                pod("r", "2"),
                "n1",
            )))))
            .collect();
        let (prov, n, m) = if shrunk {
            (
                shrink::provisioner(prov),
                shrink::node(n),
                shrink::machine(m),
            )
        } else {
            (prov, n, m)
        };
        state.apply_provisioner(&prov).expect("applies");
        state.apply_node(&n).expect("applies");
        state.apply_machine(&m).expect("applies");
        for p in pods {
            let p = if shrunk { shrink::pod(p) } else { p };
            state.apply_pod(&p).expect("applies");
        }
        schedule(&state.schedule_input(&catalog(), &Settings::for_cluster("test")))
    };
    let plan = objects(false);
    assert_eq!(plan.pod_count(), 6);
    assert!(
        !plan.existing.is_empty(),
        "the in-flight machine and node take pods"
    );
    assert_eq!(plan, objects(true));
}

fn labelled_node(name: &str, instance_type: &str, capacity_type: &str) -> Value {
    let mut n = node(name, &format!("aws:///us-east-1a/{name}"), Some("default"));
    let labels = &mut n["metadata"]["labels"];
    labels[labels::INSTANCE_TYPE] = json!(instance_type);
    labels[labels::CAPACITY_TYPE] = json!(capacity_type);
    labels[labels::ZONE] = json!("us-east-1a");
    labels[labels::ARCH] = json!("amd64");
    n
}

#[test]
fn pods_are_counted_by_namespace_phase_and_the_kind_of_node_they_run_on() {
    let mut state = ClusterState::new();
    state
        .apply_node(&from_json(labelled_node("n1", "m5.xlarge", "on-demand")))
        .expect("applies");
    for name in ["web-1", "web-2"] {
        apply_pod(
            &mut state,
            owned_by(bound_to(pod(name, "1"), "n1"), "ReplicaSet", "web-abc"),
        );
    }
    apply_pod(&mut state, pod("pending", "1"));
    let counts = state.pod_state_counts();
    assert_eq!(counts.len(), 2, "{counts:?}");
    let running = PodStateLabels {
        namespace: "default".into(),
        node: "n1".into(),
        provisioner: "default".into(),
        zone: "us-east-1a".into(),
        arch: "amd64".into(),
        capacity_type: "on-demand".into(),
        instance_type: "m5.xlarge".into(),
        phase: "Running".into(),
    };
    assert_eq!(counts.get(&running), Some(&2), "{counts:?}");
    let pending = PodStateLabels {
        namespace: "default".into(),
        phase: "Pending".into(),
        ..PodStateLabels::default()
    };
    assert_eq!(counts.get(&pending), Some(&1), "{counts:?}");
}

#[test]
fn node_resources_split_daemon_pods_from_the_rest_and_sum_limits() {
    let mut state = ClusterState::new();
    state
        .apply_node(&from_json(labelled_node("n1", "m5.xlarge", "on-demand")))
        .expect("applies");
    let mut limited = owned_by(bound_to(pod("web", "500m"), "n1"), "ReplicaSet", "web-abc");
    limited["spec"]["containers"][0]["resources"]["limits"] = json!({"cpu": "2", "memory": "2Gi"});
    apply_pod(&mut state, limited);
    apply_pod(
        &mut state,
        owned_by(bound_to(pod("agent", "100m"), "n1"), "DaemonSet", "agent"),
    );
    apply_pod(&mut state, pod("pending", "1"));
    let nodes = state.node_resources();
    assert_eq!(nodes.len(), 1);
    let n1 = &nodes[0];
    assert_eq!(n1.name, "n1");
    assert_eq!(n1.pod_requests.cpu_millis, 500);
    assert_eq!(n1.pod_requests.pods, 0, "the pod slot is not a request");
    assert_eq!(n1.pod_limits.cpu_millis, 2000);
    assert_eq!(n1.pod_limits.memory_bytes, 2 << 30);
    assert_eq!(n1.daemon_requests.cpu_millis, 100);
    assert_eq!(n1.daemon_limits, Resources::default());
    assert_eq!(
        n1.labels.get(labels::INSTANCE_TYPE).map(String::as_str),
        Some("m5.xlarge")
    );
}

#[test]
fn cost_per_hour_prices_each_launched_node_at_its_offering() {
    let mut state = ClusterState::new();
    for (name, instance_type) in [("a", "m5.xlarge"), ("b", "m5.2xlarge"), ("c", "x9.unknown")] {
        state
            .apply_node(&from_json(labelled_node(name, instance_type, "on-demand")))
            .expect("applies");
    }
    state
        .apply_node(&from_json(node("unmanaged", "aws:///us-east-1a/u", None)))
        .expect("applies");
    let cost = state.cost_per_hour(&catalog());
    assert_eq!(cost.len(), 1);
    let on_demand = cost[&("default".to_string(), CapacityType::OnDemand)];
    assert!((on_demand - (0.192 + 0.384)).abs() < 1e-9, "{on_demand}");
}

#[test]
fn a_node_that_joined_before_registration_is_seen_as_its_machine_promised() {
    let mut state = ClusterState::new();
    state
        .apply_provisioner(&from_json::<Provisioner>(provisioner("default")))
        .expect("applies");
    apply_machine(
        &mut state,
        launched(
            machine("default-abcde", "default", &["m5.2xlarge"]),
            "aws:///us-east-1a/i-1",
        ),
    );
    // The kubelet created the node; registration has not labelled or untainted it yet.
    let mut joined = node("ip-10-0-0-1.ec2.internal", "aws:///us-east-1a/i-1", None);
    joined["spec"]["taints"] = json!([
        {"key": labels::TAINT_NOT_READY, "effect": "NoSchedule"},
        {"key": "team", "value": "a", "effect": "NoSchedule"}
    ]);
    state.apply_node(&from_json(joined)).expect("applies");
    let mut waiting = pod("web-1", "2");
    waiting["spec"]["nodeSelector"] = json!({labels::PROVISIONER_NAME: "default"});
    waiting["spec"]["tolerations"] = json!([{"key": "team", "operator": "Exists"}]);
    apply_pod(&mut state, unschedulable(waiting));
    let plan = schedule(&state.schedule_input(&catalog(), &Settings::for_cluster("test")));
    assert!(plan.nodes.is_empty(), "no second machine: {plan:?}");
    assert_eq!(plan.existing.len(), 1);
    assert_eq!(plan.existing[0].node, "ip-10-0-0-1.ec2.internal");
}

#[test]
fn pods_with_the_same_labels_share_one_copy_of_them() {
    let mut state = ClusterState::new();
    for (name, app) in [("web-1", "web"), ("web-2", "web"), ("api-1", "api")] {
        let mut pod = bound_to(pod(name, "1"), "n1");
        pod["metadata"]["labels"] = json!({"app": app, "pod-template-hash": "5d8f"});
        apply_pod(&mut state, pod);
    }
    let labels = |name: &str| {
        state
            .pod("default", name)
            .expect("cached")
            .pod
            .labels
            .clone()
    };
    let (web1, web2, api) = (labels("web-1"), labels("web-2"), labels("api-1"));
    assert!(
        Arc::ptr_eq(&web1, &web2),
        "equal label sets are one allocation"
    );
    assert!(!Arc::ptr_eq(&web1, &api));
    assert_eq!(api.get("app").map(String::as_str), Some("api"));
    assert_eq!(web2.get("app").map(String::as_str), Some("web"));
}

#[test]
fn pods_with_the_same_placement_share_one_copy_of_it() {
    let mut state = ClusterState::new();
    for (name, zone) in [("web-1", "a"), ("web-2", "a"), ("web-3", "b")] {
        let mut pod = bound_to(pod(name, "1"), "n1");
        pod["spec"]["nodeSelector"] = json!({"topology.kubernetes.io/zone": zone});
        pod["spec"]["tolerations"] = json!([{"key": "dedicated", "operator": "Exists"}]);
        apply_pod(&mut state, pod);
    }
    let entry = |name: &str| state.pod("default", name).expect("cached").clone();
    let (web1, web2, web3) = (entry("web-1"), entry("web-2"), entry("web-3"));
    assert!(Arc::ptr_eq(&web1.pod.placement, &web2.pod.placement));
    assert!(!Arc::ptr_eq(&web1.pod.placement, &web3.pod.placement));
    assert_eq!(
        web3.pod.placement.node_selector["topology.kubernetes.io/zone"],
        "b"
    );
    assert_eq!(web1.pod.placement.tolerations.len(), 1);
    // The node name and phase are shared too; the values stay each pod's own.
    let (Some(node1), Some(node2)) = (&web1.node_name, &web2.node_name) else {
        panic!("both are bound");
    };
    assert!(Arc::ptr_eq(node1, node2));
    assert_eq!(&**node1, "n1");
    assert_eq!(&*web1.phase, "Running");
}
