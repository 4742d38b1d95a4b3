//! Nodes leave in order: cordoned, drained within disruption budgets, terminated, then removed.

use kube::ResourceExt;
use nodewright_scheduling::labels;
use serde_json::json;

use crate::support::{self, SCHEDULER_AGENT, Sim, label, node_of, provisioner};

/// A cluster with four unschedulable one-cpu pods and a provisioner whose empty nodes go after
/// 30 s.
async fn four_pods_waiting_under_a_ttl() -> Sim {
    let sim = Sim::start().await;
    sim.apply_provisioner(provisioner("default", json!({"ttlSecondsAfterEmpty": 30})))
        .await;
    sim.add_pods("inflate", 4, "1", json!({})).await;
    sim.unschedulable_pods(4).await;
    sim
}

async fn initialized_node(sim: &Sim) -> k8s_openapi::api::core::v1::Node {
    sim.eventually("the node is initialized", || async {
        sim.nodes()
            .await
            .into_iter()
            .find(|n| label(n, labels::INITIALIZED).as_deref() == Some("true"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_node_is_cordoned_drained_terminated_and_removed_after_its_ttl() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams};

    let sim = four_pods_waiting_under_a_ttl().await;
    let controller = sim.controller();
    sim.running_pods(4).await;
    let node = initialized_node(&sim).await;
    let node_name = node.metadata.name.clone().unwrap_or_default();
    // A busy node is never marked empty.
    sim.wait(std::time::Duration::from_secs(40)).await;
    let busy = sim.nodes().await;
    assert!(
        busy.iter()
            .all(|n| !n.annotations().contains_key(labels::EMPTINESS_TIMESTAMP)),
        "a node running pods carries no emptiness timestamp"
    );
    let pods: Api<Pod> = Api::default_namespaced(sim.client.clone());
    for i in 0..4 {
        pods.delete(&format!("inflate-{i}"), &DeleteParams::default())
            .await
            .expect("the pod is deleted");
    }
    let marked = sim
        .eventually("the empty node gets its timestamp", || async {
            sim.nodes()
                .await
                .into_iter()
                .find(|n| n.annotations().contains_key(labels::EMPTINESS_TIMESTAMP))
        })
        .await;
    assert_eq!(marked.metadata.name.as_deref(), Some(node_name.as_str()));
    sim.eventually("the node is gone", || async {
        sim.nodes().await.is_empty().then_some(())
    })
    .await;
    assert!(
        sim.instances().await.is_empty(),
        "the instance is terminated"
    );
    sim.eventually("the machine is gone", || async {
        sim.machines().await.is_empty().then_some(())
    })
    .await;
    let terminated = sim
        .metric(
            &controller.metrics,
            "karpenter_nodes_terminated",
            "provisioner=\"default\"",
        )
        .await;
    assert_eq!(terminated, 1.0);
    controller.stop().await;
    sim.stop().await;
}

/// A big scale-up can keep the kube-scheduler busy for minutes; the node launched for its pods
/// waits for them instead of being found empty, removed, and launched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_is_not_found_empty_while_the_pods_launched_for_it_wait_to_be_bound() {
    let sim = four_pods_waiting_under_a_ttl().await;
    // From now on the kube-scheduler binds nothing.
    sim.server
        .fail_requests_from(SCHEDULER_AGENT, "create", "pods", usize::MAX);
    let controller = sim.controller();
    let node = initialized_node(&sim).await;
    // Well past the grace after initialization (20 s) and the TTL (30 s).
    sim.wait(std::time::Duration::from_secs(120)).await;
    let nodes = sim.nodes().await;
    assert_eq!(nodes.len(), 1, "the node is still there");
    assert!(
        !nodes[0]
            .annotations()
            .contains_key(labels::EMPTINESS_TIMESTAMP),
        "a node whose pods are on their way is not empty"
    );
    assert_eq!(
        sim.pods()
            .await
            .iter()
            .filter(|p| node_of(p).is_some())
            .count(),
        0,
        "no pod was bound meanwhile"
    );

    sim.server.clear_faults();
    let running = sim.running_pods(4).await;
    assert!(
        running.iter().all(|p| node_of(p) == node.metadata.name),
        "the pods run on the node launched for them"
    );
    assert_eq!(
        sim.cloud.all_instances().len(),
        1,
        "nothing was launched twice"
    );
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_node_gets_its_replacement_first_and_its_drain_respects_the_pdb() {
    deleted_node_is_drained_within_its_pdb(false).await;
}

/// A kubelet that stops reporting is no reason to take pods down without their budget: only
/// a gone instance skips the drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_not_ready_node_is_still_drained_within_its_pdb() {
    deleted_node_is_drained_within_its_pdb(true).await;
}

async fn deleted_node_is_drained_within_its_pdb(not_ready: bool) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, DeleteParams};

    let sim = Sim::start().await;
    sim.apply_provisioner(provisioner("default", json!({})))
        .await;
    sim.add_deployment("web", 2, "1").await;
    sim.unschedulable_pods(2).await;
    let controller = sim.controller();
    let running = sim.running_pods(2).await;
    let old_node = node_of(&running[0]).expect("bound");
    let old_instance = sim
        .nodes()
        .await
        .into_iter()
        .find(|n| n.metadata.name.as_deref() == Some(old_node.as_str()))
        .and_then(|n| n.spec?.provider_id)
        .expect("the node has a provider id");
    sim.add_pdb("web", 1).await;

    // Watch the number of running web pods from now on.
    let fewest = Arc::new(AtomicUsize::new(usize::MAX));
    let watcher = {
        let fewest = fewest.clone();
        let client = sim.client.clone();
        tokio::spawn(async move {
            let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::default_namespaced(client);
            loop {
                if let Ok(list) = pods.list(&Default::default()).await {
                    let ready = list
                        .items
                        .iter()
                        .filter(|p| {
                            support::phase(p) == "Running"
                                && p.metadata.deletion_timestamp.is_none()
                        })
                        .count();
                    fewest.fetch_min(ready, Ordering::SeqCst);
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
    };

    let nodes: Api<Node> = Api::all(sim.client.clone());
    if not_ready {
        let status = json!({"status": {"conditions": [
            {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}
        ]}});
        nodes
            .patch_status(
                &old_node,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(status),
            )
            .await
            .expect("the node goes NotReady");
    }
    nodes
        .delete(&old_node, &DeleteParams::default())
        .await
        .expect("the node is marked for deletion");
    sim.eventually("a replacement machine is created", || async {
        (sim.machines().await.len() >= 2).then_some(())
    })
    .await;
    assert!(
        sim.nodes()
            .await
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(old_node.as_str())),
        "the replacement is launched while the old node still exists"
    );
    sim.eventually(
        "the old node is gone and both pods run elsewhere",
        || async {
            let gone = !sim
                .nodes()
                .await
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some(old_node.as_str()));
            let elsewhere = sim
                .pods()
                .await
                .iter()
                .filter(|p| {
                    support::phase(p) == "Running" && node_of(p).is_some_and(|n| n != old_node)
                })
                .count();
            (gone && elsewhere == 2).then_some(())
        },
    )
    .await;
    watcher.abort();
    assert!(
        fewest.load(Ordering::SeqCst) >= 1,
        "the PDB (minAvailable 1) was never broken"
    );
    // Karpenter's events: each pod says it was evicted, the node that its drain waited.
    for pod in &running {
        let name = pod.metadata.name.clone().unwrap_or_default();
        sim.eventually("an Evicted event on the pod", || async {
            support::events_about(&sim.client, &name)
                .await
                .contains(&("Evicted".to_string(), "Evicted pod".to_string()))
                .then_some(())
        })
        .await;
    }
    sim.eventually("a FailedDraining event on the node", || async {
        support::events_about(&sim.client, &old_node)
            .await
            .iter()
            .any(|(reason, message)| {
                reason == "FailedDraining" && message.contains("pods are waiting to be evicted")
            })
            .then_some(())
    })
    .await;
    // One replacement usually, two when the drain's first eviction beat the replacement's
    // batch (its pod then waits apart): either way the old instance is gone.
    assert!(
        !sim.instances()
            .await
            .iter()
            .any(|i| i.provider_id == old_instance),
        "the old instance is terminated"
    );
    controller.stop().await;
    sim.stop().await;
}
