//! Property tests: whatever the cluster, every placement keeps requests, requirements, taints,
//! affinity, spread, host ports and limits; every pod appears exactly once; the same input
//! gives the same plan.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::*;
use nodewright_scheduling::allocatable::{AllocatableSettings, KubeletConfig};
use nodewright_scheduling::instance_type::{CapacityType, InstanceType};
use nodewright_scheduling::labels;
use nodewright_scheduling::node::ExistingNode;
use nodewright_scheduling::plan::Plan;
use nodewright_scheduling::pod::{DaemonSet, Pod};
use nodewright_scheduling::provisioner::ProvisionerInput;
use nodewright_scheduling::requirements::Operator;
use nodewright_scheduling::resources::Resources;
use nodewright_scheduling::taints::{TaintEffect, Toleration, tolerates_all};
use nodewright_scheduling::{ScheduleInput, schedule};
use proptest::prelude::*;

/// What makes a pod shape special.
#[derive(Debug, Clone, Copy)]
enum Constraint {
    None,
    InZone(usize),
    OnDemand,
    ToleratesDedicated,
    HostnameAntiAffinity,
    ZonalSpread,
    HostnameSpread,
    ZonalSelfAffinity,
    HostPort,
    PrefersZone(usize),
    NeedsTeamLabel,
}

#[derive(Debug, Clone)]
struct Shape {
    cpu: &'static str,
    memory: &'static str,
    count: usize,
    constraint: Constraint,
}

#[derive(Debug, Clone, Copy)]
enum ProvisionerKind {
    Default,
    SpotOnly,
    TwoZones,
    Dedicated,
    Team,
}

fn arb_shape() -> impl Strategy<Value = Shape> {
    let constraint = prop_oneof![
        3 => Just(Constraint::None),
        1 => (0..3usize).prop_map(Constraint::InZone),
        1 => Just(Constraint::OnDemand),
        1 => Just(Constraint::ToleratesDedicated),
        1 => Just(Constraint::HostnameAntiAffinity),
        1 => Just(Constraint::ZonalSpread),
        1 => Just(Constraint::HostnameSpread),
        1 => Just(Constraint::ZonalSelfAffinity),
        1 => Just(Constraint::HostPort),
        1 => (0..3usize).prop_map(Constraint::PrefersZone),
        1 => Just(Constraint::NeedsTeamLabel),
    ];
    (
        prop::sample::select(vec![
            "0", "100m", "250m", "500m", "1", "1900m", "2", "3500m", "7800m",
        ]),
        prop::sample::select(vec!["128Mi", "512Mi", "1Gi", "4Gi", "12Gi"]),
        1..8usize,
        constraint,
    )
        .prop_map(|(cpu, memory, count, constraint)| Shape {
            cpu,
            memory,
            count,
            constraint,
        })
}

fn arb_provisioner() -> impl Strategy<Value = (ProvisionerKind, i32, Option<i64>)> {
    (
        prop::sample::select(vec![
            ProvisionerKind::Default,
            ProvisionerKind::SpotOnly,
            ProvisionerKind::TwoZones,
            ProvisionerKind::Dedicated,
            ProvisionerKind::Team,
        ]),
        0..3i32,
        prop::option::of(2..40i64),
    )
}

#[derive(Debug, Clone)]
struct Scenario {
    shapes: Vec<Shape>,
    provisioners: Vec<(ProvisionerKind, i32, Option<i64>)>,
    existing: Vec<(usize, usize, usize)>,
    /// The cpu of a daemonset every node runs, if any: big ones crowd out small types.
    daemonset: Option<&'static str>,
}

fn arb_scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(arb_shape(), 1..6),
        prop::collection::vec(arb_provisioner(), 0..3),
        prop::collection::vec((0..12usize, 0..3usize, 0..4usize), 0..3),
        prop::option::of(prop::sample::select(vec!["100m", "1900m", "3"])),
    )
        .prop_map(|(shapes, provisioners, existing, daemonset)| Scenario {
            shapes,
            provisioners,
            existing,
            daemonset,
        })
}

