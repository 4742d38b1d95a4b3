//! The controller's writes of list fields lose no concurrent change: each is made from the
//! version it read and redone when the object changed meanwhile, as the API server refuses a
//! stale write (409).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams, PostParams};
use nodewright::controllers::lifecycle::NodeRegistration;
use nodewright::controllers::write::{adopt_node, release};
use nodewright_scheduling::labels;
use serde_json::json;

use crate::support::Sim;

const NODE: &str = "ip-10-0-0-9.ec2.internal";

fn taint(key: &str) -> Taint {
    Taint {
        key: key.to_string(),
        effect: "NoSchedule".to_string(),
        ..Taint::default()
    }
}

async fn node_with(sim: &Sim, finalizers: &[&str], taints: &[&str]) -> (Api<Node>, Node) {
    let nodes: Api<Node> = Api::all(sim.client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": NODE, "finalizers": finalizers},
        "spec": {"taints": taints.iter().map(|k| taint(k)).collect::<Vec<_>>()},
    }))
    .expect("a node");
    let created = nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("the node is created");
    (nodes, created)
}

fn keys(node: &Node) -> Vec<String> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|t| t.iter().map(|t| t.key.clone()).collect())
        .unwrap_or_default()
}

/// The node's startup-taint agent removes its taint while the controller registers the node
/// from what it read before: the taint stays removed, or the node would never initialize.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_node_from_a_stale_read_keeps_a_startup_taint_its_agent_removed() {
    let sim = Sim::start().await;
    let (nodes, read_before) = node_with(&sim, &[], &["example.com/cni-not-ready"]).await;
    nodes
        .patch(
            NODE,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": []}})),
        )
        .await
        .expect("the agent removes its startup taint");

    let registration = NodeRegistration {
        node: NODE.to_string(),
        labels: BTreeMap::from([(labels::REGISTERED.to_string(), "true".to_string())]),
        taints: vec![taint("team")],
        add_finalizer: true,
        owner: Some(OwnerReference {
            api_version: "karpenter.sh/v1alpha5".into(),
            kind: "Machine".into(),
            name: "default-abcde".into(),
            uid: "machine-uid".into(),
            block_owner_deletion: Some(true),
            controller: None,
        }),
    };
    let adopted = adopt_node(&nodes, &read_before, &registration)
        .await
        .expect("the node is adopted");

    assert_eq!(
        keys(&adopted),
        ["team"],
        "the removed taint did not come back"
    );
    assert_eq!(
        adopted.metadata.finalizers.as_deref(),
        Some(&[labels::TERMINATION_FINALIZER.to_string()][..])
    );
    assert_eq!(
        adopted.metadata.owner_references.as_ref().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        adopted
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::REGISTERED)),
        Some(&"true".to_string())
    );

    // The write as it was made before: the lists rebuilt from the stale read, no version.
    let mut stale_taints = read_before.spec.and_then(|s| s.taints).unwrap_or_default();
    stale_taints.push(taint("team"));
    let lost = nodes
        .patch(
            NODE,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": stale_taints}})),
        )
        .await
        .expect("an unconditional patch is accepted");
    assert_eq!(
        keys(&lost),
        ["example.com/cni-not-ready", "team"],
        "without the version precondition the removed taint comes back"
    );
    sim.stop().await;
}

/// Another controller adds its finalizer after the termination loop read the node: releasing
/// ours keeps theirs, so the node does not go before they are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_our_finalizer_from_a_stale_read_keeps_one_added_meanwhile() {
    let sim = Sim::start().await;
    let (nodes, read_before) = node_with(&sim, &[labels::TERMINATION_FINALIZER], &[]).await;
    nodes
        .patch(
            NODE,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": [
                labels::TERMINATION_FINALIZER, "example.com/backup"
            ]}})),
        )
        .await
        .expect("another controller adds its finalizer");

    let released = release(&nodes, &read_before)
        .await
        .expect("the finalizer is released")
        .expect("ours was there to release");
    assert_eq!(
        released.metadata.finalizers.as_deref(),
        Some(&["example.com/backup".to_string()][..])
    );
    assert_eq!(
        release(&nodes, &released).await.expect("a second release"),
        None,
        "nothing left of ours to release"
    );
    sim.stop().await;
}
