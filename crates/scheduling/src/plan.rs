//! The scheduler's decision: which new nodes to launch, which pods go to existing nodes, and
//! which pods cannot be placed and why. `nodewright plan -o json` prints this value; its field
//! names are a contract (DESIGN.md §5): fields may be added, never renamed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::instance_type::CapacityType;
use crate::requirements::NodeSelectorRequirement;
use crate::resources::Resources;

/// The whole decision for one batch of pods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// New machines to launch, in launch order.
    pub nodes: Vec<PlannedNode>,
    /// Pods that fit on nodes the cluster already has (or machines already launching).
    pub existing: Vec<ExistingAssignment>,
    /// Pods no node can take, each with the reason.
    pub unschedulable: Vec<UnschedulablePod>,
    /// Sum of `pricePerHour` over `nodes`; 0 when prices are unknown.
    pub total_price_per_hour: f64,
    /// The cheapest any set of (fractional) nodes could cover the cpu and memory of the pods
    /// placed on new nodes, over the offerings their provisioners allow, with a node of its own
    /// for each pod that required hostname anti-affinity keeps apart. `None` without prices
    /// or new nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_bound_per_hour: Option<f64>,
    /// The same bound from cpu and memory alone, blind to anti-affinity: never above
    /// `lowerBoundPerHour`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cover_bound_per_hour: Option<f64>,
    /// `totalPricePerHour ÷ lowerBoundPerHour`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_ratio: Option<f64>,
    /// False when some chosen offering has no price: nodes are then ranked by size and price
    /// fields are 0.
    pub prices_known: bool,
    /// Which packing produced the plan (the cheapest of those tried).
    pub strategy: String,
}

/// One machine to launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedNode {
    pub provisioner: String,
    /// The expected launch: the cheapest offering of `instance_types` in `zone` and
    /// `capacity_type`.
    pub instance_type: String,
    /// Every type that fits the pods and requirements, cheapest first (what EC2 may choose
    /// from).
    pub instance_types: Vec<String>,
    pub zone: String,
    pub capacity_type: CapacityType,
    /// Price of the expected launch; 0 when unknown.
    pub price_per_hour: f64,
    /// `namespace/name` of each pod planned onto it.
    pub pods: Vec<String>,
    /// The pods' requests plus daemonset overhead.
    pub requests: Resources,
    /// Requirements for the Machine: the provisioner's, narrowed by the pods' and topology,
    /// with the zones and capacity types it may launch in. Add `node.kubernetes.io/instance-type
    /// In instanceTypes` for the complete set.
    pub requirements: Vec<NodeSelectorRequirement>,
}

/// Pods that fit on an existing node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExistingAssignment {
    pub node: String,
    pub pods: Vec<String>,
}

/// A pod left pending and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnschedulablePod {
    pub pod: String,
    pub reason: String,
}

impl Plan {
    /// Pods mentioned anywhere in the plan.
    pub fn pod_count(&self) -> usize {
        self.nodes.iter().map(|n| n.pods.len()).sum::<usize>()
            + self.existing.iter().map(|e| e.pods.len()).sum::<usize>()
            + self.unschedulable.len()
    }

    /// $/hour of the new nodes, by provisioner.
    pub fn price_by_provisioner(&self) -> BTreeMap<&str, f64> {
        let mut out = BTreeMap::new();
        for node in &self.nodes {
            *out.entry(node.provisioner.as_str()).or_insert(0.0) += node.price_per_hour;
        }
        out
    }
}
