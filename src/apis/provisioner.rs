//! `Provisioner` (`karpenter.sh/v1alpha5`): which nodes may be launched for unschedulable pods —
//! their requirements, labels and taints, kubelet settings, capacity limits, where to launch
//! them (`providerRef` or the legacy inline `provider`) and when to take them away again.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, ProviderRef};
use super::kubelet::KubeletConfiguration;
use super::node_template::AwsProvider;
use super::requirement::NodeSelectorRequirement;

/// What a provisioner's nodes look like, where they are launched and when they go away.
// Printer columns repeat `type_ = "string"`; that is data, not a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "karpenter.sh",
    version = "v1alpha5",
    kind = "Provisioner",
    plural = "provisioners",
    status = "ProvisionerStatus",
    category = "karpenter",
    doc = "Which nodes may be launched for unschedulable pods, where, and when they are taken away again.",
    derive = "PartialEq",
    derive = "Default",
    validation = crate::apis::cel::PROVISIONER_NAME_LENGTH.to_rule(),
    printcolumn(name = "Template", type_ = "string", json_path = ".spec.providerRef.name"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".spec.weight"),
    printcolumn(name = "Consolidation", type_ = "boolean", json_path = ".spec.consolidation.enabled", priority = 1),
    printcolumn(name = "TTLAfterEmpty", type_ = "integer", json_path = ".spec.ttlSecondsAfterEmpty", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = crate::apis::cel::PROVIDER_EXCLUSIVE.to_rule())]
#[x_kube(validation = crate::apis::cel::PROVIDER_REQUIRED.to_rule())]
#[x_kube(validation = crate::apis::cel::TTL_AFTER_EMPTY_EXCLUSIVE.to_rule())]
pub struct ProvisionerSpec {
    /// Annotations put on every node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Labels put on every node; layered with the requirements.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::label_map")]
    #[x_kube(validation = crate::apis::cel::labels_without_provisioner_name())]
    #[x_kube(validation = crate::apis::cel::label_keys_unrestricted())]
    pub labels: BTreeMap<String, String>,
    /// Taints put on every node; only pods that tolerate them get nodes from this provisioner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::taints")]
    pub taints: Vec<Taint>,
    /// Taints the node starts with and something else (a daemonset) removes; pods need not
    /// tolerate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::taints")]
    pub startup_taints: Vec<Taint>,
    /// Constraints on the nodes' labels (instance type, zone, capacity type, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::apis::schema::MAX_REQUIREMENTS))]
    #[x_kube(validation = crate::apis::cel::requirements_without_provisioner_name())]
    pub requirements: Vec<NodeSelectorRequirement>,
    /// Settings passed to the kubelet of every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_configuration: Option<KubeletConfiguration>,
    /// Legacy inline AWS settings; prefer `providerRef`. Exactly one of the two is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<AwsProvider>,
    /// The `AWSNodeTemplate` that says how to launch the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<ProviderRef>,
    /// Seconds an empty node (daemonsets aside) lives before it is deleted; unset keeps it.
    /// Excludes `consolidation.enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_empty: Option<i64>,
    /// Seconds after which a node is replaced, however busy; unset never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_until_expired: Option<i64>,
    /// Caps on the total resources of the nodes this provisioner launches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Priority among provisioners (higher first), 1 to 100; unset counts as 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: Option<i32>,
    /// Removing or replacing nodes whose pods fit elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consolidation: Option<Consolidation>,
}

/// Caps on what a provisioner may launch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Limits {
    /// Resource name → the most this provisioner's nodes may add up to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::quantity_map")]
    pub resources: BTreeMap<String, Quantity>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Consolidation {
    /// Delete or replace nodes whose pods fit elsewhere, more cheaply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionerStatus {
    /// Resources of the nodes this provisioner has launched, summed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::quantity_map")]
    pub resources: BTreeMap<String, Quantity>,
    /// When this provisioner last launched or removed a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl ProvisionerSpec {
    /// Whether consolidation is switched on.
    pub fn consolidation_enabled(&self) -> bool {
        self.consolidation
            .as_ref()
            .and_then(|c| c.enabled)
            .unwrap_or(false)
    }
}
