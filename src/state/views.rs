//! What the loops ask the cluster state: which pods wait for a node, which nodes exist (with
//! their pods), which machines are still on their way, what each provisioner has launched, and
//! the scheduling core's whole input for a batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use nodewright_scheduling::ScheduleInput;
use nodewright_scheduling::instance_type::{CapacityType, InstanceType};
use nodewright_scheduling::labels;
use nodewright_scheduling::node::ExistingNode;
use nodewright_scheduling::pod::{DaemonSet, Pod};
use nodewright_scheduling::provisioner::{ProvisionerInput, TypeOption};
use nodewright_scheduling::resources::Resources;
use nodewright_scheduling::taints::Taint;

use super::{ClusterState, MachineEntry, NodeEntry, PodEntry, ProvisionerEntry, object_key};
use crate::apis::requirement::{NodeSelectorRequirement, Operator};
use crate::apis::{AwsNodeTemplate, Machine};
use crate::convert::ConvertError;
use crate::settings::Settings;

/// The instance types each provisioner may launch (from its node template), by provisioner name.
pub type InstanceTypesByProvisioner = BTreeMap<String, Vec<Arc<InstanceType>>>;

/// Taints a node carries until it is up, whatever its machine says.
const EPHEMERAL_TAINTS: &[&str] = &[
    labels::TAINT_NOT_READY,
    labels::TAINT_UNREACHABLE,
    labels::TAINT_UNINITIALIZED,
];

impl ClusterState {
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodEntry> {
        self.pods.get(object_key(namespace, name).as_str())
    }

    /// Every pod, in no particular order.
    pub fn pods(&self) -> impl Iterator<Item = &PodEntry> {
        self.pods.values()
    }

    /// Pods waiting for a node nodewright could launch, by `namespace/name`: the unschedulable
    /// ones, and those on nodes being deleted (their capacity is launched before the drain
    /// evicts them, as Karpenter does).
    /// Whether [`ClusterState::provisionable_pods`] has any, without collecting them.
    pub fn has_provisionable_pods(&self) -> bool {
        self.pods
            .values()
            .any(|e| e.provisionable || self.must_move(e))
    }

    pub fn provisionable_pods(&self) -> Vec<&Pod> {
        let mut pods: Vec<&Pod> = self
            .pods
            .values()
            .filter(|e| e.provisionable || self.must_move(e))
            .map(|e| e.pod.as_ref())
            .collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        pods
    }

    /// A pod that will have to run elsewhere: bound to a node being deleted, and neither a
    /// daemon, a mirror, finished nor already going away.
    pub fn must_move(&self, entry: &PodEntry) -> bool {
        !entry.daemon
            && !entry.mirror
            && !entry.terminal
            && !entry.deleting
            && entry
                .node_name
                .as_deref()
                .and_then(|n| self.nodes.get(n))
                .is_some_and(|n| n.deleting)
    }

