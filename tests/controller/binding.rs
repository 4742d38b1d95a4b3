//! Early binding (BIND_PODS): pods bound to the node the moment its object exists.

use kube::ResourceExt;
use nodewright_scheduling::labels;
use serde_json::json;

use crate::support::{self, Sim, label, node_of, provisioner};

fn bind_pods() -> nodewright::settings::Settings {
    let mut settings = support::settings();
    settings.bind_pods = true;
    settings
}

fn is_ready(node: &k8s_openapi::api::core::v1::Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_bind_pods_the_pods_are_bound_to_their_node_before_it_is_ready() {
    // No kubelet yet: the instance boots for as long as the test looks.
    let mut sim = Sim::without_kubelets().await;
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.add_deployment("inflate", 4, "1").await;
    sim.unschedulable_pods(4).await;
    let controller = sim.controller_with_settings(bind_pods());
    let node = sim
        .eventually("the four pods are bound early", || async {
            let pods = sim.pods().await;
            let nodes: std::collections::BTreeSet<String> =
                pods.iter().filter_map(node_of).collect();
            (pods.len() == 4 && pods.iter().all(|p| node_of(p).is_some()) && nodes.len() == 1)
                .then(|| nodes.into_iter().next().unwrap_or_default())
        })
        .await;
    let early = sim
        .nodes()
        .await
        .into_iter()
        .find(|n| n.metadata.name.as_deref() == Some(node.as_str()))
        .expect("the node object exists");
    assert!(!is_ready(&early), "bound while its instance still boots");
    assert!(
        early
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .iter()
            .any(|t| t.key == labels::TAINT_NOT_READY),
        "tainted not-ready until the kubelet takes over"
    );
    // The instance finishes booting: its kubelet adopts the node the pods were bound to.
    sim.start_kubelets();
    let running = sim.running_pods(4).await;
    assert!(
        running
            .iter()
            .all(|p| node_of(p).as_deref() == Some(node.as_str()))
    );
    let adopted = sim
        .nodes()
        .await
        .into_iter()
        .find(|n| n.metadata.name.as_deref() == Some(node.as_str()))
        .expect("the kubelet adopted the node");
    assert!(is_ready(&adopted));
    assert_eq!(
        label(&adopted, labels::PROVISIONER_NAME).as_deref(),
        Some("default"),
        "labels kept"
    );
    assert_eq!(sim.instances().await.len(), 1);
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_bound_early_to_a_node_that_never_comes_are_recreated_elsewhere() {
    let mut sim = Sim::without_kubelets().await;
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.add_deployment("web", 2, "1").await;
    sim.unschedulable_pods(2).await;
    let controller = sim.controller_with_settings(bind_pods());
    let doomed = sim
        .eventually("the pods are bound early", || async {
            let pods = sim.pods().await;
            (pods.len() == 2 && pods.iter().all(|p| node_of(p).is_some()))
                .then(|| node_of(&pods[0]).unwrap_or_default())
        })
        .await;
    // The instance dies before its kubelet ever starts; the replacement's will.
    for instance in sim.instances().await {
        sim.cloud.reclaim(&instance.instance_id);
    }
    sim.start_kubelets();
    sim.eventually("both pods run on another node", || async {
        let pods = sim.pods().await;
        let elsewhere = pods
            .iter()
            .filter(|p| support::phase(p) == "Running" && node_of(p).is_some_and(|n| n != doomed))
            .count();
        (elsewhere == 2).then_some(())
    })
    .await;
    sim.eventually("the node that never came is gone", || async {
        (!sim
            .nodes()
            .await
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(doomed.as_str())))
        .then_some(())
    })
    .await;
    let events = sim
        .eventually("the deleted pods say why", || async {
            let events: kube::Api<k8s_openapi::api::core::v1::Event> =
                kube::Api::all(sim.client.clone());
            let list = events.list(&Default::default()).await.ok()?;
            let why: Vec<String> = list
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("NodeNeverRegistered"))
                .filter_map(|e| e.message)
                .collect();
            (why.len() == 2).then_some(why)
        })
        .await;
    assert!(events.iter().all(|m| m.contains(&doomed)), "{events:?}");
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_pods_are_not_bound_early() {
    let sim = Sim::start().await;
    let controller = sim.controller_with_settings(bind_pods());
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.add_pods("bare", 2, "1", json!({})).await;
    // Whenever a bare pod is bound, its node is already Ready: the kube-scheduler bound it.
    let bound_to_ready = sim
        .eventually("the bare pods are bound", || async {
            let pods = sim.pods().await;
            if !pods.iter().all(|p| node_of(p).is_some()) {
                return None;
            }
            let nodes = sim.nodes().await;
            Some(pods.iter().all(|p| {
                nodes
                    .iter()
                    .any(|n| n.metadata.name == node_of(p) && is_ready(n))
            }))
        })
        .await;
    assert!(bound_to_ready);
    assert!(
        sim.nodes()
            .await
            .iter()
            .all(|n| !n.annotations().contains_key(labels::BOUND_EARLY)),
        "no node object was created ahead of its kubelet"
    );
    controller.stop().await;
    sim.stop().await;
}
