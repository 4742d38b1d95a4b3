//! Pods grouped by shape, and each group's relaxation ladder.
//!
//! Identical pods (same namespace, labels, requests, node requirements, tolerations, ports,
//! spread and affinity) behave identically, so they are placed together with arithmetic rather
//! than one by one: work grows with the number of shapes, not pods.
//!
//! A group's *levels* mirror Karpenter's preference relaxation. Level 0 treats every preference
//! as required: all preferred pod affinity and anti-affinity terms, the heaviest preferred node
//! affinity term, every `ScheduleAnyway` spread. Each further level drops one, in Karpenter's
//! order: preferred pod affinity terms (heaviest first), then preferred anti-affinity terms,
//! then preferred node affinity terms (the next heaviest takes over), then soft spreads.
//! Required node affinity terms stay an OR at every level.

use std::collections::BTreeMap;
use std::collections::HashMap;

use crate::labels;
use crate::pod::{
    HostPort, Pod, PodAffinityTerm, TopologySpreadConstraint, WeightedPodAffinityTerm,
    WhenUnsatisfiable,
};
use crate::requirements::Requirements;
use crate::resources::Resources;
use crate::taints::Toleration;
use crate::topology::{NamespaceScope, Topology, TopologyDefinition, TopologyKind};

use super::vector::ResVec;

/// A spread constraint as one group sees it.
#[derive(Debug, Clone)]
pub(crate) struct SpreadRef {
    pub group: usize,
    pub max_skew: i64,
    pub min_domains: i64,
    pub self_matching: bool,
    /// Eligible domains for non-hostname keys (filled in once provisioners are known).
    pub domains: Vec<String>,
}

/// An affinity or anti-affinity term as one group sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AffinityRef {
    pub group: usize,
    pub self_matching: bool,
}

/// The constraints in force at one relaxation level.
#[derive(Debug, Clone)]
pub(crate) struct Level {
    /// Node requirement alternatives (OR); empty means no node can match.
    pub terms: Vec<Requirements>,
    pub spreads: Vec<SpreadRef>,
    pub affinities: Vec<AffinityRef>,
    pub antis: Vec<AffinityRef>,
}

/// Identical pods.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// Indices into the input pods, in input order.
    pub pods: Vec<usize>,
    /// The pod whose spec stands for all.
    pub rep: usize,
    pub requests: Resources,
    pub req: ResVec,
    pub levels: Vec<Level>,
    /// Topology groups whose selector counts these pods.
    pub selected_by: Vec<usize>,
    /// Anti-affinity groups with required owners that select these pods: their owners' domains
    /// are closed to them.
    pub inverse_blocked: Vec<usize>,
    /// Required anti-affinity groups these pods own.
    pub owns_required_anti: Vec<usize>,
    /// Whether the pods tolerate each provisioner's taints (model order).
    pub tolerates: Vec<bool>,
    /// Why the group can never be placed, decided before packing.
    pub invalid: Option<String>,
}

impl Group {
    pub(crate) fn tolerations<'a>(&self, pods: &'a [Pod]) -> &'a [Toleration] {
        &pods[self.rep].placement.tolerations
    }

    pub(crate) fn host_ports<'a>(&self, pods: &'a [Pod]) -> &'a [HostPort] {
        &pods[self.rep].placement.host_ports
    }
}

#[derive(PartialEq, Eq, Hash)]
struct ShapeKey<'a> {
    namespace: &'a str,
    labels: &'a BTreeMap<String, String>,
    requests: &'a Resources,
    node_selector: &'a BTreeMap<String, String>,
    required_node_affinity: &'a [Vec<crate::requirements::NodeSelectorRequirement>],
    preferred_node_affinity: &'a [crate::pod::PreferredSchedulingTerm],
    tolerations: &'a [Toleration],
    host_ports: &'a [HostPort],
    topology_spread: &'a [TopologySpreadConstraint],
    pod_affinity: &'a [PodAffinityTerm],
    pod_anti_affinity: &'a [PodAffinityTerm],
    preferred_pod_affinity: &'a [WeightedPodAffinityTerm],
    preferred_pod_anti_affinity: &'a [WeightedPodAffinityTerm],
}

impl<'a> ShapeKey<'a> {
    fn of(p: &'a Pod) -> ShapeKey<'a> {
        ShapeKey {
            namespace: &p.namespace,
            labels: &p.labels,
            requests: &p.requests,
            node_selector: &p.placement.node_selector,
            required_node_affinity: &p.placement.required_node_affinity,
            preferred_node_affinity: &p.placement.preferred_node_affinity,
            tolerations: &p.placement.tolerations,
            host_ports: &p.placement.host_ports,
            topology_spread: &p.placement.topology_spread,
            pod_affinity: &p.placement.pod_affinity,
            pod_anti_affinity: &p.placement.pod_anti_affinity,
            preferred_pod_affinity: &p.placement.preferred_pod_affinity,
            preferred_pod_anti_affinity: &p.placement.preferred_pod_anti_affinity,
        }
    }
}

/// Pod indices grouped by shape, groups in order of first appearance.
pub(crate) fn by_shape(pods: &[Pod]) -> Vec<Vec<usize>> {
    let mut index: HashMap<ShapeKey<'_>, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let id = *index.entry(ShapeKey::of(pod)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[id].push(i);
    }
    groups
}

