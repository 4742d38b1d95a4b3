//! Shrinking watched objects to what decisions read, before they are cached: managed fields,
//! most annotations, container commands, environments, mounts and probes, node image lists and
//! unused status conditions go. Watchers map every object through these; the cache's memory then
//! grows with what nodewright decides on, not with what users put in their manifests.
//!
//! What stays: names, uids, resource versions, labels, owner references, timestamps and
//! finalizers; `karpenter.sh/*` and `karpenter.k8s.aws/*` annotations (and the mirror-pod
//! annotation); everything the scheduling core converts (requests, ports, placement rules); the
//! status fields controllers read (phase, PodScheduled/Ready and node Ready conditions,
//! capacity, allocatable, provider ids).

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Container, Node, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use nodewright_scheduling::labels;

use crate::apis::{AwsNodeTemplate, Machine, Provisioner};

/// Set by the kubelet on the API-server copy of a static pod.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Pod conditions anything reads: PodScheduled (provisionable) and Ready (startup metrics).
const POD_CONDITIONS: &[&str] = &["PodScheduled", "Ready"];
/// Node conditions anything reads: Ready (initialization).
const NODE_CONDITIONS: &[&str] = &["Ready"];

fn keeps_annotation(key: &str) -> bool {
    key.starts_with(&format!("{}/", labels::KARPENTER_GROUP))
        || key.starts_with(&format!("{}/", labels::KARPENTER_AWS_GROUP))
        || key == MIRROR_POD_ANNOTATION
}

/// Metadata without managed fields, self link, generate name and foreign annotations.
pub fn metadata(meta: ObjectMeta) -> ObjectMeta {
    let annotations = meta.annotations.map(|all| {
        all.into_iter()
            .filter(|(key, _)| keeps_annotation(key))
            .collect::<std::collections::BTreeMap<_, _>>()
    });
    ObjectMeta {
        annotations: annotations.filter(|a| !a.is_empty()),
        managed_fields: None,
        self_link: None,
        generate_name: None,
        ..meta
    }
}

pub fn pod(pod: Pod) -> Pod {
    Pod {
        metadata: metadata(pod.metadata),
        spec: pod.spec.map(pod_spec),
        status: pod.status.map(|status| PodStatus {
            phase: status.phase,
            nominated_node_name: status.nominated_node_name,
            conditions: status.conditions.map(|conditions| {
                conditions
                    .into_iter()
                    .filter(|c| POD_CONDITIONS.contains(&c.type_.as_str()))
                    .collect()
            }),
            ..PodStatus::default()
        }),
    }
}

/// The placement-relevant part of a pod spec.
fn pod_spec(spec: PodSpec) -> PodSpec {
    PodSpec {
        affinity: spec.affinity,
        containers: spec.containers.into_iter().map(container).collect(),
        init_containers: spec
            .init_containers
            .map(|list| list.into_iter().map(container).collect()),
        node_name: spec.node_name,
        node_selector: spec.node_selector,
        overhead: spec.overhead,
        preemption_policy: spec.preemption_policy,
        priority: spec.priority,
        priority_class_name: spec.priority_class_name,
        scheduler_name: spec.scheduler_name,
        termination_grace_period_seconds: spec.termination_grace_period_seconds,
        tolerations: spec.tolerations,
        topology_spread_constraints: spec.topology_spread_constraints,
        ..PodSpec::default()
    }
}

/// A container's name, requests, host ports and restart policy (sidecars); nothing else.
fn container(container: Container) -> Container {
    Container {
        name: container.name,
        resources: container.resources,
        ports: container
            .ports
            .map(|ports| {
                ports
                    .into_iter()
                    .filter(|p| p.host_port.is_some_and(|port| port > 0))
                    .collect::<Vec<_>>()
            })
            .filter(|ports| !ports.is_empty()),
        restart_policy: container.restart_policy,
        ..Container::default()
    }
}

pub fn node(node: Node) -> Node {
    Node {
        metadata: metadata(node.metadata),
        spec: node.spec.map(|spec| NodeSpec {
            provider_id: spec.provider_id,
            taints: spec.taints,
            unschedulable: spec.unschedulable,
            ..NodeSpec::default()
        }),
        status: node.status.map(|status| NodeStatus {
            addresses: status.addresses,
            allocatable: status.allocatable,
            capacity: status.capacity,
            conditions: status.conditions.map(|conditions| {
                conditions
                    .into_iter()
                    .filter(|c| NODE_CONDITIONS.contains(&c.type_.as_str()))
                    .collect()
            }),
            phase: status.phase,
            ..NodeStatus::default()
        }),
    }
}

pub fn machine(machine: Machine) -> Machine {
    Machine {
        metadata: metadata(machine.metadata),
        ..machine
    }
}

pub fn provisioner(provisioner: Provisioner) -> Provisioner {
    Provisioner {
        metadata: metadata(provisioner.metadata),
        ..provisioner
    }
}

pub fn node_template(template: AwsNodeTemplate) -> AwsNodeTemplate {
    AwsNodeTemplate {
        metadata: metadata(template.metadata),
        ..template
    }
}

/// A daemonset's selector and pod template (shrunk like a pod); no status.
pub fn daemonset(daemonset: DaemonSet) -> DaemonSet {
    DaemonSet {
        metadata: metadata(daemonset.metadata),
        spec: daemonset.spec.map(|spec| DaemonSetSpec {
            selector: spec.selector,
            template: PodTemplateSpec {
                metadata: spec.template.metadata.map(metadata),
                spec: spec.template.spec.map(pod_spec),
            },
            ..DaemonSetSpec::default()
        }),
        status: None,
    }
}

/// A budget's selector and how many disruptions it allows now; no conditions, no per-pod map.
pub fn pdb(pdb: PodDisruptionBudget) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: metadata(pdb.metadata),
        spec: pdb.spec,
        status: pdb.status.map(|status| PodDisruptionBudgetStatus {
            current_healthy: status.current_healthy,
            desired_healthy: status.desired_healthy,
            disruptions_allowed: status.disruptions_allowed,
            expected_pods: status.expected_pods,
            observed_generation: status.observed_generation,
            ..PodDisruptionBudgetStatus::default()
        }),
    }
}
