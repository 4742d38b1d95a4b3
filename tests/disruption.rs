//! The disruption loop end to end against the simulated cluster: consolidation makes the
//! cluster cheaper when load shrinks and respects do-not-evict and do-not-consolidate; expiry
//! and drift replace nodes, the new capacity first, without losing a pod.

// Shared with tests/controller.rs; this file uses part of it.
#[allow(dead_code)]
#[path = "controller/support.rs"]
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use nodewright::apis::Provisioner;
use nodewright::cloudprovider::DriftReason;
use nodewright_scheduling::labels;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::{Controller, Sim, events_about, label, metric_value, node_of, phase};

/// An on-demand provisioner (so a node can be replaced by a cheaper one without the
/// spot-to-spot gate), with `spec` merged in.
fn on_demand(spec: Value) -> Value {
    let mut spec_with = json!({
        "requirements": [{"key": labels::CAPACITY_TYPE, "operator": "In", "values": ["on-demand"]}],
    });
    if let (Some(into), Value::Object(extra)) = (spec_with.as_object_mut(), spec) {
        into.extend(extra);
    }
    support::provisioner("default", spec_with)
}

/// A Deployment of `replicas` pods requesting `cpu`, with `annotations` on its pods.
async fn deployment(sim: &Sim, name: &str, replicas: i32, cpu: &str, annotations: Value) {
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app",
                    "image": "public.ecr.aws/eks-distro/kubernetes/pause:3.7",
                    "resources": {"requests": {"cpu": cpu}}}]},
            },
        },
    }))
    .expect("a valid deployment");
    Api::<Deployment>::default_namespaced(sim.client.clone())
        .create(&PostParams::default(), &deployment)
        .await
        .expect("the deployment is created");
}

