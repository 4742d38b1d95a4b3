//! The AWS cloud provider: EC2 Fleet launches, instance types and prices, subnets, security
//! groups, AMIs, launch templates and the unavailable-offerings cache, over [`Ec2Api`].
//!
//! - [`ec2`]: the narrow EC2/SSM interface; [`sdk`]: its AWS SDK implementation;
//!   [`memory`]: an in-memory one with injectable faults.
//! - [`discovery`], [`ami`], [`launch_template`], [`userdata`]: what a launch is made of.
//! - [`fleet`]: the launch plan (capacity type, overrides), decided without I/O.
//! - [`instance_types`], [`pricing`], [`unavailable`]: what the scheduler may choose from.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::NodeSelectorRequirement as CoreNodeSelectorRequirement;
use nodewright_scheduling::catalog::PriceTable;
use nodewright_scheduling::instance_type::InstanceType;
use nodewright_scheduling::labels;

pub mod ami;
pub mod discovery;
pub mod ec2;
pub mod errors;
pub mod fleet;
pub mod instance_types;
mod instances;
mod launch;
pub mod launch_template;
pub mod memory;
pub mod pricing;
pub mod sdk;
mod sdk_shapes;
pub mod sqs;
pub mod unavailable;
pub mod userdata;

pub use ec2::Ec2Api;
pub use errors::{Ec2Error, Ec2ErrorKind};
pub use memory::InMemoryEc2;
pub use pricing::PricingApi;
pub use sdk::{SdkEc2, SdkSettings};

use self::ami::{AMI_CACHE_TTL, Accelerator, AmiResolver, ImageVariant, ResolvedImage, variant_of};
use self::discovery::{DISCOVERY_TTL, Discovery};
use self::ec2::{SecurityGroup, Subnet};
use self::instance_types::{INSTANCE_TYPES_TTL, InstanceTypeCatalog};
use self::launch_template::{LAUNCH_TEMPLATE_TTL, LaunchTemplates};
use self::pricing::{Pricing, SdkPricing};
use self::unavailable::{UNAVAILABLE_OFFERINGS_TTL, UnavailableOfferings};
use super::clock::{Clock, SystemClock};
use super::types::{
    DeleteStatus, DriftReason, LaunchRequest, LaunchedInstance, MachineId, NodeTemplate,
};
use super::{BoxFuture, CloudProvider, CloudProviderError, Result};
use crate::apis::node_template::{
    AmiStatus, AwsNodeTemplateStatus, SecurityGroupStatus, SubnetStatus,
};

/// The cluster and region the provider works for.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    pub cluster_name: String,
    /// The API server URL nodes join.
    pub cluster_endpoint: String,
    /// Base64 cluster CA bundle for node bootstrap.
    pub cluster_ca_bundle: Option<String>,
    /// `MAJOR.MINOR`, selects the public AMIs.
    pub kubernetes_version: String,
    pub region: String,
    /// `--prices`: when set, the only source of prices.
    pub prices: Option<PriceTable>,
}

/// What a node template's selectors resolve to now (for its status).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTemplate {
    pub subnets: Vec<Subnet>,
    pub security_groups: Vec<SecurityGroup>,
    pub images: Vec<ResolvedImage>,
}

impl ResolvedTemplate {
    /// As an AWSNodeTemplate's status: each image with the instance types it serves.
    pub fn status(&self) -> AwsNodeTemplateStatus {
        AwsNodeTemplateStatus {
            subnets: self
                .subnets
                .iter()
                .map(|s| SubnetStatus {
                    id: s.id.clone(),
                    zone: s.zone.clone(),
                })
                .collect(),
            security_groups: self
                .security_groups
                .iter()
                .map(|g| SecurityGroupStatus {
                    id: g.id.clone(),
                    name: g.name.clone(),
                })
                .collect(),
            amis: self
                .images
                .iter()
                .map(|image| AmiStatus {
                    id: image.id.clone(),
                    name: image.name.clone(),
                    requirements: image_requirements(image.variant),
                })
                .collect(),
        }
    }
}

/// The node requirements an image variant serves: its architecture, and whether it is for
/// NVIDIA GPUs, for Neuron accelerators or for neither.
fn image_requirements(variant: ImageVariant) -> Vec<CoreNodeSelectorRequirement> {
    let requirement =
        |key: &str, operator: &str, values: Option<Vec<String>>| CoreNodeSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values,
        };
    let mut requirements = vec![requirement(
        labels::ARCH,
        "In",
        Some(vec![variant.arch.kube_name().to_string()]),
    )];
    match variant.accelerator {
        Accelerator::Nvidia => {
            requirements.push(requirement(labels::INSTANCE_GPU_COUNT, "Exists", None))
        }
        Accelerator::Neuron => requirements.push(requirement(
            labels::INSTANCE_ACCELERATOR_COUNT,
            "Exists",
            None,
        )),
        Accelerator::None => {
            requirements.push(requirement(
                labels::INSTANCE_GPU_COUNT,
                "DoesNotExist",
                None,
            ));
            requirements.push(requirement(
                labels::INSTANCE_ACCELERATOR_COUNT,
                "DoesNotExist",
                None,
            ));
        }
    }
    requirements
}

