//! Topology: spread constraints and pod (anti-)affinity, tracked as pod counts per domain.
//!
//! A *topology group* is one distinct constraint (kind, topology key, label selector,
//! namespaces, and for spreads the skew and node filter). Many pods share one group; the group
//! counts, per domain (a zone, a hostname, any label value), the pods its selector matches. For
//! required anti-affinity it also counts the pods that *own* the term, because anti-affinity
//! works both ways: a pod matching the selector may not join a domain where an owner runs.
//!
//! Rules, following Kubernetes and Karpenter:
//! - Spread: placing a pod in domain `d` is allowed while `count(d) + self − min ≤ maxSkew`,
//!   where `self` is 1 when the pod matches its own selector and `min` is the lowest count over
//!   the eligible domains (0 when fewer than `minDomains` exist). For hostname the minimum is
//!   always 0, since a new node is an empty domain.
//! - Affinity: the domain must already hold a matching pod — unless no matching pod exists
//!   anywhere and the pod matches its own term, in which case the first pod may go anywhere.
//! - Anti-affinity: the domain must hold no matching pod, and no owner of a required term that
//!   selects the pod.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::labels;
use crate::pod::{LabelSelector, Pod, PodAffinityTerm, SelectorOperator};
use crate::requirements::Requirements;

/// What a topology group constrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopologyKind {
    Spread { max_skew: i64, min_domains: i64 },
    Affinity,
    AntiAffinity,
}

/// The namespaces whose pods a selector looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NamespaceScope {
    All,
    Only(BTreeSet<String>),
}

impl NamespaceScope {
    /// Kubernetes' rule: an empty namespace list means the owner pod's namespace.
    pub fn of_term(term: &PodAffinityTerm, owner_namespace: &str) -> NamespaceScope {
        if term.all_namespaces {
            NamespaceScope::All
        } else if term.namespaces.is_empty() {
            NamespaceScope::Only([owner_namespace.to_string()].into())
        } else {
            NamespaceScope::Only(term.namespaces.iter().cloned().collect())
        }
    }

    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            NamespaceScope::All => true,
            NamespaceScope::Only(set) => set.contains(namespace),
        }
    }
}

/// The identity of a topology group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopologyDefinition {
    pub kind: TopologyKind,
    /// Normalised label key.
    pub key: String,
    pub selector: LabelSelector,
    pub namespaces: NamespaceScope,
    /// Spread only: the owner's node selector and required affinity terms; only nodes matching
    /// one of them are domains (`nodeAffinityPolicy: Honor`). Empty for affinity kinds.
    pub node_filter: Vec<Requirements>,
}

impl TopologyDefinition {
    /// Whether a pod in `namespace` with `labels` is counted by this group.
    pub fn selects(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.namespaces.contains(namespace) && self.selector.matches(labels)
    }

    pub fn selects_pod(&self, pod: &Pod) -> bool {
        self.selects(&pod.namespace, &pod.labels)
    }

    pub fn is_hostname(&self) -> bool {
        self.key == labels::HOSTNAME
    }

    /// Whether a node with these labels counts as a domain (spread node filter).
    pub fn node_counts(&self, node_labels: &BTreeMap<String, String>) -> bool {
        self.node_filter.is_empty() || self.node_filter.iter().any(|t| t.matches(node_labels))
    }
}

impl fmt::Display for TopologyDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let selector = selector_text(&self.selector);
        match self.kind {
            TopologyKind::Spread { max_skew, .. } => write!(
                f,
                "topology spread on {} (maxSkew {max_skew}, selector {selector})",
                self.key
            ),
            TopologyKind::Affinity => write!(f, "pod affinity on {} to {selector}", self.key),
            TopologyKind::AntiAffinity => {
                write!(f, "pod anti-affinity on {} against {selector}", self.key)
            }
        }
    }
}

/// `app=web,tier In [a, b]`; `everything` for the empty selector.
pub fn selector_text(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in &selector.match_expressions {
        parts.push(match e.operator {
            SelectorOperator::In => format!("{} In [{}]", e.key, e.values.join(", ")),
            SelectorOperator::NotIn => format!("{} NotIn [{}]", e.key, e.values.join(", ")),
            SelectorOperator::Exists => format!("{} Exists", e.key),
            SelectorOperator::DoesNotExist => format!("{} DoesNotExist", e.key),
        });
    }
    if parts.is_empty() {
        "everything".to_string()
    } else {
        parts.join(",")
    }
}

/// Pod counts of one group by domain value.
#[derive(Debug, Clone, Default)]
pub struct DomainCounts {
    by_domain: HashMap<String, i64>,
    total: i64,
}

impl DomainCounts {
    pub fn get(&self, domain: &str) -> i64 {
        self.by_domain.get(domain).copied().unwrap_or(0)
    }

    pub fn total(&self) -> i64 {
        self.total
    }

    pub fn add(&mut self, domain: &str, n: i64) {
        if n == 0 {
            return;
        }
        match self.by_domain.get_mut(domain) {
            Some(count) => *count += n,
            None => {
                self.by_domain.insert(domain.to_string(), n);
            }
        }
        self.total += n;
    }

    /// Domains holding at least one pod, sorted.
    pub fn occupied(&self) -> BTreeSet<&str> {
        self.by_domain
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(d, _)| d.as_str())
            .collect()
    }
}

