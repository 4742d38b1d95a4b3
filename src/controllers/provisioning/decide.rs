//! From the scheduling core's [`Plan`] to what the provisioning loop writes: one `Machine` per
//! new node (recorded before any instance is launched), the pod → machine/node nominations for
//! Events, and the nodes refused because they would pass a provisioner's limits.
//!
//! Pure: names come from a seeded [`MachineNames`], so a test gets the same machines every run.
//! The core already keeps within limits; [`decide`] checks again against the provisioner
//! objects as they are now (their `status.resources` may have moved since the batch's input
//! was built), and refuses any node that would pass a limit, with the reason to report.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use nodewright_scheduling::instance_type::CapacityType;
use nodewright_scheduling::labels;
use nodewright_scheduling::plan::{PlannedNode, UnschedulablePod};
use nodewright_scheduling::requirements as core;
use nodewright_scheduling::resources::{Resources, format_amount};
use nodewright_scheduling::{Plan, ScheduleInput};

use crate::apis::machine::MachineResources;
use crate::apis::requirement::{NodeSelectorRequirement, Operator};
use crate::apis::{Machine, MachineSpec, Provisioner};
use crate::controllers::resource_list;
use crate::convert;

/// EC2 Fleet takes at most this many instance types per machine (Karpenter's cap).
pub const MAX_INSTANCE_TYPES: usize = 60;

/// Event reason on a pod nominated to a machine or node.
pub const REASON_NOMINATED: &str = "Nominated";
/// Event reason on a pod no provisioner can run.
pub const REASON_FAILED_SCHEDULING: &str = "FailedScheduling";

/// Characters of generated name suffixes (Kubernetes' own: no vowels, no look-alikes).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const SUFFIX_LENGTH: usize = 5;
/// Machine names become label values: at most 63 characters.
const MAX_NAME_LENGTH: usize = 63;

/// Everything one batch decided.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    /// Machines to create, in launch order.
    pub machines: Vec<NewMachine>,
    /// Where each placed pod is expected to run.
    pub nominations: Vec<Nomination>,
    /// Planned nodes not created, with why (limits, a provisioner gone).
    pub refused: Vec<Refusal>,
    /// Pods no node can take, with the scheduling core's explanation.
    pub unschedulable: Vec<UnschedulablePod>,
}

/// A machine to create and what it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMachine {
    pub machine: Machine,
    pub provisioner: String,
    /// `namespace/name` of the pods it is launched for.
    pub pods: Vec<String>,
    /// The expected launch (the cheapest candidate), for logs and metrics.
    pub instance_type: String,
    pub capacity_type: CapacityType,
    pub price_per_hour: f64,
}

/// Where a pod should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A machine this decision creates.
    NewMachine(String),
    /// A machine launched earlier whose node has not registered.
    InFlightMachine(String),
    Node(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nomination {
    /// `namespace/name`.
    pub pod: String,
    pub target: Target,
}

impl Nomination {
    /// The Event message on the pod (reason [`REASON_NOMINATED`]), in Karpenter's words.
    pub fn message(&self) -> String {
        match &self.target {
            Target::NewMachine(name) | Target::InFlightMachine(name) => {
                format!("Pod should schedule on: machine/{name}")
            }
            Target::Node(name) => format!("Pod should schedule on: node/{name}"),
        }
    }
}

/// A planned node that is not created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub provisioner: String,
    pub pods: Vec<String>,
    pub reason: String,
}

/// The Event message on a pod no provisioner can run (reason [`REASON_FAILED_SCHEDULING`]).
pub fn failed_scheduling_message(reason: &str) -> String {
    format!("Failed to schedule pod, {reason}")
}

/// Deterministic machine names: `<provisioner>-<5 characters>`, never one already taken.
#[derive(Debug, Clone)]
pub struct MachineNames {
    state: u64,
    taken: BTreeSet<String>,
}

impl MachineNames {
    /// `seed` fixes the sequence (tests pass a constant; the loop passes something random).
    pub fn new(seed: u64, taken: impl IntoIterator<Item = String>) -> MachineNames {
        MachineNames {
            state: seed,
            taken: taken.into_iter().collect(),
        }
    }

    /// A fresh name for a machine of `provisioner`.
    pub fn next(&mut self, provisioner: &str) -> String {
        let base: String = provisioner
            .chars()
            .take(MAX_NAME_LENGTH - SUFFIX_LENGTH - 1)
            .collect();
        loop {
            let mut bits = self.split_mix();
            let suffix: String = (0..SUFFIX_LENGTH)
                .map(|_| {
                    let index = (bits % SUFFIX_ALPHABET.len() as u64) as usize;
                    bits /= SUFFIX_ALPHABET.len() as u64;
                    char::from(SUFFIX_ALPHABET[index])
                })
                .collect();
            let name = format!("{base}-{suffix}");
            if self.taken.insert(name.clone()) {
                return name;
            }
        }
    }

