//! What the metrics report from the cache: the `karpenter_pods_state` counts and the
//! $/hour of the nodes each provisioner launched.

use std::collections::{BTreeMap, HashMap};

use nodewright_scheduling::instance_type::{CapacityType, InstanceType};
use nodewright_scheduling::labels;
use nodewright_scheduling::resources::Resources;

use super::ClusterState;
use super::views::InstanceTypesByProvisioner;
use crate::metrics::{NodeResources, PodStateLabels};

impl ClusterState {
    /// Every node's allocatable and capacity with the requests and limits of its pods, daemon
    /// pods apart (Karpenter's per-node gauges).
    pub fn node_resources(&self) -> Vec<NodeResources> {
        self.nodes()
            .map(|entry| {
                let mut resources = NodeResources {
                    name: entry.core.name.clone(),
                    labels: entry.core.labels.clone(),
                    phase: entry
                        .node
                        .status
                        .as_ref()
                        .and_then(|s| s.phase.clone())
                        .unwrap_or_default(),
                    allocatable: entry.core.allocatable.clone(),
                    capacity: if entry.core.capacity == Resources::default() {
                        entry.core.allocatable.clone()
                    } else {
                        entry.core.capacity.clone()
                    },
                    ..NodeResources::default()
                };
                for pod in self.pods_on_node(&entry.core.name) {
                    // The pod slot is not a container request: Karpenter leaves it out.
                    let requests = Resources {
                        pods: 0,
                        ..pod.pod.requests.clone()
                    };
                    let (requested, limited) = if pod.daemon {
                        (&mut resources.daemon_requests, &mut resources.daemon_limits)
                    } else {
                        (&mut resources.pod_requests, &mut resources.pod_limits)
                    };
                    *requested += &requests;
                    *limited += &pod.limits;
                }
                resources
            })
            .collect()
    }

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
        let mut counts: HashMap<(&str, &str, [&str; 5], &str), u64> = HashMap::new();
        for entry in self.pods.values() {
            let node = entry.node_name.as_deref().unwrap_or_default();
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
                .entry((entry.pod.namespace.as_str(), node, on_node, &*entry.phase))
                .or_default() += 1;
        }
        counts
            .into_iter()
            .map(
                |(
                    (
                        namespace,
                        node,
                        [provisioner, zone, arch, capacity_type, instance_type],
                        phase,
                    ),
                    count,
                )| {
                    let labels = PodStateLabels {
                        namespace: namespace.to_string(),
                        node: node.to_string(),
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