    /// Pods bound to `node` that still hold resources there.
    pub fn pods_on_node(&self, node: &str) -> Vec<&PodEntry> {
        self.pods_by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|key| self.pods.get(key))
            .filter(|e| !e.terminal)
            .collect()
    }

    pub fn node(&self, name: &str) -> Option<&NodeEntry> {
        self.nodes.get(name)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeEntry> {
        self.nodes.values()
    }

    pub fn machine(&self, name: &str) -> Option<&MachineEntry> {
        self.machines.get(name)
    }

    pub fn machines(&self) -> impl Iterator<Item = &MachineEntry> {
        self.machines.values()
    }

    pub fn provisioner(&self, name: &str) -> Option<&ProvisionerEntry> {
        self.provisioners.get(name)
    }

    pub fn provisioners(&self) -> impl Iterator<Item = &ProvisionerEntry> {
        self.provisioners.values()
    }

    pub fn node_template(&self, name: &str) -> Option<&AwsNodeTemplate> {
        self.node_templates.get(name)
    }

    pub fn node_template_names(&self) -> Vec<String> {
        self.node_templates.keys().cloned().collect()
    }

    pub fn daemonsets(&self) -> impl Iterator<Item = &DaemonSet> {
        self.daemonsets.values()
    }

    pub fn pdbs(&self) -> impl Iterator<Item = &PodDisruptionBudget> {
        self.pdbs.values()
    }

    /// Objects the core could not read, by `kind namespace/name`, with the reason.
    pub fn invalid_objects(&self) -> &BTreeMap<String, ConvertError> {
        &self.invalid
    }

    /// The node a machine registered as: the one with its provider id, else its `nodeName`.
    pub fn node_of_machine(&self, machine: &Machine) -> Option<&NodeEntry> {
        let status = machine.status.as_ref()?;
        status
            .provider_id
            .as_ref()
            .and_then(|id| self.node_by_provider_id.get(id))
            .or(status.node_name.as_ref())
            .and_then(|name| self.nodes.get(name))
    }

    /// The machine behind a node, matched by provider id.
    pub fn machine_of_node(&self, node: &NodeEntry) -> Option<&MachineEntry> {
        let id = node.provider_id.as_deref()?;
        self.machines.values().find(|m| {
            m.machine
                .status
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                == Some(id)
        })
    }

    /// Machines launched or launching whose node has not registered, not being deleted.
    pub fn in_flight(&self) -> impl Iterator<Item = &MachineEntry> {
        self.machines
            .values()
            .filter(|m| !m.deleting && self.node_of_machine(&m.machine).is_none())
    }

    /// Registered nodes with the pods bound to them. A node still coming up (one of
    /// nodewright's, by label or by its machine, not yet initialized) is shown as it will be:
    /// with its machine's labels, without its startup and not-ready taints, and with the
    /// resources its machine promises where it has not reported them yet. Nodes being deleted
    /// take no new pods.
    pub fn existing_nodes(&self) -> Vec<ExistingNode> {
        let machines_by_provider_id: HashMap<&str, &MachineEntry> = self
            .machines
            .values()
            .filter_map(|m| {
                let id = m.machine.status.as_ref()?.provider_id.as_deref()?;
                Some((id, m))
            })
            .collect();
        self.nodes
            .values()
            .map(|entry| {
                let mut node = entry.core.clone();
                // Pods that must move are scheduled afresh, not counted here too.
                node.pods = self
                    .pods_on_node(&node.name)
                    .into_iter()
                    .filter(|e| !self.must_move(e))
                    .map(|e| e.pod.clone())
                    .collect();
                node.unschedulable |= entry.deleting;
                let machine = entry
                    .provider_id
                    .as_deref()
                    .and_then(|id| machines_by_provider_id.get(id));
                // Until registration copies them over, a new node lacks its machine's labels:
                // seen without them, its pods' selectors would miss it and launch another.
                let coming_up =
                    !entry.initialized && (machine.is_some() || node.provisioner().is_some());
                if coming_up {
                    if let Some(m) = machine {
                        for (key, value) in m.machine.metadata.labels.iter().flatten() {
                            node.labels
                                .entry(key.clone())
                                .or_insert_with(|| value.clone());
                        }
                    }
                    // The machine's startup taints; for a node no machine accounts for, its
                    // provisioner's (what `plan` sees, and a node launched before a restart).
                    let startup: &[Taint] = match machine {
                        Some(m) => &m.startup_taints,
                        None => node
                            .provisioner()
                            .and_then(|p| self.provisioners.get(p))
                            .map_or(&[], |p| &p.core.startup_taints),
                    };
                    node.taints.retain(|t| {
                        !EPHEMERAL_TAINTS.contains(&t.key.as_str())
                            && !startup
                                .iter()
                                .any(|s| s.key == t.key && s.effect == t.effect)
                    });
                    if let Some(promised) = machine.and_then(|m| m.allocatable.as_ref()) {
                        for (resource, amount) in promised.iter() {
                            if node.allocatable.get(resource) == 0 {
                                node.allocatable.set(resource, amount);
                            }
                        }
                    }
                }
                node
            })
            .collect()
    }

    /// In-flight machines as nodes the scheduler can fill: their labels (and single-valued
    /// requirements), taints (not startup taints), and allocatable from their status, or before
    /// launch, from the cheapest candidate instance type under their provisioner (else their
    /// requests). No pods: pods nominated to them are still pending and land on them again.
    pub fn in_flight_nodes(&self, provisioners: &[ProvisionerInput]) -> Vec<ExistingNode> {
        // Type options by provisioner, then by name: machines list up to 60 candidates each.
        let by_name: HashMap<&str, HashMap<&str, &TypeOption>> = provisioners
            .iter()
            .map(|p| {
                let types = p
                    .instance_types
                    .iter()
                    .map(|t| (t.instance_type.name.as_str(), t))
                    .collect();
                (p.provisioner.name.as_str(), types)
            })
            .collect();
        self.in_flight()
            .map(|entry| {
                let machine = &entry.machine;
                let name = machine.metadata.name.clone().unwrap_or_default();
                let mut node_labels = machine.metadata.labels.clone().unwrap_or_default();
                for requirement in &machine.spec.requirements {
                    if requirement.operator == Operator::In && requirement.values.len() == 1 {
                        node_labels
                            .entry(requirement.key.clone())
                            .or_insert_with(|| requirement.values[0].clone());
                    }
                }
                node_labels
                    .entry(labels::HOSTNAME.to_string())
                    .or_insert_with(|| name.clone());
                let candidate = entry
                    .provisioner
                    .as_deref()
                    .and_then(|p| by_name.get(p))
                    .and_then(|p| cheapest_candidate(p, &machine.spec.requirements));
                let allocatable = entry
                    .allocatable
                    .clone()
                    .or_else(|| candidate.map(|t| t.allocatable.clone()))
                    .unwrap_or_else(|| entry.requests.clone());
                let capacity = entry
                    .capacity
                    .clone()
                    .or_else(|| candidate.map(|t| t.instance_type.capacity.clone()))
                    .unwrap_or_default();
                ExistingNode {
                    name,
                    labels: node_labels,
                    taints: entry.taints.clone(),
                    allocatable,
                    capacity,
                    pods: Vec::new(),
                    in_flight: true,
                    unschedulable: false,
                }
            })
            .collect()
    }

    /// What each provisioner has launched: its machines' capacity (before launch, the largest
    /// capacity among their candidates, as the scheduler reserves it; else their requests),
    /// plus the capacity of nodes carrying its name that no machine accounts for.
    pub fn provisioner_usage(
        &self,
        instance_types: &InstanceTypesByProvisioner,
    ) -> BTreeMap<String, Resources> {
        let types_by_name: HashMap<&str, HashMap<&str, &InstanceType>> = instance_types
            .iter()
            .map(|(p, types)| {
                let types = types
                    .iter()
                    .map(|t| (t.name.as_str(), t.as_ref()))
                    .collect();
                (p.as_str(), types)
            })
            .collect();
        let machine_provider_ids: HashSet<&str> = self
            .machines
            .values()
            .filter_map(|m| m.machine.status.as_ref()?.provider_id.as_deref())
            .collect();
        let mut usage: BTreeMap<String, Resources> = BTreeMap::new();
        for entry in self.machines.values() {
            let Some(provisioner) = &entry.provisioner else {
                continue;
            };
            let counted = match &entry.capacity {
                Some(capacity) => capacity.clone(),
                None => types_by_name
                    .get(provisioner.as_str())
                    .and_then(|types| largest_candidate(types, &entry.machine.spec.requirements))
                    .unwrap_or_else(|| entry.requests.clone()),
            };
            *usage.entry(provisioner.clone()).or_default() += &counted;
        }
        for entry in self.nodes.values() {
            let accounted = entry
                .provider_id
                .as_deref()
                .is_some_and(|id| machine_provider_ids.contains(id));
            if let Some(provisioner) = entry.core.provisioner()
                && !accounted
            {
                *usage.entry(provisioner.to_string()).or_default() += entry.core.counted_capacity();
            }
        }
        usage
    }

    /// The scheduling core's input for a batch: every provisionable pod; existing nodes and
    /// in-flight machines; provisioners (not being deleted) with their instance types and
    /// usage (the larger of `status.resources` and what the cache counts, so a status not yet
    /// updated never lets a batch pass a limit); daemonsets.
    pub fn schedule_input(
        &self,
        instance_types: &InstanceTypesByProvisioner,
        settings: &Settings,
    ) -> ScheduleInput {
        let allocatable = settings.allocatable();
        let usage = self.provisioner_usage(instance_types);
        let provisioners: Vec<ProvisionerInput> = self
            .provisioners
            .values()
            .filter(|entry| !entry.deleting)
            .map(|entry| {
                let mut core = entry.core.clone();
                let counted = usage.get(&core.name).cloned().unwrap_or_default();
                core.usage = Some(match &core.usage {
                    Some(status) => status.max(&counted),
                    None => counted,
                });
                let types = instance_types
                    .get(&core.name)
                    .map_or(&[][..], Vec::as_slice);
                ProvisionerInput::new(core, types, &allocatable)
            })
            .collect();
        let mut nodes = self.existing_nodes();
        nodes.extend(self.in_flight_nodes(&provisioners));
        ScheduleInput {
            pods: self.provisionable_pods().into_iter().cloned().collect(),
            nodes,
            provisioners,
            daemonsets: self.daemonset_overheads(),
            settings: settings.scheduler(),
        }
    }

    /// The daemonsets as new nodes will carry them: each with the requests of one of its
    /// running pods when it has any (admission webhooks such as VPA change what a pod really
    /// requests), else of its template. Karpenter takes its newest pod; the largest is taken
    /// here (per resource, over its pods), which never counts less than a node will hold.
    pub fn daemonset_overheads(&self) -> Vec<DaemonSet> {
        let mut observed: HashMap<(&str, &str), Resources> = HashMap::new();
        for entry in self.pods.values().filter(|e| e.daemon && !e.terminal) {
            let Some(owner) = entry.pod.owner.as_deref() else {
                continue;
            };
            let Some(name) = owner.strip_prefix("DaemonSet/") else {
                continue;
            };
            let requests = &entry.pod.requests;
            observed
                .entry((entry.pod.namespace.as_str(), name))
                .and_modify(|seen| *seen = seen.max(requests))
                .or_insert_with(|| requests.clone());
        }
        self.daemonsets
            .values()
            .map(|daemonset| {
                let mut daemonset = daemonset.clone();
                let key = (daemonset.namespace.as_str(), daemonset.name.as_str());
                if let Some(requests) = observed.get(&key) {
                    daemonset.requests = requests.clone();
                }
                daemonset
            })
            .collect()
    }
}

