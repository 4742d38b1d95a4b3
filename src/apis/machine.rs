//! `Machine` (`karpenter.sh/v1alpha5`): one instance nodewright launched or is launching — what
//! it was asked for (requirements, resources, taints, kubelet settings, node template) and what it
//! became (provider id, node, capacity, lifecycle conditions).
//!
//! A machine is recorded before the EC2 call, so that no instance can exist without one.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, ProviderRef};
use super::kubelet::KubeletConfiguration;
use super::requirement::NodeSelectorRequirement;

/// The instance exists (the cloud provider returned it).
pub const MACHINE_LAUNCHED: &str = "MachineLaunched";
/// A node with the machine's provider id joined the cluster and was adopted.
pub const MACHINE_REGISTERED: &str = "MachineRegistered";
/// The node is Ready, its startup taints are gone and its extended resources are reported.
pub const MACHINE_INITIALIZED: &str = "MachineInitialized";
/// The machine no longer matches its provisioner or node template.
pub const MACHINE_DRIFTED: &str = "MachineDrifted";
/// The machine's node has no pods but daemonsets.
pub const MACHINE_EMPTY: &str = "MachineEmpty";
/// The machine outlived its provisioner's `ttlSecondsUntilExpired`.
pub const MACHINE_EXPIRED: &str = "MachineExpired";

/// What the machine was asked for.
// Printer columns repeat `type_ = "string"`; that is data, not a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "karpenter.sh",
    version = "v1alpha5",
    kind = "Machine",
    plural = "machines",
    status = "MachineStatus",
    category = "karpenter",
    doc = "One instance nodewright launched or is launching, recorded before the cloud provider is called.",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(
        name = "Type",
        type_ = "string",
        json_path = r".metadata.labels.node\.kubernetes\.io/instance-type"
    ),
    printcolumn(
        name = "Capacity",
        type_ = "string",
        json_path = r".metadata.labels.karpenter\.sh/capacity-type"
    ),
    printcolumn(
        name = "Zone",
        type_ = "string",
        json_path = r".metadata.labels.topology\.kubernetes\.io/zone"
    ),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.nodeName"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Provisioner",
        type_ = "string",
        json_path = r".metadata.labels.karpenter\.sh/provisioner-name",
        priority = 1
    ),
    printcolumn(
        name = "Template",
        type_ = "string",
        json_path = ".spec.machineTemplateRef.name",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MachineSpec {
    /// Taints put on the machine's node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::taints")]
    pub taints: Vec<Taint>,
    /// Taints the node starts with and something else removes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::taints")]
    pub startup_taints: Vec<Taint>,
    /// What the instance must satisfy (instance types, zones, capacity types, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::apis::schema::MAX_REQUIREMENTS))]
    pub requirements: Vec<NodeSelectorRequirement>,
    /// The resources the machine was launched for.
    #[serde(default, skip_serializing_if = "MachineResources::is_empty")]
    pub resources: MachineResources,
    /// Settings passed to the node's kubelet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<KubeletConfiguration>,
    /// The node template the instance is launched from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_template_ref: Option<ProviderRef>,
}

/// The resources a machine must offer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MachineResources {
    /// The least the machine must offer of each resource, summed over its pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::quantity_map")]
    pub requests: BTreeMap<String, Quantity>,
}

impl MachineResources {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineStatus {
    /// Name of the node the instance registered as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Cloud provider id of the instance (`aws:///<zone>/<instance-id>`).
    #[serde(
        default,
        rename = "providerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<String>,
    /// Full capacity of the instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::quantity_map")]
    pub capacity: BTreeMap<String, Quantity>,
    /// What pods can use once system reservations are taken off.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::apis::schema::quantity_map")]
    pub allocatable: BTreeMap<String, Quantity>,
    /// MachineLaunched, MachineRegistered, MachineInitialized, … and Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
