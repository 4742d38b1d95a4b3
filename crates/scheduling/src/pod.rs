//! Pods and daemonsets as the scheduler sees them: requests, node requirements, tolerations,
//! host ports, topology spread and pod (anti-)affinity. Plain serde types, no Kubernetes client
//! types, so that any caller (the `plan` command, the controller, tests) can build them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::requirements::{NodeSelectorRequirement, Requirements};
use crate::resources::Resources;
use crate::taints::Toleration;

/// A pod to place, or one already running on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// The pod's UID or, failing that, any stable identity; informational.
    pub uid: String,
    /// The controller that owns the pod (`ReplicaSet/web-5d8f`), when known; informational.
    pub owner: Option<String>,
    /// Shared: the pods of one ReplicaSet carry the same labels, so a cache of thousands of
    /// pods keeps one copy per distinct set.
    pub labels: Arc<BTreeMap<String, String>>,
    /// Effective requests (see [`crate::resources::pod_requests`]); `pods` counts as at least 1.
    pub requests: Resources,
    /// Where the pod may go. Shared: the pods of one ReplicaSet carry the same rules, so a
    /// cache of thousands of pods keeps one copy per distinct set.
    #[serde(flatten)]
    pub placement: Arc<PodPlacement>,
}

/// A pod's placement rules: node selection, tolerations, host ports, spread and pod
/// (anti-)affinity. Serialized inline with the pod's other fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodPlacement {
    /// `spec.nodeSelector`: every label must match.
    pub node_selector: BTreeMap<String, String>,
    /// `requiredDuringScheduling` node affinity: a node must match at least one term (OR); an
    /// empty list means no constraint.
    pub required_node_affinity: Vec<Vec<NodeSelectorRequirement>>,
    /// `preferredDuringScheduling` node affinity terms.
    pub preferred_node_affinity: Vec<PreferredSchedulingTerm>,
    pub tolerations: Vec<Toleration>,
    pub host_ports: Vec<HostPort>,
    pub topology_spread: Vec<TopologySpreadConstraint>,
    pub pod_affinity: Vec<PodAffinityTerm>,
    pub pod_anti_affinity: Vec<PodAffinityTerm>,
    pub preferred_pod_affinity: Vec<WeightedPodAffinityTerm>,
    pub preferred_pod_anti_affinity: Vec<WeightedPodAffinityTerm>,
}

impl Pod {
    /// The placement rules to change, copied first when shared.
    pub fn placement_mut(&mut self) -> &mut PodPlacement {
        Arc::make_mut(&mut self.placement)
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The node requirements a node must meet (see [`PodPlacement::required_terms`]).
    pub fn required_terms(&self) -> Vec<Requirements> {
        self.placement.required_terms()
    }
}

impl PodPlacement {
    /// The node requirements a node must meet: one [`Requirements`] per required node affinity
    /// term, each with the node selector folded in. Empty when no node can match (every term
    /// was empty, which Kubernetes reads as "matches nothing").
    pub fn required_terms(&self) -> Vec<Requirements> {
        let selector = Requirements::from_labels(&self.node_selector);
        if self.required_node_affinity.is_empty() {
            return vec![selector];
        }
        self.required_node_affinity
            .iter()
            .filter(|term| !term.is_empty())
            .map(|term| selector.intersect(&Requirements::from_node_selector(term)))
            .collect()
    }
}

/// A preferred node affinity term and its weight (1–100).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreferredSchedulingTerm {
    pub weight: i32,
    pub preference: Vec<NodeSelectorRequirement>,
}

/// A host port a container binds. Two pods conflict on a node when they bind the same port and
/// protocol on the same IP, or either binds all addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HostPort {
    pub port: i32,
    /// `TCP` when empty.
    pub protocol: String,
    /// All addresses (`0.0.0.0`) when empty.
    pub host_ip: String,
}

impl HostPort {
    pub fn tcp(port: i32) -> HostPort {
        HostPort {
            port,
            ..HostPort::default()
        }
    }

    fn protocol(&self) -> &str {
        if self.protocol.is_empty() {
            "TCP"
        } else {
            &self.protocol
        }
    }

    fn binds_all(&self) -> bool {
        self.host_ip.is_empty() || self.host_ip == "0.0.0.0" || self.host_ip == "::"
    }

    /// Whether the two cannot share a node.
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol() == other.protocol()
            && (self.binds_all() || other.binds_all() || self.host_ip == other.host_ip)
    }
}

/// Operators of a label selector's `matchExpressions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One `matchExpressions` clause.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(default)]
    pub values: Vec<String>,
}

/// A Kubernetes label selector. The empty selector selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