/// The values `requirements` allow for `key` (every `In` intersected, `NotIn` removed), in the
/// order of the first `In`; `None` when no `In` names the key.
pub(crate) fn allowed_values(
    requirements: &[NodeSelectorRequirement],
    key: &str,
) -> Option<Vec<String>> {
    let on_key = || {
        requirements
            .iter()
            .filter(move |r| labels::normalize_key(&r.key) == key)
    };
    let mut ins = on_key().filter(|r| r.operator == Operator::In);
    let mut values: Vec<String> = ins.next()?.values.clone();
    for other in ins {
        values.retain(|v| other.values.contains(v));
    }
    for excluded in on_key().filter(|r| r.operator == Operator::NotIn) {
        values.retain(|v| !excluded.values.contains(v));
    }
    Some(values)
}

/// The candidate instance type a machine most likely launches as: the cheapest available
/// offering its zone and capacity-type requirements allow; unpriced types rank after priced
/// ones, ties keep the requirement's order (cheapest first, as decisions write it).
fn cheapest_candidate<'a>(
    types: &HashMap<&str, &'a TypeOption>,
    requirements: &[NodeSelectorRequirement],
) -> Option<&'a TypeOption> {
    let names = allowed_values(requirements, labels::INSTANCE_TYPE)?;
    let zones = allowed_values(requirements, labels::ZONE);
    let capacity_types = allowed_values(requirements, labels::CAPACITY_TYPE);
    let allows = |allowed: &Option<Vec<String>>, value: &str| {
        allowed
            .as_ref()
            .is_none_or(|a| a.iter().any(|v| v == value))
    };
    let mut best: Option<(&TypeOption, f64)> = None;
    for name in &names {
        let Some(&option) = types.get(name.as_str()) else {
            continue;
        };
        let price = option
            .instance_type
            .offerings
            .iter()
            .filter(|o| o.available && allows(&zones, &o.zone))
            .filter(|o| allows(&capacity_types, capacity_type_value(o.capacity_type)))
            .filter_map(|o| o.price_per_hour)
            .fold(f64::INFINITY, f64::min);
        if best.is_none_or(|(_, p)| price < p) {
            best = Some((option, price));
        }
    }
    best.map(|(option, _)| option)
}

