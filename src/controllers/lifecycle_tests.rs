//! The machine lifecycle decision, on machines and nodes as the cache holds them.

use std::time::{Duration, SystemTime};

use k8s_openapi::jiff::Timestamp;
use nodewright_scheduling::labels;
use serde_json::{Value, json};

use super::lifecycle::{GiveUp, Step, next_step, set_condition};
use crate::apis::common::Condition;
use crate::apis::machine::MACHINE_REGISTERED;
use crate::settings::Settings;
use crate::state::ClusterState;

const CREATED: i64 = 1_700_000_000;
const PROVIDER_ID: &str = "aws:///us-east-1a/i-0abc";

fn at(seconds_after_creation: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(CREATED as u64 + seconds_after_creation)
}

fn machine() -> Value {
    json!({
        "apiVersion": "karpenter.sh/v1alpha5", "kind": "Machine",
        "metadata": {"name": "default-abcde", "uid": "machine-uid",
                     "creationTimestamp": Timestamp::from_second(CREATED).map(|t| t.to_string()).unwrap_or_default(),
                     "labels": {labels::PROVISIONER_NAME: "default", "team": "a"}},
        "spec": {
            "requirements": [{"key": labels::INSTANCE_TYPE, "operator": "In", "values": ["g4dn.xlarge"]}],
            "resources": {"requests": {"cpu": "2", "nvidia.com/gpu": "1"}},
            "taints": [{"key": "team", "value": "a", "effect": "NoSchedule"}],
            "startupTaints": [{"key": "gpu-driver", "effect": "NoSchedule"}]
        }
    })
}

fn launched(mut m: Value) -> Value {
    m["status"] = json!({
        "providerID": PROVIDER_ID,
        "conditions": [{"type": "MachineLaunched", "status": "True"}]
    });
    m
}

fn with_condition(mut m: Value, type_: &str) -> Value {
    if let Some(conditions) = m["status"]["conditions"].as_array_mut() {
        conditions.push(json!({"type": type_, "status": "True"}));
    }
    m
}

fn registered(m: Value) -> Value {
    with_condition(m, MACHINE_REGISTERED)
}

fn node(ready: bool) -> Value {
    json!({
        "metadata": {"name": "ip-10-0-0-1.ec2.internal", "labels": {}},
        "spec": {"providerID": PROVIDER_ID,
                 "taints": [{"key": "team", "value": "a", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {"cpu": "3920m", "memory": "15Gi", "pods": "29"},
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
        }
    })
}

fn step(machine: Value, node: Option<Value>, now: SystemTime) -> Step {
    let mut state = ClusterState::new();
    state
        .apply_machine(&serde_json::from_value(machine).expect("machine"))
        .expect("applies");
    if let Some(node) = node {
        state
            .apply_node(&serde_json::from_value(node).expect("node"))
            .expect("applies");
    }
    let entry = state.machine("default-abcde").expect("cached");
    let node = state.node_of_machine(&entry.machine);
    next_step(entry, node, now, &Settings::for_cluster("test"))
}

#[test]
fn a_new_machine_is_launched_and_given_up_after_the_launch_ttl() {
    assert_eq!(step(machine(), None, at(10)), Step::Launch);
    assert_eq!(
        step(machine(), None, at(300)),
        Step::Delete(GiveUp::LaunchTimeout)
    );
}

#[test]
fn a_launched_machine_waits_for_its_node_until_the_registration_ttl() {
    assert_eq!(
        step(launched(machine()), None, at(60)),
        Step::WaitForNode { deadline: at(900) }
    );
    assert_eq!(
        step(launched(machine()), None, at(900)),
        Step::Delete(GiveUp::RegistrationTimeout)
    );
}

#[test]
fn registration_adopts_the_node_with_labels_taints_finalizer_and_owner() {
    let Step::Register(r) = step(launched(machine()), Some(node(false)), at(120)) else {
        panic!("expected a registration");
    };
    assert_eq!(r.node, "ip-10-0-0-1.ec2.internal");
    assert_eq!(r.labels[labels::PROVISIONER_NAME], "default");
    assert_eq!(r.labels["team"], "a");
    assert_eq!(r.labels[labels::REGISTERED], "true");
    let keys: Vec<&str> = r.taints.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["gpu-driver"], "the team taint is there already");
    assert!(r.add_finalizer);
    let owner = r.owner.expect("owner reference");
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Machine", "machine-uid")
    );
}

#[test]
fn a_node_registered_before_never_gets_its_startup_taints_back() {
    let mut adopted = node(true);
    adopted["metadata"]["labels"][labels::REGISTERED] = json!("true");
    adopted["metadata"]["finalizers"] = json!([labels::TERMINATION_FINALIZER]);
    // The machine's status write was lost after the node was patched.
    let Step::Register(r) = step(launched(machine()), Some(adopted), at(120)) else {
        panic!("expected the registration to be completed");
    };
    assert!(r.taints.is_empty());
    assert!(!r.add_finalizer);
}

#[test]
fn initialization_waits_for_ready_startup_taints_gone_and_resources_reported() {
    let adopted = |ready: bool| {
        let mut n = node(ready);
        n["metadata"]["labels"][labels::REGISTERED] = json!("true");
        n
    };
    let m = registered(launched(machine()));
    let waiting = |n: Value| match step(m.clone(), Some(n), at(200)) {
        Step::WaitForInitialization { missing } => missing,
        other => panic!("expected to wait, got {other:?}"),
    };
    assert!(waiting(adopted(false)).contains("not Ready"));
    let mut tainted = adopted(true);
    tainted["spec"]["taints"] = json!([{"key": "gpu-driver", "effect": "NoSchedule"}]);
    assert!(waiting(tainted).contains("gpu-driver"));
    assert!(waiting(adopted(true)).contains("nvidia.com/gpu"));
    let mut reported = adopted(true);
    reported["status"]["allocatable"]["nvidia.com/gpu"] = json!("1");
    assert_eq!(
        step(m.clone(), Some(reported.clone()), at(200)),
        Step::Initialize {
            node: "ip-10-0-0-1.ec2.internal".into()
        }
    );
    let done = with_condition(m, "MachineInitialized");
    reported["metadata"]["labels"][labels::INITIALIZED] = json!("true");
    assert_eq!(step(done, Some(reported), at(200)), Step::Settled);
}

#[test]
fn a_machine_being_deleted_is_left_to_termination() {
    let mut m = launched(machine());
    m["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    m["metadata"]["finalizers"] = json!([labels::TERMINATION_FINALIZER]);
    assert_eq!(step(m, None, at(10_000)), Step::Terminating);
}

#[test]
fn conditions_keep_their_transition_time_while_the_status_holds() {
    let time = |s: i64| {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::from_second(s).expect("valid"),
        )
    };
    let mut conditions: Vec<Condition> = Vec::new();
    set_condition(
        &mut conditions,
        MACHINE_REGISTERED,
        false,
        "NodeNotFound",
        "",
        time(1),
    );
    set_condition(&mut conditions, MACHINE_REGISTERED, true, "", "", time(5));
    set_condition(&mut conditions, MACHINE_REGISTERED, true, "", "", time(9));
    assert_eq!(conditions.len(), 1);
    assert!(conditions[0].is_true());
    assert_eq!(conditions[0].last_transition_time, Some(time(5)));
    assert_eq!(conditions[0].reason, None);
}
