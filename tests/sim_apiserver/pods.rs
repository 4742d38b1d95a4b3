//! Pod subresources and scale: binding, eviction under PodDisruptionBudgets, deployments/scale.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Binding, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Error;
use kube::api::{Api, EvictParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::{
    api_error, bound_pod, client, create_pod, immediate, pod, server, server_with,
};

fn binding(pod: &str, node: &str) -> Binding {
    serde_json::from_value(json!({
        "metadata": {"name": pod},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }))
    .expect("a binding")
}

async fn bind(pods: &Api<Pod>, pod: &str, node: &str) -> Result<Value, Error> {
    pods.create_subresource::<Binding, Value>(
        "binding",
        pod,
        &PostParams::default(),
        &binding(pod, node),
    )
    .await
}

#[tokio::test]
async fn binding_sets_node_name_and_marks_the_pod_scheduled() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, pod("web", json!({}))).await;
    bind(&pods, "web", "node-1").await.expect("bound");
    let bound = pods.get("web").await.expect("the pod");
    assert_eq!(
        bound.spec.and_then(|spec| spec.node_name).as_deref(),
        Some("node-1")
    );
    let scheduled = bound
        .status
        .and_then(|status| status.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|condition| condition.type_ == "PodScheduled")
        .map(|condition| condition.status);
    assert_eq!(scheduled.as_deref(), Some("True"));
}

#[tokio::test]
async fn binding_an_already_bound_pod_is_a_conflict() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, pod("web", json!({}))).await;
    bind(&pods, "web", "node-1").await.expect("bound");
    assert_eq!(
        api_error(bind(&pods, "web", "node-2").await),
        (409, "Conflict".into())
    );
}

#[tokio::test]
async fn updates_may_not_move_a_pod_to_another_node() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, bound_pod("web", "node-1", json!({}))).await;
    let moved = json!({"spec": {"nodeName": "node-2"}});
    let outcome = pods
        .patch("web", &PatchParams::default(), &Patch::Merge(moved))
        .await;
    assert_eq!(api_error(outcome), (422, "Invalid".into()));
}

/// Pods labelled app=web, bound to a node, Running and Ready (what a budget counts as
/// healthy), owned by a deployment `web` of as many replicas.
async fn healthy_pods(client: &kube::Client, count: usize) {
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": count, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "pause:3.9"}]}}},
    }))
    .expect("a deployment");
    let deployment = deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("created");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for index in 0..count {
        let name = format!("web-{index}");
        let mut owned = bound_pod(&name, "node-1", json!({"app": "web"}));
        owned.metadata.owner_references = Some(vec![
            serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                "uid": deployment.metadata.uid, "controller": true,
            }))
            .expect("an owner reference"),
        ]);
        create_pod(&pods, owned).await;
        let status = json!({"status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]}});
        pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .expect("status set");
    }
}

async fn budget(client: &kube::Client, spec: Value) {
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(client.clone());
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": "web"}});
    let pdb: PodDisruptionBudget =
        serde_json::from_value(json!({"metadata": {"name": "web-pdb"}, "spec": spec}))
            .expect("a PDB");
    pdbs.create(&PostParams::default(), &pdb)
        .await
        .expect("created");
}

#[tokio::test]
async fn eviction_that_breaks_min_available_is_refused_with_429() {
    let server = server_with(immediate).await;
    let client = client(&server);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    healthy_pods(&client, 3).await;
    budget(&client, json!({"minAvailable": 2})).await;
    pods.evict("web-0", &EvictParams::default())
        .await
        .expect("the first eviction is allowed");
    assert_eq!(api_error(pods.get("web-0").await).0, 404);
    let refused = pods.evict("web-1", &EvictParams::default()).await;
    let Err(Error::Api(status)) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (429, "TooManyRequests")
    );
    assert!(
        status.message.contains("web-pdb"),
        "names the budget: {}",
        status.message
    );
    assert!(pods.get("web-1").await.is_ok(), "the pod stays");
}

