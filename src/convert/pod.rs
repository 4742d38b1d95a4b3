//! Pods and daemonsets from `core/v1` and `apps/v1` into the scheduling core's terms.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet as K8sDaemonSet;
use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use nodewright_scheduling::pod::{
    DaemonSet, HostPort, LabelSelector, LabelSelectorRequirement, PodAffinityTerm, PodPlacement,
    PreferredSchedulingTerm, SelectorOperator, TopologySpreadConstraint, WeightedPodAffinityTerm,
    WhenUnsatisfiable,
};
use nodewright_scheduling::requirements::{NodeSelectorRequirement, Operator};
use nodewright_scheduling::resources::{InitContainer, Resources, pod_requests};
use nodewright_scheduling::taints::{TaintEffect, Toleration, TolerationOperator};

use super::ConvertError;

/// The core's view of a pod. Fails only on what the API server would also refuse
/// (unparseable quantities, unknown operators).
pub fn pod(pod: &k8s::Pod) -> Result<nodewright_scheduling::pod::Pod, ConvertError> {
    let metadata = &pod.metadata;
    let object = format!(
        "pod {}/{}",
        metadata.namespace.as_deref().unwrap_or("default"),
        metadata.name.as_deref().unwrap_or_default()
    );
    // Borrowed: a pod's containers (env, command, mounts) are never copied on the way in.
    let no_spec = k8s::PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&no_spec);
    let err = |field: &str, message: String| ConvertError::new(&object, field, message);
    let affinity = spec.affinity.clone().unwrap_or_default();
    let node_affinity = affinity.node_affinity.unwrap_or_default();
    let pod_affinity = affinity.pod_affinity.unwrap_or_default();
    let (pod_affinity, preferred_pod_affinity) = affinity_terms(
        pod_affinity.required_during_scheduling_ignored_during_execution,
        pod_affinity.preferred_during_scheduling_ignored_during_execution,
    )
    .map_err(|m| err("spec.affinity.podAffinity", m))?;
    let anti_affinity = affinity.pod_anti_affinity.unwrap_or_default();
    let (pod_anti_affinity, preferred_pod_anti_affinity) = affinity_terms(
        anti_affinity.required_during_scheduling_ignored_during_execution,
        anti_affinity.preferred_during_scheduling_ignored_during_execution,
    )
    .map_err(|m| err("spec.affinity.podAntiAffinity", m))?;
    Ok(nodewright_scheduling::pod::Pod {
        namespace: metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: metadata.name.clone().unwrap_or_default(),
        uid: metadata.uid.clone().unwrap_or_default(),
        owner: controller_of(metadata),
        labels: std::sync::Arc::new(metadata.labels.clone().unwrap_or_default()),
        requests: effective_requests(spec).map_err(|m| err("spec.containers", m))?,
        placement: std::sync::Arc::new(PodPlacement {
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_node_affinity: node_affinity
                .required_during_scheduling_ignored_during_execution
                .map(|selector| {
                    selector
                        .node_selector_terms
                        .iter()
                        .map(|term| requirements(term.match_expressions.as_deref().unwrap_or(&[])))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
                .map_err(|m| err("spec.affinity.nodeAffinity", m))?
                .unwrap_or_default(),
            preferred_node_affinity: node_affinity
                .preferred_during_scheduling_ignored_during_execution
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    Ok(PreferredSchedulingTerm {
                        weight: p.weight,
                        preference: requirements(
                            p.preference.match_expressions.as_deref().unwrap_or(&[]),
                        )?,
                    })
                })
                .collect::<Result<_, String>>()
                .map_err(|m| err("spec.affinity.nodeAffinity", m))?,
            tolerations: tolerations(spec.tolerations.as_deref().unwrap_or(&[]))
                .map_err(|m| err("spec.tolerations", m))?,
            host_ports: host_ports(spec),
            topology_spread: spec
                .topology_spread_constraints
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .map(|c| spread_constraint(c, metadata))
                .collect::<Result<_, _>>()
                .map_err(|m| err("spec.topologySpreadConstraints", m))?,
            pod_affinity,
            pod_anti_affinity,
            preferred_pod_affinity,
            preferred_pod_anti_affinity,
        }),
    })
}

