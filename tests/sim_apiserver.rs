//! Conformance of the simulated API server (`nodewright::sim`) with the Kubernetes API
//! conventions, through a real `kube::Client` over HTTP, a kubectl smoke test, and the
//! simulated deployment controller running against it.

#[path = "sim_apiserver/support.rs"]
mod support;

#[path = "sim_apiserver/crud.rs"]
mod crud;
#[path = "sim_apiserver/deployments.rs"]
mod deployments;
#[path = "sim_apiserver/discovery.rs"]
mod discovery;
#[path = "sim_apiserver/kubectl.rs"]
mod kubectl;
#[path = "sim_apiserver/lifecycle.rs"]
mod lifecycle;
#[path = "sim_apiserver/lists.rs"]
mod lists;
#[path = "sim_apiserver/patches.rs"]
mod patches;
#[path = "sim_apiserver/pods.rs"]
mod pods;
#[path = "sim_apiserver/properties.rs"]
mod properties;
#[path = "sim_apiserver/runtime.rs"]
mod runtime;
#[path = "sim_apiserver/watches.rs"]
mod watches;