fn build(scenario: &Scenario) -> ScheduleInput {
    let types = general_purpose_types();
    let mut pods = Vec::new();
    for (i, shape) in scenario.shapes.iter().enumerate() {
        let app = format!("app-{i}");
        let mut b = pod(&format!("s{i}"))
            .cpu(shape.cpu)
            .memory(shape.memory)
            .label("app", &app);
        b = match shape.constraint {
            Constraint::None => b,
            Constraint::InZone(z) => b.node_selector(labels::ZONE, ZONES[z]),
            Constraint::OnDemand => {
                b.node_selector(labels::CAPACITY_TYPE, labels::CAPACITY_TYPE_ON_DEMAND)
            }
            Constraint::ToleratesDedicated => b.tolerates(Toleration::exists("dedicated")),
            Constraint::HostnameAntiAffinity => b.anti_affinity(labels::HOSTNAME, &[("app", &app)]),
            Constraint::ZonalSpread => b.spread(labels::ZONE, 1, &[("app", &app)]),
            Constraint::HostnameSpread => b.spread(labels::HOSTNAME, 1, &[("app", &app)]),
            Constraint::ZonalSelfAffinity => b.affinity(labels::ZONE, &[("app", &app)]),
            Constraint::HostPort => b.host_port(8080),
            Constraint::PrefersZone(z) => b.prefers(10, labels::ZONE, Operator::In, &[ZONES[z]]),
            Constraint::NeedsTeamLabel => b.node_selector("team", "a"),
        };
        pods.extend(b.times(shape.count));
    }
    let provisioners: Vec<ProvisionerInput> = scenario
        .provisioners
        .iter()
        .enumerate()
        .map(|(i, &(kind, weight, limit))| {
            let mut p = provisioner(&format!("p{i}-{kind:?}").to_lowercase()).weight(weight);
            p = match kind {
                ProvisionerKind::Default => p,
                ProvisionerKind::SpotOnly => p.spot_only(),
                ProvisionerKind::TwoZones => p.requires(labels::ZONE, Operator::In, &ZONES[..2]),
                ProvisionerKind::Dedicated => p.taint("dedicated", "x", TaintEffect::NoSchedule),
                ProvisionerKind::Team => p.label("team", "a"),
            };
            if let Some(cores) = limit {
                p = p.limit_cpu(cores);
            }
            p.with_types(&types)
        })
        .collect();
    let nodes: Vec<ExistingNode> = scenario
        .existing
        .iter()
        .enumerate()
        .map(|(i, &(t, z, busy))| {
            let mut n = node(&format!("existing-{i}"), &types[t], ZONES[z]);
            for j in 0..busy {
                n.pods.push(
                    pod(&format!("running-{i}-{j}"))
                        .cpu("250m")
                        .memory("256Mi")
                        .label("app", "old")
                        .build()
                        .into(),
                );
            }
            n
        })
        .collect();
    let daemonsets = if let Some(cpu) = scenario.daemonset {
        let template = pod("agent")
            .cpu(cpu)
            .memory("128Mi")
            .tolerates(Toleration::everything())
            .build();
        vec![DaemonSet::from_template("kube-system", "agent", &template)]
    } else {
        Vec::new()
    };
    ScheduleInput {
        pods,
        nodes,
        provisioners,
        daemonsets,
        ..ScheduleInput::default()
    }
}

/// The labels a planned node would carry if launched as `t` in `zone` with `ct`.
fn launched_labels(
    input: &ScheduleInput,
    provisioner: &str,
    t: &InstanceType,
    zone: &str,
    ct: CapacityType,
) -> BTreeMap<String, String> {
    let mut labels = t.labels.clone();
    labels.insert(labels::ZONE.into(), zone.into());
    labels.insert(
        labels::CAPACITY_TYPE.into(),
        match ct {
            CapacityType::Spot => labels::CAPACITY_TYPE_SPOT,
            CapacityType::OnDemand => labels::CAPACITY_TYPE_ON_DEMAND,
        }
        .into(),
    );
    labels.insert(labels::PROVISIONER_NAME.into(), provisioner.into());
    if let Some(p) = input
        .provisioners
        .iter()
        .find(|p| p.provisioner.name == provisioner)
    {
        labels.extend(p.provisioner.labels.clone());
    }
    labels
}

