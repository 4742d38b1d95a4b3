//! The cluster state cache: a synchronous index of the watched objects (pods, nodes, machines,
//! provisioners, node templates, daemonsets, PDBs). Watchers call `apply_*` and `delete_*`; every
//! loop reads the derived views ([`views`]). No I/O here, so the index is tested with plain
//! `#[test]`s and no API server.
//!
//! Objects are kept in the form decisions read: pods and daemonsets converted to the scheduling
//! core's terms at apply time (a batch then converts nothing), the rest shrunk ([`shrink`]) with
//! their quantities parsed once. An object the core cannot read is listed in
//! [`ClusterState::invalid_objects`] with the reason, so it can be reported, and left out of
//! decisions.

mod intern;
mod limits;
mod nominations;
mod report;
pub mod shrink;
mod startups;
mod views;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::apps::v1::DaemonSet as K8sDaemonSet;
use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use nodewright_scheduling::labels;
use nodewright_scheduling::node::ExistingNode;
use nodewright_scheduling::pod::{DaemonSet, Pod, PodPlacement};
use nodewright_scheduling::provisioner::Provisioner as CoreProvisioner;
use nodewright_scheduling::resources::Resources;
use nodewright_scheduling::taints::Taint;

use crate::apis::{AwsNodeTemplate, Machine, Provisioner};
use crate::convert::{self, ConvertError};
use intern::Interner;

pub use nominations::PENDING_HOLD;
pub use views::InstanceTypesByProvisioner;
pub(crate) use views::capacity_type_value;
pub use watch::{Changes, SharedState};

/// A pod in the core's terms, with the facts about it that the loops ask.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEntry {
    /// Shared with the batches and evaluations that read it, never copied.
    pub pod: Arc<Pod>,
    /// `spec.nodeName`: the node it is bound to.
    pub node_name: Option<Arc<str>>,
    /// `status.phase` (`Pending`, `Running`, …), empty when unknown.
    pub phase: Arc<str>,
    /// Waiting for a node nodewright could launch (see [`is_provisionable`]).
    pub provisionable: bool,
    /// Succeeded or Failed: it holds no resources.
    pub terminal: bool,
    pub deleting: bool,
    /// `metadata.deletionTimestamp`: when its grace period ends.
    pub deletion_deadline: Option<SystemTime>,
    /// Owned by a DaemonSet: placed by its controller on every node.
    pub daemon: bool,
    /// The sum of its containers' limits (for `karpenter_nodes_total_*_limits`).
    pub limits: Resources,
    /// A static pod's mirror (owned by a Node).
    pub mirror: bool,
    /// `karpenter.sh/do-not-evict: "true"`.
    pub do_not_evict: bool,
    /// May be bound to a node before it registers (`BIND_PODS`): a controller recreates it if
    /// that node never comes, and no volume or preference ties it to a place.
    pub early_bindable: bool,
}

/// A node, shrunk, with its core view (pods not filled in) and provider id.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEntry {
    pub node: k8s::Node,
    pub core: ExistingNode,
    pub provider_id: Option<String>,
    pub deleting: bool,
    /// Carries `karpenter.sh/initialized`.
    pub initialized: bool,
}

/// A machine, shrunk, with its quantities and taints parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineEntry {
    pub machine: Machine,
    pub provisioner: Option<String>,
    /// `status.capacity`, once launched.
    pub capacity: Option<Resources>,
    /// `status.allocatable`, once launched.
    pub allocatable: Option<Resources>,
    /// `spec.resources.requests`.
    pub requests: Resources,
    pub taints: Vec<Taint>,
    pub startup_taints: Vec<Taint>,
    pub deleting: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionerEntry {
    pub provisioner: Provisioner,
    pub core: CoreProvisioner,
    pub deleting: bool,
}

