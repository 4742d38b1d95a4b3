//! The controller a simulation runs: `nodewright controller`'s manager on the simulation's
//! clock, client and cloud, as the only replica.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{ControllerHook, ControllerParts};
use crate::clock::Clock;
use crate::controllers::context::{client_without_retries, identified};
use crate::controllers::global_settings::GlobalSettings;
use crate::controllers::manager::Manager;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::settings::global::DEFAULT_CONFIGMAP;

/// The shortest batch window in real time. The simulated cluster's API calls take real
/// milliseconds, which the clock multiplies: a burst the kube-scheduler marks over a few
/// hundred real milliseconds on a busy machine spans simulated seconds, longer than Karpenter's
/// 1 s window, and would be split into two batches and two nodes. In a real cluster 1 s covers
/// that latency many times over; this keeps the same proportion.
const BATCH_WINDOW_REAL_FLOOR: Duration = Duration::from_millis(500);

/// The controller as `nodewright controller` runs it, on the simulation's clock and cloud, as
/// the only replica.
pub fn controller_hook() -> ControllerHook {
    controller_hook_binding_pods(false)
}

/// [`controller_hook`], binding pods early (`BIND_PODS`) when `bind_pods`.
pub fn controller_hook_binding_pods(bind_pods: bool) -> ControllerHook {
    let mut settings = Settings::for_cluster("");
    settings.bind_pods = bind_pods;
    match Metrics::new() {
        Ok(metrics) => controller_hook_with(Arc::new(metrics), settings, BTreeSet::new()),
        Err(error) => Box::new(move |_| {
            Box::pin(async move {
                tracing::error!(%error, "cannot register metrics; no controller runs");
            })
        }),
    }
}

/// The controller with `settings` (as its environment gives them; `explicit`: the fields it
/// set), recording into `metrics` (what `/metrics` would serve). It reads and watches the
/// karpenter-global-settings ConfigMap in `SYSTEM_NAMESPACE` (default `karpenter`) as
/// `nodewright controller` does, so a scenario may apply one. The simulation decides the
/// cluster, region and clock; the controller is the only replica.
pub fn controller_hook_with(
    metrics: Arc<Metrics>,
    settings: Settings,
    explicit: BTreeSet<String>,
) -> ControllerHook {
    Box::new(move |parts: ControllerParts| {
        Box::pin(async move {
            let mut settings = settings;
            settings.cluster_name = parts.cluster_name.clone();
            settings.region = Some(parts.region.clone());
            settings.leader_elect = false;
            let mut explicit = explicit;
            explicit.extend(["cluster_name", "region", "leader_elect"].map(String::from));
            // Its own clients, as in a cluster: its requests carry its User-Agent.
            let kube_config = identified(parts.kube_config);
            let clients = kube::Client::try_from(kube_config.clone())
                .and_then(|client| Ok((client, client_without_retries(kube_config)?)));
            let (client, evictions) = match clients {
                Ok(clients) => clients,
                Err(error) => {
                    tracing::error!(%error, "cannot build the controller's clients; no controller runs");
                    return;
                }
            };
            let namespace =
                std::env::var("SYSTEM_NAMESPACE").unwrap_or_else(|_| "karpenter".to_string());
            let clock = parts.clock.clone();
            let global = GlobalSettings::new(
                client.clone(),
                &namespace,
                DEFAULT_CONFIGMAP,
                settings,
                explicit,
            )
            .adjusted(move |settings| widen_batch_windows(settings, clock.as_ref()));
            let (settings, updates) = match global.start(parts.shutdown.clone()).await {
                Ok(started) => started,
                Err(error) => {
                    tracing::error!(%error, "no controller runs");
                    return;
                }
            };
            let manager = Manager::new(client, parts.cloud, parts.clock, settings, metrics)
                .with_eviction_client(evictions)
                .with_settings_updates(updates);
            let (_leading, leader) = watch::channel(true);
            manager.run(leader, parts.shutdown).await;
        })
    })
}

/// Batch windows of at least [`BATCH_WINDOW_REAL_FLOOR`] of real time on `clock` (none on
/// virtual time, where real time moves no timer).
fn widen_batch_windows(settings: &mut Settings, clock: &dyn Clock) {
    let floor = clock.simulated_duration(BATCH_WINDOW_REAL_FLOOR);
    settings.batch_idle_duration = settings.batch_idle_duration.max(floor);
    settings.batch_max_duration = settings.batch_max_duration.max(floor);
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::clock::{ManualClock, ScaledClock, VirtualClock};

    #[test]
    fn batch_windows_cover_half_a_real_second_on_a_fast_clock() {
        let mut settings = Settings::for_cluster("sim");
        widen_batch_windows(
            &mut settings,
            &ScaledClock::new(SystemTime::UNIX_EPOCH, 60.0),
        );
        assert_eq!(settings.batch_idle_duration, Duration::from_secs(30));
        assert_eq!(settings.batch_max_duration, Duration::from_secs(30));

        let mut settings = Settings::for_cluster("sim");
        widen_batch_windows(&mut settings, &ManualClock::fixed());
        assert_eq!(settings.batch_idle_duration, Duration::from_secs(1));
        assert_eq!(settings.batch_max_duration, Duration::from_secs(10));

        // Virtual time keeps even a window shorter than the floor.
        let mut settings = Settings::for_cluster("sim");
        settings.batch_idle_duration = Duration::from_millis(100);
        widen_batch_windows(&mut settings, &VirtualClock::new(SystemTime::UNIX_EPOCH));
        assert_eq!(settings.batch_idle_duration, Duration::from_millis(100));
        assert_eq!(settings.batch_max_duration, Duration::from_secs(10));
    }
}