    /// SplitMix64: one well-mixed 64-bit value per call.
    fn split_mix(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Turns `plan` (computed from `input`) into machines, nominations and refusals.
/// `provisioner` looks a Provisioner object up by name as the cache holds it now.
pub fn decide<'a>(
    plan: &Plan,
    input: &ScheduleInput,
    provisioner: impl Fn(&str) -> Option<&'a Provisioner>,
    names: &mut MachineNames,
) -> Decision {
    let in_flight: BTreeSet<&str> = input
        .nodes
        .iter()
        .filter(|n| n.in_flight)
        .map(|n| n.name.as_str())
        .collect();
    let mut decision = Decision {
        unschedulable: plan.unschedulable.clone(),
        ..Decision::default()
    };
    for assignment in &plan.existing {
        let target = if in_flight.contains(assignment.node.as_str()) {
            Target::InFlightMachine(assignment.node.clone())
        } else {
            Target::Node(assignment.node.clone())
        };
        decision
            .nominations
            .extend(assignment.pods.iter().map(|pod| Nomination {
                pod: pod.clone(),
                target: target.clone(),
            }));
    }
    let mut limits = LimitCheck::new(input);
    for planned in &plan.nodes {
        let refuse = |reason: String| Refusal {
            provisioner: planned.provisioner.clone(),
            pods: planned.pods.clone(),
            reason,
        };
        let Some(object) = provisioner(&planned.provisioner) else {
            decision.refused.push(refuse(format!(
                "provisioner {} no longer exists",
                planned.provisioner
            )));
            continue;
        };
        if object.metadata.deletion_timestamp.is_some() {
            decision.refused.push(refuse(format!(
                "provisioner {} is being deleted",
                planned.provisioner
            )));
            continue;
        }
        if let Err(reason) = limits.admit(planned, object) {
            decision.refused.push(refuse(reason));
            continue;
        }
        let machine = machine(planned, object, names.next(&planned.provisioner));
        let name = machine.metadata.name.clone().unwrap_or_default();
        decision
            .nominations
            .extend(planned.pods.iter().map(|pod| Nomination {
                pod: pod.clone(),
                target: Target::NewMachine(name.clone()),
            }));
        decision.machines.push(NewMachine {
            machine,
            provisioner: planned.provisioner.clone(),
            pods: planned.pods.clone(),
            instance_type: planned.instance_type.clone(),
            capacity_type: planned.capacity_type,
            price_per_hour: planned.price_per_hour,
        });
    }
    decision
}

/// The Machine for one planned node of `provisioner`.
pub fn machine(planned: &PlannedNode, provisioner: &Provisioner, name: String) -> Machine {
    let spec = &provisioner.spec;
    let mut labels = spec.labels.clone();
    labels.insert(
        labels::PROVISIONER_NAME.to_string(),
        planned.provisioner.clone(),
    );
    let mut annotations = spec.annotations.clone();
    if let Some(hash) = provisioner_hash(provisioner) {
        annotations.insert(labels::PROVISIONER_HASH.to_string(), hash);
    }
    let owner = provisioner.metadata.uid.clone().map(|uid| OwnerReference {
        api_version: Provisioner::api_version(&()).into_owned(),
        kind: Provisioner::kind(&()).into_owned(),
        name: planned.provisioner.clone(),
        uid,
        block_owner_deletion: Some(true),
        controller: None,
    });
    Machine {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: owner.map(|o| vec![o]),
            // Deleting a machine terminates its instance first.
            finalizers: Some(vec![labels::TERMINATION_FINALIZER.to_string()]),
            ..ObjectMeta::default()
        },
        spec: MachineSpec {
            taints: spec.taints.clone(),
            startup_taints: spec.startup_taints.clone(),
            requirements: machine_requirements(planned),
            resources: MachineResources {
                requests: resource_list(&planned.requests),
            },
            kubelet: spec.kubelet_configuration.clone(),
            machine_template_ref: spec.provider_ref.clone(),
        },
        status: None,
    }
}

/// The planned requirements, with the instance types as one `In` listing the candidates
/// cheapest first, capped at [`MAX_INSTANCE_TYPES`].
fn machine_requirements(planned: &PlannedNode) -> Vec<NodeSelectorRequirement> {
    let mut out: Vec<NodeSelectorRequirement> = planned
        .requirements
        .iter()
        .filter(|r| labels::normalize_key(&r.key) != labels::INSTANCE_TYPE)
        .map(|r| {
            NodeSelectorRequirement::new(r.key.clone(), operator(r.operator), r.values.clone())
        })
        .collect();
    let types: Vec<&String> = planned
        .instance_types
        .iter()
        .take(MAX_INSTANCE_TYPES)
        .collect();
    out.push(NodeSelectorRequirement::new(
        labels::INSTANCE_TYPE,
        Operator::In,
        types,
    ));
    out
}