async fn scale(sim: &Sim, name: &str, replicas: i32) {
    Api::<Deployment>::default_namespaced(sim.client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .expect("the deployment scales");
}

/// Running pods of deployment `app`, not being deleted.
async fn running(sim: &Sim, app: &str) -> Vec<Pod> {
    sim.pods()
        .await
        .into_iter()
        .filter(|p| label(p, "app").as_deref() == Some(app))
        .filter(|p| phase(p) == "Running" && p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Waits until exactly `count` pods of `app` run; returns the nodes they run on.
async fn settled_on(sim: &Sim, app: &str, count: usize) -> BTreeSet<String> {
    sim.eventually(&format!("{count} {app} pods running"), || async {
        let pods = running(sim, app).await;
        (pods.len() == count).then(|| pods.iter().filter_map(node_of).collect())
    })
    .await
}

/// Nodes nodewright launched that are not being deleted.
async fn live_nodes(sim: &Sim) -> Vec<Node> {
    sim.nodes()
        .await
        .into_iter()
        .filter(|n| label(n, labels::PROVISIONER_NAME).is_some())
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .collect()
}

fn cost_per_hour(controller: &Controller) -> Option<f64> {
    metric_value(
        &controller.metrics.encode().expect("metrics encode"),
        "nodewright_provisioner_cost_per_hour",
        "capacity_type=\"on-demand\"",
    )
}

/// The value of a metric without labels.
fn unlabeled(controller: &Controller, name: &str) -> Option<f64> {
    let text = controller.metrics.encode().expect("metrics encode");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Records the fewest running pods of `app` seen from now on.
fn watch_fewest(client: Client, app: &'static str) -> (Arc<AtomicUsize>, JoinHandle<()>) {
    let fewest = Arc::new(AtomicUsize::new(usize::MAX));
    let task = {
        let fewest = fewest.clone();
        tokio::spawn(async move {
            let pods: Api<Pod> = Api::default_namespaced(client);
            loop {
                if let Ok(list) = pods.list(&Default::default()).await {
                    let up = list
                        .items
                        .iter()
                        .filter(|p| label(*p, "app").as_deref() == Some(app))
                        .filter(|p| {
                            phase(p) == "Running" && p.metadata.deletion_timestamp.is_none()
                        })
                        .count();
                    fewest.fetch_min(up, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    (fewest, task)
}

async fn node_events(sim: &Sim, node: &str, reason: &str) -> Vec<String> {
    events_about(&sim.client, node)
        .await
        .into_iter()
        .filter(|(r, _)| r == reason)
        .map(|(_, message)| message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_node_is_replaced_with_a_cheaper_type_when_load_shrinks() {
    let sim = Sim::start().await;
    sim.apply_provisioner(on_demand(json!({"consolidation": {"enabled": true}})))
        .await;
    deployment(&sim, "web", 6, "1", json!({})).await;
    // One burst, one batch: the controller starts once all six wait.
    sim.unschedulable_pods(6).await;
    let controller = sim.controller();
    let before = settled_on(&sim, "web", 6).await;
    let [old] = <[String; 1]>::try_from(before.into_iter().collect::<Vec<_>>())
        .expect("six 1-cpu pods share one node");
    let old_type = sim
        .nodes()
        .await
        .iter()
        .find(|n| n.name_any() == old)
        .and_then(|n| label(n, labels::INSTANCE_TYPE))
        .expect("the node's instance type");
    let cost_before = sim
        .eventually("the node is priced", || async {
            cost_per_hour(&controller).filter(|c| *c > 0.0)
        })
        .await;

    scale(&sim, "web", 1).await;
    let new = sim
        .eventually("the pod moves to a replacement node", || async {
            let nodes = settled_on(&sim, "web", 1).await;
            let node = nodes.into_iter().next()?;
            let gone = !sim.nodes().await.iter().any(|n| n.name_any() == old);
            (node != old && gone).then_some(node)
        })
        .await;
    let new_type = sim
        .nodes()
        .await
        .iter()
        .find(|n| n.name_any() == new)
        .and_then(|n| label(n, labels::INSTANCE_TYPE))
        .expect("the replacement's instance type");
    assert_ne!(new_type, old_type, "never replaced with the same type");
    let cost_after = sim
        .eventually("the cost per hour goes down", || async {
            cost_per_hour(&controller).filter(|c| *c > 0.0 && *c < cost_before)
        })
        .await;
    assert!(
        cost_after < cost_before * 0.9,
        "{cost_after} vs {cost_before}"
    );
    let replaced = sim
        .metric(
            &controller.metrics,
            "karpenter_deprovisioning_actions_performed",
            "action=\"consolidation/replace\",deprovisioner=\"consolidation\"",
        )
        .await;
    assert_eq!(replaced, 1.0);
    let saved = sim
        .eventually("the savings gauge", || async {
            unlabeled(&controller, "nodewright_consolidation_savings_per_hour")
        })
        .await;
    assert!(
        (saved - (cost_before - cost_after)).abs() < 1e-6,
        "saved {saved} of {cost_before} → {cost_after}"
    );
    let terminated = sim
        .metric(
            &controller.metrics,
            "karpenter_nodes_terminated",
            "provisioner=\"default\"",
        )
        .await;
    assert_eq!(terminated, 1.0);

    // Settled: the cheaper node stays (no churn back and forth).
    let machines: BTreeSet<String> = sim.machines().await.iter().map(|m| m.name_any()).collect();
    sim.wait(Duration::from_secs(60)).await;
    let later: BTreeSet<String> = sim.machines().await.iter().map(|m| m.name_any()).collect();
    assert!(
        later.is_subset(&machines),
        "no further replacement: {later:?} after {machines:?}"
    );
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_left_half_empty_become_one() {
    let sim = Sim::start().await;
    sim.apply_provisioner(on_demand(json!({"consolidation": {"enabled": true}})))
        .await;
    // Two bursts: a node each, the second's more than one if a slow machine split its batch.
    deployment(&sim, "a", 3, "1", json!({})).await;
    sim.unschedulable_pods(3).await;
    let controller = sim.controller();
    settled_on(&sim, "a", 3).await;
    deployment(&sim, "b", 3, "1", json!({})).await;
    settled_on(&sim, "b", 3).await;
    let nodes = live_nodes(&sim).await.len();
    assert!(nodes >= 2, "{nodes} node(s) for two bursts");
    let cost_before = sim
        .eventually("both nodes are priced", || async {
            cost_per_hour(&controller).filter(|c| *c > 0.0)
        })
        .await;

    scale(&sim, "a", 1).await;
    scale(&sim, "b", 1).await;
    sim.eventually("one node runs both pods", || async {
        let nodes = live_nodes(&sim).await;
        let a = settled_on(&sim, "a", 1).await;
        let b = settled_on(&sim, "b", 1).await;
        (nodes.len() == 1 && a == b && sim.nodes().await.len() == 1).then_some(())
    })
    .await;
    sim.eventually("the cost per hour goes down", || async {
        cost_per_hour(&controller).filter(|c| *c > 0.0 && *c < cost_before)
    })
    .await;
    controller.stop().await;
    sim.stop().await;
}

/// The DeprovisioningTerminating Events on `node`, once there are any (a background task
/// writes Events after the action they describe).
async fn terminating_events(sim: &Sim, node: &str) -> Vec<String> {
    sim.eventually("the node says why it goes", || async {
        let events = node_events(sim, node, "DeprovisioningTerminating").await;
        (!events.is_empty()).then_some(events)
    })
    .await
}

/// Shrinks a one-node deployment to one pod and waits for the blocked Event on its node.
async fn blocked_consolidation(sim: &Sim, node: &str, why: &str) {
    scale(sim, "web", 1).await;
    settled_on(sim, "web", 1).await;
    let message = sim
        .eventually("the node says why it stays", || async {
            node_events(sim, node, "DeprovisioningBlocked")
                .await
                .into_iter()
                .find(|m| m.contains(why))
        })
        .await;
    assert!(
        message.starts_with("Cannot disrupt node (consolidation): "),
        "{message}"
    );
    // Two more passes, validation included: still nothing launched or deleted.
    sim.wait(Duration::from_secs(40)).await;
    assert_eq!(sim.machines().await.len(), 1, "no replacement launched");
    let nodes = live_nodes(sim).await;
    assert!(nodes.iter().any(|n| n.name_any() == node), "the node stays");
}

/// Six 1-cpu `web` pods (with these annotations, and a budget keeping one when `budget`) on
/// one node of a provisioner that consolidates; returns the controller and the node.
async fn six_web_pods_on_one_node(
    sim: &Sim,
    annotations: Value,
    budget: bool,
) -> (Controller, String) {
    sim.apply_provisioner(on_demand(json!({"consolidation": {"enabled": true}})))
        .await;
    deployment(sim, "web", 6, "1", annotations).await;
    if budget {
        sim.add_pdb("web", 1).await;
    }
    sim.unschedulable_pods(6).await;
    let controller = sim.controller();
    let node = settled_on(sim, "web", 6)
        .await
        .into_iter()
        .next()
        .expect("a node");
    (controller, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_do_not_evict_pod_keeps_its_node() {
    let sim = Sim::start().await;
    let (controller, node) =
        six_web_pods_on_one_node(&sim, json!({labels::DO_NOT_EVICT: "true"}), false).await;
    blocked_consolidation(&sim, &node, "karpenter.sh/do-not-evict").await;
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_do_not_consolidate_node_stays() {
    let sim = Sim::start().await;
    let (controller, node) = six_web_pods_on_one_node(&sim, json!({}), false).await;
    Api::<Node>::all(sim.client.clone())
        .patch(
            &node,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {labels::DO_NOT_CONSOLIDATE: "true"}}}),
            ),
        )
        .await
        .expect("the node is annotated");
    blocked_consolidation(&sim, &node, "karpenter.sh/do-not-consolidate").await;
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_with_no_disruption_left_keeps_its_node() {
    let sim = Sim::start().await;
    let (controller, node) = six_web_pods_on_one_node(&sim, json!({}), true).await;
    // One pod left and a budget keeping one: moving it to a cheaper node would break the budget.
    blocked_consolidation(&sim, &node, "allows no disruption of pod").await;
    controller.stop().await;
    sim.stop().await;
}

/// Runs `web` (two 1-cpu pods, a PDB keeping one) and a controller started once both wait (one
/// batch); returns the controller and the pods' node.
/// The test controller's settings with drift on (off by default, as in Karpenter v0.31).
fn drift_on() -> nodewright::settings::Settings {
    let mut settings = crate::support::settings();
    settings.feature_gates.drift = true;
    settings
}

async fn two_guarded_pods(sim: &Sim) -> (Controller, String) {
    deployment(sim, "web", 2, "1", json!({})).await;
    sim.add_pdb("web", 1).await;
    sim.unschedulable_pods(2).await;
    let controller = sim.controller_with_settings(drift_on());
    let nodes = settled_on(sim, "web", 2).await;
    assert_eq!(nodes.len(), 1);
    (controller, nodes.into_iter().next().expect("a node"))
}

/// Waits until `old` is gone and `web`'s two pods run on one other node; returns it.
async fn replaced(sim: &Sim, old: &str) -> String {
    sim.eventually("both pods run on the replacement", || async {
        let nodes = settled_on(sim, "web", 2).await;
        let gone = !sim.nodes().await.iter().any(|n| n.name_any() == old);
        let node = nodes.iter().next()?.clone();
        (gone && nodes.len() == 1 && node != old).then_some(node)
    })
    .await
}

/// Watches the nodes until `old` is marked for deletion; true when another initialized node
/// existed by then.
async fn replacement_came_first(sim: &Sim, old: &str) -> bool {
    sim.eventually("the old node is marked for deletion", || async {
        let nodes = sim.nodes().await;
        let deleting = nodes
            .iter()
            .any(|n| n.name_any() == old && n.metadata.deletion_timestamp.is_some());
        deleting.then(|| {
            nodes.iter().any(|n| {
                n.name_any() != old && label(n, labels::INITIALIZED).as_deref() == Some("true")
            })
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_node_is_replaced_without_losing_a_pod() {
    let sim = Sim::start().await;
    sim.apply_provisioner(on_demand(json!({"ttlSecondsUntilExpired": 300})))
        .await;
    let (controller, old) = two_guarded_pods(&sim).await;
    let (fewest, watcher) = watch_fewest(sim.client.clone(), "web");

    assert!(
        replacement_came_first(&sim, &old).await,
        "the replacement is initialized before the expired node is deleted"
    );
    let new = replaced(&sim, &old).await;
    watcher.abort();
    assert_ne!(new, old);
    assert!(
        fewest.load(Ordering::SeqCst) >= 1,
        "a web pod ran throughout"
    );
    let replaced = sim
        .metric(
            &controller.metrics,
            "karpenter_deprovisioning_actions_performed",
            "action=\"expiration/replace\",deprovisioner=\"expiration\"",
        )
        .await;
    assert_eq!(replaced, 1.0);
    let events = terminating_events(&sim, &old).await;
    assert!(
        events
            .iter()
            .any(|m| m.starts_with("Expiring: replacing node ")
                && m.contains("ttlSecondsUntilExpired 300")),
        "{events:?}"
    );
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_drifts_when_its_provisioner_labels_change() {
    let sim = Sim::start().await;
    sim.apply_provisioner(on_demand(json!({"labels": {"team": "a"}})))
        .await;
    let (controller, old) = two_guarded_pods(&sim).await;

    Api::<Provisioner>::all(sim.client.clone())
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"labels": {"team": "b"}}})),
        )
        .await
        .expect("the provisioner changes");
    assert!(replacement_came_first(&sim, &old).await);
    let new = replaced(&sim, &old).await;
    let team = sim
        .nodes()
        .await
        .iter()
        .find(|n| n.name_any() == new)
        .and_then(|n| label(n, "team"));
    assert_eq!(
        team.as_deref(),
        Some("b"),
        "the replacement has the new labels"
    );
    let replaced = sim
        .metric(
            &controller.metrics,
            "karpenter_deprovisioning_actions_performed",
            "action=\"drift/replace\",deprovisioner=\"drift\"",
        )
        .await;
    assert_eq!(replaced, 1.0);
    controller.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_drifts_when_its_ami_changes() {
    let sim = Sim::start().await;
    sim.apply_provisioner(on_demand(json!({}))).await;
    deployment(&sim, "web", 2, "1", json!({})).await;
    sim.unschedulable_pods(2).await;
    let controller = sim.controller_with_settings(drift_on());
    // The template moves to a new image before the node has even registered.
    let instance = sim
        .eventually("an instance is launched", || async {
            sim.instances().await.into_iter().next()
        })
        .await;
    sim.cloud.set_drifted(
        &instance.instance_id,
        DriftReason::Ami {
            instance: instance.image_id.clone().unwrap_or_default(),
            current: vec!["ami-new".to_string()],
        },
    );
    let old = settled_on(&sim, "web", 2)
        .await
        .into_iter()
        .next()
        .expect("a node");
    let new = replaced(&sim, &old).await;
    assert_ne!(new, old);
    let events = terminating_events(&sim, &old).await;
    assert!(
        events
            .iter()
            .any(|m| m.starts_with("Drifted: replacing node ") && m.contains("ami-new")),
        "{events:?}"
    );
    controller.stop().await;
    sim.stop().await;
}
