//! The cloud a simulation launches in (the in-process fake, or EC2 at `AWS_ENDPOINT_URL`), and
//! [`ObservedCloud`], which counts the instances launched and terminated over the run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use clap::ValueEnum;
use nodewright_scheduling::instance_type::InstanceType;

use crate::apis::node_template::AwsNodeTemplateStatus;
use crate::clock::Clock;
use crate::cloudprovider::aws::sdk::{SdkSettings, load_config};
use crate::cloudprovider::aws::{AwsCloudProvider, AwsSettings, Ec2Api, SdkEc2};
use crate::cloudprovider::fake::FakeCloudProvider;
use crate::cloudprovider::{
    BoxFuture, CloudProvider, DeleteStatus, DriftReason, LaunchRequest, LaunchedInstance,
    MachineId, NodeTemplate, Result,
};
use crate::sync::lock;

use super::Scenario;

/// Which cloud the simulated kubelets (and the controller) use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum CloudKind {
    /// The deterministic in-process fake: the embedded catalog, priced from the scenario's
    /// price file.
    #[default]
    Fake,
    /// The real AWS provider against the EC2 at `AWS_ENDPOINT_URL` (e.g. moto_server).
    Aws,
}

/// How `--cloud aws` reaches EC2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSimOptions {
    /// Instances are tagged for (and found by) this cluster name; a separately started
    /// controller must use the same `CLUSTER_NAME`.
    pub cluster_name: String,
    /// Selects the public EKS AMIs (`MAJOR.MINOR`).
    pub kubernetes_version: String,
    /// EC2 endpoint; `None` reads `AWS_ENDPOINT_URL` (the SDK's own variable).
    pub endpoint_url: Option<String>,
}

impl Default for AwsSimOptions {
    fn default() -> Self {
        AwsSimOptions {
            cluster_name: "nodewright-sim".to_string(),
            kubernetes_version: "1.27".to_string(),
            endpoint_url: None,
        }
    }
}

/// The cloud as built: the provider everyone uses, and the AWS one itself when it is AWS (for
/// what only it offers, such as resolving a node template's subnets).
pub(crate) struct BuiltCloud {
    pub provider: Arc<dyn CloudProvider>,
    pub aws: Option<Arc<AwsCloudProvider>>,
}

pub(crate) async fn build(
    kind: CloudKind,
    aws: &AwsSimOptions,
    scenario: &Scenario,
    clock: Arc<dyn Clock>,
    api_server_url: &str,
) -> std::result::Result<BuiltCloud, String> {
    match kind {
        CloudKind::Fake => {
            let types: Vec<InstanceType> = scenario
                .offerings
                .instance_types
                .iter()
                .map(|t| InstanceType::clone(t))
                .collect();
            let estimated =
                (scenario.offerings.prices.as_ref()).is_some_and(|p| p.spot_estimate.is_some());
            let fake = FakeCloudProvider::new(types, &scenario.region, clock)
                .with_estimated_spot_prices(estimated);
            Ok(BuiltCloud {
                provider: Arc::new(fake),
                aws: None,
            })
        }
        CloudKind::Aws => {
            // The price file's, else the embedded list prices, as the fake cloud's.
            let prices = scenario.offerings.prices.clone();
            let endpoint_url = aws
                .endpoint_url
                .clone()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
            // moto accepts any credentials; a local endpoint without any set would otherwise
            // wait for the instance metadata service.
            let static_credentials = match (&endpoint_url, std::env::var("AWS_ACCESS_KEY_ID")) {
                (Some(_), Err(_)) => Some(("testing".to_string(), "testing".to_string())),
                _ => None,
            };
            let sdk = SdkSettings {
                region: Some(scenario.region.clone()),
                endpoint_url,
                static_credentials,
                ..SdkSettings::default()
            };
            let config = load_config(&sdk).await;
            let ec2: Arc<dyn Ec2Api> = Arc::new(SdkEc2::new(&config));
            let settings = AwsSettings {
                cluster_name: aws.cluster_name.clone(),
                cluster_endpoint: api_server_url.to_string(),
                cluster_ca_bundle: None,
                kubernetes_version: aws.kubernetes_version.clone(),
                region: scenario.region.clone(),
                prices,
            };
            let provider = Arc::new(AwsCloudProvider::new(settings, ec2, None, clock));
            Ok(BuiltCloud {
                provider: provider.clone(),
                aws: Some(provider),
            })
        }
    }
}

