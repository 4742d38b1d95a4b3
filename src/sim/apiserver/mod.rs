//! An in-memory Kubernetes API server over real HTTP, for a real `kube::Client` (and kubectl).
//!
//! It serves core/v1 pods (with `binding`, `eviction`, `status`), nodes, namespaces, events,
//! configmaps, services and serviceaccounts; apps/v1 deployments, replicasets, daemonsets and
//! statefulsets (with `scale`); policy/v1 PodDisruptionBudgets; coordination.k8s.io/v1 leases;
//! events.k8s.io/v1 events; apiextensions.k8s.io/v1 CRDs; and this project's custom resources,
//! served from their CRDs. Semantics follow the Kubernetes API conventions; where the simulation
//! simplifies, the module that does it says so.
//!
//! - [`store`]: objects, resourceVersions, history; [`write`]: create/update/delete rules;
//!   [`pods`]: binding and eviction; [`budgets`]: PodDisruptionBudget figures and status; [`events`]: the two Event APIs as one; [`patch`]: the patch formats; [`watch`]: watch streams;
//!   [`selectors`]: label and field selectors; [`route`] and [`router`]: HTTP;
//!   [`discovery`], [`openapi`] and [`table`]: what kubectl reads.

pub mod budgets;
pub mod discovery;
pub mod events;
pub mod kinds;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod pods;
pub mod resources;
pub mod route;
pub mod router;
pub mod scale;
pub mod selectors;
pub mod status;
pub mod store;
pub mod table;
pub mod watch;
pub mod write;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, Method, header};
use axum::serve::ListenerExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};
use tokio::sync::watch as signal;

use crate::cloudprovider::{Clock, SystemClock};
use crate::sync::lock;
pub use resources::{Registry, ResourceType};
pub use status::ApiError;
pub use store::PodTermination;
use store::{Store, StoreSettings};
use write::{DeleteOptions, Deleted};

/// Names an object in a `Status`.
pub(crate) fn target<'a>(rt: &'a ResourceType, name: &'a str) -> status::Target<'a> {
    status::Target {
        group: &rt.group,
        plural: &rt.plural,
        name,
    }
}

/// How the server is started.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    /// Where to listen; port 0 picks a free one.
    pub address: SocketAddr,
    /// Changes kept for watches and paged lists; a watch from before them gets 410 Gone.
    pub event_history: usize,
    /// Changes a watch may fall behind before it is closed with 410 (so it relists).
    pub watch_buffer: usize,
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    pub pod_termination: PodTermination,
    /// Create a missing namespace on first use instead of answering 404 (the real server's way).
    pub auto_create_namespaces: bool,
    /// Namespaces that exist from the start.
    pub namespaces: Vec<String>,
    /// Served custom resources (and stored `customresourcedefinitions`).
    pub crds: Vec<CustomResourceDefinition>,
    /// Timestamps (creation, deletion, ages) come from here, so a simulation's clock drives them.
    pub clock: Arc<dyn Clock>,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            event_history: 10_000,
            watch_buffer: 4_096,
            bookmark_interval: Duration::from_secs(5),
            pod_termination: PodTermination::default(),
            auto_create_namespaces: false,
            namespaces: ["default", "kube-system", "kube-public", "kube-node-lease"]
                .map(String::from)
                .to_vec(),
            crds: crate::apis::crds::crds(),
            clock: Arc::new(SystemClock),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build a client for {url}: {reason}")]
    Client { url: String, reason: String },
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot seed the API server: {0}")]
    Seed(ApiError),
    #[error("the API server stopped with an error: {0}")]
    Serve(std::io::Error),
}

/// One request the server answered, for tests (e.g. checking RBAC against what was called).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The RBAC verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub status: u16,
    pub user_agent: Option<String>,
}

impl RequestRecord {
    fn new(
        method: &Method,
        path: &str,
        route: &route::Route,
        params: &router::Params,
        headers: &HeaderMap,
    ) -> Self {
        let resource = match route {
            route::Route::Resource(resource) => Some(resource),
            _ => None,
        };
        let named = resource.is_some_and(|resource| resource.name.is_some());
        let watching = resource.is_some_and(|resource| resource.watch_path)
            || matches!(params.get("watch"), Some("true" | "1"));
        let verb = match *method {
            Method::GET if watching => "watch",
            Method::GET if named || resource.is_none() => "get",
            Method::GET => "list",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if named => "delete",
            Method::DELETE => "deletecollection",
            _ => "unknown",
        };
        Self {
            method: method.to_string(),
            path: path.to_string(),
            verb: verb.to_string(),
            group: resource.map(|r| r.rt.group.clone()).unwrap_or_default(),
            resource: resource.map(|r| r.rt.plural.clone()).unwrap_or_default(),
            subresource: resource.and_then(|r| r.subresource.clone()),
            namespace: resource.and_then(|r| r.namespace.clone()),
            name: resource.and_then(|r| r.name.clone()),
            status: 0,
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|agent| agent.to_str().ok())
                .map(str::to_string),
        }
    }
}

