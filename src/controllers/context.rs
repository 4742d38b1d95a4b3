//! What every running loop shares: the API client, the cloud provider, the clock, settings,
//! metrics, the cluster state cache and the Event recorder; and the instance types each
//! provisioner can launch, resolved from its node template.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;

use crate::apis::Provisioner;
use crate::clock::Clock;
use crate::cloudprovider::{CloudProvider, CloudProviderError, NodeTemplate};
use crate::controllers::events::Events;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::state::{ClusterState, InstanceTypesByProvisioner, SharedState};
use crate::sync::lock;

pub struct Context {
    pub client: Client,
    /// Evictions go through this one: see [`client_without_retries`].
    pub evictions: Client,
    pub cloud: Arc<dyn CloudProvider>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub state: Arc<SharedState>,
    pub events: Events,
    /// The instance types last resolved, for loops that only read them (usage, cost).
    instance_types: Mutex<Arc<InstanceTypesByProvisioner>>,
}

/// What the controller's requests name themselves: kube sends no User-Agent, so without one an
/// API server's audit log and request metrics could not tell the controller from other clients.
pub const USER_AGENT: &str = concat!("nodewright/", env!("CARGO_PKG_VERSION"));

/// `config` with [`USER_AGENT`] on every request it makes.
pub fn identified(config: kube::Config) -> kube::Config {
    with_user_agent(config, USER_AGENT)
}

/// `config` with `agent` as the User-Agent of every request it makes.
pub fn with_user_agent(mut config: kube::Config, agent: &'static str) -> kube::Config {
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static(agent),
    ));
    config
}

/// A client for calls whose 429 is an answer rather than throttling: an eviction refused by a
/// disruption budget. kube's default client retries a 429 up to 15 times with growing waits,
/// which would hold a drain; and a retry that lands after the caller stopped waiting evicts a
/// pod nobody counts. Without retries the termination loop's own backoff decides.
pub fn client_without_retries(mut config: kube::Config) -> Result<Client, kube::Error> {
    config.default_retry = false;
    Client::try_from(config)
}

/// The least real time a cloud call is given before it counts as hung.
const MIN_REAL_CLOUD_DEADLINE: Duration = Duration::from_secs(30);

impl Context {
    pub fn new(
        client: Client,
        cloud: Arc<dyn CloudProvider>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        metrics: Arc<Metrics>,
        state: Arc<SharedState>,
    ) -> Context {
        let events = Events::spawn(client.clone(), clock.clone());
        Context {
            evictions: client.clone(),
            client,
            cloud,
            clock,
            settings,
            metrics,
            state,
            events,
            instance_types: Mutex::new(Arc::default()),
        }
    }

    /// This context with `settings`; the clients, cloud, cache, metrics and Events are shared.
    pub fn with_settings(&self, settings: Settings) -> Context {
        Context {
            client: self.client.clone(),
            evictions: self.evictions.clone(),
            cloud: self.cloud.clone(),
            clock: self.clock.clone(),
            settings,
            metrics: self.metrics.clone(),
            state: self.state.clone(),
            events: self.events.clone(),
            instance_types: Mutex::new(lock(&self.instance_types).clone()),
        }
    }

    /// One cloud provider call, bounded by [`Settings::cloud_call_deadline`], timed and counted
    /// under `controller` and `method`
    /// (`karpenter_cloudprovider_duration_seconds`, `karpenter_cloudprovider_errors_total`).
    pub async fn cloud_call<T>(
        &self,
        controller: &str,
        method: &str,
        call: impl Future<Output = Result<T, CloudProviderError>>,
    ) -> Result<T, CloudProviderError> {
        let started = Instant::now();
        // On a sped-up (simulated) clock the deadline is only seconds of real time, less than
        // a working cloud takes on a busy machine: never cut a call off sooner than a real
        // minimum, or slow calls would be taken for hung ones and fail for ever.
        let deadline = self
            .clock
            .real_duration(self.settings.cloud_call_deadline())
            .max(MIN_REAL_CLOUD_DEADLINE);
        let result = tokio::select! {
            result = call => result,
            () = tokio::time::sleep(deadline) => {
                Err(CloudProviderError::Retryable {
                    operation: method.to_string(),
                    code: Some("DeadlineExceeded".to_string()),
                    message: format!("no answer within {}s", deadline.as_secs()),
                })
            }
        };
        self.metrics.observe_cloudprovider_call(
            controller,
            method,
            self.cloud.name(),
            started.elapsed(),
            result.as_ref().err(),
        );
        result
    }

    /// The instance types resolved by the last [`Context::resolve_instance_types`].
    pub fn known_instance_types(&self) -> Arc<InstanceTypesByProvisioner> {
        lock(&self.instance_types).clone()
    }

