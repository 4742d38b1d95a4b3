//! Runs the controller: the watchers on every replica (so a standby's cache is warm), and the
//! loops that act — provisioning, machine lifecycle, provisioner status, emptiness, node
//! termination — only while this
//! replica leads. Losing the lead stops the loops at once (their tasks are aborted, not asked);
//! new settings (from the karpenter-global-settings ConfigMap) restart them the same way.

use std::sync::Arc;

use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::cloudprovider::CloudProvider;
use crate::controllers::context::Context;
use crate::controllers::interruption::{self, Interruption};
use crate::controllers::{
    counter, emptiness, gc, lifecycle, node_template, provisioning, termination,
};
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::state::SharedState;
use crate::state::watch::spawn_watchers;

/// A controller ready to run.
pub struct Manager {
    ctx: Arc<Context>,
    running: watch::Sender<bool>,
    interruption: Option<Arc<Interruption>>,
    settings: Option<watch::Receiver<Settings>>,
}

impl Manager {
    /// Needs a Tokio runtime (the Event writer starts here).
    pub fn new(
        client: Client,
        cloud: Arc<dyn CloudProvider>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Manager {
        let state = SharedState::new();
        Manager {
            ctx: Arc::new(Context::new(client, cloud, clock, settings, metrics, state)),
            running: watch::Sender::new(false),
            interruption: None,
            settings: None,
        }
    }

    /// Restarts the loops with each settings `updates` publishes.
    pub fn with_settings_updates(mut self, updates: watch::Receiver<Settings>) -> Manager {
        self.settings = Some(updates);
        self
    }

    /// Evicts pods through `client`, which should not retry 429 itself (see
    /// [`crate::controllers::context::client_without_retries`]); by default the main client.
    pub fn with_eviction_client(mut self, client: Client) -> Manager {
        // Only `run` shares the context; before it this builder holds the one reference.
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.evictions = client;
        } else {
            tracing::error!("the eviction client is set after the controller started; ignored");
        }
        self
    }

    /// Handles the interruption queue (when `settings.interruption_queue` is set too).
    pub fn with_interruption(mut self, interruption: Interruption) -> Manager {
        self.interruption = Some(Arc::new(interruption));
        self
    }

    /// The cache the watchers fill.
    pub fn state(&self) -> Arc<SharedState> {
        self.ctx.state.clone()
    }

    /// Whether the acting loops run (this replica leads and its cache is synced).
    pub fn running(&self) -> watch::Receiver<bool> {
        self.running.subscribe()
    }

    /// Watches until `shutdown` turns true; runs the loops while `leader` is true.
    pub async fn run(self, mut leader: watch::Receiver<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut ctx = self.ctx;
        // Without a source of new settings, a sender kept here means they never change.
        let (_unchanging, fixed) = watch::channel(ctx.settings.clone());
        let mut settings = self.settings.unwrap_or(fixed);
        let watchers = spawn_watchers(&ctx.client, &ctx.state, &shutdown);
        tokio::select! {
            () = ctx.state.wait_synced() => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        }
        tracing::info!("caches synced");
        crate::memory::release_free_memory();
        loop {
            tokio::select! {
                _ = leader.wait_for(|leading| *leading) => {}
                _ = shutdown.wait_for(|stopped| *stopped) => break,
            }
            if *shutdown.borrow() {
                break;
            }
            let newest = settings.borrow_and_update().clone();
            if newest != ctx.settings {
                ctx = Arc::new(ctx.with_settings(newest));
            }
            tracing::info!("leading: starting the provisioning, lifecycle and counter loops");
            let (stop, stopped) = watch::channel(false);
            let mut loops = JoinSet::new();
            loops.spawn(provisioning::run::run(ctx.clone(), stopped.clone()));
            loops.spawn(lifecycle::run::run(ctx.clone(), stopped.clone()));
            loops.spawn(counter::run::run(ctx.clone(), stopped.clone()));
            loops.spawn(termination::run(ctx.clone(), stopped.clone()));
            loops.spawn(crate::controllers::disruption::run(
                ctx.clone(),
                stopped.clone(),
            ));
            loops.spawn(gc::run(ctx.clone(), stopped.clone()));
            loops.spawn(node_template::run(ctx.clone(), stopped.clone()));
            loops.spawn(interruption::run(
                ctx.clone(),
                self.interruption.clone(),
                stopped.clone(),
            ));
            loops.spawn(emptiness::run(ctx.clone(), stopped));
            self.running.send_replace(true);
            tokio::select! {
                _ = leader.wait_for(|leading| !*leading) => {
                    tracing::warn!("lost leadership: stopping the loops");
                }
                _ = shutdown.wait_for(|stopped| *stopped) => {}
                Ok(()) = settings.changed() => {
                    tracing::info!("new settings: restarting the loops");
                }
            }
            loops.abort_all();
            let _ = stop.send(true);
            while loops.join_next().await.is_some() {}
            self.running.send_replace(false);
            if *shutdown.borrow() {
                counter::run::refresh_metrics(&ctx);
                break;
            }
        }
        for watcher in watchers {
            let _ = watcher.await;
        }
    }
}
