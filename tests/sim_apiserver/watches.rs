//! Watches: resume from a version, bookmarks, selector transitions, 410 Gone and relisting.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::time::timeout;

use crate::support::{PATIENCE, client, create_pod, pod, resource_version, server, server_with};

fn config_map(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}})
}

/// The type and object name of a watch event, or the error code.
fn describe(event: &WatchEvent<Pod>) -> (String, String) {
    let name = |pod: &Pod| pod.metadata.name.clone().unwrap_or_default();
    match event {
        WatchEvent::Added(pod) => ("ADDED".into(), name(pod)),
        WatchEvent::Modified(pod) => ("MODIFIED".into(), name(pod)),
        WatchEvent::Deleted(pod) => ("DELETED".into(), name(pod)),
        WatchEvent::Bookmark(bookmark) => (
            "BOOKMARK".into(),
            bookmark.metadata.resource_version.clone(),
        ),
        WatchEvent::Error(error) => ("ERROR".into(), error.code.to_string()),
    }
}

#[tokio::test]
async fn watch_from_a_version_replays_later_changes_in_order() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    let before = create_pod(&pods, pod("old", json!({}))).await;
    create_pod(&pods, pod("web", json!({}))).await;
    pods.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await
    .expect("patched");
    pods.delete("web", &DeleteParams::default())
        .await
        .expect("deleted");
    let version = resource_version(&before).to_string();
    let stream = pods
        .watch(&WatchParams::default(), &version)
        .await
        .expect("watching");
    let events: Vec<(String, String)> = timeout(PATIENCE, stream.take(3).try_collect::<Vec<_>>())
        .await
        .expect("three events")
        .expect("no stream error")
        .iter()
        .map(describe)
        .collect();
    let expected = [("ADDED", "web"), ("MODIFIED", "web"), ("DELETED", "web")]
        .map(|(kind, name)| (kind.to_string(), name.to_string()));
    assert_eq!(events, expected);
}

#[tokio::test]
async fn watch_sends_new_changes_and_bookmarks_when_asked() {
    let server = server_with(|config| config.bookmark_interval = Duration::from_millis(50)).await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    let params = WatchParams::default();
    let mut stream = pods.watch(&params, "0").await.expect("watching").boxed();
    create_pod(&pods, pod("web", json!({}))).await;
    let mut seen_added = false;
    let bookmark_version = timeout(PATIENCE, async {
        while let Some(event) = stream.try_next().await.expect("no stream error") {
            match describe(&event) {
                (kind, name) if kind == "ADDED" && name == "web" => seen_added = true,
                (kind, version) if kind == "BOOKMARK" && seen_added => return version,
                _ => {}
            }
        }
        panic!("the watch ended");
    })
    .await
    .expect("a bookmark arrives");
    assert_eq!(bookmark_version, server.resource_version().to_string());
}

#[tokio::test]
async fn watch_reports_objects_leaving_a_label_selector_as_deleted() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    let created = create_pod(&pods, pod("web", json!({"app": "web"}))).await;
    let params = WatchParams::default().labels("app=web");
    let stream = pods
        .watch(&params, &resource_version(&created).to_string())
        .await
        .expect("watching");
    pods.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .expect("relabelled");
    pods.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .expect("relabelled back");
    let events: Vec<(String, String)> = timeout(PATIENCE, stream.take(2).try_collect::<Vec<_>>())
        .await
        .expect("two events")
        .expect("no stream error")
        .iter()
        .map(describe)
        .collect();
    assert_eq!(
        events,
        [
            ("DELETED".into(), "web".into()),
            ("ADDED".into(), "web".into())
        ]
    );
}

#[tokio::test]
async fn watch_ends_after_its_timeout() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    let stream = pods
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .expect("watching");
    let events = timeout(PATIENCE, stream.collect::<Vec<_>>())
        .await
        .expect("the stream ends");
    assert!(events.is_empty());
}

#[tokio::test]
async fn ended_watches_close_and_a_resumed_watch_misses_nothing() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    let first = create_pod(&pods, pod("before", json!({}))).await;
    let stream = pods
        .watch(
            &WatchParams::default(),
            &resource_version(&first).to_string(),
        )
        .await
        .expect("watching");
    server.end_watches();
    let events = timeout(PATIENCE, stream.collect::<Vec<_>>())
        .await
        .expect("the stream ends when the server ends it");
    assert!(events.is_empty(), "{events:?}");
    // Written while nobody watched; a watch from the last version seen replays it.
    create_pod(&pods, pod("during", json!({}))).await;
    let resumed = pods
        .watch(
            &WatchParams::default(),
            &resource_version(&first).to_string(),
        )
        .await
        .expect("watching again");
    let mut resumed = Box::pin(resumed);
    let event = timeout(PATIENCE, resumed.try_next())
        .await
        .expect("an event")
        .expect("no error")
        .expect("the stream is open");
    assert_eq!(describe(&event), ("ADDED".into(), "during".into()));
}

