//! `AWSNodeTemplate` (`karpenter.k8s.aws/v1alpha1`): how nodes are launched on EC2 — subnets,
//! security groups, instance profile, AMIs, user data, tags, disks and instance metadata — and
//! the legacy inline `spec.provider` of a Provisioner, which carries the same launch settings.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NodeSelectorRequirement as CoreNodeSelectorRequirement;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::string_enum::string_enum;

string_enum! {
    /// The operating system image family of the nodes; `Custom` needs an `amiSelector`.
    pub enum AmiFamily {
        Al2 => "AL2",
        Bottlerocket => "Bottlerocket",
        Ubuntu => "Ubuntu",
        Windows2019 => "Windows2019",
        Windows2022 => "Windows2022",
        Custom => "Custom",
    }
}

string_enum! {
    /// Whether an instance metadata endpoint is reachable.
    pub enum EndpointState {
        Enabled => "enabled",
        Disabled => "disabled",
    }
}

string_enum! {
    /// Whether instance metadata requests need a session token (IMDSv2).
    pub enum HttpTokens {
        Required => "required",
        Optional => "optional",
    }
}

string_enum! {
    /// EBS volume types.
    pub enum VolumeType {
        Standard => "standard",
        Io1 => "io1",
        Io2 => "io2",
        Gp2 => "gp2",
        Sc1 => "sc1",
        St1 => "st1",
        Gp3 => "gp3",
    }
}

/// Launch settings shared by `AWSNodeTemplate.spec` and a Provisioner's inline `provider`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = crate::apis::cel::SUBNET_SELECTOR_REQUIRED.to_rule())]
#[x_kube(validation = crate::apis::cel::SECURITY_GROUP_SELECTOR_REQUIRED.to_rule())]
#[x_kube(validation = crate::apis::cel::LAUNCH_TEMPLATE_EXCLUSIVE.to_rule())]
pub struct AwsLaunchSettings {
    /// Subnets to launch into, found by tag (`aws-ids` lists ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::apis::schema::selector_map")]
    #[x_kube(validation = crate::apis::cel::SELECTOR_KEYS_NOT_EMPTY.to_rule())]
    #[x_kube(validation = crate::apis::cel::SUBNET_IDS.to_rule())]
    pub subnet_selector: Option<BTreeMap<String, String>>,
    /// Security groups of the nodes, found by tag (`aws-ids` lists ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::apis::schema::selector_map")]
    #[x_kube(validation = crate::apis::cel::SELECTOR_KEYS_NOT_EMPTY.to_rule())]
    #[x_kube(validation = crate::apis::cel::SECURITY_GROUP_IDS.to_rule())]
    pub security_group_selector: Option<BTreeMap<String, String>>,
    /// IAM instance profile of the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    /// AL2, Bottlerocket, Ubuntu, Windows2019, Windows2022 or Custom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::apis::schema::optional_enum)]
    pub ami_family: Option<AmiFamily>,
    /// Tags put on instances, volumes and launch templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = crate::apis::cel::TAG_KEYS_NOT_EMPTY.to_rule())]
    #[x_kube(validation = crate::apis::cel::tags_unrestricted())]
    pub tags: BTreeMap<String, String>,
    /// Name of a user-managed launch template; excludes the settings nodewright would put in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_template: Option<String>,
    /// Instance metadata service settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_options: Option<MetadataOptions>,
    /// Disks of the nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    /// EC2 Fleet `Context` (reserved capacity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// Instance metadata service (IMDS) settings of the launched nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetadataOptions {
    /// `enabled` or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::apis::schema::optional_enum)]
    pub http_endpoint: Option<EndpointState>,
    /// `enabled` or `disabled`.
    #[serde(
        default,
        rename = "httpProtocolIPv6",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(transform = crate::apis::schema::optional_enum)]
    pub http_protocol_ipv6: Option<EndpointState>,
    /// Hops a metadata response may travel, 1 to 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub http_put_response_hop_limit: Option<i64>,
    /// `required` (IMDSv2 only) or `optional`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::apis::schema::optional_enum)]
    pub http_tokens: Option<HttpTokens>,
}