fn type_named<'a>(input: &'a ScheduleInput, name: &str) -> &'a Arc<InstanceType> {
    input
        .provisioners
        .iter()
        .flat_map(|p| p.instance_types.iter())
        .map(|o| &o.instance_type)
        .find(|t| t.name == name)
        .expect("planned types come from the input")
}

/// Every pod's node: (node id, zone, labels of the expected launch or the existing node).
struct Placed<'a> {
    pod: &'a Pod,
    node: String,
    zone: String,
}

fn check(input: &ScheduleInput, plan: &Plan) -> Result<(), TestCaseError> {
    let by_key: BTreeMap<String, &Pod> = input.pods.iter().map(|p| (p.key(), p)).collect();
    // Every pod exactly once.
    let mut seen: Vec<String> = plan.nodes.iter().flat_map(|n| n.pods.clone()).collect();
    seen.extend(plan.existing.iter().flat_map(|e| e.pods.clone()));
    seen.extend(plan.unschedulable.iter().map(|u| u.pod.clone()));
    seen.sort();
    let mut expected: Vec<String> = by_key.keys().cloned().collect();
    expected.sort();
    prop_assert_eq!(seen, expected);

    let overhead = input
        .daemonsets
        .iter()
        .fold(Resources::default(), |acc, d| &acc + &d.requests);
    let mut placed: Vec<Placed<'_>> = Vec::new();
    let mut reserved_cpu: BTreeMap<&str, i64> = BTreeMap::new();
    for (i, node) in plan.nodes.iter().enumerate() {
        let prov = input
            .provisioners
            .iter()
            .find(|p| p.provisioner.name == node.provisioner)
            .expect("planned provisioners come from the input");
        let mut requests = Resources::default();
        for key in &node.pods {
            requests += &by_key[key].requests;
        }
        let mut largest_cpu = 0;
        prop_assert!(!node.instance_types.is_empty());
        prop_assert_eq!(&node.instance_type, &node.instance_types[0]);
        for name in &node.instance_types {
            let t = type_named(input, name);
            let allocatable =
                t.allocatable(&KubeletConfig::default(), &AllocatableSettings::default());
            let needed = &requests + &overhead;
            prop_assert!(
                needed.fits(&allocatable),
                "node {i} as {name}: {needed} does not fit {allocatable}"
            );
            largest_cpu = largest_cpu.max(t.capacity.cpu_millis);
            let labels =
                launched_labels(input, &node.provisioner, t, &node.zone, node.capacity_type);
            for key in &node.pods {
                let pod = by_key[key];
                prop_assert!(
                    pod.required_terms()
                        .iter()
                        .any(|term| term.matches(&labels)),
                    "{key} on node {i} as {name} misses its node requirements"
                );
            }
        }
        *reserved_cpu.entry(&node.provisioner).or_insert(0) += largest_cpu;
        for key in &node.pods {
            let pod = by_key[key];
            prop_assert!(
                tolerates_all(&prov.provisioner.taints, &pod.placement.tolerations),
                "{key} does not tolerate {}",
                node.provisioner
            );
            placed.push(Placed {
                pod,
                node: format!("new-{i}"),
                zone: node.zone.clone(),
            });
        }
    }
    for assignment in &plan.existing {
        let node = input
            .nodes
            .iter()
            .find(|n| n.name == assignment.node)
            .expect("existing assignments name input nodes");
        let mut requests = node.requested();
        for key in &assignment.pods {
            let pod = by_key[key];
            requests += &pod.requests;
            prop_assert!(tolerates_all(&node.taints, &pod.placement.tolerations));
            prop_assert!(pod.required_terms().iter().any(|t| t.matches(&node.labels)));
            placed.push(Placed {
                pod,
                node: node.name.clone(),
                zone: node.labels[labels::ZONE].clone(),
            });
        }
        prop_assert!(
            requests.fits(&node.allocatable),
            "{} overcommitted",
            node.name
        );
    }
    // Limits hold whichever candidate launches.
    for p in &input.provisioners {
        if let Some(limit) = p.provisioner.limits.get(labels::RESOURCE_CPU) {
            let usage: i64 = input
                .nodes
                .iter()
                .filter(|n| n.provisioner() == Some(p.provisioner.name.as_str()))
                .map(|n| n.counted_capacity().cpu_millis)
                .sum();
            let reserved = reserved_cpu
                .get(p.provisioner.name.as_str())
                .copied()
                .unwrap_or(0);
            prop_assert!(
                usage + reserved <= *limit,
                "{} over its cpu limit",
                p.provisioner.name
            );
        }
    }
    // Topology, per shape (all pods of a shape share the app label).
    let mut by_app: BTreeMap<&str, Vec<&Placed<'_>>> = BTreeMap::new();
    for p in &placed {
        by_app
            .entry(p.pod.labels["app"].as_str())
            .or_default()
            .push(p);
    }
    for pods in by_app.values() {
        let pod = pods[0].pod;
        let per_node = count_by(pods.iter().map(|p| p.node.as_str()));
        let per_zone = count_by(pods.iter().map(|p| p.zone.as_str()));
        if !pod.placement.pod_anti_affinity.is_empty() || !pod.placement.host_ports.is_empty() {
            prop_assert!(
                per_node.values().all(|&n| n == 1),
                "two on one node: {per_node:?}"
            );
        }
        if let Some(spread) = pod.placement.topology_spread.first() {
            if spread.topology_key == labels::HOSTNAME {
                prop_assert!(
                    per_node.values().all(|&n| n <= 1),
                    "hostname spread: {per_node:?}"
                );
            } else {
                let domains = spread_domains(input, pod);
                let counts: Vec<usize> = domains
                    .iter()
                    .map(|z| per_zone.get(z.as_str()).copied().unwrap_or(0))
                    .collect();
                let (min, max) = (
                    counts.iter().min().copied().unwrap_or(0),
                    counts.iter().max().copied().unwrap_or(0),
                );
                prop_assert!(max - min <= 1, "zonal skew {counts:?} over {domains:?}");
                prop_assert!(per_zone.keys().all(|z| domains.contains(*z)));
            }
        }
        if !pod.placement.pod_affinity.is_empty() {
            prop_assert!(per_zone.len() <= 1, "self-affinity split: {per_zone:?}");
        }
    }
    Ok(())
}