/// Launches and tracks EC2 instances for one cluster.
pub struct AwsCloudProvider {
    settings: AwsSettings,
    ec2: Arc<dyn Ec2Api>,
    unavailable: Arc<UnavailableOfferings>,
    discovery: Discovery,
    amis: AmiResolver,
    launch_templates: LaunchTemplates,
    catalog: InstanceTypeCatalog,
    pricing: Pricing,
}

impl AwsCloudProvider {
    pub fn new(
        settings: AwsSettings,
        ec2: Arc<dyn Ec2Api>,
        pricing_api: Option<Arc<dyn PricingApi>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            unavailable: Arc::new(UnavailableOfferings::new(
                clock.clone(),
                UNAVAILABLE_OFFERINGS_TTL,
            )),
            discovery: Discovery::new(ec2.clone(), clock.clone(), DISCOVERY_TTL),
            amis: AmiResolver::new(ec2.clone(), clock.clone(), AMI_CACHE_TTL),
            launch_templates: LaunchTemplates::new(
                ec2.clone(),
                clock.clone(),
                &settings.cluster_name,
                LAUNCH_TEMPLATE_TTL,
            ),
            catalog: InstanceTypeCatalog::new(
                ec2.clone(),
                clock.clone(),
                &settings.region,
                INSTANCE_TYPES_TTL,
            ),
            pricing: Pricing::new(
                ec2.clone(),
                pricing_api,
                clock.clone(),
                &settings.region,
                settings.prices.clone(),
            ),
            settings,
            ec2,
        }
    }

    /// The provider over the AWS SDK, configured from the environment and `sdk`. In an
    /// isolated VPC (no Pricing API endpoint) on-demand prices are the embedded list prices.
    pub async fn from_sdk(
        mut settings: AwsSettings,
        sdk: &SdkSettings,
        isolated_vpc: bool,
    ) -> Self {
        let config = sdk::load_config(sdk).await;
        if settings.region.is_empty()
            && let Some(region) = config.region()
        {
            settings.region = region.to_string();
        }
        let ec2: Arc<dyn Ec2Api> = Arc::new(SdkEc2::new(&config));
        let pricing =
            (!isolated_vpc).then(|| Arc::new(SdkPricing::new(&config)) as Arc<dyn PricingApi>);
        Self::new(settings, ec2, pricing, Arc::new(SystemClock))
    }

    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    /// The offerings and subnets held out after capacity errors.
    pub fn unavailable_offerings(&self) -> &UnavailableOfferings {
        &self.unavailable
    }

    /// What a node template's selectors find now, for its status.
    pub async fn resolve_template(&self, template: &NodeTemplate) -> Result<ResolvedTemplate> {
        let subnets = self.discovery.subnets(&template.subnet_selector).await?;
        let security_groups = self
            .discovery
            .security_groups(&template.security_group_selector)
            .await?;
        let zones = subnets.iter().map(|s| s.zone.clone()).collect();
        let types = self.priced_instance_types(&zones).await?;
        let images = self
            .images_for(template, &types)
            .await?
            .into_values()
            .collect();
        Ok(ResolvedTemplate {
            subnets,
            security_groups,
            images,
        })
    }

    /// Deletes this cluster's launch templates that no launch used within an hour.
    pub async fn delete_unused_launch_templates(&self) -> Result<Vec<String>> {
        self.launch_templates.delete_unused().await
    }

    /// Refreshes instance types and prices now (the background task calls this).
    pub async fn refresh(&self) -> Result<()> {
        self.catalog.refresh_now().await?;
        self.pricing.table().await;
        Ok(())
    }

    /// Refreshes instance types and prices every `every`, until the handle is aborted.
    pub fn spawn_refresh(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                if let Err(err) = self.refresh().await {
                    tracing::warn!(error = %err, "refreshing instance types failed");
                }
            }
        })
    }

    /// Instance types offered in `zones`, priced, with held-out offerings marked unavailable.
    async fn priced_instance_types(&self, zones: &BTreeSet<String>) -> Result<Vec<InstanceType>> {
        let (catalog, _) = self.catalog.get().await?;
        let table = self.pricing.table().await;
        let mut types: Vec<InstanceType> = catalog.as_ref().clone();
        if table.region == self.settings.region {
            if let Some(summary) = table.apply(&mut types).summary() {
                self.pricing.warn_once(&summary);
            }
        } else {
            self.pricing.warn_once(&format!(
                "the price table is for {}, not {}; no prices used",
                table.region, self.settings.region
            ));
        }
        for instance_type in &mut types {
            instance_type.offerings.retain(|o| zones.contains(&o.zone));
        }
        types.retain(|t| !t.offerings.is_empty());
        self.unavailable.mark(&mut types);
        Ok(types)
    }

    /// The template's instance types: offered in its subnets' zones and bootable by its images.
    async fn template_instance_types(&self, template: &NodeTemplate) -> Result<Vec<InstanceType>> {
        let subnets = self.discovery.subnets(&template.subnet_selector).await?;
        let usable = discovery::subnet_per_zone(&subnets, &self.unavailable);
        let zones: BTreeSet<String> = subnets.iter().map(|s| s.zone.clone()).collect();
        let mut types = self.priced_instance_types(&zones).await?;
        for instance_type in &mut types {
            for offering in &mut instance_type.offerings {
                if !usable.contains_key(&offering.zone) {
                    offering.available = false;
                }
            }
        }
        if template.launch_template_name.is_some() {
            return Ok(types);
        }
        let images = self.images_for(template, &types).await?;
        types.retain(|t| variant_of(t).is_some_and(|v| images.contains_key(&v)));
        Ok(types)
    }

    /// The template's image for each kind of machine (arch, accelerator) among `types`; a type
    /// whose kind is missing cannot boot from this template.
    async fn images_for(
        &self,
        template: &NodeTemplate,
        types: &[InstanceType],
    ) -> Result<BTreeMap<ImageVariant, ResolvedImage>> {
        let variants = types.iter().filter_map(variant_of).collect();
        self.amis
            .resolve(
                template.ami_family,
                &template.ami_selector,
                &self.settings.kubernetes_version,
                &variants,
            )
            .await
    }

    async fn drift(
        &self,
        instance: &LaunchedInstance,
        template: &NodeTemplate,
    ) -> Result<Option<DriftReason>> {
        if let Some(subnet) = &instance.subnet_id {
            let subnets = self.discovery.subnets(&template.subnet_selector).await?;
            if !subnets.iter().any(|s| &s.id == subnet) {
                return Ok(Some(DriftReason::Subnet {
                    instance: subnet.clone(),
                    current: subnets.into_iter().map(|s| s.id).collect(),
                }));
            }
        }
        let (Some(image), None) = (&instance.image_id, &template.launch_template_name) else {
            return Ok(None);
        };
        let (catalog, _) = self.catalog.get().await?;
        let Some(variant) = catalog
            .iter()
            .find(|t| t.name == instance.instance_type)
            .and_then(variant_of)
        else {
            return Ok(None);
        };
        let images = self
            .amis
            .resolve(
                template.ami_family,
                &template.ami_selector,
                &self.settings.kubernetes_version,
                &BTreeSet::from([variant]),
            )
            .await?;
        Ok(images
            .get(&variant)
            .filter(|current| &current.id != image)
            .map(|current| DriftReason::Ami {
                instance: image.clone(),
                current: vec![current.id.clone()],
            }))
    }

    /// Tags every instance launched for this cluster carries.
    fn ownership_tags(&self) -> BTreeMap<String, String> {
        launch_template::cluster_tags(&self.settings.cluster_name)
    }
}

