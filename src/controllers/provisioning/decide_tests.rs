//! Decisions from plans the real scheduler makes over the embedded EC2 catalog, with the
//! cluster state fed as watchers would feed it.

use std::collections::BTreeMap;
use std::sync::Arc;

use nodewright_scheduling::catalog::Catalog;
use nodewright_scheduling::labels;
use nodewright_scheduling::resources::parse_quantity;
use nodewright_scheduling::{Plan, ScheduleInput, schedule};
use serde_json::{Value, json};

use super::decide::{
    Decision, MAX_INSTANCE_TYPES, MachineNames, Target, decide, failed_scheduling_message,
    nominations_by_pod,
};
use crate::apis::Machine;
use crate::apis::requirement::Operator;
use crate::cloudprovider::{LaunchRequest, NodeTemplate};
use crate::settings::Settings;
use crate::state::{ClusterState, InstanceTypesByProvisioner};

const SEED: u64 = 42;

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("fixture deserializes")
}

/// The getting-started provisioner: spot only, a cpu limit, a label, taints and kubelet settings.
fn tutorial_provisioner() -> Value {
    json!({
        "apiVersion": "karpenter.sh/v1alpha5", "kind": "Provisioner",
        "metadata": {"name": "default", "uid": "prov-uid-1"},
        "spec": {
            "requirements": [{"key": labels::CAPACITY_TYPE, "operator": "In", "values": ["spot"]}],
            "limits": {"resources": {"cpu": "1000"}},
            "labels": {"team": "a"},
            "taints": [{"key": "team", "value": "a", "effect": "NoSchedule"}],
            "startupTaints": [{"key": "cni-not-ready", "effect": "NoSchedule"}],
            "kubeletConfiguration": {"maxPods": 110},
            "providerRef": {"name": "default"},
            "ttlSecondsAfterEmpty": 30
        }
    })
}

/// An `inflate` replica: a pause container asking for `cpu`, marked unschedulable.
fn inflate(i: usize, cpu: &str) -> Value {
    json!({
        "metadata": {"name": format!("inflate-{i}"), "namespace": "default", "uid": format!("pod-uid-{i}"),
                     "labels": {"app": "inflate"}},
        "spec": {
            "containers": [{"name": "inflate", "image": "public.ecr.aws/eks-distro/kubernetes/pause:3.7",
                            "resources": {"requests": {"cpu": cpu}}}],
            "tolerations": [{"key": "team", "operator": "Equal", "value": "a", "effect": "NoSchedule"}]
        },
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
        ]}
    })
}

fn instance_types() -> InstanceTypesByProvisioner {
    let catalog = Catalog::embedded().expect("embedded catalog loads");
    let types = catalog
        .instance_types("us-east-1", None)
        .expect("us-east-1 is in the catalog");
    [(
        "default".to_string(),
        types.into_iter().map(Arc::new).collect(),
    )]
    .into()
}

struct Batch {
    state: ClusterState,
    types: InstanceTypesByProvisioner,
}

impl Batch {
    fn tutorial(pods: usize) -> Batch {
        let mut state = ClusterState::new();
        state
            .apply_provisioner(&from_json(tutorial_provisioner()))
            .expect("provisioner applies");
        for i in 0..pods {
            state
                .apply_pod(&from_json(inflate(i, "1")))
                .expect("pod applies");
        }
        Batch {
            state,
            types: instance_types(),
        }
    }

    fn input(&self) -> ScheduleInput {
        let settings = Settings {
            region: Some("us-east-1".into()),
            ..Settings::for_cluster("test")
        };
        self.state.schedule_input(&self.types, &settings)
    }

    fn decide(&self) -> (Plan, Decision) {
        let input = self.input();
        let plan = schedule(&input);
        let taken = self
            .state
            .machines()
            .filter_map(|m| m.machine.metadata.name.clone());
        let decision = decide(
            &plan,
            &input,
            |name| self.state.provisioner(name).map(|e| &e.provisioner),
            &mut MachineNames::new(SEED, taken),
        );
        (plan, decision)
    }
}