fn count_by<'a>(items: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, usize> {
    let mut out = BTreeMap::new();
    for item in items {
        *out.entry(item).or_insert(0) += 1;
    }
    out
}

/// Zones a spread pod may count as domains: those of provisioners it tolerates, and those of
/// existing nodes.
fn spread_domains(input: &ScheduleInput, pod: &Pod) -> BTreeSet<String> {
    let mut zones: BTreeSet<String> = input
        .nodes
        .iter()
        .map(|n| n.labels[labels::ZONE].clone())
        .collect();
    for p in &input.provisioners {
        if !tolerates_all(&p.provisioner.taints, &pod.placement.tolerations) {
            continue;
        }
        let reqs = p.provisioner.node_requirements();
        for z in ZONES {
            if reqs.get(labels::ZONE).is_none_or(|s| s.allows(Some(z))) {
                zones.insert(z.to_string());
            }
        }
    }
    zones
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_plan_keeps_every_constraint(scenario in arb_scenario()) {
        let input = build(&scenario);
        let plan = schedule(&input);
        check(&input, &plan)?;
    }

    #[test]
    fn the_same_input_gives_the_same_plan(scenario in arb_scenario()) {
        let input = build(&scenario);
        let first = serde_json::to_string(&schedule(&input)).unwrap();
        let second = serde_json::to_string(&schedule(&input)).unwrap();
        prop_assert_eq!(first, second);
    }

    #[test]
    fn unschedulable_pods_always_carry_a_reason(scenario in arb_scenario()) {
        let plan = schedule(&build(&scenario));
        for u in &plan.unschedulable {
            prop_assert!(!u.reason.is_empty());
        }
    }
}