/// Every watched object, indexed for the loops' questions.
#[derive(Debug, Default)]
pub struct ClusterState {
    /// Keyed by `namespace/name`, the key shared with `pods_by_node`.
    pods: HashMap<Arc<str>, PodEntry>,
    /// Keys of the pods bound to each node.
    pods_by_node: HashMap<Arc<str>, BTreeSet<Arc<str>>>,
    nodes: BTreeMap<String, NodeEntry>,
    node_by_provider_id: HashMap<String, String>,
    machines: BTreeMap<String, MachineEntry>,
    provisioners: BTreeMap<String, ProvisionerEntry>,
    node_templates: BTreeMap<String, AwsNodeTemplate>,
    daemonsets: BTreeMap<String, DaemonSet>,
    pdbs: BTreeMap<String, PodDisruptionBudget>,
    invalid: BTreeMap<String, ConvertError>,
    /// One copy of each distinct pod label set, placement and short string (node names,
    /// phases): the pods of a ReplicaSet share theirs.
    label_sets: Interner<BTreeMap<String, String>>,
    placements: Interner<PodPlacement>,
    strings: Interner<str>,
    startups: startups::Startups,
}

/// `namespace/name`, the key of namespaced objects.
pub fn object_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn namespaced_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    object_key(
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default(),
    )
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

impl ClusterState {
    pub fn new() -> ClusterState {
        ClusterState::default()
    }

