//! The narrow EC2 (and SSM) interface the AWS provider calls, in plain types.
//!
//! [`super::sdk::SdkEc2`] implements it with the AWS SDK; [`super::memory::InMemoryEc2`] in
//! memory, with injectable faults. Keeping the SDK's types out of the provider means the
//! provider's decisions can be tested without a network, and the wire format against moto.

use std::collections::BTreeMap;
use std::time::SystemTime;

use nodewright_scheduling::catalog::InstanceTypeInfo;
use nodewright_scheduling::instance_type::CapacityType;

use super::errors::Ec2Error;
use crate::cloudprovider::BoxFuture;
use crate::cloudprovider::types::{BlockDevice, InstanceState, MetadataOptions};

/// What every EC2 call returns.
pub type Ec2Result<T> = Result<T, Ec2Error>;

/// An EC2 `Filter`: `Name` with any of `Values`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

impl Filter {
    pub fn new(
        name: impl Into<String>,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    /// `tag:KEY` is any of `values`.
    pub fn tag(key: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self::new(format!("tag:{key}"), values)
    }

    /// The resource has a tag named `key`, whatever its value.
    pub fn tag_key(key: &str) -> Self {
        Self::new("tag-key", [key])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub zone: String,
    pub vpc_id: Option<String>,
    pub available_ip_address_count: i64,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    pub name: Option<String>,
    pub vpc_id: Option<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    /// EC2's name: `x86_64`, `arm64`, …
    pub architecture: Option<String>,
    /// ISO 8601, so that text order is time order.
    pub creation_date: Option<String>,
    pub owner_id: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// DescribeImages arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageQuery {
    pub image_ids: Vec<String>,
    pub owners: Vec<String>,
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchTemplate {
    pub id: String,
    pub name: String,
    pub tags: BTreeMap<String, String>,
}

/// The launch template data nodewright sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchTemplateData {
    pub image_id: String,
    pub security_group_ids: Vec<String>,
    pub instance_profile: Option<String>,
    /// Base64, as EC2 wants it.
    pub user_data: Option<String>,
    pub block_device_mappings: Vec<BlockDevice>,
    pub metadata_options: MetadataOptions,
    pub detailed_monitoring: bool,
}

/// CreateLaunchTemplate arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewLaunchTemplate {
    pub name: String,
    pub data: LaunchTemplateData,
    /// Tags of the launch template itself.
    pub tags: BTreeMap<String, String>,
}

/// One CreateFleet override: an instance type in a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FleetOverride {
    pub instance_type: String,
    pub subnet_id: String,
    pub zone: String,
}

/// One launch template with the overrides that use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetLaunchTemplateConfig {
    pub launch_template_name: String,
    pub overrides: Vec<FleetOverride>,
}

/// CreateFleet arguments for an instant fleet of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRequest {
    /// Idempotency token: the same token never launches twice.
    pub client_token: String,
    pub capacity_type: CapacityType,
    pub configs: Vec<FleetLaunchTemplateConfig>,
    /// Put on the instance, its volumes and the fleet.
    pub tags: BTreeMap<String, String>,
    pub context: Option<String>,
}

/// What an instant fleet launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetInstance {
    pub instance_ids: Vec<String>,
    pub instance_type: String,
    pub subnet_id: Option<String>,
    pub zone: Option<String>,
    pub capacity_type: CapacityType,
}

/// An override an instant fleet could not launch, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetError {
    pub code: String,
    pub message: String,
    pub instance_type: Option<String>,
    pub subnet_id: Option<String>,
    pub zone: Option<String>,
    pub capacity_type: Option<CapacityType>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetOutput {
    pub instances: Vec<FleetInstance>,
    pub errors: Vec<FleetError>,
}

/// An EC2 instance as DescribeInstances reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub instance_type: String,
    pub zone: String,
    pub subnet_id: Option<String>,
    pub image_id: Option<String>,
    pub capacity_type: CapacityType,
    pub state: InstanceState,
    pub launch_time: Option<SystemTime>,
    pub security_group_ids: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// `ip-10-0-1-5.ec2.internal`: the name its kubelet registers the node under.
    pub private_dns_name: Option<String>,
}

/// DescribeInstances arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceQuery {
    pub instance_ids: Vec<String>,
    pub filters: Vec<Filter>,
}

/// One availability zone an instance type is offered in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeOffering {
    pub instance_type: String,
    pub zone: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpotPrice {
    pub instance_type: String,
    pub zone: String,
    /// US dollars per hour.
    pub price: f64,
    pub timestamp: Option<SystemTime>,
}

/// The EC2 and SSM calls the provider makes. Paginated calls return every page.
pub trait Ec2Api: Send + Sync {
    fn describe_subnets(&self, filters: Vec<Filter>) -> BoxFuture<'_, Ec2Result<Vec<Subnet>>>;

    fn describe_security_groups(
        &self,
        filters: Vec<Filter>,
    ) -> BoxFuture<'_, Ec2Result<Vec<SecurityGroup>>>;

    fn describe_images(&self, query: ImageQuery) -> BoxFuture<'_, Ec2Result<Vec<Image>>>;

    /// An SSM parameter's value (the public AMI parameters live there).
    fn get_parameter(&self, name: String) -> BoxFuture<'_, Ec2Result<String>>;

    fn describe_launch_templates(
        &self,
        filters: Vec<Filter>,
    ) -> BoxFuture<'_, Ec2Result<Vec<LaunchTemplate>>>;

    fn create_launch_template(
        &self,
        template: NewLaunchTemplate,
    ) -> BoxFuture<'_, Ec2Result<LaunchTemplate>>;

    fn delete_launch_template(&self, name: String) -> BoxFuture<'_, Ec2Result<()>>;

    fn create_fleet(&self, request: FleetRequest) -> BoxFuture<'_, Ec2Result<FleetOutput>>;

    fn describe_instances(&self, query: InstanceQuery) -> BoxFuture<'_, Ec2Result<Vec<Instance>>>;

    fn terminate_instances(&self, instance_ids: Vec<String>) -> BoxFuture<'_, Ec2Result<()>>;

    fn describe_instance_types(&self) -> BoxFuture<'_, Ec2Result<Vec<InstanceTypeInfo>>>;

    /// Offerings by availability zone.
    fn describe_instance_type_offerings(&self) -> BoxFuture<'_, Ec2Result<Vec<TypeOffering>>>;

    /// The current spot price of every (type, zone), for Linux.
    fn describe_spot_price_history(
        &self,
        start_time: SystemTime,
    ) -> BoxFuture<'_, Ec2Result<Vec<SpotPrice>>>;
}
