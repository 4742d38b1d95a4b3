//! What a plan costs where hostname anti-affinity rules: the lower bound buys a node for every
//! pod kept apart, and the packer fills those nodes before buying more.

mod common;

use common::*;
use nodewright_scheduling::plan::Plan;
use nodewright_scheduling::{Packing, ScheduleInput, schedule};
use proptest::prelude::*;

/// The cheapest spot price among the general purpose types (c5.large, rounded as there).
const CHEAPEST: f64 = 0.0298;

fn apart(name: &str, app: &str) -> PodBuilder {
    pod(name)
        .label("app", app)
        .anti_affinity(nodewright_scheduling::labels::HOSTNAME, &[("app", app)])
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

#[test]
fn the_bound_buys_a_node_for_every_pod_kept_apart() {
    let plan = cluster()
        .pods(apart("web", "web").cpu("100m").memory("128Mi").times(12))
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert_eq!(plan.nodes.len(), 12);
    let bound = plan.lower_bound_per_hour.unwrap();
    let cover = plan.cover_bound_per_hour.unwrap();
    assert!(cover < bound, "{cover} ≥ {bound}");
    assert!(close(bound, 12.0 * CHEAPEST), "{bound}");
    assert!(
        close(plan.cost_ratio.unwrap(), 1.0),
        "{:?}",
        plan.cost_ratio
    );
}

#[test]
fn pods_of_any_shape_under_one_term_count_together() {
    let plan = cluster()
        .pods(apart("small", "web").cpu("100m").times(5))
        .pods(apart("large", "web").cpu("200m").times(5))
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert!(close(plan.lower_bound_per_hour.unwrap(), 10.0 * CHEAPEST));
}

#[test]
fn without_anti_affinity_the_bound_is_the_cpu_and_memory_bound() {
    let plan = cluster()
        .pods(pod("web").cpu("700m").memory("1500Mi").times(37))
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert_eq!(plan.lower_bound_per_hour, plan.cover_bound_per_hour);
}

#[test]
fn other_pods_fill_the_nodes_anti_affinity_forces_before_more_are_bought() {
    // Small nodes are cheap each, big ones cheap per cpu. Ten pods kept apart are cheapest
    // on small nodes that each take a worker too; the other workers belong on big nodes.
    let small = instance("s.large")
        .vcpus(2)
        .memory_gib(8)
        .on_demand(0.03)
        .build();
    let big = instance("b.4xlarge")
        .vcpus(16)
        .memory_gib(64)
        .on_demand(0.16)
        .build();
    // Self-affinity to a zone keeps the workers out of pattern packing and in one zone.
    let workers = pod("worker")
        .cpu("1")
        .memory("256Mi")
        .label("app", "worker")
        .affinity(nodewright_scheduling::labels::ZONE, &[("app", "worker")]);
    let plan = cluster()
        .pods(apart("web", "web").cpu("250m").memory("256Mi").times(10))
        .pods(workers.times(40))
        .provisioner(provisioner("default").with_types(&[small, big]))
        .plan();
    assert!(plan.unschedulable.is_empty());
    let count = |name: &str| {
        plan.nodes
            .iter()
            .filter(|n| n.instance_type == name)
            .count()
    };
    assert_eq!((count("s.large"), count("b.4xlarge")), (10, 2), "{plan:#?}");
    assert!(
        close(plan.total_price_per_hour, 0.62),
        "{}",
        plan.total_price_per_hour
    );
}

/// Pods of a few shapes, each labelled with one of two apps, some keeping apart from an app.
fn arb_input() -> impl Strategy<Value = ScheduleInput> {
    let shape = (
        prop::sample::select(vec!["100m", "500m", "1", "1900m", "3500m"]),
        prop::sample::select(vec!["128Mi", "1Gi", "4Gi", "12Gi"]),
        1..10usize,
        0..2usize,
        prop::option::of(0..2usize),
    );
    (prop::collection::vec(shape, 1..6), prop::bool::ANY).prop_map(|(shapes, spot_only)| {
        let apps = ["web", "api"];
        let mut pods = Vec::new();
        for (i, (cpu, memory, count, app, avoids)) in shapes.into_iter().enumerate() {
            let mut b = pod(&format!("s{i}"))
                .cpu(cpu)
                .memory(memory)
                .label("app", apps[app]);
            if let Some(other) = avoids {
                b = b.anti_affinity(
                    nodewright_scheduling::labels::HOSTNAME,
                    &[("app", apps[other])],
                );
            }
            pods.extend(b.times(count));
        }
        let mut p = provisioner("default");
        if spot_only {
            p = p.spot_only();
        }
        cluster()
            .pods(pods)
            .provisioner(p.with_types(&general_purpose_types()))
            .0
    })
}

fn new_node_cost(plan: &Plan) -> f64 {
    plan.nodes.iter().map(|n| n.price_per_hour).sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_bound_lies_between_the_old_bound_and_every_plan(input in arb_input()) {
        let plan = schedule(&input);
        let Some(bound) = plan.lower_bound_per_hour else {
            return Ok(());
        };
        let cover = plan.cover_bound_per_hour.unwrap();
        prop_assert!(bound >= cover, "{} < {}", bound, cover);
        prop_assert!(bound <= plan.total_price_per_hour + 1e-9, "{} > {}", bound, plan.total_price_per_hour);
        // Karpenter's packing is another valid plan; with every pod on a new node in both,
        // the same pods must be covered.
        let karpenter = schedule(&ScheduleInput {
            settings: nodewright_scheduling::SchedulerSettings {
                packing: Packing::FirstFitDecreasing,
                ..input.settings.clone()
            },
            ..input.clone()
        });
        if plan.unschedulable.is_empty() && karpenter.unschedulable.is_empty() {
            prop_assert!(bound <= new_node_cost(&karpenter) + 1e-9);
        }
    }
}