    /// Adds or replaces a pod. A pod the core cannot read is dropped from decisions and listed
    /// in [`ClusterState::invalid_objects`].
    pub fn apply_pod(&mut self, pod: &k8s::Pod) -> Result<(), ConvertError> {
        let key: Arc<str> = Arc::from(namespaced_key(&pod.metadata));
        self.unindex_pod(&key);
        self.startups.update(&key, pod);
        let invalid_key = format!("pod {key}");
        let core = match convert::pod::pod(pod) {
            Ok(mut core) => {
                core.labels = self.label_sets.share(core.labels);
                core.placement = self.placements.share(core.placement);
                // Informational only; the cache keys pods by namespace and name.
                core.uid = String::new();
                core
            }
            Err(err) => {
                self.invalid.insert(invalid_key, err.clone());
                return Err(err);
            }
        };
        self.invalid.remove(&invalid_key);
        let entry = pod_entry(pod, core, &mut self.strings);
        if let Some(node) = &entry.node_name {
            self.pods_by_node
                .entry(node.clone())
                .or_default()
                .insert(key.clone());
        }
        self.pods.insert(key, entry);
        Ok(())
    }

    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        let key = object_key(namespace, name);
        self.unindex_pod(&key);
        self.startups.forget(&key);
        self.invalid.remove(&format!("pod {key}"));
    }

    /// How long each pod that started since the last call took, from its creation until it
    /// was Ready (`karpenter_pods_startup_time_seconds`).
    pub fn take_startups(&mut self) -> Vec<std::time::Duration> {
        self.startups.take()
    }

    fn unindex_pod(&mut self, key: &str) {
        let Some(old) = self.pods.remove(key) else {
            return;
        };
        if let Some(node) = old.node_name
            && let Some(keys) = self.pods_by_node.get_mut(&node)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.pods_by_node.remove(&node);
            }
        }
    }

    pub fn apply_node(&mut self, node: &k8s::Node) -> Result<(), ConvertError> {
        let name = name_of(&node.metadata);
        self.unindex_node(&name);
        let invalid_key = format!("node {name}");
        let core = match convert::node::existing_node(node, Vec::new()) {
            Ok(core) => core,
            Err(err) => {
                self.invalid.insert(invalid_key, err.clone());
                return Err(err);
            }
        };
        self.invalid.remove(&invalid_key);
        let node = shrink::node(node.clone());
        let provider_id = node
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.clone())
            .filter(|id| !id.is_empty());
        if let Some(id) = &provider_id {
            self.node_by_provider_id.insert(id.clone(), name.clone());
        }
        let entry = NodeEntry {
            deleting: node.metadata.deletion_timestamp.is_some(),
            initialized: core.labels.get(labels::INITIALIZED).map(String::as_str) == Some("true"),
            provider_id,
            core,
            node,
        };
        self.nodes.insert(name, entry);
        Ok(())
    }

    pub fn delete_node(&mut self, name: &str) {
        self.unindex_node(name);
        self.invalid.remove(&format!("node {name}"));
    }

    fn unindex_node(&mut self, name: &str) {
        if let Some(old) = self.nodes.remove(name)
            && let Some(id) = old.provider_id
            && self.node_by_provider_id.get(&id).map(String::as_str) == Some(name)
        {
            self.node_by_provider_id.remove(&id);
        }
    }

    /// Adds or replaces a machine. It is kept even when a quantity cannot be read (it still
    /// counts against its provisioner's limits, by its candidates); the error says what.
    pub fn apply_machine(&mut self, machine: &Machine) -> Result<(), ConvertError> {
        let name = name_of(&machine.metadata);
        let machine = shrink::machine(machine.clone());
        let object = format!("machine {name}");
        let mut errors = Vec::new();
        let status = machine.status.clone().unwrap_or_default();
        let capacity = read_quantities(&status.capacity, &object, "status.capacity", &mut errors);
        let allocatable = read_quantities(
            &status.allocatable,
            &object,
            "status.allocatable",
            &mut errors,
        );
        let requests = read_quantities(
            &machine.spec.resources.requests,
            &object,
            "spec.resources.requests",
            &mut errors,
        )
        .unwrap_or_default();
        let taints = read_taints(&machine.spec.taints, &object, "spec.taints", &mut errors);
        let startup_taints = read_taints(
            &machine.spec.startup_taints,
            &object,
            "spec.startupTaints",
            &mut errors,
        );
        let entry = MachineEntry {
            provisioner: machine
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::PROVISIONER_NAME).cloned()),
            deleting: machine.metadata.deletion_timestamp.is_some(),
            capacity,
            allocatable,
            requests,
            taints,
            startup_taints,
            machine,
        };
        self.machines.insert(name, entry);
        match errors.into_iter().next() {
            Some(err) => {
                self.invalid.insert(object, err.clone());
                Err(err)
            }
            None => {
                self.invalid.remove(&object);
                Ok(())
            }
        }
    }

    pub fn delete_machine(&mut self, name: &str) {
        self.machines.remove(name);
        self.invalid.remove(&format!("machine {name}"));
    }

    pub fn apply_provisioner(&mut self, provisioner: &Provisioner) -> Result<(), ConvertError> {
        let name = name_of(&provisioner.metadata);
        let invalid_key = format!("provisioner {name}");
        match convert::provisioner::provisioner(provisioner) {
            Ok(core) => {
                self.invalid.remove(&invalid_key);
                self.provisioners.insert(
                    name,
                    ProvisionerEntry {
                        deleting: provisioner.metadata.deletion_timestamp.is_some(),
                        provisioner: shrink::provisioner(provisioner.clone()),
                        core,
                    },
                );
                Ok(())
            }
            Err(err) => {
                self.provisioners.remove(&name);
                self.invalid.insert(invalid_key, err.clone());
                Err(err)
            }
        }
    }

    pub fn delete_provisioner(&mut self, name: &str) {
        self.provisioners.remove(name);
        self.invalid.remove(&format!("provisioner {name}"));
    }

    pub fn apply_node_template(&mut self, template: &AwsNodeTemplate) {
        self.node_templates.insert(
            name_of(&template.metadata),
            shrink::node_template(template.clone()),
        );
    }

    pub fn delete_node_template(&mut self, name: &str) {
        self.node_templates.remove(name);
    }

    pub fn apply_daemonset(&mut self, daemonset: &K8sDaemonSet) -> Result<(), ConvertError> {
        let key = namespaced_key(&daemonset.metadata);
        let invalid_key = format!("daemonset {key}");
        match convert::pod::daemonset(daemonset) {
            Ok(core) => {
                self.invalid.remove(&invalid_key);
                self.daemonsets.insert(key, core);
                Ok(())
            }
            Err(err) => {
                self.daemonsets.remove(&key);
                self.invalid.insert(invalid_key, err.clone());
                Err(err)
            }
        }
    }

    pub fn delete_daemonset(&mut self, namespace: &str, name: &str) {
        let key = object_key(namespace, name);
        self.daemonsets.remove(&key);
        self.invalid.remove(&format!("daemonset {key}"));
    }

    pub fn apply_pdb(&mut self, pdb: &PodDisruptionBudget) {
        self.pdbs
            .insert(namespaced_key(&pdb.metadata), shrink::pdb(pdb.clone()));
    }

    pub fn delete_pdb(&mut self, namespace: &str, name: &str) {
        self.pdbs.remove(&object_key(namespace, name));
    }
}

