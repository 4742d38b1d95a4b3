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

use std::time::Duration;

use crate::clock::Clock;

/// A poller's pause after a pass that took `pass` of real time, at least `interval`: over a
/// large cluster a pass (a list of every pod) is slow, and polling back to back would take the
/// CPU the API server and the controller need, which a sped-up clock turns into simulated
/// minutes. On virtual time a pass costs no simulated time, and the pause is `interval`.
pub fn poll_pause(interval: Duration, pass: Duration, clock: &dyn Clock) -> Duration {
    let cost = clock.real_duration(clock.simulated_duration(pass));
    // At most a fifth of a core per poller.
    interval.max(cost.saturating_mul(4))
}