impl CloudProvider for AwsCloudProvider {
    fn create<'a>(&'a self, request: &'a LaunchRequest) -> BoxFuture<'a, Result<LaunchedInstance>> {
        Box::pin(self.launch(request))
    }

    fn delete<'a>(&'a self, machine: &'a MachineId) -> BoxFuture<'a, Result<DeleteStatus>> {
        Box::pin(self.terminate(machine))
    }

    fn get<'a>(&'a self, machine: &'a MachineId) -> BoxFuture<'a, Result<LaunchedInstance>> {
        Box::pin(self.find(machine))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<LaunchedInstance>>> {
        Box::pin(self.list_owned())
    }

    fn instance_types<'a>(
        &'a self,
        template: &'a NodeTemplate,
    ) -> BoxFuture<'a, Result<Vec<InstanceType>>> {
        Box::pin(self.template_instance_types(template))
    }

    fn is_drifted<'a>(
        &'a self,
        instance: &'a LaunchedInstance,
        template: &'a NodeTemplate,
    ) -> BoxFuture<'a, Result<Option<DriftReason>>> {
        Box::pin(self.drift(instance, template))
    }

    fn template_status<'a>(
        &'a self,
        template: &'a NodeTemplate,
    ) -> BoxFuture<'a, Result<AwsNodeTemplateStatus>> {
        Box::pin(async move {
            let resolved = self.resolve_template(template).await?;
            Ok(resolved.status())
        })
    }

    fn delete_unused(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(self.delete_unused_launch_templates())
    }

    fn name(&self) -> &'static str {
        "aws"
    }

    fn estimates_spot_prices(&self) -> bool {
        self.pricing.estimates_spot()
    }
}

impl std::fmt::Debug for AwsCloudProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCloudProvider")
            .field("cluster", &self.settings.cluster_name)
            .field("region", &self.settings.region)
            .finish_non_exhaustive()
    }
}

impl From<userdata::UserDataError> for CloudProviderError {
    fn from(err: userdata::UserDataError) -> Self {
        CloudProviderError::InvalidConfiguration(err.to_string())
    }
}
