//! Scheduler behaviour: limits, host ports, offerings, extended resources, prices and what
//! the chosen plan costs.

mod common;

use common::*;
use nodewright_scheduling::labels;
use nodewright_scheduling::taints::{Taint, TaintEffect, Toleration};

#[test]
fn limits_are_never_exceeded_whichever_candidate_is_launched() {
    let types = general_purpose_types();
    let plan = cluster()
        .pods(pod("web").cpu("1").times(20))
        .provisioner(provisioner("default").limit_cpu(8).with_types(&types))
        .plan();
    let largest_cpu = |n: &nodewright_scheduling::plan::PlannedNode| {
        n.instance_types
            .iter()
            .map(|name| {
                types
                    .iter()
                    .find(|t| &t.name == name)
                    .map_or(0, |t| t.capacity.cpu_millis)
            })
            .max()
            .unwrap_or(0)
    };
    let reserved: i64 = plan.nodes.iter().map(largest_cpu).sum();
    assert!(reserved <= 8000, "reserved {reserved}m of cpu: {plan:#?}");
    assert!(!plan.unschedulable.is_empty());
    assert!(
        plan.unschedulable[0].reason.contains("limits"),
        "{}",
        plan.unschedulable[0].reason
    );
}

#[test]
fn limits_count_what_the_provisioner_already_runs() {
    let m5_xlarge = instance("m5.xlarge")
        .vcpus(4)
        .memory_gib(16)
        .on_demand(0.192)
        .build();
    let mut running = node("old", &m5_xlarge, "us-east-1a");
    running
        .labels
        .insert(labels::PROVISIONER_NAME.into(), "default".into());
    running.pods.push(pod("busy").cpu("3500m").build().into());
    let plan = cluster()
        .node(running)
        .pods([pod("a").cpu("1").build()])
        .provisioner(
            provisioner("default")
                .limit_cpu(4)
                .with_types(&general_purpose_types()),
        )
        .plan();
    assert!(plan.nodes.is_empty());
    assert!(plan.unschedulable[0].reason.contains("limits"));
}

#[test]
fn host_ports_keep_pods_with_the_same_port_apart() {
    let plan = cluster()
        .pods(pod("ingress").cpu("100m").host_port(443).times(3))
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert_eq!(plan.nodes.len(), 3);
}

#[test]
fn a_host_port_in_use_on_an_existing_node_sends_the_pod_elsewhere() {
    let m5_large = instance("m5.large")
        .vcpus(2)
        .memory_gib(8)
        .on_demand(0.096)
        .build();
    let mut existing = node("n1", &m5_large, "us-east-1a");
    existing
        .pods
        .push(pod("old-ingress").cpu("100m").host_port(80).build().into());
    let plan = cluster()
        .node(existing.clone())
        .pods([pod("ingress").cpu("100m").host_port(80).build()])
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert!(plan.existing.is_empty());
    assert_eq!(plan.nodes.len(), 1);

    let stuck = cluster()
        .node(existing)
        .pods([pod("ingress").cpu("100m").host_port(80).build()])
        .plan();
    assert!(
        stuck.unschedulable[0].reason.contains("host port conflict"),
        "{}",
        stuck.unschedulable[0].reason
    );
}

#[test]
fn existing_node_taints_and_labels_are_respected() {
    let m5_large = instance("m5.large")
        .vcpus(2)
        .memory_gib(8)
        .on_demand(0.096)
        .build();
    let mut tainted = node("tainted", &m5_large, "us-east-1a");
    tainted
        .taints
        .push(Taint::new("dedicated", "db", TaintEffect::NoSchedule));
    let plan = cluster()
        .node(tainted)
        .node(node("plain", &m5_large, "us-east-1b"))
        .pods([pod("a").cpu("100m").build()])
        .pods([pod("b")
            .cpu("100m")
            .node_selector(labels::ZONE, "us-east-1a")
            .tolerates(Toleration::exists("dedicated"))
            .build()])
        .plan();
    let by_pod = placement(&plan);
    assert_eq!(by_pod["default/a"], "plain");
    assert_eq!(by_pod["default/b"], "tainted");
}

#[test]
fn without_prices_types_rank_by_size_and_the_plan_says_so() {
    let types: Vec<_> = [
        ("m5.xlarge", 4, 16),
        ("m5.large", 2, 8),
        ("m5.2xlarge", 8, 32),
    ]
    .iter()
    .map(|&(name, cpu, mem)| {
        instance(name)
            .vcpus(cpu)
            .memory_gib(mem)
            .on_demand(1.0)
            .spot(1.0)
            .unpriced()
            .build()
    })
    .collect();
    let plan = cluster()
        .pods([pod("a").cpu("1").build()])
        .provisioner(provisioner("default").with_types(&types))
        .plan();
    assert!(!plan.prices_known);
    assert_eq!(plan.total_price_per_hour, 0.0);
    assert_eq!(plan.nodes[0].price_per_hour, 0.0);
    assert_eq!(
        plan.nodes[0].instance_types,
        ["m5.large", "m5.xlarge", "m5.2xlarge"]
    );
    assert!(plan.lower_bound_per_hour.is_none());
}

