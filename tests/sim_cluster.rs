//! The simulated cluster's components (`nodewright::sim::{scheduler, kubelet}`) against the
//! simulated API server, through a real `kube::Client` over HTTP.

#[path = "sim_cluster/support.rs"]
mod support;

#[path = "sim_cluster/decide.rs"]
mod decide;
#[path = "sim_cluster/kubelet.rs"]
mod kubelet;
#[path = "sim_cluster/scheduler.rs"]
mod scheduler;