#[tokio::test]
async fn watch_from_a_compacted_version_is_gone() {
    let server = server_with(|config| config.event_history = 5).await;
    let client = client(&server);
    let maps: Api<ConfigMap> = Api::default_namespaced(client);
    for index in 0..10 {
        server
            .create(config_map(&format!("m{index}")))
            .expect("created");
    }
    let mut stream = maps
        .watch(&WatchParams::default(), "1")
        .await
        .expect("watch opened")
        .boxed();
    let first = timeout(PATIENCE, stream.try_next())
        .await
        .expect("an event")
        .expect("no stream error");
    match first {
        Some(WatchEvent::Error(error)) => {
            assert_eq!(error.code, 410);
            assert_eq!(error.reason, "Expired");
        }
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

/// The watcher relists after a 410: it resumes from a version the server has compacted.
#[tokio::test]
async fn watch_from_compacted_version_is_gone_and_watcher_relists() {
    let server = server_with(|config| {
        config.event_history = 5;
        config.bookmark_interval = Duration::from_secs(3600);
    })
    .await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, pod("early", json!({}))).await;
    let mut events = watcher(pods.clone(), watcher::Config::default()).boxed();
    let mut saw_gone = false;
    let mut created_late = false;
    let outcome = timeout(PATIENCE, async {
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::InitDone) if !saw_gone => {
                    // Before the watcher starts watching from its list's version, changes to
                    // other kinds push that version out of the history.
                    for index in 0..10 {
                        server
                            .create(config_map(&format!("m{index}")))
                            .expect("created");
                    }
                }
                Err(watcher::Error::WatchError(error)) if error.code == 410 => saw_gone = true,
                Ok(watcher::Event::InitDone) if !created_late => {
                    create_pod(&pods, pod("late", json!({}))).await;
                    created_late = true;
                }
                Ok(watcher::Event::Apply(pod)) if pod.metadata.name.as_deref() == Some("late") => {
                    return true;
                }
                _ => {}
            }
        }
        false
    })
    .await;
    assert!(saw_gone, "the watcher was told its version is gone");
    assert_eq!(
        outcome,
        Ok(true),
        "after relisting the watcher sees new pods"
    );
}

/// A watcher that cannot keep up is closed with 410 rather than holding writers back.
#[tokio::test(flavor = "current_thread")]
async fn slow_watch_is_closed_with_gone_instead_of_blocking_writers() {
    let server = server_with(|config| config.watch_buffer = 4).await;
    let maps: Api<ConfigMap> = Api::default_namespaced(client(&server));
    let stream = maps
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watching");
    // No await between these writes: the watch task cannot run, so it falls behind.
    for index in 0..20 {
        server
            .create(config_map(&format!("m{index}")))
            .expect("writes never wait for watchers");
    }
    let events: Vec<WatchEvent<ConfigMap>> = timeout(PATIENCE, stream.try_collect())
        .await
        .expect("the stream ends")
        .expect("no transport error");
    match events.last() {
        Some(WatchEvent::Error(error)) => assert_eq!(error.code, 410),
        other => panic!("expected a final 410, got {other:?}"),
    }
}

#[tokio::test]
async fn streaming_list_watcher_sees_existing_objects_then_changes() {
    let server = server().await;
    let pods: Api<Pod> = Api::default_namespaced(client(&server));
    create_pod(&pods, pod("existing", json!({}))).await;
    let mut events = watcher(pods.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = Vec::new();
    let found = timeout(PATIENCE, async {
        while let Some(event) = events.try_next().await.expect("no watcher error") {
            match event {
                watcher::Event::InitApply(pod) => initial.extend(pod.metadata.name),
                watcher::Event::InitDone => {
                    create_pod(&pods, pod("new", json!({}))).await;
                }
                watcher::Event::Apply(pod) => return pod.metadata.name,
                _ => {}
            }
        }
        None
    })
    .await
    .expect("events arrive");
    assert_eq!(initial, ["existing"]);
    assert_eq!(found.as_deref(), Some("new"));
}