#[test]
fn no_provisioner_leaves_pods_pending_with_a_reason() {
    let plan = cluster().pods([pod("a").cpu("1").build()]).plan();
    assert_eq!(
        plan.unschedulable[0].reason,
        "no provisioner can launch a node"
    );
}

#[test]
fn plan_json_follows_the_contract() {
    let plan = cluster()
        .pods([pod("a").cpu("1").build()])
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    let json = serde_json::to_value(&plan).unwrap();
    for field in [
        "nodes",
        "existing",
        "unschedulable",
        "totalPricePerHour",
        "pricesKnown",
        "lowerBoundPerHour",
    ] {
        assert!(json.get(field).is_some(), "missing {field}: {json}");
    }
    let node = &json["nodes"][0];
    for field in [
        "provisioner",
        "instanceType",
        "instanceTypes",
        "zone",
        "capacityType",
        "pricePerHour",
        "pods",
    ] {
        assert!(node.get(field).is_some(), "missing {field}: {node}");
    }
    assert_eq!(node["capacityType"], "spot");
    assert_eq!(node["pods"][0], "default/a");
}

#[test]
fn the_lower_bound_never_exceeds_the_plan() {
    let plan = cluster()
        .pods(pod("web").cpu("700m").memory("1500Mi").times(37))
        .pods(pod("db").cpu("2").memory("12Gi").times(5))
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    let bound = plan.lower_bound_per_hour.unwrap();
    assert!(bound > 0.0 && bound <= plan.total_price_per_hour + 1e-9);
    assert!(plan.cost_ratio.unwrap() >= 1.0 - 1e-9);
}

#[test]
fn capping_node_size_beats_growing_one_big_node_when_big_types_are_dear() {
    // The 4xlarge's spot price is poor; Karpenter's packing drifts onto it.
    let types = vec![
        instance("m5.large")
            .vcpus(2)
            .memory_gib(8)
            .on_demand(0.096)
            .spot(0.03)
            .build(),
        instance("m5.xlarge")
            .vcpus(4)
            .memory_gib(16)
            .on_demand(0.192)
            .spot(0.06)
            .build(),
        instance("m5.4xlarge")
            .vcpus(16)
            .memory_gib(64)
            .on_demand(0.768)
            .spot(0.70)
            .build(),
    ];
    let pods = pod("web").cpu("900m").memory("3Gi").times(40);
    let cheap = cluster()
        .pods(pods.clone())
        .provisioner(provisioner("default").with_types(&types))
        .plan();
    let karpenter = cluster()
        .pods(pods)
        .provisioner(provisioner("default").with_types(&types))
        .settings(|s| s.packing = nodewright_scheduling::Packing::FirstFitDecreasing)
        .plan();
    assert!(cheap.total_price_per_hour < karpenter.total_price_per_hour);
    assert!(cheap.nodes.iter().all(|n| n.instance_type != "m5.4xlarge"));
}

#[test]
fn a_zone_without_offerings_is_named() {
    let plan = cluster()
        .pods([pod("a")
            .cpu("1")
            .node_selector(labels::ZONE, "us-east-1f")
            .build()])
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert_eq!(
        plan.unschedulable[0].reason,
        "provisioner default: no offering in zones In [us-east-1f] with capacity type any"
    );
}

#[test]
fn extended_resources_only_fit_types_that_have_them() {
    let mut types = general_purpose_types();
    types.push(gpu_type());
    let plan = cluster()
        .pods([pod("train").cpu("1").gpus(1).build()])
        .provisioner(provisioner("default").with_types(&types))
        .plan();
    assert_eq!(plan.nodes[0].instance_types, ["g4dn.xlarge"]);
    let too_many = cluster()
        .pods([pod("train").cpu("1").gpus(2).build()])
        .provisioner(provisioner("default").with_types(&types))
        .plan();
    assert_eq!(
        too_many.unschedulable[0].reason,
        "provisioner default: no instance type has 2 nvidia.com/gpu"
    );
}

