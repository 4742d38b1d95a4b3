//! Provisioners as the scheduler sees them, each with the instance types it may launch.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::allocatable::{AllocatableSettings, KubeletConfig};
use crate::instance_type::InstanceType;
use crate::requirements::{NodeSelectorRequirement, Requirements};
use crate::resources::Resources;
use crate::taints::Taint;

/// A `karpenter.sh/v1alpha5` Provisioner, reduced to what scheduling needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Provisioner {
    pub name: String,
    /// Higher weights are tried first; ties go by name.
    pub weight: i32,
    pub requirements: Vec<NodeSelectorRequirement>,
    /// Labels every node gets; pods may select on them.
    pub labels: BTreeMap<String, String>,
    /// Pods must tolerate these to land on its nodes.
    pub taints: Vec<Taint>,
    /// Put on nodes at launch and removed by something else later; they do not keep pods off.
    pub startup_taints: Vec<Taint>,
    /// Maximum total capacity of its nodes, by resource name, in [`Resources`] units
    /// (millicores, bytes, counts). Absent resources are unlimited.
    pub limits: BTreeMap<String, i64>,
    /// Capacity of its nodes today (status.resources). `None`: summed from the existing nodes
    /// that carry its name.
    pub usage: Option<Resources>,
    pub kubelet: KubeletConfig,
}

impl Provisioner {
    /// Its requirements together with its labels (`key In [value]`).
    pub fn node_requirements(&self) -> Requirements {
        Requirements::from_node_selector(&self.requirements)
            .intersect(&Requirements::from_labels(&self.labels))
    }
}

/// An instance type a provisioner may launch, with the allocatable capacity its nodes will
/// have under that provisioner's kubelet configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeOption {
    pub instance_type: Arc<InstanceType>,
    pub allocatable: Resources,
}

/// A provisioner and the instance types it may launch (before its requirements narrow them).
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionerInput {
    pub provisioner: Provisioner,
    pub instance_types: Vec<TypeOption>,
}

impl ProvisionerInput {
    /// Each type's allocatable computed by the AWS rules under the provisioner's kubelet
    /// configuration.
    pub fn new(
        provisioner: Provisioner,
        instance_types: &[Arc<InstanceType>],
        settings: &AllocatableSettings,
    ) -> ProvisionerInput {
        let instance_types = instance_types
            .iter()
            .map(|t| TypeOption {
                allocatable: t.allocatable(&provisioner.kubelet, settings),
                instance_type: Arc::clone(t),
            })
            .collect();
        ProvisionerInput {
            provisioner,
            instance_types,
        }
    }
}
