//! Karpenter's per-node resource gauges (`karpenter_nodes_allocatable`,
//! `_total_pod_requests`/`_limits`, `_total_daemon_requests`/`_limits`, `_system_overhead`),
//! which its capacity dashboard reads. Each series carries the node's name, provisioner and
//! phase, and one label per well-known node label: the key's part after `/`, lowercased, `-` as
//! `_` (`zone`, `instance_type`, `capacity_type`, `instance_family`, …), empty when unset.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use nodewright_scheduling::labels;
use nodewright_scheduling::resources::Resources;
use prometheus::{GaugeVec, Opts, Registry};

use crate::sync::lock;

/// The node labels Karpenter v0.31 (with the AWS provider) turns into metric labels.
const WELL_KNOWN: [&str; 27] = [
    labels::PROVISIONER_NAME,
    "karpenter.sh/nodepool",
    labels::ZONE,
    labels::REGION,
    labels::INSTANCE_TYPE,
    labels::ARCH,
    "kubernetes.io/os",
    labels::CAPACITY_TYPE,
    "karpenter.k8s.aws/instance-hypervisor",
    "karpenter.k8s.aws/instance-encryption-in-transit-supported",
    "karpenter.k8s.aws/instance-category",
    "karpenter.k8s.aws/instance-family",
    "karpenter.k8s.aws/instance-generation",
    "karpenter.k8s.aws/instance-size",
    "karpenter.k8s.aws/instance-local-nvme",
    "karpenter.k8s.aws/instance-cpu",
    "karpenter.k8s.aws/instance-memory",
    "karpenter.k8s.aws/instance-network-bandwidth",
    "karpenter.k8s.aws/instance-pods",
    "karpenter.k8s.aws/instance-gpu-name",
    "karpenter.k8s.aws/instance-gpu-manufacturer",
    "karpenter.k8s.aws/instance-gpu-count",
    "karpenter.k8s.aws/instance-gpu-memory",
    "karpenter.k8s.aws/instance-accelerator-name",
    "karpenter.k8s.aws/instance-accelerator-manufacturer",
    "karpenter.k8s.aws/instance-accelerator-count",
    "node.kubernetes.io/windows-build",
];

/// What one node holds, in the core's units.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeResources {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub phase: String,
    pub allocatable: Resources,
    pub capacity: Resources,
    pub pod_requests: Resources,
    pub pod_limits: Resources,
    pub daemon_requests: Resources,
    pub daemon_limits: Resources,
}

fn label_name(key: &str) -> String {
    key.rsplit('/')
        .next()
        .unwrap_or(key)
        .to_lowercase()
        .replace('-', "_")
}

/// `ephemeral-storage` → `ephemeral_storage`, as Karpenter names resource types in labels.
fn resource_type(name: &str) -> String {
    name.to_lowercase().replace('-', "_")
}

#[derive(Debug)]
pub struct NodeMetrics {
    /// allocatable, pod requests, pod limits, daemon requests, daemon limits, system overhead.
    gauges: [GaugeVec; 6],
    /// The series set last time, by node, so those of gone nodes go.
    series: Mutex<HashMap<String, NodeSeries>>,
}

impl NodeMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<NodeMetrics> {
        let mut names: Vec<String> = ["resource_type", "node_name", "provisioner", "phase"]
            .map(String::from)
            .to_vec();
        names.extend(WELL_KNOWN.iter().map(|key| label_name(key)));
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let gauge = |name: &str, help: &str| {
            let metric = GaugeVec::new(Opts::new(name, help), &names)?;
            registry.register(Box::new(metric.clone()))?;
            Ok::<_, prometheus::Error>(metric)
        };
        Ok(NodeMetrics {
            gauges: [
                gauge(
                    "karpenter_nodes_allocatable",
                    "A node's allocatable resources, by resource type.",
                )?,
                gauge(
                    "karpenter_nodes_total_pod_requests",
                    "Requests of the non-daemonset pods on a node, by resource type.",
                )?,
                gauge(
                    "karpenter_nodes_total_pod_limits",
                    "Limits of the non-daemonset pods on a node, by resource type.",
                )?,
                gauge(
                    "karpenter_nodes_total_daemon_requests",
                    "Requests of the daemonset pods on a node, by resource type.",
                )?,
                gauge(
                    "karpenter_nodes_total_daemon_limits",
                    "Limits of the daemonset pods on a node, by resource type.",
                )?,
                gauge(
                    "karpenter_nodes_system_overhead",
                    "A node's capacity less its allocatable (kubelet and system reservations), by resource type.",
                )?,
            ],
            series: Mutex::new(HashMap::new()),
        })
    }

    /// Sets every node's series; those of nodes (or resources, or label values) no longer there
    /// go. A node's label values are owned once per pass, not once per series.
    pub fn set(&self, nodes: &[NodeResources]) {
        let mut now: HashMap<String, NodeSeries> = HashMap::with_capacity(nodes.len());
        for node in nodes {
            let provisioner = node
                .labels
                .get(labels::PROVISIONER_NAME)
                .cloned()
                .unwrap_or_default();
            let mut common = vec![node.name.clone(), provisioner, node.phase.clone()];
            common.extend(
                WELL_KNOWN
                    .iter()
                    .map(|key| node.labels.get(*key).cloned().unwrap_or_default()),
            );
            let overhead = node.capacity.saturating_sub(&node.allocatable);
            let figures = [
                &node.allocatable,
                &node.pod_requests,
                &node.pod_limits,
                &node.daemon_requests,
                &node.daemon_limits,
                &overhead,
            ];
            let mut set = BTreeSet::new();
            for (index, resources) in figures.into_iter().enumerate() {
                // Requests, limits and overhead show cpu and memory even at zero, so a
                // dashboard's join on them finds nodes without daemonsets or pods, or a kubelet
                // that reserves nothing (Karpenter leaves them out).
                let zeros = if index >= 1 {
                    [labels::RESOURCE_CPU, labels::RESOURCE_MEMORY]
                        .into_iter()
                        .filter(|r| resources.get(r) == 0)
                        .map(|r| (r, 0))
                        .collect()
                } else {
                    Vec::new()
                };
                for (resource, amount) in resources.iter().chain(zeros) {
                    let resource_type = resource_type(resource);
                    self.gauges[index]
                        .with_label_values(&label_values(&resource_type, &common))
                        .set(super::kubernetes_units(resource, amount));
                    set.insert((index, resource_type));
                }
            }
            now.insert(node.name.clone(), NodeSeries { common, set });
        }
        let mut series = lock(&self.series);
        for (name, before) in series.iter() {
            let after = now.get(name);
            for (index, resource_type) in &before.set {
                let kept = after.is_some_and(|after| {
                    after.common == before.common
                        && after.set.contains(&(*index, resource_type.clone()))
                });
                if !kept {
                    // Absent already is fine: the series is gone either way.
                    let _ = self.gauges[*index]
                        .remove_label_values(&label_values(resource_type, &before.common));
                }
            }
        }
        *series = now;
    }
}

/// The series one node has: its label values after `resource_type`, and (gauge, resource type).
#[derive(Debug)]
struct NodeSeries {
    common: Vec<String>,
    set: BTreeSet<(usize, String)>,
}

fn label_values<'a>(resource_type: &'a str, common: &'a [String]) -> Vec<&'a str> {
    std::iter::once(resource_type)
        .chain(common.iter().map(String::as_str))
        .collect()
}