/// A running API server. Dropping it leaves the server running until the runtime ends; call
/// [`ApiServer::shutdown`] to stop it and close every watch.
pub struct ApiServer {
    address: SocketAddr,
    app: Arc<router::App>,
    shutdown: signal::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ApiServer {
    /// Binds, seeds the namespaces and CRDs, and serves in a background task.
    pub async fn start(config: ApiServerConfig) -> Result<Self, SimError> {
        let listener = tokio::net::TcpListener::bind(config.address)
            .await
            .map_err(|source| SimError::Bind {
                address: config.address,
                source,
            })?;
        let address = listener.local_addr().map_err(|source| SimError::Bind {
            address: config.address,
            source,
        })?;
        let store = Arc::new(Store::new(
            Registry::new(&config.crds),
            StoreSettings {
                history: config.event_history,
                watch_buffer: config.watch_buffer,
                pod_termination: config.pod_termination,
                auto_create_namespaces: config.auto_create_namespaces,
                clock: config.clock.clone(),
            },
        ));
        seed(&store, &config)?;
        let (shutdown, shutdown_signal) = signal::channel(false);
        let app = Arc::new(router::App {
            store,
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            watch_cut: signal::channel(0).0,
            address: address.to_string(),
            bookmark_interval: config.bookmark_interval,
            shutdown: shutdown_signal.clone(),
        });
        let mut stop = shutdown_signal;
        // As Go's net package does for kube-apiserver: without it the last small watch event of a
        // burst waits out the peer's delayed ACK (40 ms on Linux).
        let listener = listener.tap_io(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "TCP_NODELAY not set on an API connection");
            }
        });
        let server =
            axum::serve(listener, router::router(app.clone())).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            });
        let task = tokio::spawn(async move { server.await });
        Ok(Self {
            address,
            app,
            shutdown,
            task,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The client configuration for this server (no authentication, namespace `default`),
    /// for callers that tune it (timeouts, retries) before building a client.
    pub fn kube_config(&self) -> Result<kube::Config, SimError> {
        let url = self.url();
        let parsed =
            url.parse()
                .map_err(|error: axum::http::uri::InvalidUri| SimError::Client {
                    url: url.clone(),
                    reason: error.to_string(),
                })?;
        Ok(kube::Config::new(parsed))
    }

    /// A client for this server, configured as `kube::Config::new` configures one.
    pub fn client(&self) -> Result<kube::Client, SimError> {
        kube::Client::try_from(self.kube_config()?).map_err(|error| SimError::Client {
            url: self.url(),
            reason: error.to_string(),
        })
    }

    /// A kubeconfig naming this server, for kubectl or a separately started controller.
    pub fn kubeconfig(&self) -> String {
        let server = self.url();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: nodewright-sim\n  cluster:\n    server: {server}\nusers:\n- name: nodewright-sim\n  user: {{}}\ncontexts:\n- name: nodewright-sim\n  context:\n    cluster: nodewright-sim\n    user: nodewright-sim\n    namespace: default\ncurrent-context: nodewright-sim\n"
        )
    }

    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), SimError> {
        std::fs::write(path, self.kubeconfig()).map_err(|source| SimError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// Answers the next `times` requests of `verb` (get, list, watch, create, update, patch,
    /// delete, …) on `resource` (a plural such as `nodes`) with 500 InternalError, without
    /// serving them: how a test makes the API fail where it wants.
    pub fn fail_requests(&self, verb: &str, resource: &str, times: usize) {
        self.add_fault(None, verb, resource, times);
    }

    /// [`ApiServer::fail_requests`] for one client only: requests whose User-Agent is
    /// `user_agent`. The simulated scheduler and kubelets share the API server with the
    /// controller; this fails the controller's calls and lets the cluster go on.
    pub fn fail_requests_from(&self, user_agent: &str, verb: &str, resource: &str, times: usize) {
        self.add_fault(Some(user_agent), verb, resource, times);
    }

    /// Drops every injected failure not used up yet: the API recovers.
    pub fn clear_faults(&self) {
        lock(&self.app.faults).clear();
    }

    fn add_fault(&self, user_agent: Option<&str>, verb: &str, resource: &str, times: usize) {
        lock(&self.app.faults).push(router::Fault {
            user_agent: user_agent.map(str::to_string),
            verb: verb.to_string(),
            resource: resource.to_string(),
            remaining: times,
        });
    }

    /// Ends every open watch stream, as an API server restart or a proxy's idle timeout does;
    /// clients reconnect from the last resourceVersion they saw.
    pub fn end_watches(&self) {
        self.app.watch_cut.send_modify(|cuts| *cuts += 1);
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.app.log).clone()
    }

    /// The HTTP status of every answered request of `verb` on `resource`, oldest first.
    pub fn statuses(&self, verb: &str, resource: &str) -> Vec<u16> {
        lock(&self.app.log)
            .iter()
            .filter(|r| r.verb == verb && r.resource == resource)
            .map(|r| r.status)
            .collect()
    }

    /// The newest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.app.store.resource_version()
    }

    /// Creates an object in-process (seeding nodes or fixtures without HTTP), chosen by its
    /// apiVersion and kind, in `metadata.namespace` (else `default`), with the rules of a POST.
    pub fn create(&self, object: Value) -> Result<Value, ApiError> {
        let store = &self.app.store;
        let field = |name: &str| object.get(name).and_then(Value::as_str).unwrap_or_default();
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        let rt = store
            .registry
            .by_kind(api_version, kind)
            .cloned()
            .ok_or_else(|| {
                ApiError::bad_request(format!("no resource serves {api_version} {kind}"))
            })?;
        let namespace = match rt.namespaced {
            true => meta::namespace(&object).unwrap_or("default").to_string(),
            false => String::new(),
        };
        store.write(|writer| writer.create(&rt, &namespace, object))
    }

    /// What a kubelet does once a terminating pod has stopped: delete it with grace period 0.
    /// Returns whether the pod is gone (finalizers may still hold it).
    pub fn finish_pod_deletion(&self, namespace: &str, name: &str) -> Result<bool, ApiError> {
        let store = &self.app.store;
        let pods = store
            .registry
            .by_key("", "pods")
            .cloned()
            .ok_or_else(|| ApiError::internal("pods are not served"))?;
        let options = DeleteOptions {
            grace_period_seconds: Some(0),
            ..DeleteOptions::default()
        };
        let outcome = store.write(|writer| writer.delete(&pods, namespace, name, &options))?;
        Ok(matches!(outcome, Deleted::Removed(_)))
    }

    /// Stops accepting requests, ends every watch and waits for the server task.
    pub async fn shutdown(self) -> Result<(), SimError> {
        let _ = self.shutdown.send(true);
        match self.task.await {
            Ok(result) => result.map_err(SimError::Serve),
            Err(join) => Err(SimError::Serve(std::io::Error::other(join.to_string()))),
        }
    }
}

