//! `nodewright controller`: the in-cluster controller (what the Helm chart runs). Watches the
//! cluster through in-cluster config or KUBECONFIG, launches through EC2, serves `/metrics` and
//! the health probes, and acts only while it holds the leader Lease.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use nodewright_scheduling::catalog::PriceTable;
use tokio::sync::watch;

use crate::cloudprovider::CloudProvider;
use crate::cloudprovider::aws::sdk::{SdkSettings, load_config};
use crate::cloudprovider::aws::sqs::SdkQueue;
use crate::cloudprovider::aws::{AwsCloudProvider, AwsSettings};
use crate::controllers::global_settings::GlobalSettings;
use crate::controllers::interruption::Interruption;
use crate::controllers::manager::Manager;
use crate::leader::{self, Leadership, LeaseSettings};
use crate::metrics::Metrics;
use crate::serve::{Readiness, serve_health, serve_metrics};
use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub settings: Settings,
    /// The ConfigMap in SYSTEM_NAMESPACE with Karpenter v0.27–v0.31's settings keys
    /// (`aws.clusterName`, `batchMaxDuration`, …); watched, and overridden by what the flags
    /// and environment set.
    #[arg(long, env = "SETTINGS_CONFIGMAP", default_value = crate::settings::global::DEFAULT_CONFIGMAP)]
    pub settings_configmap: String,
    /// The settings fields the flags or environment gave (see [`Settings::explicit_fields`]).
    #[arg(skip)]
    pub explicit: std::collections::BTreeSet<String>,
    /// Namespace of the leader Lease (the controller's own; Karpenter's SYSTEM_NAMESPACE).
    #[arg(long, env = "SYSTEM_NAMESPACE")]
    pub system_namespace: Option<String>,
    /// Price file instead of the Pricing API and spot price history (offline clusters, tests).
    #[arg(long, env = "PRICES_FILE")]
    pub prices: Option<PathBuf>,
    /// Kubernetes `MAJOR.MINOR` of the nodes' AMIs (default: the API server's version).
    #[arg(long, env = "KUBERNETES_VERSION")]
    pub kubernetes_version: Option<String>,
}

/// Runs until SIGTERM or Ctrl-C. Errors at start-up are returned; later ones are logged and
/// retried by the loops.
pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let kube_config = crate::controllers::context::identified(
        kube::Config::infer()
            .await
            .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?,
    );
    let cluster_url = kube_config.cluster_url.to_string();
    let namespace = args
        .system_namespace
        .clone()
        .unwrap_or_else(|| kube_config.default_namespace.clone());
    let evictions = crate::controllers::context::client_without_retries(kube_config.clone())
        .context("building the Kubernetes client for evictions")?;
    let client = kube::Client::try_from(kube_config).context("building the Kubernetes client")?;
    let global_settings = GlobalSettings::new(
        client.clone(),
        &namespace,
        &args.settings_configmap,
        args.settings,
        args.explicit,
    );
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (settings, updated_settings) = global_settings
        .start(shutdown.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    settings.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let kubernetes_version = match args.kubernetes_version {
        Some(version) => version,
        None => {
            let info = client
                .apiserver_version()
                .await
                .context("asking the API server for its version")?;
            format!("{}.{}", info.major, info.minor.trim_end_matches('+'))
        }
    };
    let prices = match &args.prices {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(PriceTable::from_json(&text).with_context(|| format!("{}", path.display()))?)
        }
        None => None,
    };
    let aws = AwsSettings {
        cluster_name: settings.cluster_name.clone(),
        cluster_endpoint: settings.cluster_endpoint.clone().unwrap_or(cluster_url),
        cluster_ca_bundle: None,
        kubernetes_version,
        region: settings.region.clone().unwrap_or_default(),
        prices,
    };
    let sdk = SdkSettings {
        region: settings.region.clone(),
        ..SdkSettings::default()
    };
    let provider = Arc::new(AwsCloudProvider::from_sdk(aws, &sdk, settings.isolated_vpc).await);
    tracing::info!(
        cluster = %settings.cluster_name,
        region = %provider.settings().region,
        "starting nodewright controller"
    );
    let cloud: Arc<dyn CloudProvider> = provider.clone();
    let metrics = Arc::new(Metrics::new()?);
    let interruption = match &settings.interruption_queue {
        Some(queue) => {
            let queue = Arc::new(SdkQueue::new(&load_config(&sdk).await, queue));
            Some(Interruption::new(queue, provider, &metrics)?)
        }
        None => None,
    };
    let readiness = Readiness::new();
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let metrics_server = serve_metrics(
        SocketAddr::from(([0, 0, 0, 0], settings.metrics_port)),
        metrics.clone(),
        stopped(shutdown.clone()),
    )
    .await
    .with_context(|| format!("listening on metrics port {}", settings.metrics_port))?;
    let health_server = serve_health(
        SocketAddr::from(([0, 0, 0, 0], settings.health_probe_port)),
        readiness.clone(),
        stopped(shutdown.clone()),
    )
    .await
    .with_context(|| format!("listening on health port {}", settings.health_probe_port))?;
    let leadership = if settings.leader_elect {
        leader::spawn(
            client.clone(),
            LeaseSettings::new(namespace.clone()),
            stopped(shutdown.clone()),
        )?
    } else {
        Leadership::always()
    };
    let manager = Manager::new(
        client,
        cloud,
        Arc::new(crate::clock::SystemClock),
        settings,
        metrics,
    )
    .with_eviction_client(evictions)
    .with_settings_updates(updated_settings);
    let manager = match interruption {
        Some(interruption) => manager.with_interruption(interruption),
        None => manager,
    };
    tokio::spawn(report_readiness(
        readiness,
        manager.state(),
        leadership.subscribe(),
        manager.running(),
    ));
    let leading = leadership.subscribe();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping");
        let _ = shutdown_tx.send(true);
    });
    manager.run(leading, shutdown).await;
    leadership.stopped().await;
    let _ = metrics_server.stopped().await;
    let _ = health_server.stopped().await;
    Ok(())
}

/// Keeps `/readyz` in step: caches synced, leading, loops running.
async fn report_readiness(
    readiness: Readiness,
    state: Arc<crate::state::SharedState>,
    mut leading: watch::Receiver<bool>,
    mut running: watch::Receiver<bool>,
) {
    state.wait_synced().await;
    readiness.set_caches_synced(true);
    loop {
        readiness.set_leading(*leading.borrow_and_update());
        readiness.set_loops_running(*running.borrow_and_update());
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { return },
            changed = running.changed() => if changed.is_err() { return },
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
