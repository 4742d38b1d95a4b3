//! Lists: selectors, namespaces, pagination with consistent snapshots.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, ObjectList, VersionMatch};
use serde_json::json;

use crate::support::{api_error, bound_pod, client, create_pod, pod, server};

fn names(list: &ObjectList<Pod>) -> Vec<String> {
    list.items
        .iter()
        .filter_map(|pod| pod.metadata.name.clone())
        .collect()
}

async fn labelled(api: &Api<Pod>) {
    for (name, labels) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "web", "tier": "back"})),
        ("c", json!({"app": "db"})),
        ("d", json!({})),
    ] {
        create_pod(api, pod(name, labels)).await;
    }
}

async fn selected(api: &Api<Pod>, selector: &str) -> Vec<String> {
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .expect("the list succeeds");
    names(&list)
}

#[tokio::test]
async fn label_selector_equality_and_inequality() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    labelled(&pods).await;
    assert_eq!(selected(&pods, "app=web").await, ["a", "b"]);
    assert_eq!(selected(&pods, "app==web,tier=back").await, ["b"]);
    assert_eq!(
        selected(&pods, "app!=web").await,
        ["c", "d"],
        "!= matches absent keys"
    );
}

#[tokio::test]
async fn label_selector_in_and_exists() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    labelled(&pods).await;
    assert_eq!(selected(&pods, "app in (db, cache)").await, ["c"]);
    assert_eq!(selected(&pods, "tier").await, ["a", "b"]);
}

#[tokio::test]
async fn label_selector_notin_and_not_exists() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    labelled(&pods).await;
    assert_eq!(selected(&pods, "tier notin (front)").await, ["b", "c", "d"]);
    assert_eq!(selected(&pods, "!tier").await, ["c", "d"]);
    assert_eq!(selected(&pods, "app,!tier").await, ["c"]);
}

#[tokio::test]
async fn malformed_label_selector_is_a_bad_request() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    let outcome = pods.list(&ListParams::default().labels("app in web")).await;
    assert_eq!(api_error(outcome), (400, "BadRequest".into()));
}

#[tokio::test]
async fn field_selectors_on_node_name_phase_and_name() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, bound_pod("on-1", "node-1", json!({}))).await;
    create_pod(&pods, bound_pod("on-2", "node-2", json!({}))).await;
    create_pod(&pods, pod("pending", json!({}))).await;
    let on_node = |selector: &str| {
        let pods = pods.clone();
        let params = ListParams::default().fields(selector);
        async move { names(&pods.list(&params).await.expect("listed")) }
    };
    assert_eq!(on_node("spec.nodeName=node-1").await, ["on-1"]);
    assert_eq!(on_node("spec.nodeName=").await, ["pending"]);
    assert_eq!(
        on_node("spec.nodeName!=node-1,status.phase=Pending").await,
        ["on-2", "pending"]
    );
    assert_eq!(on_node("metadata.name=on-2").await, ["on-2"]);
    assert_eq!(
        on_node("metadata.namespace=kube-system").await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn field_selector_on_an_unsupported_field_is_a_bad_request() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    let outcome = pods
        .list(&ListParams::default().fields("spec.priority=3"))
        .await;
    assert_eq!(api_error(outcome), (400, "BadRequest".into()));
}

#[tokio::test]
async fn lists_span_all_namespaces_or_one() {
    let server = server().await;
    let client = client(&server);
    let default: Api<Pod> = Api::default_namespaced(client.clone());
    let system: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    create_pod(&default, pod("web", json!({}))).await;
    create_pod(&system, pod("dns", json!({}))).await;
    let all: Api<Pod> = Api::all(client);
    let everywhere = all.list(&ListParams::default()).await.expect("listed");
    assert_eq!(
        names(&everywhere),
        ["web", "dns"],
        "ordered by namespace, then name"
    );
    let only_system = system.list(&ListParams::default()).await.expect("listed");
    assert_eq!(names(&only_system), ["dns"]);
}

#[tokio::test]
async fn list_paginates_with_continue() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    for index in 0..7 {
        create_pod(&pods, pod(&format!("pod-{index}"), json!({}))).await;
    }
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(3);
    let mut pages = 0;
    loop {
        let page = pods.list(&params).await.expect("a page");
        pages += 1;
        seen.extend(names(&page));
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => {
                assert!(
                    page.metadata
                        .remaining_item_count
                        .is_some_and(|left| left > 0)
                );
                params = params.continue_token(&token);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..7).map(|index| format!("pod-{index}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn later_pages_show_the_first_page_snapshot() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    for name in ["a", "c", "e"] {
        create_pod(&pods, pod(name, json!({}))).await;
    }
    let first = pods
        .list(&ListParams::default().limit(1))
        .await
        .expect("page 1");
    let token = first.metadata.continue_.clone().expect("more to come");
    create_pod(&pods, pod("d", json!({}))).await;
    pods.delete("e", &Default::default())
        .await
        .expect("deleted");
    let rest = pods
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(names(&rest), ["c", "e"], "the snapshot of the first page");
    assert_eq!(
        rest.metadata.resource_version,
        first.metadata.resource_version
    );
}

#[tokio::test]
async fn exact_resource_version_lists_the_past() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, pod("a", json!({}))).await;
    let then = pods.list(&ListParams::default()).await.expect("listed");
    let version = then.metadata.resource_version.clone().expect("a version");
    create_pod(&pods, pod("b", json!({}))).await;
    let past = pods
        .list(
            &ListParams::default()
                .at(&version)
                .matching(VersionMatch::Exact),
        )
        .await
        .expect("listed at a version");
    assert_eq!(names(&past), ["a"]);
}
