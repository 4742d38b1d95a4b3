//! PATCH: JSON merge, JSON patch, strategic merge, apply, and their errors.

use axum::http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use nodewright::apis::Provisioner;
use serde_json::{Value, json};

use crate::support::{api_error, client, raw, server};

fn deployment() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "inflate", "labels": {"app": "inflate", "team": "a"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "inflate"}},
            "template": {
                "metadata": {"labels": {"app": "inflate"}},
                "spec": {"containers": [
                    {"name": "app", "image": "pause:3.9", "resources": {"requests": {"cpu": "1"}}},
                    {"name": "sidecar", "image": "proxy:1"},
                ]},
            },
        },
    }))
    .expect("a deployment")
}

async fn created_deployment(api: &Api<Deployment>) -> Deployment {
    api.create(&PostParams::default(), &deployment())
        .await
        .expect("created")
}

fn containers(deployment: &Deployment) -> Vec<(String, String)> {
    deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .map(|spec| {
            spec.containers
                .iter()
                .map(|container| {
                    (
                        container.name.clone(),
                        container.image.clone().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn json_merge_patch_sets_and_removes_fields() {
    let server = server().await;
    let deployments: Api<Deployment> = Api::default_namespaced(client(&server));
    created_deployment(&deployments).await;
    let patch =
        json!({"metadata": {"labels": {"team": null, "tier": "web"}}, "spec": {"replicas": 3}});
    let patched = deployments
        .patch("inflate", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("patched");
    let labels = patched.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("tier").map(String::as_str), Some("web"));
    assert!(!labels.contains_key("team"), "null removes a key");
    assert_eq!(
        patched.spec.as_ref().and_then(|spec| spec.replicas),
        Some(3)
    );
    assert_eq!(patched.metadata.generation, Some(2));
}

#[tokio::test]
async fn json_patch_applies_operations_and_a_failed_test_is_refused() {
    let server = server().await;
    let deployments: Api<Deployment> = Api::default_namespaced(client(&server));
    created_deployment(&deployments).await;
    let operations: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": 0},
        {"op": "replace", "path": "/spec/replicas", "value": 2},
        {"op": "add", "path": "/metadata/annotations", "value": {"note": "patched"}},
    ]))
    .expect("a JSON patch");
    let patched = deployments
        .patch(
            "inflate",
            &PatchParams::default(),
            &Patch::Json::<()>(operations),
        )
        .await
        .expect("patched");
    assert_eq!(
        patched.spec.as_ref().and_then(|spec| spec.replicas),
        Some(2)
    );
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 0}]))
            .expect("a JSON patch");
    let outcome = deployments
        .patch(
            "inflate",
            &PatchParams::default(),
            &Patch::Json::<()>(failing),
        )
        .await;
    assert_eq!(api_error(outcome), (422, "Invalid".into()));
}

#[tokio::test]
async fn strategic_merge_patch_merges_containers_by_name() {
    let server = server().await;
    let deployments: Api<Deployment> = Api::default_namespaced(client(&server));
    created_deployment(&deployments).await;
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "proxy:2"},
        {"name": "logger", "image": "fluent:1"},
    ]}}}});
    let patched = deployments
        .patch("inflate", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("patched");
    let expected = [
        ("app", "pause:3.9"),
        ("sidecar", "proxy:2"),
        ("logger", "fluent:1"),
    ]
    .map(|(name, image)| (name.to_string(), image.to_string()));
    assert_eq!(containers(&patched), expected);
    let app = &patched
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("a pod spec")
        .containers[0];
    assert!(
        app.resources.is_some(),
        "fields the patch did not name are kept"
    );
    let delete = json!({"spec": {"template": {"spec": {"containers": [{"name": "logger", "$patch": "delete"}]}}}});
    let patched = deployments
        .patch(
            "inflate",
            &PatchParams::default(),
            &Patch::Strategic(delete),
        )
        .await
        .expect("patched");
    assert_eq!(
        containers(&patched).len(),
        2,
        "$patch: delete removes by merge key"
    );
}