fn operator(operator: core::Operator) -> Operator {
    match operator {
        core::Operator::In => Operator::In,
        core::Operator::NotIn => Operator::NotIn,
        core::Operator::Exists => Operator::Exists,
        core::Operator::DoesNotExist => Operator::DoesNotExist,
        core::Operator::Gt => Operator::Gt,
        core::Operator::Lt => Operator::Lt,
    }
}

/// A hash of what shapes a provisioner's nodes (labels, annotations, taints, kubelet settings,
/// node template), for drift: limits, weight and TTLs change no node.
pub fn provisioner_hash(provisioner: &Provisioner) -> Option<String> {
    let spec = &provisioner.spec;
    let shape = serde_json::json!({
        "annotations": spec.annotations,
        "labels": spec.labels,
        "taints": spec.taints,
        "startupTaints": spec.startup_taints,
        "kubeletConfiguration": spec.kubelet_configuration,
        "providerRef": spec.provider_ref,
        "provider": spec.provider,
    });
    let text = serde_json::to_string(&shape).ok()?;
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Some(hash.to_string())
}

/// Usage per provisioner as this decision adds machines.
struct LimitCheck<'a> {
    input: &'a ScheduleInput,
    used: HashMap<String, Resources>,
    /// Capacity of each instance type by name, for provisioners with limits.
    capacity: HashMap<&'a str, HashMap<&'a str, &'a Resources>>,
}

impl<'a> LimitCheck<'a> {
    fn new(input: &'a ScheduleInput) -> LimitCheck<'a> {
        let capacity = input
            .provisioners
            .iter()
            .filter(|p| !p.provisioner.limits.is_empty())
            .map(|p| {
                let types = p
                    .instance_types
                    .iter()
                    .map(|t| (t.instance_type.name.as_str(), &t.instance_type.capacity))
                    .collect();
                (p.provisioner.name.as_str(), types)
            })
            .collect();
        LimitCheck {
            input,
            used: HashMap::new(),
            capacity,
        }
    }

    /// Counts the node against its provisioner, or says which limit it would pass. A node may
    /// launch as any of its candidates, so it counts as the largest of them.
    fn admit(&mut self, planned: &PlannedNode, object: &Provisioner) -> Result<(), String> {
        let name = planned.provisioner.as_str();
        let Some(prov) = self
            .input
            .provisioners
            .iter()
            .find(|p| p.provisioner.name == name)
        else {
            return Err(format!("provisioner {name} was not part of this batch"));
        };
        let limits = &prov.provisioner.limits;
        if limits.is_empty() {
            return Ok(());
        }
        let used = self
            .used
            .entry(name.to_string())
            .or_insert_with(|| current_usage(self.input, &prov.provisioner, object));
        let mut reservation = Resources::default();
        if let Some(types) = self.capacity.get(name) {
            for candidate in planned.instance_types.iter().take(MAX_INSTANCE_TYPES) {
                if let Some(capacity) = types.get(candidate.as_str()) {
                    reservation = reservation.max(capacity);
                }
            }
        }
        for (resource, limit) in limits {
            let after = used.get(resource) + reservation.get(resource);
            if after > *limit {
                return Err(format!(
                    "provisioner {name} would pass its {resource} limit: {} in use and {} more for {} exceed {}",
                    format_amount(resource, used.get(resource)),
                    format_amount(resource, reservation.get(resource)),
                    planned.instance_type,
                    format_amount(resource, *limit),
                ));
            }
        }
        *used = &*used + &reservation;
        Ok(())
    }
}

/// The larger of what the batch's input counted and the provisioner's `status.resources` now.
fn current_usage(
    input: &ScheduleInput,
    core: &nodewright_scheduling::provisioner::Provisioner,
    object: &Provisioner,
) -> Resources {
    let counted = core.usage.clone().unwrap_or_else(|| {
        input
            .nodes
            .iter()
            .filter(|n| n.provisioner() == Some(core.name.as_str()))
            .fold(Resources::default(), |acc, n| &acc + n.counted_capacity())
    });
    let status = object
        .status
        .as_ref()
        .filter(|s| !s.resources.is_empty())
        .and_then(|s| convert::pod::quantities(&s.resources).ok())
        .unwrap_or_default();
    counted.max(&status)
}

/// Pods of the decision, each once, with where it goes (for tests and logs).
pub fn nominations_by_pod(decision: &Decision) -> BTreeMap<&str, &Target> {
    decision
        .nominations
        .iter()
        .map(|n| (n.pod.as_str(), &n.target))
        .collect()
}
