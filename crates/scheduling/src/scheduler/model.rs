//! The scheduling inputs compiled once per call: resource dimensions, provisioners in weight
//! order, existing nodes, pod groups with their relaxation ladders, and topology groups with
//! the counts of pods already running.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::labels;
use crate::node::ExistingNode;
use crate::pod::{HostPort, Pod};
use crate::requirements::{Requirements, normalize_labels};
use crate::resources::Resources;
use crate::taints::{Taint, tolerates_all};
use crate::topology::{Topology, TopologyKind};

use super::ScheduleInput;
use super::groups::{self, Group};
use super::provisioners::ProvModel;
use super::vector::{Dims, PODS, ResVec};

/// An existing node (or in-flight machine) ready for packing.
#[derive(Debug, Clone)]
pub(crate) struct ExistingModel {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub alloc: ResVec,
    /// Requests of the pods already there (plus daemonsets on an in-flight machine).
    pub used: ResVec,
    pub hostname: String,
    pub ports: Vec<HostPort>,
    pub unschedulable: bool,
}

impl ExistingModel {
    /// The node's domain for a topology key: its label, or its hostname.
    pub(crate) fn domain(&self, key: &str) -> Option<&str> {
        if key == labels::HOSTNAME {
            Some(&self.hostname)
        } else {
            self.labels.get(key).map(String::as_str)
        }
    }
}

pub(crate) struct Model<'a> {
    pub pods: &'a [Pod],
    pub dims: Dims,
    /// In the order new machines are tried: weight descending, then name.
    pub provs: Vec<ProvModel>,
    pub existing: Vec<ExistingModel>,
    pub groups: Vec<Group>,
    /// The group of each input pod.
    pub group_of: Vec<usize>,
    /// Topology groups with the counts of pods already running.
    pub topology: Topology,
    pub max_instance_types: usize,
    /// Fresh-machine templates by (provisioner, node requirement term).
    base_templates: RefCell<HashMap<(usize, Requirements), BaseTemplate>>,
}

/// A fresh machine's requirements and the types they allow, or why there are none.
pub(crate) type BaseTemplate = Result<(Requirements, Vec<usize>), String>;

/// A pod's requests as a vector; every pod takes at least one pod slot.
pub(crate) fn pod_vector(dims: &Dims, requests: &Resources) -> ResVec {
    let mut v = dims.vector(requests);
    v.0[PODS] = v.0[PODS].max(1);
    v
}