/// The core's view of a daemonset: its pod template's requests, placement and tolerations.
pub fn daemonset(daemonset: &K8sDaemonSet) -> Result<DaemonSet, ConvertError> {
    let namespace = daemonset.metadata.namespace.clone().unwrap_or_default();
    let name = daemonset.metadata.name.clone().unwrap_or_default();
    let template = daemonset
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let template_pod = k8s::Pod {
        metadata: meta::ObjectMeta {
            namespace: Some(namespace.clone()),
            name: Some(name.clone()),
            ..template.metadata.unwrap_or_default()
        },
        spec: template.spec,
        status: None,
    };
    let core =
        pod(&template_pod).map_err(|e| e.within(&format!("daemonset {namespace}/{name}")))?;
    Ok(DaemonSet::from_template(namespace, name, &core))
}

/// The name of the controller that owns an object (`ReplicaSet/web-5d8f`), if any.
pub fn controller_of(metadata: &meta::ObjectMeta) -> Option<String> {
    metadata
        .owner_references
        .as_deref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| format!("{}/{}", o.kind, o.name))
}

/// Whether the pod belongs on every node rather than on one chosen for it.
pub fn is_daemon_pod(pod: &k8s::Pod) -> bool {
    controller_of(&pod.metadata).is_some_and(|owner| owner.starts_with("DaemonSet/"))
}

