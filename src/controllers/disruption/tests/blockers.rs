//! What keeps a node from being disrupted, and when nothing is decided at all.

use super::*;
use crate::controllers::disruption::candidates::{self, Budgets};

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
