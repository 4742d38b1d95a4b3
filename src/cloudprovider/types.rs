//! What goes into a cloud provider (a launch request, a node template) and what comes out (a
//! launched instance, a delete status, a drift reason).
//!
//! These are resolved values, not custom resources: the controllers turn a `Machine` and its
//! `AWSNodeTemplate` into them, so the providers (and the fake) do not depend on the CRD types.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Taint;
use nodewright_scheduling::instance_type::CapacityType;
use nodewright_scheduling::resources::Resources;

/// The operating-system image family of a node template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AmiFamily {
    /// EKS-optimized Amazon Linux 2, bootstrapped by `/etc/eks/bootstrap.sh`.
    #[default]
    Al2,
    /// Bottlerocket, configured by TOML settings.
    Bottlerocket,
    /// Canonical's EKS Ubuntu images, bootstrapped like AL2.
    Ubuntu,
    /// The images an `amiSelector` finds, with the user data passed through untouched.
    Custom,
}

impl AmiFamily {
    /// The name the custom resources use.
    pub fn as_str(self) -> &'static str {
        match self {
            AmiFamily::Al2 => "AL2",
            AmiFamily::Bottlerocket => "Bottlerocket",
            AmiFamily::Ubuntu => "Ubuntu",
            AmiFamily::Custom => "Custom",
        }
    }
}

impl fmt::Display for AmiFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Instance metadata service settings. The default is Karpenter's: the endpoint on, IMDSv2
/// tokens required, and a hop limit of 2 so that pods behind one network hop can still reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetadataOptions {
    pub http_endpoint_enabled: bool,
    pub http_protocol_ipv6_enabled: bool,
    pub http_put_response_hop_limit: i64,
    pub http_tokens_required: bool,
}

impl Default for MetadataOptions {
    fn default() -> Self {
        Self {
            http_endpoint_enabled: true,
            http_protocol_ipv6_enabled: false,
            http_put_response_hop_limit: 2,
            http_tokens_required: true,
        }
    }
}

/// One EBS disk of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct BlockDevice {
    /// e.g. `/dev/xvda`.
    pub device_name: String,
    pub volume_size_gib: Option<i64>,
    /// `gp3`, `gp2`, `io1`, … (EC2's names).
    pub volume_type: Option<String>,
    pub iops: Option<i64>,
    pub throughput: Option<i64>,
    pub encrypted: Option<bool>,
    pub kms_key_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub delete_on_termination: Option<bool>,
}

/// How nodes are launched: the resolved settings of an `AWSNodeTemplate` (or a provisioner's
/// inline `provider`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeTemplate {
    /// Tag selector for subnets: `KEY: VALUE`, `KEY: "a,b"`, `KEY: "*"` (any value), or
    /// `aws-ids: "subnet-1,subnet-2"`. All entries must match.
    pub subnet_selector: BTreeMap<String, String>,
    /// Tag selector for security groups, with the same syntax (`aws-ids` lists group ids).
    pub security_group_selector: BTreeMap<String, String>,
    pub instance_profile: Option<String>,
    pub ami_family: AmiFamily,
    /// Tag selector for images (`aws-ids` lists image ids); required for [`AmiFamily::Custom`],
    /// and overrides the family's default images otherwise.
    pub ami_selector: BTreeMap<String, String>,
    /// User data in the family's format; nodewright merges its bootstrap settings into it.
    pub user_data: Option<String>,
    /// Tags for instances, volumes, fleets and launch templates.
    pub tags: BTreeMap<String, String>,
    pub block_device_mappings: Vec<BlockDevice>,
    pub metadata_options: MetadataOptions,
    pub detailed_monitoring: bool,
    /// A user-managed launch template to launch from instead of nodewright's own.
    pub launch_template_name: Option<String>,
    /// EC2 Fleet `Context` (reserved capacity).
    pub context: Option<String>,
}

/// Kubelet settings that end up in a node's user data (Karpenter's names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeletSettings {
    pub cluster_dns: Vec<String>,
    pub container_runtime: Option<String>,
    pub max_pods: Option<i32>,
    pub pods_per_core: Option<i32>,
    /// Resource name to quantity, e.g. `cpu: 100m`.
    pub system_reserved: BTreeMap<String, String>,
    pub kube_reserved: BTreeMap<String, String>,
    /// Signal to threshold, e.g. `memory.available: 5%`.
    pub eviction_hard: BTreeMap<String, String>,
    pub eviction_soft: BTreeMap<String, String>,
    pub eviction_soft_grace_period: BTreeMap<String, String>,
    pub eviction_max_pod_grace_period: Option<i32>,
    pub image_gc_high_threshold_percent: Option<i32>,
    pub image_gc_low_threshold_percent: Option<i32>,
    pub cpu_cfs_quota: Option<bool>,
}

/// What the node registers with: labels, taints and kubelet settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSettings {
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Taints the node starts with and something else removes (registered with the rest).
    pub startup_taints: Vec<Taint>,
    pub kubelet: KubeletSettings,
}

