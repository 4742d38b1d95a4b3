//! What the metrics report from the cache: a pod's `karpenter_pods_state` labels and the
//! $/hour of the nodes each provisioner launched.

use std::collections::{BTreeMap, HashMap};

use nodewright_scheduling::instance_type::{CapacityType, InstanceType};
use nodewright_scheduling::labels;

use super::ClusterState;
use super::views::InstanceTypesByProvisioner;
use crate::metrics::PodStateLabels;

impl ClusterState {
    /// The pod's `karpenter_pods_state` labels: its own, then its node's (zone, arch, capacity
    /// type, instance type, provisioner), empty while it is unbound or its node unknown.
    pub fn pod_state_labels(&self, namespace: &str, name: &str) -> Option<PodStateLabels> {
        let entry = self.pod(namespace, name)?;
        let node_labels = entry
            .node_name
            .as_deref()
            .and_then(|n| self.node(n))
            .map(|n| &n.core.labels);
        let label = |key: &str| {
            node_labels
                .and_then(|l| l.get(key))
                .cloned()
                .unwrap_or_default()
        };
        Some(PodStateLabels {
            name: entry.pod.name.clone(),
            namespace: entry.pod.namespace.clone(),
            owner: entry.owner_link.to_string(),
            node: entry.node_name.as_deref().unwrap_or_default().to_string(),
            provisioner: label(labels::PROVISIONER_NAME),
            zone: label(labels::ZONE),
            arch: label(labels::ARCH),
            capacity_type: label(labels::CAPACITY_TYPE),
            instance_type: label(labels::INSTANCE_TYPE),
            phase: entry.phase.to_string(),
        })
    }

    /// US dollars per hour of the registered nodes each provisioner launched, by capacity type:
    /// each node priced at its instance type's offering in its zone and capacity type. Nodes
    /// whose price is unknown count zero.
    pub fn cost_per_hour(
        &self,
        instance_types: &InstanceTypesByProvisioner,
    ) -> BTreeMap<(String, CapacityType), f64> {
        let types: HashMap<(&str, &str), &InstanceType> = instance_types
            .iter()
            .flat_map(|(p, list)| {
                list.iter()
                    .map(move |t| ((p.as_str(), t.name.as_str()), &**t))
            })
            .collect();
        let mut cost = BTreeMap::new();
        for node in self.nodes() {
            let node_labels = &node.core.labels;
            let (Some(provisioner), Some(capacity_type)) = (
                node_labels.get(labels::PROVISIONER_NAME),
                node_labels
                    .get(labels::CAPACITY_TYPE)
                    .and_then(|c| capacity_type(c)),
            ) else {
                continue;
            };
            let price = node_labels
                .get(labels::INSTANCE_TYPE)
                .and_then(|t| types.get(&(provisioner.as_str(), t.as_str())))
                .and_then(|t| {
                    t.offerings
                        .iter()
                        .find(|o| {
                            o.capacity_type == capacity_type
                                && node_labels.get(labels::ZONE) == Some(&o.zone)
                        })
                        .and_then(|o| o.price_per_hour)
                })
                .unwrap_or(0.0);
            *cost
                .entry((provisioner.clone(), capacity_type))
                .or_insert(0.0) += price;
        }
        cost
    }
}

fn capacity_type(value: &str) -> Option<CapacityType> {
    match value {
        labels::CAPACITY_TYPE_SPOT => Some(CapacityType::Spot),
        labels::CAPACITY_TYPE_ON_DEMAND => Some(CapacityType::OnDemand),
        _ => None,
    }
}
