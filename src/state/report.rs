//! What the metrics report from the cache: the `karpenter_pods_state` counts and the
//! $/hour of the nodes each provisioner launched.

use std::collections::{BTreeMap, HashMap};

use nodewright_scheduling::instance_type::{CapacityType, InstanceType};
use nodewright_scheduling::labels;

use super::ClusterState;
use super::views::InstanceTypesByProvisioner;
use crate::metrics::PodStateLabels;

impl ClusterState {
    /// The number of pods of each `karpenter_pods_state` series: by namespace and phase, and by
    /// their node's provisioner, zone, arch, capacity type and instance type (empty while a pod
    /// is unbound or its node unknown).
    pub fn pod_state_counts(&self) -> BTreeMap<PodStateLabels, u64> {
        const NODE_LABELS: [&str; 5] = [
            labels::PROVISIONER_NAME,
            labels::ZONE,
            labels::ARCH,
            labels::CAPACITY_TYPE,
            labels::INSTANCE_TYPE,
        ];
        // Counted by borrowed values first: only one label set per series is copied.
        let mut counts: HashMap<(&str, [&str; 5], &str), u64> = HashMap::new();
        for entry in self.pods.values() {
            let node_labels = entry
                .node_name
                .as_deref()
                .and_then(|n| self.node(n))
                .map(|n| &n.core.labels);
            let on_node = NODE_LABELS.map(|key| {
                node_labels
                    .and_then(|l| l.get(key))
                    .map_or("", String::as_str)
            });
            *counts
                .entry((entry.pod.namespace.as_str(), on_node, &*entry.phase))
                .or_default() += 1;
        }
        counts
            .into_iter()
            .map(
                |(
                    (namespace, [provisioner, zone, arch, capacity_type, instance_type], phase),
                    count,
                )| {
                    let labels = PodStateLabels {
                        namespace: namespace.to_string(),
                        provisioner: provisioner.to_string(),
                        zone: zone.to_string(),
                        arch: arch.to_string(),
                        capacity_type: capacity_type.to_string(),
                        instance_type: instance_type.to_string(),
                        phase: phase.to_string(),
                    };
                    (labels, count)
                },
            )
            .collect()
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