/// The namespaces and CRDs a fresh cluster has.
fn seed(store: &Store, config: &ApiServerConfig) -> Result<(), SimError> {
    let registry = &store.registry;
    let namespaces = registry
        .by_key("", "namespaces")
        .cloned()
        .ok_or_else(|| SimError::Seed(ApiError::internal("namespaces are not served")))?;
    let crd_type = registry
        .by_key("apiextensions.k8s.io", "customresourcedefinitions")
        .cloned()
        .ok_or_else(|| SimError::Seed(ApiError::internal("CRDs are not served")))?;
    store
        .write(|writer| {
            for name in &config.namespaces {
                let body =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                writer.create(&namespaces, "", body)?;
            }
            for crd in &config.crds {
                let body = serde_json::to_value(crd).map_err(|error| {
                    ApiError::internal(format!("CRD does not serialize: {error}"))
                })?;
                let created = writer.create(&crd_type, "", body)?;
                let names = serde_json::to_value(&crd.spec.names).unwrap_or(Value::Null);
                let versions: Vec<&str> =
                    crd.spec.versions.iter().map(|v| v.name.as_str()).collect();
                let mut established = created.clone();
                established["status"] = json!({
                    "acceptedNames": names,
                    "storedVersions": versions,
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
                    ],
                });
                let name = meta::name(&created).unwrap_or_default().to_string();
                writer.update(&crd_type, "", &name, established, write::Part::Status)?;
            }
            Ok(())
        })
        .map_err(SimError::Seed)
}