impl<'a> Model<'a> {
    pub(crate) fn build(input: &'a ScheduleInput) -> Model<'a> {
        let pods = input.pods.as_slice();
        let (dims, overflow) = Dims::for_requests(
            pods.iter()
                .map(|p| &p.requests)
                .chain(input.daemonsets.iter().map(|d| &d.requests)),
        );

        let mut order: Vec<usize> = (0..input.provisioners.len()).collect();
        order.sort_by(|&a, &b| {
            let (pa, pb) = (
                &input.provisioners[a].provisioner,
                &input.provisioners[b].provisioner,
            );
            pb.weight
                .cmp(&pa.weight)
                .then_with(|| pa.name.cmp(&pb.name))
        });
        let provs: Vec<ProvModel> = order
            .iter()
            .map(|&i| {
                let p = &input.provisioners[i];
                let usage = p.provisioner.usage.clone().unwrap_or_else(|| {
                    let mut total = Resources::default();
                    for node in input
                        .nodes
                        .iter()
                        .filter(|n| n.provisioner() == Some(p.provisioner.name.as_str()))
                    {
                        total += node.counted_capacity();
                    }
                    total
                });
                ProvModel::build(
                    p,
                    input.settings.region.as_deref(),
                    &input.daemonsets,
                    &dims,
                    usage,
                )
            })
            .collect();

        // Registered nodes first, then machines still launching.
        let mut nodes: Vec<&ExistingNode> = input.nodes.iter().collect();
        nodes.sort_by_key(|n| n.in_flight);
        let existing: Vec<ExistingModel> = nodes
            .iter()
            .map(|node| {
                let labels = normalize_labels(&node.labels);
                let mut used = ResVec::ZERO;
                let mut ports = Vec::new();
                for pod in &node.pods {
                    used = used.add(&pod_vector(&dims, &pod.requests));
                    ports.extend(pod.placement.host_ports.iter().cloned());
                }
                if node.in_flight {
                    for ds in &input.daemonsets {
                        let lands = tolerates_all(&node.taints, &ds.tolerations)
                            && ds.required_terms().iter().any(|t| t.matches(&labels));
                        if lands {
                            used = used.add(&pod_vector(&dims, &ds.requests));
                        }
                    }
                }
                ExistingModel {
                    name: node.name.clone(),
                    hostname: labels
                        .get(labels::HOSTNAME)
                        .cloned()
                        .unwrap_or_else(|| node.name.clone()),
                    labels,
                    taints: node.taints.clone(),
                    alloc: dims.vector(&node.allocatable),
                    used,
                    ports,
                    unschedulable: node.unschedulable,
                }
            })
            .collect();

        let mut topology = Topology::default();
        let shapes = groups::by_shape(pods);
        let mut built: Vec<(Vec<usize>, Vec<groups::Level>, Vec<usize>)> = shapes
            .into_iter()
            .map(|members| {
                let rep = &pods[members[0]];
                let levels = groups::levels(rep, &mut topology);
                let owned = groups::required_anti_groups(rep, &mut topology);
                (members, levels, owned)
            })
            .collect();
        let mut required_anti: BTreeSet<usize> = built
            .iter()
            .flat_map(|(_, _, owned)| owned.iter().copied())
            .collect();
        for (node, model) in nodes.iter().zip(&existing) {
            for pod in &node.pods {
                for id in groups::required_anti_groups(pod, &mut topology) {
                    required_anti.insert(id);
                    let key = topology.get(id).definition.key.clone();
                    if let Some(domain) = model.domain(&key) {
                        topology.get_mut(id).owners.add(domain, 1);
                    }
                }
            }
        }
        count_running_pods(&mut topology, &nodes, &existing);

        let mut domain_cache: HashMap<(usize, Vec<bool>), Vec<String>> = HashMap::new();
        let groups: Vec<Group> = built
            .drain(..)
            .map(|(members, mut levels, owned)| {
                let rep = &pods[members[0]];
                let tolerates: Vec<bool> = provs
                    .iter()
                    .map(|p| tolerates_all(&p.taints, &rep.placement.tolerations))
                    .collect();
                for level in &mut levels {
                    for spread in &mut level.spreads {
                        let definition = &topology.get(spread.group).definition;
                        if definition.is_hostname() {
                            continue;
                        }
                        spread.domains = domain_cache
                            .entry((spread.group, tolerates.clone()))
                            .or_insert_with(|| {
                                spread_domains(
                                    &topology,
                                    spread.group,
                                    &provs,
                                    &tolerates,
                                    &existing,
                                )
                            })
                            .clone();
                    }
                }
                let selected_by: Vec<usize> = topology
                    .iter()
                    .filter(|(_, g)| g.definition.selects_pod(rep))
                    .map(|(id, _)| id)
                    .collect();
                let inverse_blocked = selected_by
                    .iter()
                    .copied()
                    .filter(|id| required_anti.contains(id))
                    .collect();
                let invalid = rep
                    .requests
                    .extended
                    .keys()
                    .find(|name| overflow.contains(*name))
                    .map(|name| {
                        format!("too many distinct extended resources in one batch to track {name}")
                    });
                Group {
                    rep: members[0],
                    requests: rep.requests.clone(),
                    req: pod_vector(&dims, &rep.requests),
                    pods: members,
                    levels,
                    selected_by,
                    inverse_blocked,
                    owns_required_anti: owned,
                    tolerates,
                    invalid,
                }
            })
            .collect();

        let mut group_of = vec![0; pods.len()];
        for (g, group) in groups.iter().enumerate() {
            for &i in &group.pods {
                group_of[i] = g;
            }
        }
        Model {
            pods,
            dims,
            provs,
            existing,
            groups,
            group_of,
            topology,
            max_instance_types: input.settings.max_instance_types.max(1),
            base_templates: RefCell::new(HashMap::new()),
        }
    }

    /// A fresh machine of provisioner `prov` for pods with node requirement `term`: the
    /// combined requirements and every type meeting them (before resources are considered).
    pub(crate) fn base_template(&self, prov: usize, term: &Requirements) -> BaseTemplate {
        let key = (prov, term.clone());
        if let Some(cached) = self.base_templates.borrow().get(&key) {
            return cached.clone();
        }
        let p = &self.provs[prov];
        let reqs = p.reqs.intersect(term);
        let result = match p.keys_satisfiable(&reqs, term.iter().map(|(k, _)| k)) {
            Err(key) => Err(format!("requirement {key}")),
            Ok(()) => {
                let mask = p.offer_mask(&reqs);
                let types: Vec<usize> = (0..p.types.len())
                    .filter(|&t| {
                        p.type_labels_allowed(&p.types[t], &reqs)
                            && p.type_offered(&p.types[t], mask, &reqs)
                    })
                    .collect();
                if types.is_empty() {
                    Err(String::from("instance types"))
                } else {
                    Ok((reqs, types))
                }
            }
        };
        self.base_templates.borrow_mut().insert(key, result.clone());
        result
    }
}

/// Counts the running pods each topology group selects, by the domain of their node.
fn count_running_pods(
    topology: &mut Topology,
    nodes: &[&ExistingNode],
    existing: &[ExistingModel],
) {
    for id in 0..topology.len() {
        let group = topology.get_mut(id);
        let key = group.definition.key.clone();
        for (node, model) in nodes.iter().zip(existing) {
            let Some(domain) = model.domain(&key) else {
                continue;
            };
            if matches!(group.definition.kind, TopologyKind::Spread { .. })
                && !group.definition.node_counts(&model.labels)
            {
                continue;
            }
            let n = node
                .pods
                .iter()
                .filter(|p| group.definition.selects_pod(p))
                .count();
            group.matching.add(domain, n as i64);
        }
    }
}

/// The domains a spread may use for a non-hostname key: values on existing nodes that pass the
/// node filter, and values new nodes could take from provisioners the pod tolerates.
fn spread_domains(
    topology: &Topology,
    id: usize,
    provs: &[ProvModel],
    tolerates: &[bool],
    existing: &[ExistingModel],
) -> Vec<String> {
    let definition = &topology.get(id).definition;
    let key = definition.key.as_str();
    let mut domains: BTreeSet<String> = existing
        .iter()
        .filter(|n| definition.node_counts(&n.labels))
        .filter_map(|n| n.domain(key).map(str::to_string))
        .collect();
    let any = [Requirements::new()];
    let filter: &[Requirements] = if definition.node_filter.is_empty() {
        &any
    } else {
        &definition.node_filter
    };
    for (p, _) in provs.iter().zip(tolerates).filter(|(_, ok)| **ok) {
        for term in filter {
            let reqs = p.reqs.intersect(term);
            if p.keys_satisfiable(&reqs, term.iter().map(|(k, _)| k))
                .is_err()
            {
                continue;
            }
            let candidates = (0..p.types.len()).filter(|&i| p.type_allowed(&p.types[i], &reqs));
            if let Some(options) = p.domain_options(key, &reqs, candidates) {
                domains.extend(options.into_keys());
            }
        }
    }
    domains.into_iter().collect()
}
