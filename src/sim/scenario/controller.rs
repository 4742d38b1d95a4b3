//! The controller a simulation runs: `nodewright controller`'s manager on the simulation's
//! clock, client and cloud, as the only replica.

use std::sync::Arc;

use tokio::sync::watch;

use super::{ControllerHook, ControllerParts};
use crate::controllers::manager::Manager;
use crate::metrics::Metrics;
use crate::settings::Settings;

/// The controller as `nodewright controller` runs it, on the simulation's clock and cloud, as
/// the only replica.
pub fn controller_hook() -> ControllerHook {
    controller_hook_binding_pods(false)
}

/// [`controller_hook`], binding pods early (`BIND_PODS`) when `bind_pods`.
pub fn controller_hook_binding_pods(bind_pods: bool) -> ControllerHook {
    Box::new(move |parts: ControllerParts| {
        Box::pin(async move {
            let mut settings = Settings::for_cluster(parts.cluster_name.clone());
            settings.region = Some(parts.region.clone());
            settings.leader_elect = false;
            settings.bind_pods = bind_pods;
            let metrics = match Metrics::new() {
                Ok(metrics) => Arc::new(metrics),
                Err(error) => {
                    tracing::error!(%error, "cannot register metrics; no controller runs");
                    return;
                }
            };
            let manager = Manager::new(parts.client, parts.cloud, parts.clock, settings, metrics);
            let (_leading, leader) = watch::channel(true);
            manager.run(leader, parts.shutdown).await;
        })
    })
}
