//! The simulated cluster: an in-memory Kubernetes API server served over real HTTP, so the
//! controller is exercised through its real `kube::Client`, watchers and patches without a
//! kube-apiserver.
//!
//! - [`apiserver`]: the API server (`ApiServer::start`), its store and REST semantics.
//! - [`deployments`]: the deployment controller (replicas pods per Deployment).
//! - [`kubelet`]: kubelets (a Node per running instance, pods Running on it).
//! - [`scheduler`]: kube-scheduler (binds pending pods to Ready nodes they fit).

pub mod apiserver;
pub mod deployments;
pub mod kubelet;
pub mod scenario;
pub mod scheduler;

pub use apiserver::{ApiServer, ApiServerConfig, PodTermination, RequestRecord, SimError};