/// One disk of a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = crate::apis::cel::DEVICE_NAME_REQUIRED.to_rule())]
pub struct BlockDeviceMapping {
    /// Device name, e.g. `/dev/xvda`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// The EBS volume behind the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebs: Option<BlockDevice>,
}

/// An EBS volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = crate::apis::cel::VOLUME_SIZE_OR_SNAPSHOT.to_rule())]
pub struct BlockDevice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// Provisioned IOPS (io1, io2, gp3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub iops: Option<i64>,
    /// KMS key (ARN) that encrypts the volume.
    #[serde(default, rename = "kmsKeyID", skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Snapshot to create the volume from.
    #[serde(
        default,
        rename = "snapshotID",
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_id: Option<String>,
    /// Throughput of a gp3 volume in MiB/s, 125 to 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 125, max = 1000))]
    pub throughput: Option<i64>,
    /// Size of the volume, 1G to 64T.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::apis::schema::quantity")]
    pub volume_size: Option<Quantity>,
    /// standard, io1, io2, gp2, sc1, st1 or gp3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::apis::schema::optional_enum)]
    pub volume_type: Option<VolumeType>,
}

/// The legacy inline `spec.provider` of a Provisioner: the launch settings, plus whatever else an
/// older manifest carries (kept as written, so nothing is lost on a round trip).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsProvider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(flatten)]
    pub settings: AwsLaunchSettings,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// How nodes are launched on EC2; referenced by a Provisioner's `providerRef`.
// Printer columns repeat `type_ = "string"`; that is data, not a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "karpenter.k8s.aws",
    version = "v1alpha1",
    kind = "AWSNodeTemplate",
    root = "AwsNodeTemplate",
    plural = "awsnodetemplates",
    status = "AwsNodeTemplateStatus",
    category = "karpenter",
    doc = "How nodes are launched on EC2: subnets, security groups, instance profile, AMIs, user data, tags and disks.",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "AMIFamily", type_ = "string", json_path = ".spec.amiFamily"),
    printcolumn(
        name = "InstanceProfile",
        type_ = "string",
        json_path = ".spec.instanceProfile",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = crate::apis::cel::USER_DATA_VS_LAUNCH_TEMPLATE.to_rule())]
#[x_kube(validation = crate::apis::cel::AMI_SELECTOR_VS_LAUNCH_TEMPLATE.to_rule())]
#[x_kube(validation = crate::apis::cel::CUSTOM_AMI_FAMILY_NEEDS_SELECTOR.to_rule())]
pub struct AwsNodeTemplateSpec {
    #[serde(flatten)]
    pub settings: AwsLaunchSettings,
    /// User data for the nodes, in the format of the AMI family; nodewright merges its own
    /// bootstrap settings into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// AMIs to use, found by tag (`aws-ids` lists ids, `aws::name` and `aws::owners` filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::apis::schema::selector_map")]
    #[x_kube(validation = crate::apis::cel::SELECTOR_KEYS_NOT_EMPTY.to_rule())]
    #[x_kube(validation = crate::apis::cel::AMI_IDS.to_rule())]
    pub ami_selector: Option<BTreeMap<String, String>>,
    /// Turn on EC2 detailed (one-minute) monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detailed_monitoring: Option<bool>,
}

/// What the node template's selectors resolved to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsNodeTemplateStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<SubnetStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<SecurityGroupStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amis: Vec<AmiStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubnetStatus {
    pub id: String,
    /// Availability zone of the subnet.
    pub zone: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecurityGroupStatus {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AmiStatus {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Instance types this AMI serves (architecture, GPU, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<CoreNodeSelectorRequirement>,
}