fn affinity_definition(
    kind: TopologyKind,
    term: &PodAffinityTerm,
    owner: &Pod,
) -> TopologyDefinition {
    TopologyDefinition {
        kind,
        key: labels::normalize_key(&term.topology_key).to_string(),
        selector: term.label_selector.clone(),
        namespaces: NamespaceScope::of_term(term, &owner.namespace),
        node_filter: Vec::new(),
    }
}

fn max_skew(c: &TopologySpreadConstraint) -> i64 {
    i64::from(c.max_skew.max(1))
}

fn min_domains(c: &TopologySpreadConstraint) -> i64 {
    i64::from(c.min_domains.unwrap_or(1).max(1))
}

fn spread_definition(constraint: &TopologySpreadConstraint, owner: &Pod) -> TopologyDefinition {
    TopologyDefinition {
        kind: TopologyKind::Spread {
            max_skew: max_skew(constraint),
            min_domains: min_domains(constraint),
        },
        key: labels::normalize_key(&constraint.topology_key).to_string(),
        selector: constraint.label_selector.clone(),
        namespaces: NamespaceScope::Only([owner.namespace.clone()].into()),
        node_filter: owner.required_terms(),
    }
}

/// The required anti-affinity groups a (running or pending) pod owns.
pub(crate) fn required_anti_groups(pod: &Pod, topology: &mut Topology) -> Vec<usize> {
    pod.placement
        .pod_anti_affinity
        .iter()
        .map(|term| topology.group_id(affinity_definition(TopologyKind::AntiAffinity, term, pod)))
        .collect()
}

fn by_weight_desc(terms: &[WeightedPodAffinityTerm]) -> Vec<&PodAffinityTerm> {
    let mut sorted: Vec<&WeightedPodAffinityTerm> = terms.iter().collect();
    sorted.sort_by_key(|t| std::cmp::Reverse(t.weight));
    sorted.into_iter().map(|t| &t.term).collect()
}

/// The relaxation ladder of `pod` (domains of spreads left empty).
pub(crate) fn levels(pod: &Pod, topology: &mut Topology) -> Vec<Level> {
    let required_terms = pod.required_terms();
    let mut preferred_nodes: Vec<_> = pod.placement.preferred_node_affinity.iter().collect();
    preferred_nodes.sort_by_key(|t| std::cmp::Reverse(t.weight));
    let preferred_nodes: Vec<Requirements> = preferred_nodes
        .iter()
        .map(|t| Requirements::from_node_selector(&t.preference))
        .collect();

    let mut affinity_ref = |kind: TopologyKind, term: &PodAffinityTerm| {
        let definition = affinity_definition(kind, term, pod);
        let self_matching = definition.selects_pod(pod);
        AffinityRef {
            group: topology.group_id(definition),
            self_matching,
        }
    };
    let required_affinity: Vec<AffinityRef> = pod
        .placement
        .pod_affinity
        .iter()
        .map(|t| affinity_ref(TopologyKind::Affinity, t))
        .collect();
    let required_anti: Vec<AffinityRef> = pod
        .placement
        .pod_anti_affinity
        .iter()
        .map(|t| affinity_ref(TopologyKind::AntiAffinity, t))
        .collect();
    let preferred_affinity: Vec<AffinityRef> =
        by_weight_desc(&pod.placement.preferred_pod_affinity)
            .into_iter()
            .map(|t| affinity_ref(TopologyKind::Affinity, t))
            .collect();
    let preferred_anti: Vec<AffinityRef> =
        by_weight_desc(&pod.placement.preferred_pod_anti_affinity)
            .into_iter()
            .map(|t| affinity_ref(TopologyKind::AntiAffinity, t))
            .collect();

    let mut spread_ref = |c: &TopologySpreadConstraint| {
        let definition = spread_definition(c, pod);
        let self_matching = definition.selects_pod(pod);
        SpreadRef {
            group: topology.group_id(definition),
            max_skew: max_skew(c),
            min_domains: min_domains(c),
            self_matching,
            domains: Vec::new(),
        }
    };
    let hard: Vec<SpreadRef> = pod
        .placement
        .topology_spread
        .iter()
        .filter(|c| c.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule)
        .map(&mut spread_ref)
        .collect();
    let soft: Vec<SpreadRef> = pod
        .placement
        .topology_spread
        .iter()
        .filter(|c| c.when_unsatisfiable == WhenUnsatisfiable::ScheduleAnyway)
        .map(&mut spread_ref)
        .collect();

    let (a_max, b_max, n_max, s_max) = (
        preferred_affinity.len(),
        preferred_anti.len(),
        preferred_nodes.len(),
        soft.len(),
    );
    (0..=a_max + b_max + n_max + s_max)
        .map(|level| {
            let a = level.min(a_max);
            let b = (level - a).min(b_max);
            let n = (level - a - b).min(n_max);
            let s = level - a - b - n;
            let terms = match preferred_nodes.get(n) {
                Some(preferred) => required_terms
                    .iter()
                    .map(|t| t.intersect(preferred))
                    .filter(Requirements::is_satisfiable)
                    .collect(),
                None => required_terms.clone(),
            };
            Level {
                terms,
                spreads: hard.iter().chain(&soft[s..]).cloned().collect(),
                affinities: required_affinity
                    .iter()
                    .chain(&preferred_affinity[a..])
                    .copied()
                    .collect(),
                antis: required_anti
                    .iter()
                    .chain(&preferred_anti[b..])
                    .copied()
                    .collect(),
            }
        })
        .collect()
}