fn requirement_values<'a>(machine: &'a Machine, key: &str) -> &'a [String] {
    machine
        .spec
        .requirements
        .iter()
        .find(|r| r.key == key && r.operator == Operator::In)
        .map(|r| r.values.as_slice())
        .unwrap_or(&[])
}

#[test]
fn the_tutorial_batch_becomes_one_spot_machine_recorded_with_everything_it_needs() {
    let batch = Batch::tutorial(4);
    let (plan, decision) = batch.decide();
    assert_eq!(plan.nodes.len(), 1, "4 × 1 cpu fits one node");
    assert_eq!(decision.machines.len(), 1);
    assert!(decision.refused.is_empty() && decision.unschedulable.is_empty());
    let new = &decision.machines[0];
    let machine = &new.machine;
    let name = machine.metadata.name.clone().unwrap_or_default();
    assert!(
        name.starts_with("default-") && name.len() == "default-".len() + 5,
        "{name}"
    );

    let labels_of = machine.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels_of[labels::PROVISIONER_NAME], "default");
    assert_eq!(labels_of["team"], "a");
    let annotations = machine.metadata.annotations.clone().unwrap_or_default();
    assert!(annotations.contains_key(labels::PROVISIONER_HASH));
    let owners = machine
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (owners[0].kind.as_str(), owners[0].uid.as_str()),
        ("Provisioner", "prov-uid-1")
    );
    assert_eq!(owners[0].api_version, "karpenter.sh/v1alpha5");

    let types = requirement_values(machine, labels::INSTANCE_TYPE);
    assert!(!types.is_empty() && types.len() <= MAX_INSTANCE_TYPES);
    assert_eq!(types[0], plan.nodes[0].instance_type, "cheapest first");
    assert_eq!(types, &plan.nodes[0].instance_types[..types.len()]);
    assert_eq!(requirement_values(machine, labels::CAPACITY_TYPE), ["spot"]);
    assert!(!requirement_values(machine, labels::ZONE).is_empty());

    let cpu = machine
        .spec
        .resources
        .requests
        .get("cpu")
        .expect("cpu requested");
    let cpu = parse_quantity(&cpu.0).expect("a quantity").millis();
    assert!(cpu >= 4000, "the pods' requests, got {cpu}m");
    assert_eq!(machine.spec.taints.len(), 1);
    assert_eq!(machine.spec.startup_taints[0].key, "cni-not-ready");
    assert_eq!(
        machine.spec.kubelet.as_ref().and_then(|k| k.max_pods),
        Some(110)
    );
    assert_eq!(
        machine
            .spec
            .machine_template_ref
            .as_ref()
            .map(|r| r.name.as_str()),
        Some("default")
    );
    assert_eq!(machine.validate(), Ok(()), "the API server would accept it");

    let nominated = nominations_by_pod(&decision);
    assert_eq!(nominated.len(), 4);
    assert!(
        nominated
            .values()
            .all(|t| **t == Target::NewMachine(name.clone()))
    );
    assert_eq!(
        decision.nominations[0].message(),
        format!("Pod should schedule on: machine/{name}")
    );

    // What the launch step will do with it once the API server gave it a UID.
    let mut created = machine.clone();
    created.metadata.uid = Some("machine-uid-1".into());
    let request = LaunchRequest::from_machine(&created, NodeTemplate::default())
        .expect("a launchable machine");
    assert_eq!(request.instance_types.len(), types.len());
    assert_eq!(request.provisioner_name, "default");
}

#[test]
fn the_same_seed_names_the_same_machines_and_never_reuses_a_taken_name() {
    let batch = Batch::tutorial(4);
    let (_, first) = batch.decide();
    let (_, second) = batch.decide();
    assert_eq!(first, second, "decisions are reproducible");

    let mut names = MachineNames::new(SEED, Vec::new());
    let a = names.next("default");
    let mut again = MachineNames::new(SEED, vec![a.clone()]);
    let b = again.next("default");
    assert_ne!(a, b);
    let long = "p".repeat(63);
    assert_eq!(MachineNames::new(1, Vec::new()).next(&long).len(), 63);
}