/// Everything needed to launch one machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaunchRequest {
    pub machine_name: String,
    /// Becomes the EC2 ClientToken, so a retried launch never buys twice.
    pub machine_uid: String,
    pub provisioner_name: String,
    /// Candidate instance types; the provider orders them by price itself. Must not be empty.
    pub instance_types: Vec<String>,
    /// Allowed zones; empty allows every zone of the template's subnets.
    pub zones: BTreeSet<String>,
    /// Allowed capacity types; empty allows both. Spot is chosen whenever it is allowed and on
    /// offer, else on-demand.
    pub capacity_types: BTreeSet<CapacityType>,
    pub template: NodeTemplate,
    pub node: NodeSettings,
}

/// Which machine a delete or get is about: its name (instances are tagged with it) and, once
/// launched, its provider id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MachineId {
    pub name: String,
    pub provider_id: Option<String>,
}

impl MachineId {
    pub fn new(name: impl Into<String>, provider_id: Option<String>) -> Self {
        Self {
            name: name.into(),
            provider_id,
        }
    }
}

/// EC2's instance states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
    Stopping,
    Stopped,
    Unknown,
}

impl InstanceState {
    pub fn parse(name: &str) -> Self {
        match name {
            "pending" => InstanceState::Pending,
            "running" => InstanceState::Running,
            "shutting-down" => InstanceState::ShuttingDown,
            "terminated" => InstanceState::Terminated,
            "stopping" => InstanceState::Stopping,
            "stopped" => InstanceState::Stopped,
            _ => InstanceState::Unknown,
        }
    }

    /// Shutting down or terminated: the instance will not serve again.
    pub fn is_going_away(self) -> bool {
        matches!(
            self,
            InstanceState::ShuttingDown | InstanceState::Terminated
        )
    }
}

/// An instance the provider launched (or found).
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchedInstance {
    /// `aws:///ZONE/INSTANCE-ID`: what the node's `spec.providerID` will say.
    pub provider_id: String,
    pub instance_id: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    pub image_id: Option<String>,
    pub subnet_id: Option<String>,
    pub state: InstanceState,
    pub launch_time: Option<SystemTime>,
    /// From the instance's tags.
    pub machine_name: Option<String>,
    pub provisioner_name: Option<String>,
    /// The instance type's capacity (empty when the type is unknown).
    pub capacity: Resources,
    /// The node labels known from the launch: the instance type's labels, zone, region,
    /// capacity type and provisioner.
    pub labels: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// The name its node registers under, once the cloud says (EC2's private DNS name).
    pub hostname: Option<String>,
}

/// `aws:///ZONE/INSTANCE-ID`.
pub fn provider_id(zone: &str, instance_id: &str) -> String {
    format!("aws:///{zone}/{instance_id}")
}

/// The instance id of an `aws:///ZONE/INSTANCE-ID` (also `aws:///INSTANCE-ID` and
/// `aws://ZONE/INSTANCE-ID`, which some tools write), or `None` for anything else.
pub fn instance_id_of(provider_id: &str) -> Option<&str> {
    let rest = provider_id.strip_prefix("aws://")?;
    let id = rest.rsplit('/').next()?;
    (id.starts_with("i-") && id.len() > 2).then_some(id)
}

/// The outcome of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteStatus {
    /// Termination started (or was already under way); ask again to learn when it is done.
    Terminating,
    /// Nothing left to terminate.
    Gone,
}

/// Why an instance no longer matches its node template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftReason {
    /// The instance runs an image the template no longer resolves to.
    Ami {
        instance: String,
        current: Vec<String>,
    },
    /// The instance sits in a subnet the template's selector no longer finds.
    Subnet {
        instance: String,
        current: Vec<String>,
    },
}

impl fmt::Display for DriftReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriftReason::Ami { instance, current } => write!(
                f,
                "image {instance} is not among the template's images [{}]",
                current.join(", ")
            ),
            DriftReason::Subnet { instance, current } => write!(
                f,
                "subnet {instance} is not among the template's subnets [{}]",
                current.join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_id_round_trips_to_the_instance_id() {
        let id = provider_id("us-east-1a", "i-0abc");
        assert_eq!(id, "aws:///us-east-1a/i-0abc");
        assert_eq!(instance_id_of(&id), Some("i-0abc"));
        assert_eq!(instance_id_of("aws:///i-0abc"), Some("i-0abc"));
        assert_eq!(instance_id_of("gce://p/z/i-0abc"), None);
        assert_eq!(instance_id_of("aws:///us-east-1a/"), None);
    }

    #[test]
    fn default_metadata_options_require_imdsv2_with_two_hops() {
        let options = MetadataOptions::default();
        assert!(options.http_tokens_required);
        assert_eq!(options.http_put_response_hop_limit, 2);
        assert!(options.http_endpoint_enabled);
    }
}
