//! The `karpenter-global-settings` ConfigMap, read at start and watched: each change that makes
//! good settings is published to the manager, which restarts its loops with them; a bad one is
//! logged in one line and the last good settings stay.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use crate::settings::Settings;
use crate::settings::global::{self, hold_back_restart_only};

/// A last change to settings however they were made (the simulation's batch-window floor).
type Adjustment = Arc<dyn Fn(&mut Settings) + Send + Sync>;

/// Where the ConfigMap is and what it applies over.
pub struct GlobalSettings {
    api: Api<ConfigMap>,
    name: String,
    base: Settings,
    explicit: BTreeSet<String>,
    adjust: Option<Adjustment>,
}

impl GlobalSettings {
    /// `base`: the flags' and environment's settings; `explicit`: the fields they set, which
    /// the ConfigMap does not override.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        base: Settings,
        explicit: BTreeSet<String>,
    ) -> GlobalSettings {
        GlobalSettings {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            base,
            explicit,
            adjust: None,
        }
    }

    /// Passes every settings it makes through `adjust`.
    pub fn adjusted(mut self, adjust: impl Fn(&mut Settings) + Send + Sync + 'static) -> Self {
        self.adjust = Some(Arc::new(adjust));
        self
    }

    /// The flags' and environment's settings alone.
    fn base(&self) -> Settings {
        self.finish(self.base.clone())
    }

    fn finish(&self, mut settings: Settings) -> Settings {
        if let Some(adjust) = &self.adjust {
            adjust(&mut settings);
        }
        settings
    }

    /// The settings now, and the resource version of the ConfigMap they came from. No ConfigMap
    /// is no change; one that cannot be read (its RBAC, the API server) is a warning; a bad value
    /// is an error.
    async fn load(&self) -> Result<(Settings, Option<String>), String> {
        match self.api.get_opt(&self.name).await {
            Ok(Some(config_map)) => {
                let settings = self.apply(&config_map)?;
                Ok((settings, config_map.resource_version()))
            }
            Ok(None) => Ok((self.base(), None)),
            Err(error) => {
                tracing::warn!(configmap = %self.name, %error, "cannot read the settings ConfigMap; using the flags and environment");
                Ok((self.base(), None))
            }
        }
    }

    /// The settings now, then a watch in a task until `shutdown`:
    /// the settings now and where the next ones come ([`Manager::with_settings_updates`]).
    ///
    /// [`Manager::with_settings_updates`]: crate::controllers::manager::Manager::with_settings_updates
    pub async fn start(
        self,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Settings, watch::Receiver<Settings>), String> {
        let (settings, version) = self.load().await?;
        let (updates, updated) = watch::channel(settings.clone());
        tokio::spawn(self.watch_from(version, updates, shutdown));
        Ok((settings, updated))
    }

    fn apply(&self, config_map: &ConfigMap) -> Result<Settings, String> {
        let empty = BTreeMap::new();
        let data = config_map.data.as_ref().unwrap_or(&empty);
        let applied = global::apply(&self.base, &self.explicit, data)?;
        for warning in &applied.warnings {
            tracing::warn!(configmap = %config_map.name_any(), "{warning}");
        }
        Ok(self.finish(applied.settings))
    }

    /// Watches the ConfigMap until `shutdown`, sending each new good settings to `updates`,
    /// passing over the version `seen` (already applied and logged).
    async fn watch_from(
        self,
        mut seen: Option<String>,
        updates: watch::Sender<Settings>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let stream = watcher::watcher(self.api.clone(), config).default_backoff();
        let mut stream = std::pin::pin!(stream);
        // Whether the last list held the ConfigMap: a relist without it means it was deleted.
        let mut listed = false;
        loop {
            let event = tokio::select! {
                _ = shutdown.wait_for(|stopped| *stopped) => return,
                event = stream.next() => event,
            };
            let next = match event {
                None => return,
                Some(Ok(Event::Init)) => {
                    listed = false;
                    continue;
                }
                Some(Ok(Event::InitApply(config_map) | Event::Apply(config_map))) => {
                    listed = true;
                    let version = config_map.resource_version();
                    if version.is_some() && version == seen {
                        continue;
                    }
                    seen = version;
                    self.apply(&config_map)
                }
                Some(Ok(Event::InitDone)) if !listed => {
                    seen = None;
                    Ok(self.base())
                }
                Some(Ok(Event::InitDone)) => continue,
                Some(Ok(Event::Delete(_))) => {
                    seen = None;
                    Ok(self.base())
                }
                Some(Err(error)) => {
                    tracing::warn!(configmap = %self.name, %error, "settings watch failed; retrying");
                    continue;
                }
            };
            match next {
                Ok(settings) => publish(&updates, settings),
                Err(error) => tracing::error!(
                    configmap = %self.name,
                    "{error}; keeping the last good settings"
                ),
            }
        }
    }
}

fn publish(updates: &watch::Sender<Settings>, mut settings: Settings) {
    updates.send_if_modified(|current| {
        let held = hold_back_restart_only(current, &mut settings);
        if !held.is_empty() {
            tracing::warn!(
                "settings changed that apply only when the controller restarts: {}",
                held.join(", ")
            );
        }
        if *current == settings {
            return false;
        }
        tracing::info!("settings changed; the loops restart with them");
        *current = settings;
        true
    });
}