/// The largest capacity, resource by resource, among the machine's candidate types.
/// What a machine not in the cache yet counts against its provisioner, as usage counts an
/// unlaunched machine: its largest candidate, else its requests. `None` without a provisioner
/// or with requests that cannot be read.
pub(super) fn counted_for_new_machine(
    types: &InstanceTypesByProvisioner,
    machine: &Machine,
) -> Option<(String, Resources)> {
    let provisioner = machine
        .metadata
        .labels
        .as_ref()?
        .get(labels::PROVISIONER_NAME)?
        .clone();
    let types_by_name: HashMap<&str, &InstanceType> = types
        .get(&provisioner)
        .map(|list| list.iter().map(|t| (t.name.as_str(), t.as_ref())).collect())
        .unwrap_or_default();
    let counted = largest_candidate(&types_by_name, &machine.spec.requirements)
        .or_else(|| crate::convert::pod::quantities(&machine.spec.resources.requests).ok())?;
    Some((provisioner, counted))
}

fn largest_candidate(
    types: &HashMap<&str, &InstanceType>,
    requirements: &[NodeSelectorRequirement],
) -> Option<Resources> {
    let names = allowed_values(requirements, labels::INSTANCE_TYPE)?;
    names
        .iter()
        .filter_map(|name| types.get(name.as_str()))
        .map(|t| t.capacity.clone())
        .reduce(|a, b| a.max(&b))
}

/// The `karpenter.sh/capacity-type` value of a capacity type.
pub(crate) fn capacity_type_value(capacity_type: CapacityType) -> &'static str {
    match capacity_type {
        CapacityType::Spot => labels::CAPACITY_TYPE_SPOT,
        CapacityType::OnDemand => labels::CAPACITY_TYPE_ON_DEMAND,
    }
}