    /// Asks the cloud provider for each provisioner's instance types (the provider caches
    /// them). A provisioner whose template cannot be resolved gets none, and the reason.
    pub async fn resolve_instance_types(
        &self,
        controller: &str,
    ) -> (InstanceTypesByProvisioner, BTreeMap<String, String>) {
        let templates: Vec<(String, Result<NodeTemplate, String>)> = {
            let state = self.state.read();
            state
                .provisioners()
                .filter(|p| !p.deleting)
                .map(|p| {
                    let template = node_template(&state, &p.provisioner, &self.settings);
                    (p.core.name.clone(), template)
                })
                .collect()
        };
        let mut types = InstanceTypesByProvisioner::new();
        let mut problems = BTreeMap::new();
        for (name, template) in templates {
            let template = match template {
                Ok(template) => template,
                Err(reason) => {
                    problems.insert(name, reason);
                    continue;
                }
            };
            let result = self
                .cloud_call(
                    controller,
                    "GetInstanceTypes",
                    self.cloud.instance_types(&template),
                )
                .await;
            match result {
                Ok(list) => {
                    types.insert(name, list.into_iter().map(Arc::new).collect::<Vec<_>>());
                }
                Err(error) => {
                    problems.insert(name, format!("cannot list instance types: {error}"));
                }
            }
        }
        let region = self.settings.region.as_deref().unwrap_or_default();
        self.metrics
            .instance_types()
            .set(region, types.values().flatten().map(Arc::as_ref));
        *lock(&self.instance_types) = Arc::new(types.clone());
        (types, problems)
    }
}

/// The launch settings of `provisioner`: its `providerRef`'s AWSNodeTemplate, else its inline
/// `provider`, with the default instance profile when it names none.
pub fn node_template(
    state: &ClusterState,
    provisioner: &Provisioner,
    settings: &Settings,
) -> Result<NodeTemplate, String> {
    let spec = &provisioner.spec;
    let name = provisioner.metadata.name.as_deref().unwrap_or_default();
    let template = if let Some(reference) = &spec.provider_ref {
        let template = state.node_template(&reference.name).ok_or_else(|| {
            format!(
                "provisioner {name} refers to AWSNodeTemplate {} which does not exist",
                reference.name
            )
        })?;
        NodeTemplate::from_spec(&template.spec).map_err(|e| describe(name, &e))?
    } else {
        match &spec.provider {
            Some(provider) => {
                NodeTemplate::from_provider(provider).map_err(|e| describe(name, &e))?
            }
            None => {
                return Err(format!(
                    "provisioner {name} has neither providerRef nor provider: nodewright cannot tell how to launch its nodes"
                ));
            }
        }
    };
    with_settings_defaults(template, settings)
        .map_err(|why| format!("provisioner {name}'s node template cannot be used: {why}"))
}

/// `template` with what the settings give every template: the global tags (`aws.tags`) under
/// its own, and `AWS_DEFAULT_INSTANCE_PROFILE` when it names no instance profile (nor a launch
/// template, which carries its own); an error when neither does, as Karpenter refuses: a node
/// without an instance profile has no IAM role and never joins.
pub fn with_settings_defaults(
    mut template: NodeTemplate,
    settings: &Settings,
) -> Result<NodeTemplate, String> {
    if !settings.tags.is_empty() {
        let own = std::mem::take(&mut template.tags);
        template.tags = settings.tags.clone();
        template.tags.extend(own);
    }
    if template.instance_profile.is_none() && template.launch_template_name.is_none() {
        template.instance_profile = settings.default_instance_profile.clone();
        if template.instance_profile.is_none() {
            return Err("it names no instanceProfile and no default is set \
                 (aws.defaultInstanceProfile, AWS_DEFAULT_INSTANCE_PROFILE)"
                .to_string());
        }
    }
    Ok(template)
}

fn describe(provisioner: &str, error: &CloudProviderError) -> String {
    format!("provisioner {provisioner}'s node template cannot be used: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(default_profile: Option<&str>) -> Settings {
        Settings {
            default_instance_profile: default_profile.map(str::to_string),
            ..Settings::for_cluster("test")
        }
    }

    #[test]
    fn a_template_without_an_instance_profile_takes_the_default() {
        let template = with_settings_defaults(NodeTemplate::default(), &settings(Some("nodes")))
            .expect("the default applies");
        assert_eq!(template.instance_profile.as_deref(), Some("nodes"));
        let own = NodeTemplate {
            instance_profile: Some("own".into()),
            ..NodeTemplate::default()
        };
        let kept = with_settings_defaults(own, &settings(Some("nodes"))).expect("kept");
        assert_eq!(kept.instance_profile.as_deref(), Some("own"));
    }

    #[test]
    fn neither_a_profile_nor_a_default_is_refused_unless_a_launch_template_brings_one() {
        let refused = with_settings_defaults(NodeTemplate::default(), &settings(None))
            .expect_err("no IAM role for the nodes");
        assert!(refused.contains("aws.defaultInstanceProfile"), "{refused}");
        let launch_template = NodeTemplate {
            launch_template_name: Some("mine".into()),
            ..NodeTemplate::default()
        };
        assert!(with_settings_defaults(launch_template, &settings(None)).is_ok());
    }

    #[test]
    fn global_tags_go_under_the_templates_own() {
        let mut settings = settings(Some("nodes"));
        settings.tags = [("team", "platform"), ("env", "prod")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let template = NodeTemplate {
            tags: [("team".to_string(), "ml".to_string())].into(),
            ..NodeTemplate::default()
        };
        let tags = with_settings_defaults(template, &settings)
            .expect("usable")
            .tags;
        assert_eq!(tags.get("team").map(String::as_str), Some("ml"));
        assert_eq!(tags.get("env").map(String::as_str), Some("prod"));
    }
}
