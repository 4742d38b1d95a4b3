//! `scheduler::decide` over varied clusters: every pending pod is either bound or refused, and
//! no binding breaks readiness, cordons, taints, selectors or capacity.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use nodewright::sim::scheduler::decide;
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone)]
struct NodeCase {
    cpu_millis: i64,
    zone: &'static str,
    ready: bool,
    cordoned: bool,
    tainted: bool,
    /// Requests of pods already bound to it.
    bound: Vec<i64>,
}

#[derive(Debug, Clone)]
struct PodCase {
    cpu_millis: i64,
    zone: Option<&'static str>,
    tolerates: bool,
}

fn node_case() -> impl Strategy<Value = NodeCase> {
    (
        1i64..=8,
        prop::sample::select(vec!["a", "b"]),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.3),
        prop::collection::vec(100i64..=1500, 0..3),
    )
        .prop_map(|(cpus, zone, ready, cordoned, tainted, bound)| NodeCase {
            cpu_millis: cpus * 1000,
            zone,
            ready,
            cordoned,
            tainted,
            bound,
        })
}

fn pod_case() -> impl Strategy<Value = PodCase> {
    (
        100i64..=3000,
        prop::option::of(prop::sample::select(vec!["a", "b"])),
        any::<bool>(),
    )
        .prop_map(|(cpu_millis, zone, tolerates)| PodCase {
            cpu_millis,
            zone,
            tolerates,
        })
}

fn node_object(name: &str, case: &NodeCase) -> Node {
    let taints = match case.tainted {
        true => json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]),
        false => json!([]),
    };
    let cpu = format!("{}m", case.cpu_millis);
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": case.zone}},
        "spec": {"taints": taints, "unschedulable": case.cordoned},
        "status": {"allocatable": {"cpu": cpu, "memory": "64Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": if case.ready { "True" } else { "False" }}]},
    }))
    .expect("a valid node")
}

fn pod_object(name: &str, cpu_millis: i64, node: Option<&str>, case: Option<&PodCase>) -> Pod {
    let mut spec = json!({"containers": [{"name": "app", "image": "pause",
        "resources": {"requests": {"cpu": format!("{cpu_millis}m")}}}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    if let Some(zone) = case.and_then(|c| c.zone) {
        spec["nodeSelector"] = json!({"topology.kubernetes.io/zone": zone});
    }
    if case.is_some_and(|c| c.tolerates) {
        spec["tolerations"] = json!([{"key": "dedicated", "operator": "Exists"}]);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": spec,
    }))
    .expect("a valid pod")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_pending_pod_is_bound_where_it_fits_or_refused(
        nodes in prop::collection::vec(node_case(), 0..5),
        pending in prop::collection::vec(pod_case(), 0..10),
    ) {
        let node_objects: Vec<Node> = nodes
            .iter()
            .enumerate()
            .map(|(i, case)| node_object(&format!("node-{i}"), case))
            .collect();
        let mut pods = Vec::new();
        for (i, case) in nodes.iter().enumerate() {
            for (j, cpu) in case.bound.iter().enumerate() {
                let node = format!("node-{i}");
                pods.push(pod_object(&format!("bound-{i}-{j}"), *cpu, Some(&node), None));
            }
        }
        for (i, case) in pending.iter().enumerate() {
            pods.push(pod_object(&format!("pending-{i}"), case.cpu_millis, None, Some(case)));
        }

        let decisions = decide(&pods, &node_objects);

        let mut decided: Vec<String> = decisions
            .bindings
            .iter()
            .map(|b| b.pod.clone())
            .chain(decisions.refusals.iter().map(|r| r.pod.clone()))
            .collect();
        decided.sort();
        let mut expected: Vec<String> = (0..pending.len()).map(|i| format!("pending-{i}")).collect();
        expected.sort();
        prop_assert_eq!(decided, expected, "each pending pod decided exactly once");

        let mut used: BTreeMap<usize, i64> = nodes
            .iter()
            .enumerate()
            .map(|(i, case)| (i, case.bound.iter().sum()))
            .collect();
        for binding in &decisions.bindings {
            let n: usize = binding.node.trim_start_matches("node-").parse().expect("a node index");
            let p: usize = binding.pod.trim_start_matches("pending-").parse().expect("a pod index");
            let (node, pod) = (&nodes[n], &pending[p]);
            prop_assert!(node.ready && !node.cordoned, "{} went to an unusable node", binding.pod);
            prop_assert!(!node.tainted || pod.tolerates, "{} ignored a taint", binding.pod);
            prop_assert!(pod.zone.is_none_or(|z| z == node.zone), "{} ignored its selector", binding.pod);
            *used.entry(n).or_default() += pod.cpu_millis;
        }
        for (n, cpu) in used {
            if decisions.bindings.iter().any(|b| b.node == format!("node-{n}")) {
                prop_assert!(cpu <= nodes[n].cpu_millis, "node-{} overcommitted: {}m", n, cpu);
            }
        }
        for refusal in &decisions.refusals {
            let prefix = format!("0/{} nodes are available: ", nodes.len());
            prop_assert!(refusal.message.starts_with(&prefix), "{}", refusal.message);
        }
    }
}
