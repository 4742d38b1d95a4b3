//! Create, get and replace: identity, versions, generation, conflicts and error statuses.

use axum::http::Method;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Namespace, Pod};
use kube::Resource;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use nodewright::apis::Provisioner;
use nodewright::controllers::context::{USER_AGENT, identified};
use serde_json::json;

use crate::support::{api_error, client, create_pod, pod, raw, resource_version, server};

#[tokio::test]
async fn created_objects_get_uid_creation_timestamp_generation_and_version() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    let created = create_pod(&pods, pod("web", json!({}))).await;
    let meta = &created.metadata;
    assert_eq!(
        meta.uid.as_deref().map(str::len),
        Some(36),
        "a UUID-shaped uid"
    );
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    let fetched = pods.get("web").await.expect("the pod is there");
    assert_eq!(fetched.metadata.uid, meta.uid);
    assert_eq!(fetched.metadata.resource_version, meta.resource_version);
    assert_eq!(
        fetched.status.and_then(|status| status.phase).as_deref(),
        Some("Pending"),
        "a new pod starts Pending"
    );
}

#[tokio::test]
async fn resource_versions_increase_across_kinds() {
    let server = server().await;
    let client = client(&server);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let maps: Api<ConfigMap> = Api::default_namespaced(client);
    let first = create_pod(&pods, pod("a", json!({}))).await;
    let map: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "settings"}})).expect("a config map");
    let second = maps
        .create(&PostParams::default(), &map)
        .await
        .expect("created");
    let third = create_pod(&pods, pod("b", json!({}))).await;
    let versions = [&first, &third].map(resource_version);
    assert!(versions[0] < resource_version(&second));
    assert!(resource_version(&second) < versions[1]);
    assert_eq!(server.resource_version(), versions[1]);
}

#[tokio::test]
async fn create_of_an_existing_name_is_already_exists() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, pod("web", json!({}))).await;
    let again = pods
        .create(&PostParams::default(), &pod("web", json!({})))
        .await;
    assert_eq!(api_error(again), (409, "AlreadyExists".into()));
}

#[tokio::test]
async fn generate_name_makes_unique_names() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    let mut template = pod("", json!({}));
    template.metadata.name = None;
    template.metadata.generate_name = Some("worker-".into());
    let first = create_pod(&pods, template.clone()).await;
    let second = create_pod(&pods, template).await;
    let names = [&first, &second].map(|p| p.metadata.name.clone().unwrap_or_default());
    assert!(
        names
            .iter()
            .all(|name| name.starts_with("worker-") && name.len() == 12)
    );
    assert_ne!(names[0], names[1]);
}

#[tokio::test]
async fn get_of_a_missing_object_is_not_found() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    assert_eq!(api_error(pods.get("ghost").await), (404, "NotFound".into()));
}

#[tokio::test]
async fn stale_resource_version_update_is_a_conflict() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    let created = create_pod(&pods, pod("web", json!({"v": "1"}))).await;
    let mut fresh = created.clone();
    fresh.metadata.labels = Some([("v".to_string(), "2".to_string())].into());
    let replaced = pods
        .replace("web", &PostParams::default(), &fresh)
        .await
        .expect("a replace at the current version succeeds");
    assert!(resource_version(&replaced) > resource_version(&created));
    let mut stale = created;
    stale.metadata.labels = Some([("v".to_string(), "3".to_string())].into());
    let outcome = pods.replace("web", &PostParams::default(), &stale).await;
    assert_eq!(api_error(outcome), (409, "Conflict".into()));
    let kept = pods.get("web").await.expect("still there");
    assert_eq!(
        kept.metadata
            .labels
            .unwrap_or_default()
            .get("v")
            .map(String::as_str),
        Some("2")
    );
}