impl LabelSelector {
    /// Selects pods carrying every one of these labels.
    pub fn labels<I, K, V>(pairs: I) -> LabelSelector
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        LabelSelector {
            match_labels: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    /// Whether a pod with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator {
                    SelectorOperator::In => value.is_some_and(|v| e.values.contains(v)),
                    SelectorOperator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

/// A required pod (anti-)affinity term: pods matching `label_selector` in the given namespaces
/// must (or must not) run in the same `topology_key` domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodAffinityTerm {
    pub label_selector: LabelSelector,
    /// Namespaces to look in; empty (and `all_namespaces` false) means the pod's own.
    pub namespaces: Vec<String>,
    /// True for an empty `namespaceSelector` (`{}`), which selects every namespace.
    pub all_namespaces: bool,
    pub topology_key: String,
}

/// A preferred pod (anti-)affinity term and its weight (1–100).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightedPodAffinityTerm {
    pub weight: i32,
    pub term: PodAffinityTerm,
}

/// What to do when a spread constraint cannot be met.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WhenUnsatisfiable {
    /// Hard: the pod stays pending.
    #[default]
    DoNotSchedule,
    /// Soft: honoured when possible, relaxed otherwise.
    ScheduleAnyway,
}

/// A `topologySpreadConstraint`. Nodes that do not match the pod's node selector and required
/// node affinity are not domains (the default `nodeAffinityPolicy: Honor`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopologySpreadConstraint {
    pub max_skew: i32,
    pub topology_key: String,
    pub when_unsatisfiable: WhenUnsatisfiable,
    pub label_selector: LabelSelector,
    pub min_domains: Option<i32>,
}

/// A daemonset: its pods land on every node their template fits, so each new node must hold
/// their requests beside the pods it is launched for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DaemonSet {
    pub namespace: String,
    pub name: String,
    /// Effective requests of one daemon pod.
    pub requests: Resources,
    pub node_selector: BTreeMap<String, String>,
    pub required_node_affinity: Vec<Vec<NodeSelectorRequirement>>,
    pub tolerations: Vec<Toleration>,
}

impl DaemonSet {
    /// The daemonset whose pod template is `template` (requests, node selector, required node
    /// affinity and tolerations are taken from it).
    pub fn from_template(
        namespace: impl Into<String>,
        name: impl Into<String>,
        template: &Pod,
    ) -> DaemonSet {
        DaemonSet {
            namespace: namespace.into(),
            name: name.into(),
            requests: template.requests.clone(),
            node_selector: template.placement.node_selector.clone(),
            required_node_affinity: template.placement.required_node_affinity.clone(),
            tolerations: template.placement.tolerations.clone(),
        }
    }

    /// Node requirement alternatives, as [`Pod::required_terms`].
    pub fn required_terms(&self) -> Vec<Requirements> {
        PodPlacement {
            node_selector: self.node_selector.clone(),
            required_node_affinity: self.required_node_affinity.clone(),
            ..PodPlacement::default()
        }
        .required_terms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requirements::Operator;

    #[test]
    fn node_selector_is_folded_into_every_affinity_term() {
        let pod = PodPlacement {
            node_selector: [("team".to_string(), "a".to_string())].into(),
            required_node_affinity: vec![
                vec![NodeSelectorRequirement::new("zone", Operator::In, ["x"])],
                vec![NodeSelectorRequirement::new("zone", Operator::In, ["y"])],
            ],
            ..PodPlacement::default()
        };
        let terms = pod.required_terms();
        assert_eq!(terms.len(), 2);
        assert!(terms.iter().all(|t| t.get("team").is_some()));
    }

    #[test]
    fn only_empty_affinity_terms_match_nothing() {
        let pod = PodPlacement {
            required_node_affinity: vec![vec![]],
            ..PodPlacement::default()
        };
        assert!(pod.required_terms().is_empty());
        assert_eq!(Pod::default().required_terms(), vec![Requirements::new()]);
    }

    #[test]
    fn host_ports_conflict_on_shared_addresses() {
        let any = HostPort::tcp(80);
        let specific = HostPort {
            host_ip: "10.0.0.1".into(),
            ..HostPort::tcp(80)
        };
        let other_ip = HostPort {
            host_ip: "10.0.0.2".into(),
            ..HostPort::tcp(80)
        };
        let udp = HostPort {
            protocol: "UDP".into(),
            ..HostPort::tcp(80)
        };
        assert!(any.conflicts_with(&specific));
        assert!(!specific.conflicts_with(&other_ip));
        assert!(!any.conflicts_with(&udp));
        assert!(!any.conflicts_with(&HostPort::tcp(81)));
    }

    #[test]
    fn label_selectors_follow_kubernetes_semantics() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        assert!(LabelSelector::default().matches(&labels));
        assert!(LabelSelector::labels([("app", "web")]).matches(&labels));
        assert!(!LabelSelector::labels([("app", "db")]).matches(&labels));
        let not_in = LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: SelectorOperator::NotIn,
                values: vec!["x".into()],
            }],
            ..LabelSelector::default()
        };
        assert!(not_in.matches(&labels));
        let exists = LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: SelectorOperator::Exists,
                values: vec![],
            }],
            ..LabelSelector::default()
        };
        assert!(!exists.matches(&labels));
    }
}