/// A non-empty quantity map in the core's units; `None` (and an error noted) when unreadable.
fn read_quantities(
    list: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    object: &str,
    field: &str,
    errors: &mut Vec<ConvertError>,
) -> Option<Resources> {
    if list.is_empty() {
        return None;
    }
    convert::pod::quantities(list)
        .map_err(|message| errors.push(ConvertError::new(object, field, message)))
        .ok()
}

fn read_taints(
    list: &[k8s::Taint],
    object: &str,
    field: &str,
    errors: &mut Vec<ConvertError>,
) -> Vec<Taint> {
    convert::node::taints(list)
        .map_err(|message| errors.push(ConvertError::new(object, field, message)))
        .unwrap_or_default()
}

/// What a pod's app containers may use at most; unparsable limits count as none (the pod's
/// requests, which scheduling needs, are checked where it is converted).
fn container_limits(pod: &k8s::Pod) -> Resources {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);
    let mut total = Resources::default();
    for container in containers {
        if let Some(limits) = container.resources.as_ref().and_then(|r| r.limits.as_ref()) {
            total += &convert::pod::quantities(limits).unwrap_or_default();
        }
    }
    total
}

fn pod_entry(pod: &k8s::Pod, core: Pod, strings: &mut Interner<str>) -> PodEntry {
    let meta = &pod.metadata;
    let owners = meta.owner_references.as_deref().unwrap_or(&[]);
    let owned_by = |kind: &str| owners.iter().any(|o| o.kind == kind);
    let phase = strings.share_ref(
        pod.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or_default(),
    );
    let annotations = meta.annotations.as_ref();
    let claims_volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[])
        .iter()
        .any(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some());
    let early_bindable = owners.iter().any(|o| o.controller == Some(true))
        && !owned_by("DaemonSet")
        && !claims_volumes
        && core.placement.preferred_node_affinity.is_empty()
        && core.placement.preferred_pod_affinity.is_empty()
        && core.placement.preferred_pod_anti_affinity.is_empty();
    PodEntry {
        early_bindable,
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
            .map(|n| strings.share_ref(n)),
        terminal: matches!(&*phase, "Succeeded" | "Failed"),
        deleting: meta.deletion_timestamp.is_some(),
        deletion_deadline: meta
            .deletion_timestamp
            .as_ref()
            .map(|t| SystemTime::from(t.0)),
        daemon: owned_by("DaemonSet"),
        limits: container_limits(pod),
        mirror: owned_by("Node")
            || annotations.is_some_and(|a| a.contains_key(shrink::MIRROR_POD_ANNOTATION)),
        do_not_evict: annotations
            .and_then(|a| a.get(labels::DO_NOT_EVICT))
            .is_some_and(|v| v == "true"),
        provisionable: is_provisionable(pod),
        phase,
        pod: Arc::new(core),
    }
}

/// Whether the kube-scheduler gave up on the pod and a new node could help: PodScheduled is
/// False for reason Unschedulable, it is not bound, not being deleted, not finished, not
/// preempting (no nominated node) and neither a daemon pod nor a static pod's mirror.
pub fn is_provisionable(pod: &k8s::Pod) -> bool {
    let status = pod.status.as_ref();
    let unschedulable = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
        .iter()
        .any(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        });
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let preempting = status
        .and_then(|s| s.nominated_node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let finished = status
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    let owners = pod.metadata.owner_references.as_deref().unwrap_or(&[]);
    let daemon_or_mirror = owners
        .iter()
        .any(|o| o.kind == "DaemonSet" || o.kind == "Node")
        || pod
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(shrink::MIRROR_POD_ANNOTATION));
    unschedulable
        && !bound
        && !preempting
        && !finished
        && pod.metadata.deletion_timestamp.is_none()
        && !daemon_or_mirror
}

#[cfg(test)]
mod tests;