#[tokio::test]
async fn generation_changes_with_spec_but_not_with_metadata_or_status() {
    let server = server().await;
    let provisioners: Api<Provisioner> = Api::all(client(&server));
    let provisioner: Provisioner = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1alpha5", "kind": "Provisioner",
        "metadata": {"name": "default"},
        "spec": {"ttlSecondsAfterEmpty": 30, "providerRef": {"name": "default"}},
    }))
    .expect("a provisioner");
    let mut current = provisioners
        .create(&PostParams::default(), &provisioner)
        .await
        .expect("created");
    assert_eq!(current.metadata.generation, Some(1));
    current.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
    current = provisioners
        .replace("default", &PostParams::default(), &current)
        .await
        .expect("label change");
    assert_eq!(current.metadata.generation, Some(1), "labels are metadata");
    current.spec.ttl_seconds_after_empty = Some(60);
    current = provisioners
        .replace("default", &PostParams::default(), &current)
        .await
        .expect("spec change");
    assert_eq!(
        current.metadata.generation,
        Some(2),
        "spec changes bump generation"
    );
}

#[tokio::test]
async fn default_namespaces_exist_and_a_missing_namespace_is_not_found() {
    let server = server().await;
    let client = client(&server);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["default", "kube-system"] {
        let found = namespaces.get(name).await.expect("pre-created namespace");
        let phase = found.status.and_then(|status| status.phase);
        assert_eq!(phase.as_deref(), Some("Active"));
    }
    let elsewhere: Api<Pod> = Api::namespaced(client, "nowhere");
    let outcome = elsewhere
        .create(&PostParams::default(), &pod("web", json!({})))
        .await;
    assert_eq!(api_error(outcome), (404, "NotFound".into()));
}

#[tokio::test]
async fn malformed_json_is_a_400_status() {
    let server = server().await;
    let client = client(&server);
    let (code, status) = raw(
        &client,
        Method::POST,
        "/api/v1/namespaces/default/pods",
        "application/json",
        "{\"metadata\": {\"name\": ",
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "BadRequest");
    assert_eq!(status["code"], 400);
}

#[tokio::test]
async fn object_without_a_name_is_invalid() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    let mut nameless = pod("", json!({}));
    nameless.metadata.name = None;
    let outcome = pods.create(&PostParams::default(), &nameless).await;
    assert_eq!(api_error(outcome), (422, "Invalid".into()));
}

#[tokio::test]
async fn pod_without_containers_is_invalid() {
    let server = server().await;
    let client = client(&server);
    let (code, status) = raw(
        &client,
        Method::POST,
        "/api/v1/namespaces/default/pods",
        "application/json",
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "empty"}, "spec": {"containers": []}}"#,
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(status["details"]["causes"][0]["field"], "spec.containers");
}

#[tokio::test]
async fn kind_or_name_that_disagrees_with_the_url_is_a_bad_request() {
    let server = server().await;
    let client = client(&server);
    let wrong_kind =
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}"#;
    let (code, status) = raw(
        &client,
        Method::POST,
        "/api/v1/namespaces/default/pods",
        "application/json",
        wrong_kind,
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")));
    let pods: Api<Pod> = Api::default_namespaced(client);
    create_pod(&pods, pod("web", json!({}))).await;
    let renamed = pod("other", json!({}));
    let outcome = pods.replace("web", &PostParams::default(), &renamed).await;
    assert_eq!(api_error(outcome), (400, "BadRequest".into()));
}