/// A cloud provider that remembers every instance it saw, so the report can say how many were
/// launched and terminated whoever launched them (an in-process controller, or a separate one
/// whose instances show up in `list`).
pub struct ObservedCloud {
    inner: Arc<dyn CloudProvider>,
    seen: Mutex<Seen>,
}

/// Lists are numbered when they start; an instance is judged gone only by a list that started
/// after it was known, so a slow list cannot report a fresh launch as terminated.
#[derive(Default)]
struct Seen {
    next: u64,
    newest_applied: u64,
    /// Live instance id → number of the event that last saw it.
    live: BTreeMap<String, u64>,
    launched: BTreeSet<String>,
    terminated: BTreeSet<String>,
}

impl ObservedCloud {
    pub fn new(inner: Arc<dyn CloudProvider>) -> Self {
        ObservedCloud {
            inner,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Distinct instances seen running (or launched) so far.
    pub fn launched(&self) -> usize {
        lock(&self.seen).launched.len()
    }

    /// Distinct instances seen and later gone (or going away).
    pub fn terminated(&self) -> usize {
        lock(&self.seen).terminated.len()
    }

    fn start_list(&self) -> u64 {
        let mut seen = lock(&self.seen);
        seen.next += 1;
        seen.next
    }

    fn saw_list(&self, number: u64, instances: &[LaunchedInstance]) {
        let mut seen = lock(&self.seen);
        let current: BTreeSet<&str> = instances
            .iter()
            .filter(|i| !i.state.is_going_away())
            .map(|i| i.instance_id.as_str())
            .collect();
        let newest = number >= seen.newest_applied;
        if newest {
            seen.newest_applied = number;
            let gone: Vec<String> = seen
                .live
                .iter()
                .filter(|(id, known)| **known < number && !current.contains(id.as_str()))
                .map(|(id, _)| id.clone())
                .collect();
            for id in gone {
                seen.live.remove(&id);
                seen.terminated.insert(id);
            }
        }
        for id in current {
            if seen.terminated.contains(id) {
                continue;
            }
            seen.launched.insert(id.to_string());
            let known = seen.live.entry(id.to_string()).or_insert(number);
            *known = (*known).max(number);
        }
    }

    fn saw_launch(&self, instance: &LaunchedInstance) {
        let mut seen = lock(&self.seen);
        seen.next += 1;
        let number = seen.next;
        seen.launched.insert(instance.instance_id.clone());
        if !seen.terminated.contains(&instance.instance_id) {
            seen.live.insert(instance.instance_id.clone(), number);
        }
    }
}

impl CloudProvider for ObservedCloud {
    fn create<'a>(&'a self, request: &'a LaunchRequest) -> BoxFuture<'a, Result<LaunchedInstance>> {
        Box::pin(async move {
            let launched = self.inner.create(request).await;
            if let Ok(instance) = &launched {
                self.saw_launch(instance);
            }
            launched
        })
    }

    fn delete<'a>(&'a self, machine: &'a MachineId) -> BoxFuture<'a, Result<DeleteStatus>> {
        self.inner.delete(machine)
    }

    fn get<'a>(&'a self, machine: &'a MachineId) -> BoxFuture<'a, Result<LaunchedInstance>> {
        self.inner.get(machine)
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<LaunchedInstance>>> {
        Box::pin(async move {
            let number = self.start_list();
            let listed = self.inner.list().await;
            if let Ok(instances) = &listed {
                self.saw_list(number, instances);
            }
            listed
        })
    }

    fn instance_types<'a>(
        &'a self,
        template: &'a NodeTemplate,
    ) -> BoxFuture<'a, Result<Vec<InstanceType>>> {
        self.inner.instance_types(template)
    }

    fn is_drifted<'a>(
        &'a self,
        instance: &'a LaunchedInstance,
        template: &'a NodeTemplate,
    ) -> BoxFuture<'a, Result<Option<DriftReason>>> {
        self.inner.is_drifted(instance, template)
    }

    fn template_status<'a>(
        &'a self,
        template: &'a NodeTemplate,
    ) -> BoxFuture<'a, Result<AwsNodeTemplateStatus>> {
        self.inner.template_status(template)
    }

    fn delete_unused(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        self.inner.delete_unused()
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn estimates_spot_prices(&self) -> bool {
        self.inner.estimates_spot_prices()
    }
}
