//! Spec/status split, finalizers, pod grace periods, garbage collection and namespaces.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use nodewright::apis::Provisioner;
use serde_json::json;

use crate::support::{
    api_error, bound_pod, client, create_pod, immediate, pod, server, server_with,
};

fn provisioner() -> Provisioner {
    serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1alpha5", "kind": "Provisioner",
        "metadata": {"name": "default"}, "spec": {"weight": 10, "providerRef": {"name": "default"}},
        "status": {"resources": {"cpu": "4"}},
    }))
    .expect("a provisioner")
}

#[tokio::test]
async fn status_subresource_ignores_spec_changes() {
    let server = server().await;
    let provisioners: Api<Provisioner> = Api::all(client(&server));
    let created = provisioners
        .create(&PostParams::default(), &provisioner())
        .await
        .expect("created");
    assert!(created.status.is_none(), "status is dropped on create");
    let mut body = created.clone();
    body.spec.weight = Some(99);
    body.status = serde_json::from_value(json!({"resources": {"cpu": "8"}})).ok();
    let updated = provisioners
        .replace_status("default", &PostParams::default(), &body)
        .await
        .expect("status replaced");
    assert_eq!(
        updated.spec.weight,
        Some(10),
        "spec is not written through /status"
    );
    let cpu = updated
        .status
        .as_ref()
        .and_then(|status| status.resources.get("cpu"))
        .map(|q| q.0.clone());
    assert_eq!(cpu.as_deref(), Some("8"));
    assert_eq!(updated.metadata.generation, Some(1));
}

#[tokio::test]
async fn main_resource_update_ignores_status() {
    let server = server().await;
    let provisioners: Api<Provisioner> = Api::all(client(&server));
    provisioners
        .create(&PostParams::default(), &provisioner())
        .await
        .expect("created");
    let status = json!({"status": {"resources": {"cpu": "2"}}});
    provisioners
        .patch_status("default", &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("status patched");
    let sneaky = json!({"spec": {"weight": 20}, "status": {"resources": {"cpu": "100"}}});
    let updated = provisioners
        .patch("default", &PatchParams::default(), &Patch::Merge(sneaky))
        .await
        .expect("patched");
    assert_eq!(updated.spec.weight, Some(20));
    let cpu = updated
        .status
        .as_ref()
        .and_then(|status| status.resources.get("cpu"))
        .map(|q| q.0.clone());
    assert_eq!(
        cpu.as_deref(),
        Some("2"),
        "status is only written through /status"
    );
}

#[tokio::test]
async fn deleting_with_finalizer_marks_then_removing_it_deletes() {
    let server = server().await;
    let maps: Api<ConfigMap> = Api::default_namespaced(client(&server));
    let map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
    }))
    .expect("a config map");
    maps.create(&PostParams::default(), &map)
        .await
        .expect("created");
    let outcome = maps
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete accepted");
    let marked = outcome
        .left()
        .expect("still there while the finalizer holds it");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(0));
    let add = json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}});
    let refused = maps
        .patch("held", &PatchParams::default(), &Patch::Merge(add))
        .await;
    assert_eq!(
        api_error(refused),
        (422, "Invalid".into()),
        "no new finalizers while deleting"
    );
    let release = json!({"metadata": {"finalizers": null}});
    maps.patch("held", &PatchParams::default(), &Patch::Merge(release))
        .await
        .expect("finalizer removed");
    assert_eq!(api_error(maps.get("held").await), (404, "NotFound".into()));
}

#[tokio::test]
async fn pod_without_a_node_is_deleted_at_once() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, pod("pending", json!({}))).await;
    let outcome = pods
        .delete("pending", &DeleteParams::default())
        .await
        .expect("deleted");
    assert!(outcome.is_right(), "a Status: the pod is gone");
    assert_eq!(
        api_error(pods.get("pending").await),
        (404, "NotFound".into())
    );
}

#[tokio::test]
async fn pod_on_a_node_terminates_until_its_kubelet_finishes() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, bound_pod("web", "node-1", json!({}))).await;
    let outcome = pods
        .delete("web", &DeleteParams::default())
        .await
        .expect("accepted");
    let terminating = outcome.left().expect("the pod stays while it terminates");
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert!(pods.get("web").await.is_ok());
    assert_eq!(server.finish_pod_deletion("default", "web"), Ok(true));
    assert_eq!(api_error(pods.get("web").await), (404, "NotFound".into()));
}

