//! Expiry and drift replace nodes; a decision is taken again before it is acted on.

use super::*;
use crate::controllers::disruption::{drift, expiry, revalidate};
use crate::controllers::provisioning::decide::provisioner_hash;

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
fn an_expired_node_that_cannot_be_replaced_stays_and_says_why() {
    let mut cluster = Cluster::new();
    // The limit is spent on the old node itself: no replacement may launch.
    cluster.provisioner(json!({
        "ttlSecondsUntilExpired": 1800,
        "limits": {"resources": {"cpu": "4"}},
    }));
    cluster
        .node("old", "m5.xlarge", "on-demand")
        .pod("a", "old", "3");
    let pass = cluster.decide();
    assert!(pass.command.is_none(), "{:?}", pass.command);
    let (reason, blocked) = pass
        .blocked
        .iter()
        .find(|(_, b)| b.node == "old")
        .expect("the expired node is reported");
    assert_eq!(*reason, Reason::Expiration);
    assert!(!blocked.transient, "worth an Event");
    assert!(
        blocked.reason.contains("no replacement can be launched")
            && blocked.reason.contains("default/a"),
        "{}",
        blocked.reason
    );
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
