//! Allocatable capacity of an instance type once booted: what the kubelet will offer to pods
//! after its own reservations (the rules Karpenter's AWS provider applies).

use serde::{Deserialize, Serialize};

use crate::resources::Resources;

/// An eviction threshold: an absolute quantity or a percentage of capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Threshold {
    /// Bytes (memory, ephemeral storage) — already parsed from a quantity.
    Quantity(i64),
    /// Percent of capacity, 0–100.
    Percent(f64),
}

/// The parts of a provisioner's `kubeletConfiguration` that change allocatable capacity,
/// already parsed from their Kubernetes quantity strings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfig {
    pub max_pods: Option<i64>,
    pub pods_per_core: Option<i64>,
    /// Replaces the default system reservation for each resource it sets.
    pub system_reserved: Option<Resources>,
    /// Replaces the default kube reservation for each resource it sets.
    pub kube_reserved: Option<Resources>,
    /// `memory.available` and `nodefs.available` hard thresholds.
    pub eviction_hard_memory: Option<Threshold>,
    pub eviction_hard_nodefs: Option<Threshold>,
    pub eviction_soft_memory: Option<Threshold>,
    pub eviction_soft_nodefs: Option<Threshold>,
}

/// Cluster-wide settings that shape allocatable capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocatableSettings {
    /// Fraction of memory the hypervisor and OS take before the kubelet sees it
    /// (VM_MEMORY_OVERHEAD_PERCENT, default 0.075).
    pub vm_memory_overhead_percent: f64,
}

impl Default for AllocatableSettings {
    fn default() -> Self {
        AllocatableSettings {
            vm_memory_overhead_percent: 0.075,
        }
    }
}