#[test]
fn the_pod_count_of_a_node_is_a_resource_too() {
    let small = vec![
        instance("m5.large")
            .vcpus(2)
            .memory_gib(8)
            .on_demand(0.096)
            .spot(0.03)
            .build(),
    ];
    let plan = cluster()
        .pods(pod("tiny").cpu("10m").memory("16Mi").times(40))
        .provisioner(provisioner("default").with_types(&small))
        .plan();
    // An m5.large admits 29 pods.
    assert_eq!(plan.nodes.len(), 2);
    assert!(plan.nodes.iter().all(|n| n.pods.len() <= 29));
}

#[test]
fn limits_name_the_exhausted_resource() {
    let plan = cluster()
        .pods([pod("a").cpu("1").build()])
        .provisioner(
            provisioner("default")
                .limit_cpu(1)
                .with_types(&general_purpose_types()),
        )
        .plan();
    assert_eq!(
        plan.unschedulable[0].reason,
        "provisioner default: limits: cpu 1 reached"
    );
}

#[test]
fn registered_nodes_are_filled_before_machines_still_launching() {
    let m5_large = instance("m5.large")
        .vcpus(2)
        .memory_gib(8)
        .on_demand(0.096)
        .build();
    let mut launching = node("launching", &m5_large, "us-east-1a");
    launching.in_flight = true;
    let plan = cluster()
        .node(launching)
        .node(node("registered", &m5_large, "us-east-1a"))
        .pods([pod("a").cpu("500m").build()])
        .plan();
    assert_eq!(plan.existing[0].node, "registered");
}

#[test]
fn pattern_packing_is_never_dearer_than_karpenters_first_fit() {
    let pods: Vec<_> = pod("web")
        .cpu("3152m")
        .memory("5600Mi")
        .times(30)
        .into_iter()
        .chain(pod("db").cpu("11300m").memory("48Gi").times(12))
        .chain(pod("batch").cpu("7").memory("9Gi").times(9))
        .collect();
    let types = general_purpose_types();
    let cheap = cluster()
        .pods(pods.clone())
        .provisioner(provisioner("default").with_types(&types))
        .plan();
    let karpenter = cluster()
        .pods(pods)
        .provisioner(provisioner("default").with_types(&types))
        .settings(|s| s.packing = nodewright_scheduling::Packing::FirstFitDecreasing)
        .plan();
    assert!(cheap.unschedulable.is_empty());
    assert!(
        cheap.total_price_per_hour <= karpenter.total_price_per_hour + 1e-9,
        "{} > {}",
        cheap.total_price_per_hour,
        karpenter.total_price_per_hour
    );
    assert!(cheap.cost_ratio.unwrap() < 1.25, "{:?}", cheap.cost_ratio);
}

#[test]
fn a_limit_of_zero_launches_nothing() {
    let mut types = general_purpose_types();
    types.push(gpu_type());
    for resource in [
        labels::RESOURCE_CPU,
        labels::RESOURCE_MEMORY,
        labels::RESOURCE_PODS,
    ] {
        let plan = cluster()
            .pods(pod("web").cpu("1").times(3))
            .pods([pod("train").cpu("1").gpus(1).build()])
            .provisioner(provisioner("default").limit(resource, 0).with_types(&types))
            .plan();
        assert!(plan.nodes.is_empty(), "{resource}: 0 launched {plan:#?}");
        assert_eq!(plan.unschedulable.len(), 4);
        for pending in &plan.unschedulable {
            assert_eq!(
                pending.reason,
                format!("provisioner default: limits: {resource} 0 reached")
            );
        }
    }
}

#[test]
fn a_zero_gpu_limit_keeps_gpu_types_out_and_lets_others_launch() {
    let mut types = general_purpose_types();
    types.push(gpu_type());
    let plan = cluster()
        .pods(pod("web").cpu("1").times(3))
        .pods([pod("train").cpu("1").gpus(1).build()])
        .provisioner(
            provisioner("default")
                .limit(labels::RESOURCE_NVIDIA_GPU, 0)
                .with_types(&types),
        )
        .plan();
    assert!(!plan.nodes.is_empty());
    assert!(
        plan.nodes
            .iter()
            .all(|n| !n.instance_types.iter().any(|t| t == "g4dn.xlarge")),
        "{plan:#?}"
    );
    assert_eq!(plan.unschedulable.len(), 1);
    assert_eq!(plan.unschedulable[0].pod, "default/train");
}

mod limits_hold {
    use super::common::*;
    use nodewright_scheduling::instance_type::InstanceType;
    use nodewright_scheduling::labels;
    use nodewright_scheduling::node::ExistingNode;
    use nodewright_scheduling::resources::Resources;
    use nodewright_scheduling::schedule;
    use proptest::prelude::*;
    use std::sync::Arc;

    const LIMITED: [&str; 4] = [
        labels::RESOURCE_CPU,
        labels::RESOURCE_MEMORY,
        labels::RESOURCE_PODS,
        labels::RESOURCE_NVIDIA_GPU,
    ];