#[test]
fn a_machine_the_status_says_would_pass_the_limit_is_refused_with_the_reason() {
    let mut batch = Batch::tutorial(4);
    let input = batch.input();
    let plan = schedule(&input);
    assert_eq!(plan.nodes.len(), 1);
    // Another batch's machines landed in the status since this batch's input was built.
    let mut prov = tutorial_provisioner();
    prov["status"] = json!({"resources": {"cpu": "998"}});
    batch
        .state
        .apply_provisioner(&from_json(prov))
        .expect("provisioner applies");
    let decision = decide(
        &plan,
        &input,
        |name| batch.state.provisioner(name).map(|e| &e.provisioner),
        &mut MachineNames::new(SEED, Vec::new()),
    );
    assert!(decision.machines.is_empty());
    assert_eq!(decision.refused.len(), 1);
    let refusal = &decision.refused[0];
    assert_eq!(refusal.pods.len(), 4);
    assert!(
        refusal.reason.contains("cpu limit") && refusal.reason.contains("998"),
        "{}",
        refusal.reason
    );
    assert!(
        decision.nominations.is_empty(),
        "refused pods are not nominated"
    );
}

#[test]
fn a_provisioner_deleted_since_the_plan_gets_no_machine() {
    let batch = Batch::tutorial(2);
    let input = batch.input();
    let plan = schedule(&input);
    let decision = decide(
        &plan,
        &input,
        |_| None,
        &mut MachineNames::new(SEED, Vec::new()),
    );
    assert!(decision.machines.is_empty());
    assert!(decision.refused[0].reason.contains("no longer exists"));
}

#[test]
fn pods_still_pending_go_to_the_machine_already_launching_for_them() {
    let mut batch = Batch::tutorial(4);
    let (_, first) = batch.decide();
    let mut created = first.machines[0].machine.clone();
    created.metadata.uid = Some("machine-uid-1".into());
    let name = created.metadata.name.clone().unwrap_or_default();
    batch
        .state
        .apply_machine(&created)
        .expect("machine applies");
    let (plan, second) = batch.decide();
    assert!(plan.nodes.is_empty(), "no second machine for the same pods");
    assert!(second.machines.is_empty());
    let nominated = nominations_by_pod(&second);
    assert_eq!(nominated.len(), 4);
    assert!(
        nominated
            .values()
            .all(|t| **t == Target::InFlightMachine(name.clone()))
    );
    assert_eq!(
        second.nominations[0].message(),
        format!("Pod should schedule on: machine/{name}")
    );
}

#[test]
fn an_impossible_pod_is_reported_without_holding_back_the_others() {
    let mut batch = Batch::tutorial(3);
    batch
        .state
        .apply_pod(&from_json(inflate(99, "512")))
        .expect("pod applies");
    let (_, decision) = batch.decide();
    assert_eq!(decision.machines.len(), 1);
    assert_eq!(decision.machines[0].pods.len(), 3);
    assert_eq!(decision.unschedulable.len(), 1);
    let impossible = &decision.unschedulable[0];
    assert_eq!(impossible.pod, "default/inflate-99");
    let message = failed_scheduling_message(&impossible.reason);
    assert!(message.starts_with("Failed to schedule pod, ") && message.len() > 30);
}

#[test]
fn machine_requirements_cap_instance_types_at_sixty() {
    let batch = Batch::tutorial(1);
    let (plan, decision) = batch.decide();
    let candidates = plan.nodes[0].instance_types.len();
    let written = requirement_values(&decision.machines[0].machine, labels::INSTANCE_TYPE).len();
    assert_eq!(written, candidates.min(MAX_INSTANCE_TYPES));
    let by_key: BTreeMap<&str, usize> =
        decision.machines[0]
            .machine
            .spec
            .requirements
            .iter()
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry(r.key.as_str()).or_default() += 1;
                m
            });
    assert_eq!(
        by_key[labels::INSTANCE_TYPE],
        1,
        "one instance-type requirement"
    );
}