#[tokio::test]
async fn grace_period_zero_deletes_a_bound_pod_at_once() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, bound_pod("web", "node-1", json!({}))).await;
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    assert!(pods.delete("web", &now).await.expect("deleted").is_right());
}

#[tokio::test]
async fn immediate_termination_setting_removes_bound_pods() {
    let server = server_with(immediate).await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, bound_pod("web", "node-1", json!({}))).await;
    assert!(
        pods.delete("web", &DeleteParams::default())
            .await
            .expect("deleted")
            .is_right()
    );
}

#[tokio::test]
async fn delete_with_a_stale_precondition_is_a_conflict() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, pod("web", json!({}))).await;
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    assert_eq!(
        api_error(pods.delete("web", &params).await),
        (409, "Conflict".into())
    );
}

async fn deployment_with_pods(client: &kube::Client) -> Deployment {
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "inflate"},
        "spec": {"selector": {"matchLabels": {"app": "inflate"}},
            "template": {"metadata": {"labels": {"app": "inflate"}},
                "spec": {"containers": [{"name": "app", "image": "pause:3.9"}]}}},
    }))
    .expect("a deployment");
    let deployment = deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("created");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for index in 0..3 {
        let mut owned = pod(&format!("inflate-{index}"), json!({"app": "inflate"}));
        owned.metadata.owner_references = Some(vec![
            serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "inflate",
                "uid": deployment.metadata.uid, "controller": true,
            }))
            .expect("an owner reference"),
        ]);
        create_pod(&pods, owned).await;
    }
    deployment
}

#[tokio::test]
async fn deleting_a_deployment_removes_its_pods() {
    let server = server().await;
    let client = client(&server);
    deployment_with_pods(&client).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    create_pod(&pods, pod("bystander", json!({"app": "inflate"}))).await;
    let deployments: Api<Deployment> = Api::default_namespaced(client);
    deployments
        .delete("inflate", &DeleteParams::background())
        .await
        .expect("deleted");
    let left: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .expect("listed")
        .items
        .into_iter()
        .filter_map(|pod| pod.metadata.name)
        .collect();
    assert_eq!(
        left,
        ["bystander"],
        "only the pods the deployment owned are collected"
    );
}

#[tokio::test]
async fn orphan_propagation_keeps_dependents_without_their_owner() {
    let server = server().await;
    let client = client(&server);
    deployment_with_pods(&client).await;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    deployments
        .delete("inflate", &DeleteParams::orphan())
        .await
        .expect("deleted");
    let pods: Api<Pod> = Api::default_namespaced(client);
    let left = pods
        .list(&ListParams::default())
        .await
        .expect("listed")
        .items;
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|pod| {
        pod.metadata
            .owner_references
            .clone()
            .unwrap_or_default()
            .is_empty()
    }));
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_contents() {
    let server = server().await;
    let client = client(&server);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let team: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "team"}})).expect("a namespace");
    namespaces
        .create(&PostParams::default(), &team)
        .await
        .expect("created");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team");
    create_pod(&pods, pod("web", json!({}))).await;
    namespaces
        .delete("team", &DeleteParams::default())
        .await
        .expect("deleted");
    assert_eq!(
        api_error(namespaces.get("team").await),
        (404, "NotFound".into())
    );
    let all: Api<Pod> = Api::all(client);
    assert!(
        all.list(&ListParams::default())
            .await
            .expect("listed")
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn delete_collection_removes_only_selected_objects() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    for (name, app) in [("a", "web"), ("b", "web"), ("c", "db")] {
        create_pod(&pods, pod(name, json!({"app": app}))).await;
    }
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=web"),
    )
    .await
    .expect("deleted");
    let left: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .expect("listed")
        .items
        .into_iter()
        .filter_map(|pod| pod.metadata.name)
        .collect();
    assert_eq!(left, ["c"]);
}

#[tokio::test]
async fn namespaces_are_created_on_first_use_when_configured() {
    let server = server_with(|config| config.auto_create_namespaces = true).await;
    let client = client(&server);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team");
    create_pod(&pods, pod("web", json!({}))).await;
    let namespaces: Api<Namespace> = Api::all(client);
    assert!(namespaces.get("team").await.is_ok());
}