#[tokio::test]
async fn invalid_provisioner_is_refused_with_the_field_at_fault() {
    let server = server().await;
    let client = client(&server);
    let (code, status) = raw(
        &client,
        Method::POST,
        "/apis/karpenter.sh/v1alpha5/provisioners",
        "application/json",
        r#"{"apiVersion": "karpenter.sh/v1alpha5", "kind": "Provisioner", "metadata": {"name": "bad"},
            "spec": {"requirements": [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": []}]}}"#,
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")));
    let field = status["details"]["causes"][0]["field"]
        .as_str()
        .unwrap_or_default();
    assert!(
        field.starts_with("spec.requirements"),
        "cause names {field}"
    );
}

#[tokio::test]
async fn unknown_paths_are_404_and_unsupported_methods_405() {
    let server = server().await;
    let client = client(&server);
    let (code, status) = raw(
        &client,
        Method::GET,
        "/api/v1/widgets",
        "application/json",
        "",
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
    let (code, status) = raw(
        &client,
        Method::PUT,
        "/api/v1/namespaces/default/pods",
        "application/json",
        "{}",
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    create_pod(&pods, pod("web", json!({}))).await;
    let (code, _) = raw(
        &client,
        Method::PATCH,
        "/api/v1/namespaces/default/pods/web/binding",
        "application/merge-patch+json",
        "{}",
    )
    .await;
    assert_eq!(code, 405, "a binding is only ever created");
}

#[tokio::test]
async fn dry_run_create_answers_but_stores_nothing() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    let version = server.resource_version();
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answered = pods
        .create(&params, &pod("web", json!({})))
        .await
        .expect("dry run");
    assert!(
        answered.metadata.uid.is_some(),
        "the answer is the object as it would be"
    );
    assert_eq!(api_error(pods.get("web").await).0, 404);
    assert_eq!(server.resource_version(), version);
}

#[tokio::test]
async fn recorded_events_are_readable_as_core_events() {
    let server = server().await;
    let client = client(&server);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let created = create_pod(&pods, pod("web", json!({}))).await;
    let recorder = Recorder::new(client.clone(), Reporter::from("nodewright"));
    let event = Event {
        type_: EventType::Normal,
        reason: "Nominated".into(),
        note: Some("Pod should schedule on a new node".into()),
        action: "Provisioning".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &created.object_ref(&()))
        .await
        .expect("recorded");
    let core: Api<CoreEvent> = Api::default_namespaced(client);
    let found = core
        .list(&ListParams::default().fields("involvedObject.name=web,involvedObject.kind=Pod"))
        .await
        .expect("listed")
        .items;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].reason.as_deref(), Some("Nominated"));
    assert_eq!(
        found[0].message.as_deref(),
        Some("Pod should schedule on a new node")
    );
    assert_eq!(
        found[0]
            .source
            .as_ref()
            .and_then(|s| s.component.as_deref()),
        Some("nodewright")
    );
}

#[tokio::test]
async fn field_of_the_wrong_type_is_a_bad_request_naming_it() {
    let server = server().await;
    let client = client(&server);
    let (code, status) = raw(
        &client,
        Method::POST,
        "/apis/apps/v1/namespaces/default/deployments",
        "application/json",
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": "three"}}"#,
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")));
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("spec.replicas"), "{message}");
}

#[tokio::test]
async fn injected_failures_answer_500_the_given_number_of_times_and_change_nothing() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, pod("web", json!({}))).await;
    server.fail_requests("delete", "pods", 2);
    for _ in 0..2 {
        let (code, reason) = api_error(pods.delete("web", &Default::default()).await);
        assert_eq!((code, reason.as_str()), (500, "InternalError"));
        assert!(
            pods.get("web").await.is_ok(),
            "a failed delete deletes nothing"
        );
    }
    // Other verbs and resources were never affected; the third delete is served.
    assert!(pods.list(&ListParams::default()).await.is_ok());
    pods.delete("web", &Default::default())
        .await
        .expect("served once the failures are used up");
    let statuses = server.statuses("delete", "pods");
    assert_eq!(statuses.first().copied(), Some(500));
    assert_eq!(statuses.iter().filter(|s| **s == 500).count(), 2);
    assert!(matches!(statuses.last(), Some(200 | 202)), "{statuses:?}");
}

#[tokio::test]
async fn failures_injected_for_one_user_agent_spare_the_others_until_cleared() {
    let server = server().await;
    let everyone: Api<Pod> = Api::default_namespaced(client(&server));
    let controller: Api<Pod> = Api::default_namespaced(
        kube::Client::try_from(identified(server.kube_config().expect("a config")))
            .expect("the controller's client"),
    );
    create_pod(&everyone, pod("web", json!({}))).await;
    server.fail_requests_from(USER_AGENT, "get", "pods", usize::MAX);
    for _ in 0..3 {
        let (code, _) = api_error(controller.get("web").await);
        assert_eq!(code, 500);
        assert!(
            everyone.get("web").await.is_ok(),
            "another client is served"
        );
    }
    server.clear_faults();
    assert!(controller.get("web").await.is_ok(), "served once cleared");
}