/// A topology group with its counts.
#[derive(Debug, Clone)]
pub struct TopologyGroup {
    pub definition: TopologyDefinition,
    /// Pods matching the selector, by domain.
    pub matching: DomainCounts,
    /// Anti-affinity only: pods that own this term as a *required* term, by domain.
    pub owners: DomainCounts,
}

impl TopologyGroup {
    pub fn new(definition: TopologyDefinition) -> TopologyGroup {
        TopologyGroup {
            definition,
            matching: DomainCounts::default(),
            owners: DomainCounts::default(),
        }
    }

    /// The lowest count over `domains`; 0 when there are fewer than `min_domains` of them or
    /// the key is hostname (a new node is always an empty domain).
    pub fn min_count<'a>(
        &self,
        domains: impl IntoIterator<Item = &'a str>,
        min_domains: i64,
    ) -> i64 {
        if self.definition.is_hostname() {
            return 0;
        }
        let mut seen = 0;
        let mut min = i64::MAX;
        for d in domains {
            seen += 1;
            min = min.min(self.matching.get(d));
        }
        if seen == 0 || seen < min_domains {
            0
        } else {
            min
        }
    }
}

/// How many more pods may join a domain holding `count` matching pods under a spread with
/// `max_skew` and global minimum `min`. A pod that does not match its own selector does not
/// change the count: it may join any domain within the skew.
pub fn spread_room(count: i64, min: i64, max_skew: i64, self_matching: bool) -> i64 {
    if self_matching {
        (max_skew + min - count).max(0)
    } else if count - min <= max_skew {
        i64::MAX
    } else {
        0
    }
}

/// The groups of one scheduling run, deduplicated by definition.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    groups: Vec<TopologyGroup>,
    index: HashMap<TopologyDefinition, usize>,
}

impl Topology {
    /// The id of the group with this definition, creating it when new.
    pub fn group_id(&mut self, definition: TopologyDefinition) -> usize {
        if let Some(&id) = self.index.get(&definition) {
            return id;
        }
        let id = self.groups.len();
        self.index.insert(definition.clone(), id);
        self.groups.push(TopologyGroup::new(definition));
        id
    }

    pub fn get(&self, id: usize) -> &TopologyGroup {
        &self.groups[id]
    }

    pub fn get_mut(&mut self, id: usize) -> &mut TopologyGroup {
        &mut self.groups[id]
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &TopologyGroup)> {
        self.groups.iter().enumerate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(kind: TopologyKind, key: &str) -> TopologyDefinition {
        TopologyDefinition {
            kind,
            key: key.to_string(),
            selector: LabelSelector::labels([("app", "web")]),
            namespaces: NamespaceScope::Only(["default".to_string()].into()),
            node_filter: vec![],
        }
    }

    #[test]
    fn self_matching_spread_allows_up_to_max_skew_above_the_minimum() {
        assert_eq!(spread_room(0, 0, 1, true), 1);
        assert_eq!(spread_room(1, 0, 1, true), 0);
        assert_eq!(spread_room(3, 2, 2, true), 1);
    }

    #[test]
    fn a_pod_outside_its_own_selector_only_needs_the_domain_within_skew() {
        assert_eq!(spread_room(1, 0, 1, false), i64::MAX);
        assert_eq!(spread_room(2, 0, 1, false), 0);
    }

    #[test]
    fn min_count_is_zero_below_min_domains_and_for_hostname() {
        let mut zonal = TopologyGroup::new(definition(
            TopologyKind::Spread {
                max_skew: 1,
                min_domains: 3,
            },
            labels::ZONE,
        ));
        zonal.matching.add("a", 2);
        zonal.matching.add("b", 3);
        assert_eq!(zonal.min_count(["a", "b"], 1), 2);
        assert_eq!(zonal.min_count(["a", "b"], 3), 0);
        assert_eq!(zonal.min_count(["a", "b", "c"], 1), 0);
        let mut host = TopologyGroup::new(definition(
            TopologyKind::Spread {
                max_skew: 1,
                min_domains: 1,
            },
            labels::HOSTNAME,
        ));
        host.matching.add("n1", 4);
        assert_eq!(host.min_count(["n1"], 1), 0);
    }

    #[test]
    fn groups_are_deduplicated_by_definition() {
        let mut topology = Topology::default();
        let a = topology.group_id(definition(TopologyKind::Affinity, labels::ZONE));
        let b = topology.group_id(definition(TopologyKind::Affinity, labels::ZONE));
        let c = topology.group_id(definition(TopologyKind::AntiAffinity, labels::ZONE));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(topology.len(), 2);
    }

    #[test]
    fn namespace_scope_defaults_to_the_owner_namespace() {
        let term = PodAffinityTerm::default();
        assert!(NamespaceScope::of_term(&term, "team-a").contains("team-a"));
        assert!(!NamespaceScope::of_term(&term, "team-a").contains("team-b"));
        let all = PodAffinityTerm {
            all_namespaces: true,
            ..PodAffinityTerm::default()
        };
        assert!(NamespaceScope::of_term(&all, "x").contains("y"));
    }

    #[test]
    fn counts_track_totals_and_occupied_domains() {
        let mut counts = DomainCounts::default();
        counts.add("a", 2);
        counts.add("b", 0);
        counts.add("a", 1);
        assert_eq!(counts.get("a"), 3);
        assert_eq!(counts.total(), 3);
        assert_eq!(counts.occupied(), ["a"].into());
        let text = definition(TopologyKind::AntiAffinity, labels::HOSTNAME).to_string();
        assert_eq!(
            text,
            "pod anti-affinity on kubernetes.io/hostname against app=web"
        );
    }
}