fn effective_requests(spec: &k8s::PodSpec) -> Result<Resources, String> {
    let containers = spec
        .containers
        .iter()
        .map(|c| container_requests(c.resources.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let init_containers = spec
        .init_containers
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|c| {
            Ok(InitContainer {
                requests: container_requests(c.resources.as_ref())?,
                restartable: c.restart_policy.as_deref() == Some("Always"),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let overhead = spec.overhead.as_ref().map(quantities).transpose()?;
    Ok(pod_requests(
        &containers,
        &init_containers,
        overhead.as_ref(),
    ))
}

/// A container's requests; a resource with a limit and no request requests its limit, as the
/// API server defaults it.
fn container_requests(resources: Option<&k8s::ResourceRequirements>) -> Result<Resources, String> {
    let Some(resources) = resources else {
        return Ok(Resources::default());
    };
    let mut merged = resources.limits.clone().unwrap_or_default();
    merged.extend(resources.requests.clone().unwrap_or_default());
    quantities(&merged)
}

/// A `ResourceList` in the core's units.
pub fn quantities(list: &BTreeMap<String, Quantity>) -> Result<Resources, String> {
    Resources::from_quantities(list.iter().map(|(name, q)| (name.as_str(), q.0.as_str())))
        .map_err(|e| e.to_string())
}

pub fn requirements(
    expressions: &[k8s::NodeSelectorRequirement],
) -> Result<Vec<NodeSelectorRequirement>, String> {
    expressions
        .iter()
        .map(|e| {
            Ok(NodeSelectorRequirement::new(
                e.key.clone(),
                operator(&e.operator)?,
                e.values.clone().unwrap_or_default(),
            ))
        })
        .collect()
}

pub fn operator(text: &str) -> Result<Operator, String> {
    Ok(match text {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::Gt,
        "Lt" => Operator::Lt,
        other => return Err(format!("unknown operator {other:?}")),
    })
}

pub fn taint_effect(text: &str) -> Result<TaintEffect, String> {
    Ok(match text {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        other => return Err(format!("unknown taint effect {other:?}")),
    })
}

fn tolerations(list: &[k8s::Toleration]) -> Result<Vec<Toleration>, String> {
    list.iter()
        .map(|t| {
            Ok(Toleration {
                key: t.key.clone().unwrap_or_default(),
                operator: match t.operator.as_deref() {
                    None | Some("Equal") => TolerationOperator::Equal,
                    Some("Exists") => TolerationOperator::Exists,
                    Some(other) => return Err(format!("unknown toleration operator {other:?}")),
                },
                value: t.value.clone().unwrap_or_default(),
                effect: match t.effect.as_deref() {
                    None | Some("") => None,
                    Some(effect) => Some(taint_effect(effect)?),
                },
            })
        })
        .collect()
}

fn host_ports(spec: &k8s::PodSpec) -> Vec<HostPort> {
    spec.containers
        .iter()
        .chain(spec.init_containers.as_deref().unwrap_or(&[]))
        .flat_map(|c| c.ports.as_deref().unwrap_or(&[]))
        .filter_map(|p| {
            let port = p.host_port.filter(|port| *port > 0)?;
            Some(HostPort {
                port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect()
}

fn label_selector(selector: Option<&meta::LabelSelector>) -> Result<LabelSelector, String> {
    let Some(selector) = selector else {
        // A nil selector matches nothing; an impossible expression says so.
        return Ok(LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: String::new(),
                operator: SelectorOperator::In,
                values: Vec::new(),
            }],
        });
    };
    Ok(LabelSelector {
        match_labels: selector.match_labels.clone().unwrap_or_default(),
        match_expressions: selector
            .match_expressions
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|e| {
                Ok(LabelSelectorRequirement {
                    key: e.key.clone(),
                    operator: match e.operator.as_str() {
                        "In" => SelectorOperator::In,
                        "NotIn" => SelectorOperator::NotIn,
                        "Exists" => SelectorOperator::Exists,
                        "DoesNotExist" => SelectorOperator::DoesNotExist,
                        other => return Err(format!("unknown selector operator {other:?}")),
                    },
                    values: e.values.clone().unwrap_or_default(),
                })
            })
            .collect::<Result<_, String>>()?,
    })
}

fn spread_constraint(
    constraint: &k8s::TopologySpreadConstraint,
    metadata: &meta::ObjectMeta,
) -> Result<TopologySpreadConstraint, String> {
    let mut selector = label_selector(constraint.label_selector.as_ref())?;
    // matchLabelKeys: the pod's own values for those keys join the selector.
    let labels = metadata.labels.clone().unwrap_or_default();
    for key in constraint.match_label_keys.as_deref().unwrap_or(&[]) {
        if let Some(value) = labels.get(key) {
            selector.match_labels.insert(key.clone(), value.clone());
        }
    }
    Ok(TopologySpreadConstraint {
        max_skew: constraint.max_skew,
        topology_key: constraint.topology_key.clone(),
        when_unsatisfiable: match constraint.when_unsatisfiable.as_str() {
            "DoNotSchedule" => WhenUnsatisfiable::DoNotSchedule,
            "ScheduleAnyway" => WhenUnsatisfiable::ScheduleAnyway,
            other => return Err(format!("unknown whenUnsatisfiable {other:?}")),
        },
        label_selector: selector,
        min_domains: constraint.min_domains,
    })
}

type AffinityTerms = (Vec<PodAffinityTerm>, Vec<WeightedPodAffinityTerm>);

fn affinity_terms(
    required: Option<Vec<k8s::PodAffinityTerm>>,
    preferred: Option<Vec<k8s::WeightedPodAffinityTerm>>,
) -> Result<AffinityTerms, String> {
    let required = required
        .unwrap_or_default()
        .iter()
        .map(affinity_term)
        .collect::<Result<_, _>>()?;
    let preferred = preferred
        .unwrap_or_default()
        .iter()
        .map(|w| {
            Ok(WeightedPodAffinityTerm {
                weight: w.weight,
                term: affinity_term(&w.pod_affinity_term)?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok((required, preferred))
}

fn affinity_term(term: &k8s::PodAffinityTerm) -> Result<PodAffinityTerm, String> {
    let all_namespaces = term
        .namespace_selector
        .as_ref()
        .is_some_and(|s| s.match_labels.is_none() && s.match_expressions.is_none());
    Ok(PodAffinityTerm {
        label_selector: label_selector(term.label_selector.as_ref())?,
        namespaces: term.namespaces.clone().unwrap_or_default(),
        all_namespaces,
        topology_key: term.topology_key.clone(),
    })
}