    /// A limit per resource: none, zero, or an amount in the resource's unit (cores, GiB,
    /// pods, GPUs).
    fn arb_limits() -> impl Strategy<Value = Vec<Option<i64>>> {
        prop::collection::vec(
            prop_oneof![2 => Just(None), 2 => Just(Some(0)), 3 => (1..40i64).prop_map(Some)],
            LIMITED.len(),
        )
    }

    fn unit(resource: &str) -> i64 {
        match resource {
            labels::RESOURCE_CPU => 1000,
            labels::RESOURCE_MEMORY => GIB,
            _ => 1,
        }
    }

    fn types() -> Vec<Arc<InstanceType>> {
        let mut types = general_purpose_types();
        types.push(gpu_type());
        types.push(
            instance("g4dn.12xlarge")
                .vcpus(48)
                .memory_gib(192)
                .gpus(4)
                .on_demand(3.912)
                .build(),
        );
        types
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Every type of every new node may be the one launched: the largest of them, summed
        /// over the provisioner's new nodes and added to what it runs, stays within each limit.
        #[test]
        fn limits_hold_whichever_candidate_launches(
            limits in arb_limits(),
            shapes in prop::collection::vec(
                (prop::sample::select(vec!["250m", "1", "3", "7"]), 0..3i64, 1..12usize),
                1..4,
            ),
            running in prop::collection::vec(0..14usize, 0..3),
        ) {
            let types = types();
            let mut p = provisioner("default");
            for (resource, limit) in LIMITED.iter().zip(&limits) {
                if let Some(n) = limit {
                    p = p.limit(resource, n * unit(resource));
                }
            }
            let mut c = cluster().provisioner(p.with_types(&types));
            for (i, &(cpu, gpus, count)) in shapes.iter().enumerate() {
                c = c.pods(pod(&format!("s{i}")).cpu(cpu).memory("1Gi").gpus(gpus).times(count));
            }
            let mut usage = Resources::default();
            for (i, &t) in running.iter().enumerate() {
                let mut n: ExistingNode = node(&format!("old-{i}"), &types[t], "us-east-1a");
                n.labels.insert(labels::PROVISIONER_NAME.into(), "default".into());
                usage += n.counted_capacity();
                c = c.node(n);
            }
            let plan = schedule(&c.0);
            for (resource, limit) in LIMITED.iter().zip(&limits) {
                let Some(n) = limit else { continue };
                let reserved: i64 = plan
                    .nodes
                    .iter()
                    .map(|node| {
                        node.instance_types
                            .iter()
                            .map(|name| {
                                types
                                    .iter()
                                    .find(|t| &t.name == name)
                                    .map_or(0, |t| t.capacity.get(resource))
                            })
                            .max()
                            .unwrap_or(0)
                    })
                    .sum();
                let limit = n * unit(resource);
                prop_assert!(
                    plan.nodes.is_empty() || usage.get(resource) + reserved <= limit,
                    "{resource}: {} running + {reserved} planned > {limit}: {plan:#?}",
                    usage.get(resource)
                );
            }
        }
    }
}

#[test]
fn a_node_pinned_to_a_zone_is_sized_for_that_zones_prices() {
    // The big type is cheapest for the whole batch, but only in zone a; in zone b it costs
    // far more than two of the medium type, which only zone b offers.
    let (a, b) = ("us-east-1a", "us-east-1b");
    let big_a = instance("c5.8xlarge")
        .vcpus(32)
        .memory_gib(64)
        .on_demand(0.20)
        .in_zones(&[a])
        .build();
    let big_b = instance("c6.8xlarge")
        .vcpus(32)
        .memory_gib(64)
        .on_demand(0.90)
        .in_zones(&[b])
        .build();
    let medium_b = instance("c6.4xlarge")
        .vcpus(16)
        .memory_gib(32)
        .on_demand(0.16)
        .in_zones(&[b])
        .build();
    let plan = cluster()
        .pods(
            pod("worker")
                .cpu("1")
                .memory("1Gi")
                .label("app", "worker")
                .spread(labels::ZONE, 1, &[("app", "worker")])
                .times(40),
        )
        .provisioner(provisioner("default").with_types(&[big_a, big_b, medium_b]))
        .plan();
    assert!(plan.unschedulable.is_empty());
    let in_zone = |zone: &str| plan.nodes.iter().filter(|n| n.zone == zone).count();
    assert_eq!((in_zone(a), in_zone(b)), (1, 2), "{plan:#?}");
    assert!(
        (plan.total_price_per_hour - 0.52).abs() < 1e-9,
        "{}",
        plan.total_price_per_hour
    );
}
