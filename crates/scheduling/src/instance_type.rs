//! Instance types, their offerings (zone × capacity type × price), and allocatable capacity.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::resources::Resources;

/// Spot or on-demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CapacityType {
    #[serde(rename = "spot")]
    Spot,
    #[serde(rename = "on-demand")]
    OnDemand,
}

/// One way to buy an instance type: a zone, a capacity type and its price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Offering {
    pub zone: String,
    pub capacity_type: CapacityType,
    /// US dollars per hour; `None` when no price is known.
    pub price_per_hour: Option<f64>,
    /// False while the offering is held out (e.g. after an insufficient-capacity error).
    pub available: bool,
}

/// An EC2 instance type as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceType {
    /// e.g. `m5.large`.
    pub name: String,
    /// Single-valued well-known labels known before launch (arch, os, instance-type, family,
    /// category, generation, size, cpu, memory, gpu-*, hypervisor, …). Zone and capacity type are
    /// not here: they vary by offering.
    pub labels: BTreeMap<String, String>,
    /// What the machine has, before any reservation: EC2's vCPUs and MiB (the VM overhead is
    /// taken in [`InstanceType::allocatable`]), the default 20 GiB root volume as ephemeral
    /// storage, and GPUs/accelerators as extended resources. `pods` is the ENI-based default
    /// (`max_enis × (ipv4_per_eni − 1) + 2`); a kubelet `maxPods` overrides it in allocatable.
    pub capacity: Resources,
    /// Network interfaces the VPC CNI can use (those of the default network card) and IPv4
    /// addresses per interface: they bound pods.
    pub max_enis: i64,
    pub ipv4_per_eni: i64,
    pub offerings: Vec<Offering>,
}
