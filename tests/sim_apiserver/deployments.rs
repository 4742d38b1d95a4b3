//! The simulated deployment controller against the server: replicas, status, scale, recreation.

use std::sync::Arc;

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Binding, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::runtime::{reflector, watcher};
use kube::{Client, ResourceExt};
use nodewright::sim::deployments::{self, POD_TEMPLATE_HASH};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::timeout;

use crate::support::{PATIENCE, client, immediate, server_with};

/// Runs the controller until the returned sender is dropped or fired.
fn start_controller(client: Client) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(deployments::run(client, async move {
        let _ = stopped.await;
    }));
    (stop, task)
}

async fn create_deployment(client: &Client, replicas: i32) -> Api<Deployment> {
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "inflate"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "inflate"}},
            "template": {"metadata": {"labels": {"app": "inflate"}},
                "spec": {"containers": [{"name": "inflate", "image": "pause:3.9",
                    "resources": {"requests": {"cpu": "1"}}}]}}},
    }))
    .expect("a deployment");
    api.create(&PostParams::default(), &deployment)
        .await
        .expect("created");
    api
}

/// The pods once `done` holds for them (a reflector over a watch, no polling).
async fn pods_until(api: &Api<Pod>, done: impl Fn(&[Arc<Pod>]) -> bool) -> Vec<Arc<Pod>> {
    let (reader, writer) = reflector::store();
    let mut events = Box::pin(reflector(
        writer,
        watcher(api.clone(), watcher::Config::default()),
    ));
    let mut ready = false;
    timeout(PATIENCE, async {
        loop {
            if ready && done(&reader.state()) {
                return reader.state();
            }
            match events.try_next().await.expect("no watch error") {
                Some(watcher::Event::InitDone) => ready = true,
                Some(_) => {}
                None => panic!("the watch ended"),
            }
        }
    })
    .await
    .expect("the pods reach the wanted state")
}

fn scale(replicas: i32) -> Patch<Value> {
    Patch::Merge(json!({"spec": {"replicas": replicas}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_controller_keeps_replicas_pods_and_reports_them() {
    let server = server_with(immediate).await;
    let client = client(&server);
    let (stop, task) = start_controller(client.clone());
    let deployments = create_deployment(&client, 3).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());

    let three = pods_until(&pods, |pods| pods.len() == 3).await;
    for pod in &three {
        let hash = pod
            .labels()
            .get(POD_TEMPLATE_HASH)
            .cloned()
            .expect("a template hash");
        assert!(
            pod.name_any().starts_with(&format!("inflate-{hash}-")),
            "{}",
            pod.name_any()
        );
        assert_eq!(pod.labels().get("app").map(String::as_str), Some("inflate"));
        assert_eq!(pod.owner_references()[0].kind, "Deployment");
    }
    let reported = |deployment: Option<&Deployment>| {
        deployment
            .and_then(|d| d.status.as_ref())
            .is_some_and(|status| status.replicas == Some(3) && status.updated_replicas == Some(3))
    };
    timeout(
        PATIENCE,
        await_condition(deployments.clone(), "inflate", reported),
    )
    .await
    .expect("status in time")
    .expect("watching");

    deployments
        .patch_scale("inflate", &PatchParams::default(), &scale(1))
        .await
        .expect("scaled");
    let one = pods_until(&pods, |pods| pods.len() == 1).await;
    let survivor = one[0].name_any();
    pods.delete(&survivor, &DeleteParams::default())
        .await
        .expect("deleted");
    pods_until(&pods, |pods| {
        pods.len() == 1 && pods[0].name_any() != survivor
    })
    .await;

    let _ = stop.send(());
    timeout(PATIENCE, task)
        .await
        .expect("the controller stops")
        .expect("no panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_removes_unscheduled_pods_first() {
    let server = server_with(immediate).await;
    let client = client(&server);
    let (stop, task) = start_controller(client.clone());
    let deployments = create_deployment(&client, 2).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let two = pods_until(&pods, |pods| pods.len() == 2).await;
    let bound = two[1].name_any();
    let binding: Binding = serde_json::from_value(json!({"metadata": {"name": bound},
        "target": {"kind": "Node", "name": "node-1"}}))
    .expect("a binding");
    pods.create_subresource::<Binding, Value>("binding", &bound, &PostParams::default(), &binding)
        .await
        .expect("bound");
    deployments
        .patch_scale("inflate", &PatchParams::default(), &scale(1))
        .await
        .expect("scaled");
    let left = pods_until(&pods, |pods| pods.len() == 1).await;
    assert_eq!(left[0].name_any(), bound, "the scheduled pod stays");

    let _ = stop.send(());
    timeout(PATIENCE, task)
        .await
        .expect("the controller stops")
        .expect("no panic");
}