/// The figures of `web-pdb`'s status: expected, healthy, desired, allowed.
async fn budget_status(client: &kube::Client) -> (i32, i32, i32, i32, String) {
    let pdb = Api::<PodDisruptionBudget>::default_namespaced(client.clone())
        .get("web-pdb")
        .await
        .expect("the budget is there");
    let status = pdb.status.expect("the budget has a status");
    let condition = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "DisruptionAllowed")
        .expect("a DisruptionAllowed condition");
    (
        status.expected_pods,
        status.current_healthy,
        status.desired_healthy,
        status.disruptions_allowed,
        condition.status,
    )
}

#[tokio::test]
async fn a_budget_status_follows_its_pods_as_the_disruption_controller_writes_it() {
    let server = server_with(immediate).await;
    let client = client(&server);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    healthy_pods(&client, 3).await;
    budget(&client, json!({"minAvailable": 2})).await;
    assert_eq!(budget_status(&client).await, (3, 3, 2, 1, "True".into()));
    pods.evict("web-0", &EvictParams::default())
        .await
        .expect("allowed");
    assert_eq!(budget_status(&client).await, (3, 2, 2, 0, "False".into()));
    // A pod that stops being Ready stops counting as healthy.
    let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
    pods.patch_status("web-1", &PatchParams::default(), &Patch::Merge(not_ready))
        .await
        .expect("status set");
    assert_eq!(budget_status(&client).await, (3, 1, 2, 0, "False".into()));
    // The expected count follows the owner's replicas.
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .expect("scaled");
    assert_eq!(
        budget_status(&client).await.0,
        5,
        "expected pods follow the replicas"
    );
}

#[tokio::test]
async fn eviction_within_a_max_unavailable_percentage_is_allowed_once() {
    let server = server_with(immediate).await;
    let client = client(&server);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    healthy_pods(&client, 4).await;
    // 25% of the deployment's 4 replicas rounds up to 1 unavailable pod.
    budget(&client, json!({"maxUnavailable": "25%"})).await;
    pods.evict("web-0", &EvictParams::default())
        .await
        .expect("allowed");
    let refused = pods.evict("web-1", &EvictParams::default()).await;
    assert_eq!(api_error(refused), (429, "TooManyRequests".into()));
}

#[tokio::test]
async fn eviction_of_a_terminating_pod_under_budget_keeps_it_terminating() {
    let server = server().await;
    let client = client(&server);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    healthy_pods(&client, 2).await;
    budget(&client, json!({"minAvailable": 1})).await;
    pods.evict("web-0", &EvictParams::default())
        .await
        .expect("allowed");
    let evicted = pods
        .get("web-0")
        .await
        .expect("still terminating on its node");
    assert!(evicted.metadata.deletion_timestamp.is_some());
    let refused = pods.evict("web-1", &EvictParams::default()).await;
    assert_eq!(
        api_error(refused).0,
        429,
        "a terminating pod is no longer healthy"
    );
}

#[tokio::test]
async fn eviction_without_a_budget_deletes_the_pod() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, pod("lonely", json!({}))).await;
    pods.evict("lonely", &EvictParams::default())
        .await
        .expect("evicted");
    assert_eq!(api_error(pods.get("lonely").await).0, 404);
    assert_eq!(
        api_error(pods.evict("lonely", &EvictParams::default()).await).0,
        404
    );
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_replicas() {
    let server = server().await;
    let deployments: Api<Deployment> = Api::default_namespaced(client(&server));
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "inflate"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "inflate"}},
            "template": {"metadata": {"labels": {"app": "inflate"}},
                "spec": {"containers": [{"name": "app", "image": "pause:3.9"}]}}},
    }))
    .expect("a deployment");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("created");
    let scale = deployments.get_scale("inflate").await.expect("a scale");
    assert_eq!(scale.spec.and_then(|spec| spec.replicas), Some(0));
    assert_eq!(
        scale.status.map(|status| status.selector),
        Some(Some("app=inflate".into()))
    );
    let patch = json!({"spec": {"replicas": 4}});
    deployments
        .patch_scale("inflate", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("scaled");
    let scaled = deployments.get("inflate").await.expect("the deployment");
    assert_eq!(scaled.spec.and_then(|spec| spec.replicas), Some(4));
    assert_eq!(scaled.metadata.generation, Some(2));
}
