//! The simulated kube-scheduler: binding, Unschedulable marks, and the fit checks it honours.

use serde_json::json;

use crate::support::{Cluster, node, node_of, pod, unschedulable_message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_pod_is_bound_to_a_ready_node_it_fits() {
    let cluster = Cluster::with_scheduler().await;
    cluster.add_node(node("small", "1")).await;
    cluster.add_node(node("big", "8")).await;
    let name = cluster.add_pod(pod("web", "2", json!({}))).await;
    assert_eq!(cluster.bound_node(&name).await, "big");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_that_fits_no_node_is_marked_unschedulable() {
    let cluster = Cluster::with_scheduler().await;
    cluster.add_node(node("small", "1")).await;
    let name = cluster.add_pod(pod("huge", "4", json!({}))).await;
    let message = cluster.refusal(&name).await;
    assert!(
        message.starts_with("0/1 nodes are available:"),
        "kube-scheduler's wording: {message}"
    );
    assert!(message.contains("without room"), "says why: {message}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_one_batch_and_bound_pods_share_a_node_capacity() {
    let cluster = Cluster::with_scheduler().await;
    cluster.add_node(node("only", "3")).await;
    let first = cluster.add_pod(pod("first", "1", json!({}))).await;
    assert_eq!(cluster.bound_node(&first).await, "only");
    let mut names = Vec::new();
    for i in 0..3 {
        names.push(
            cluster
                .add_pod(pod(&format!("more-{i}"), "1", json!({})))
                .await,
        );
    }
    let mut bound = 0;
    let mut refused = 0;
    for name in &names {
        let pod = cluster
            .pod_when(name, |pod| {
                node_of(pod).is_some() || unschedulable_message(pod).is_some()
            })
            .await;
        match node_of(&pod) {
            Some(_) => bound += 1,
            None => refused += 1,
        }
    }
    assert_eq!((bound, refused), (2, 1), "3 cpu hold three 1-cpu pods");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_or_cordoned_nodes_take_nothing() {
    let cluster = Cluster::with_scheduler().await;
    cluster.add_node(node("booting", "8").not_ready()).await;
    cluster.add_node(node("draining", "8").cordoned()).await;
    let name = cluster.add_pod(pod("web", "1", json!({}))).await;
    let message = cluster.refusal(&name).await;
    assert_eq!(
        message,
        "0/2 nodes are available: 1 node(s) were not ready; 1 node(s) were unschedulable."
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pod_is_bound_once_a_node_that_fits_is_ready() {
    let cluster = Cluster::with_scheduler().await;
    let name = cluster.add_pod(pod("web", "1", json!({}))).await;
    let message = cluster.refusal(&name).await;
    assert!(message.starts_with("0/0 nodes"), "{message}");
    cluster.add_node(node("late", "2")).await;
    assert_eq!(cluster.bound_node(&name).await, "late");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tainted_node_takes_only_tolerating_pods() {
    let cluster = Cluster::with_scheduler().await;
    cluster
        .add_node(node("gpu", "8").tainted("nvidia.com/gpu", "true"))
        .await;
    let plain = cluster.add_pod(pod("plain", "1", json!({}))).await;
    let tolerating = cluster
        .add_pod(pod(
            "trainer",
            "1",
            json!({"tolerations": [{"key": "nvidia.com/gpu", "operator": "Equal",
                "value": "true", "effect": "NoSchedule"}]}),
        ))
        .await;
    assert_eq!(cluster.bound_node(&tolerating).await, "gpu");
    let message = cluster.refusal(&plain).await;
    assert!(message.contains("taint"), "{message}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_is_honoured() {
    let cluster = Cluster::with_scheduler().await;
    cluster
        .add_node(node("amd", "8").label("kubernetes.io/arch", "amd64"))
        .await;
    cluster
        .add_node(node("arm", "8").label("kubernetes.io/arch", "arm64"))
        .await;
    let arm = cluster
        .add_pod(pod(
            "arm-app",
            "1",
            json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}),
        ))
        .await;
    let nowhere = cluster
        .add_pod(pod(
            "s390-app",
            "1",
            json!({"nodeSelector": {"kubernetes.io/arch": "s390x"}}),
        ))
        .await;
    assert_eq!(cluster.bound_node(&arm).await, "arm");
    let message = cluster.refusal(&nowhere).await;
    assert!(message.starts_with("0/2 nodes"), "{message}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_another_scheduler_are_left_alone() {
    let cluster = Cluster::with_scheduler().await;
    cluster.add_node(node("any", "8")).await;
    let foreign = cluster
        .add_pod(pod(
            "foreign",
            "1",
            json!({"schedulerName": "my-scheduler"}),
        ))
        .await;
    let ours = cluster.add_pod(pod("ours", "1", json!({}))).await;
    assert_eq!(cluster.bound_node(&ours).await, "any");
    // Passes run one after another: once a later pod is bound, the pass that saw both
    // `foreign` and `ours` has finished all its writes.
    let later = cluster.add_pod(pod("later", "1", json!({}))).await;
    assert_eq!(cluster.bound_node(&later).await, "any");
    let pod = cluster.pods().get(&foreign).await.expect("the pod");
    assert_eq!(node_of(&pod), None);
    assert_eq!(unschedulable_message(&pod), None);
    cluster.stop().await;
}
