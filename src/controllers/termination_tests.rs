//! The termination decision, on nodes and pods as the cache holds them.

use std::time::{Duration, SystemTime};

use k8s_openapi::jiff::Timestamp;
use nodewright_scheduling::labels;
use serde_json::{Value, json};

use super::termination::{STUCK_TERMINATING_AFTER, TerminationStep, next_step};
use crate::state::ClusterState;

const NODE: &str = "ip-10-0-0-1.ec2.internal";
const NOW: u64 = 1_700_000_000;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

fn timestamp(at: SystemTime) -> String {
    let seconds = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A node being deleted under our finalizer, cordoned or not, Ready or not.
fn deleting_node(cordoned: bool, ready: bool) -> Value {
    json!({
        "metadata": {"name": NODE, "labels": {labels::PROVISIONER_NAME: "default"},
                     "finalizers": [labels::TERMINATION_FINALIZER],
                     "deletionTimestamp": timestamp(now())},
        "spec": {"providerID": "aws:///us-east-1a/i-0abc", "unschedulable": cordoned},
        "status": {
            "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "29"},
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
        }
    })
}

fn pod(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": "web-5d8f", "uid": "rs", "controller": true}]},
        "spec": {"nodeName": NODE, "containers": [{"name": "c",
                 "resources": {"requests": {"cpu": "1"}}}]},
        "status": {"phase": "Running"}
    })
}

fn step(node: Value, pods: &[Value], at: SystemTime) -> TerminationStep {
    let mut state = ClusterState::new();
    state
        .apply_node(&serde_json::from_value(node).expect("node"))
        .expect("applies");
    for p in pods {
        state
            .apply_pod(&serde_json::from_value(p.clone()).expect("pod"))
            .expect("applies");
    }
    let entry = state.node(NODE).expect("cached");
    let on_node = state.pods_on_node(NODE);
    next_step(entry, &on_node, at)
}

#[test]
fn a_node_not_being_deleted_or_without_our_finalizer_is_left_alone() {
    let mut live = deleting_node(true, true);
    live["metadata"]
        .as_object_mut()
        .map(|m| m.remove("deletionTimestamp"));
    assert_eq!(step(live, &[], now()), TerminationStep::None);
    let mut foreign = deleting_node(true, true);
    foreign["metadata"]["finalizers"] = json!(["example.com/other"]);
    assert_eq!(step(foreign, &[], now()), TerminationStep::None);
}

#[test]
fn a_ready_node_is_cordoned_then_drained_then_terminated() {
    let pods = [pod("web-1"), pod("web-2")];
    assert_eq!(
        step(deleting_node(false, true), &pods, now()),
        TerminationStep::Cordon
    );
    assert_eq!(
        step(deleting_node(true, true), &pods, now()),
        TerminationStep::Evict(vec!["default/web-1".into(), "default/web-2".into()])
    );
    assert_eq!(
        step(deleting_node(true, true), &[], now()),
        TerminationStep::Terminate
    );
}

#[test]
fn a_not_ready_node_is_cordoned_and_drained_not_terminated_under_its_pods() {
    let pods = [pod("web-1")];
    assert_eq!(
        step(deleting_node(false, false), &pods, now()),
        TerminationStep::Cordon,
        "a kubelet blip is no reason to skip the cordon"
    );
    assert_eq!(
        step(deleting_node(true, false), &pods, now()),
        TerminationStep::Evict(vec!["default/web-1".into()]),
        "its pods go through the eviction API and their budgets"
    );
}

#[test]
fn pods_being_deleted_hold_the_drain_until_stuck_past_their_grace_period() {
    let deadline = now() + Duration::from_secs(30);
    let mut evicted = pod("web-1");
    evicted["metadata"]["deletionTimestamp"] = json!(timestamp(deadline));
    let node = || deleting_node(true, false);
    assert_eq!(
        step(node(), std::slice::from_ref(&evicted), now()),
        TerminationStep::WaitForPods(1)
    );
    assert_eq!(
        step(
            node(),
            std::slice::from_ref(&evicted),
            deadline + STUCK_TERMINATING_AFTER
        ),
        TerminationStep::WaitForPods(1),
        "still within the minute past its grace period"
    );
    assert_eq!(
        step(
            node(),
            &[evicted],
            deadline + STUCK_TERMINATING_AFTER + Duration::from_secs(1)
        ),
        TerminationStep::Terminate,
        "a pod its kubelet no longer finishes counts as gone"
    );
}

#[test]
fn pods_that_tolerate_the_cordon_daemon_and_mirror_pods_are_left_out_of_the_drain() {
    let mut tolerates_cordon = pod("logger");
    tolerates_cordon["spec"]["tolerations"] =
        json!([{"key": labels::TAINT_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}]);
    let mut tolerates_everything = pod("agent");
    tolerates_everything["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
    let mut daemon = pod("daemon");
    daemon["metadata"]["ownerReferences"][0]["kind"] = json!("DaemonSet");
    let mut other_toleration = pod("web-1");
    other_toleration["spec"]["tolerations"] =
        json!([{"key": labels::TAINT_UNSCHEDULABLE, "operator": "Exists", "effect": "NoExecute"}]);
    assert_eq!(
        step(
            deleting_node(true, true),
            &[
                tolerates_cordon,
                tolerates_everything,
                daemon,
                other_toleration
            ],
            now()
        ),
        TerminationStep::Evict(vec!["default/web-1".into()]),
        "only the pod that would not come back is evicted"
    );
}

#[test]
fn finished_pods_do_not_hold_the_drain() {
    let mut done = pod("job-1");
    done["status"]["phase"] = json!("Succeeded");
    assert_eq!(
        step(deleting_node(true, true), &[done], now()),
        TerminationStep::Terminate
    );
}

#[test]
fn a_node_created_early_that_never_registered_has_nothing_to_drain() {
    let mut early = deleting_node(false, false);
    early["metadata"]["annotations"] = json!({labels::BOUND_EARLY: "true"});
    early["status"]
        .as_object_mut()
        .map(|s| s.remove("conditions"));
    assert_eq!(
        step(early, &[pod("web-1")], now()),
        TerminationStep::Terminate
    );
}
