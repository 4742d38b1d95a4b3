//! Starting a server and building the objects tests use.

use std::time::Duration;

use axum::http::{Method, Request};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::{Client, Error};
use nodewright::sim::{ApiServer, ApiServerConfig, PodTermination};
use serde_json::{Value, json};

/// A safety net for awaits that should finish at once; never a synchronisation device.
pub const PATIENCE: Duration = Duration::from_secs(120);

pub async fn server() -> ApiServer {
    server_with(|_| {}).await
}

pub async fn server_with(configure: impl FnOnce(&mut ApiServerConfig)) -> ApiServer {
    let mut config = ApiServerConfig::default();
    configure(&mut config);
    ApiServer::start(config)
        .await
        .expect("the API server starts")
}

/// A client that reports 429s instead of retrying them (kube's default client retries 429
/// with backoff, which would turn a refused eviction into minutes of waiting).
pub fn client(server: &ApiServer) -> Client {
    let mut config = server.kube_config().expect("a client configuration");
    config.default_retry = false;
    Client::try_from(config).expect("a client for the server")
}

pub fn immediate(config: &mut ApiServerConfig) {
    config.pod_termination = PodTermination::Immediate;
}

/// A pod with one container and these labels.
pub fn pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]},
    }))
    .expect("a valid pod")
}

/// A pod already bound to a node.
pub fn bound_pod(name: &str, node: &str, labels: Value) -> Pod {
    let mut pod = pod(name, labels);
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node.to_string());
    }
    pod
}

pub async fn create_pod(api: &Api<Pod>, pod: Pod) -> Pod {
    api.create(&PostParams::default(), &pod)
        .await
        .expect("the pod is created")
}

/// The HTTP code and reason of a failed kube call.
pub fn api_error(result: Result<impl std::fmt::Debug, Error>) -> (u16, String) {
    match result {
        Err(Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Sends a raw request (for bodies kube would never send) and returns the code and JSON body.
pub async fn raw(
    client: &Client,
    method: Method,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(kube::client::Body::from(body.as_bytes().to_vec()))
        .expect("a request");
    let response = client.send(request).await.expect("a response");
    let code = response.status().as_u16();
    let bytes = response.into_body().collect_bytes().await.expect("a body");
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (code, value)
}

pub fn resource_version(object: &impl kube::Resource) -> u64 {
    object
        .meta()
        .resource_version
        .as_deref()
        .and_then(|version| version.parse().ok())
        .expect("a numeric resourceVersion")
}