#[tokio::test]
async fn strategic_merge_patch_merges_conditions_by_type_and_replaces_taints() {
    let server = server().await;
    let nodes: Api<Node> = Api::all(client(&server));
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "node-1", "finalizers": ["a"]},
        "spec": {"taints": [{"key": "x", "effect": "NoSchedule"}]},
        "status": {"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "MemoryPressure", "status": "False"},
        ]},
    }))
    .expect("a node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("created");
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let patched = nodes
        .patch_status("node-1", &PatchParams::default(), &Patch::Strategic(status))
        .await
        .expect("status patched");
    let conditions: Vec<(String, String)> = patched
        .status
        .and_then(|status| status.conditions)
        .unwrap_or_default()
        .into_iter()
        .map(|condition| (condition.type_, condition.status))
        .collect();
    assert_eq!(
        conditions,
        [
            ("Ready".into(), "True".into()),
            ("MemoryPressure".into(), "False".into())
        ]
    );
    let spec = json!({"metadata": {"finalizers": ["b"]}, "spec": {"taints": [{"key": "y", "effect": "NoExecute"}]}});
    let patched = nodes
        .patch("node-1", &PatchParams::default(), &Patch::Strategic(spec))
        .await
        .expect("patched");
    let taints: Vec<String> = patched
        .spec
        .and_then(|spec| spec.taints)
        .unwrap_or_default()
        .into_iter()
        .map(|taint| taint.key)
        .collect();
    assert_eq!(
        taints,
        ["y"],
        "taints have no merge key: the list is replaced"
    );
    assert_eq!(
        patched.metadata.finalizers.unwrap_or_default(),
        ["a", "b"],
        "finalizers merge as a set"
    );
}

#[tokio::test]
async fn strategic_merge_patch_of_a_custom_resource_is_unsupported() {
    let server = server().await;
    let client = client(&server);
    let (code, _) = raw(
        &client,
        Method::POST,
        "/apis/karpenter.sh/v1alpha5/provisioners",
        "application/json",
        r#"{"apiVersion": "karpenter.sh/v1alpha5", "kind": "Provisioner", "metadata": {"name": "default"}, "spec": {"providerRef": {"name": "default"}}}"#,
    )
    .await;
    assert_eq!(code, 201);
    let provisioners: Api<Provisioner> = Api::all(client);
    let outcome = provisioners
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"weight": 5}})),
        )
        .await;
    assert_eq!(api_error(outcome), (415, "UnsupportedMediaType".into()));
}

#[tokio::test]
async fn unknown_patch_content_type_is_unsupported_media_type() {
    let server = server().await;
    let client = client(&server);
    let (code, status) = raw(
        &client,
        Method::PATCH,
        "/api/v1/namespaces/default",
        "text/plain",
        "{}",
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
}

#[tokio::test]
async fn apply_creates_then_merges_into_the_live_object() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    let manifest = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "applied", "labels": {"a": "1"}},
        "spec": {"containers": [{"name": "app", "image": "pause:3.9"}]},
    });
    let params = PatchParams::apply("tests");
    let created = pods
        .patch("applied", &params, &Patch::Apply(&manifest))
        .await
        .expect("created by apply");
    assert_eq!(created.metadata.generation, Some(1));
    let relabel = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "applied", "labels": {"b": "2"}}});
    let merged = pods
        .patch("applied", &params, &Patch::Apply(&relabel))
        .await
        .expect("applied again");
    let labels = merged.metadata.labels.unwrap_or_default();
    assert_eq!(labels.len(), 2, "labels merged: {labels:?}");
    let outcome = pods
        .patch("applied", &PatchParams::default(), &Patch::Apply(&relabel))
        .await;
    assert_eq!(
        api_error(outcome),
        (400, "BadRequest".into()),
        "apply needs a field manager"
    );
}

#[tokio::test]
async fn merge_patch_with_a_stale_resource_version_is_a_conflict() {
    let server = server().await;
    let deployments: Api<Deployment> = Api::default_namespaced(client(&server));
    let created = created_deployment(&deployments).await;
    let version = created
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    deployments
        .patch(
            "inflate",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("patched");
    let stale: Value = json!({"metadata": {"resourceVersion": version}, "spec": {"replicas": 5}});
    let outcome = deployments
        .patch("inflate", &PatchParams::default(), &Patch::Merge(stale))
        .await;
    assert_eq!(api_error(outcome), (409, "Conflict".into()));
}

#[tokio::test]
async fn json_patch_test_of_a_missing_path_for_null_passes_as_upstream() {
    let server = server().await;
    let deployments: Api<Deployment> = Api::default_namespaced(client(&server));
    created_deployment(&deployments).await;
    let operations: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/cleanup"]},
    ]))
    .expect("a JSON patch");
    let patched = deployments
        .patch(
            "inflate",
            &PatchParams::default(),
            &Patch::Json::<()>(operations),
        )
        .await
        .expect("the first finalizer is added");
    assert_eq!(
        patched.metadata.finalizers.unwrap_or_default(),
        ["example.com/cleanup"]
    );
}
