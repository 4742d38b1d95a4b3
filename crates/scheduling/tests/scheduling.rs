//! Scheduler behaviour: existing nodes, provisioners, requirements, taints, daemonsets, launch
//! choices and explanations.

mod common;

use common::*;
use nodewright_scheduling::instance_type::CapacityType;
use nodewright_scheduling::labels;
use nodewright_scheduling::requirements::Operator;
use nodewright_scheduling::taints::{TaintEffect, Toleration};

#[test]
fn seed_tutorial_four_one_cpu_pods_land_on_exactly_one_spot_node() {
    let plan = cluster()
        .pods(pod("inflate").cpu("1").times(4))
        .provisioner(
            provisioner("default")
                .spot_only()
                .limit_cpu(1000)
                .with_types(&general_purpose_types()),
        )
        .plan();
    assert_eq!(plan.nodes.len(), 1, "{plan:#?}");
    let node = &plan.nodes[0];
    assert_eq!(node.capacity_type, CapacityType::Spot);
    assert_eq!(node.pods.len(), 4);
    assert!(plan.unschedulable.is_empty());
    assert!(plan.prices_known);
    assert!(node.price_per_hour > 0.0);
    assert_eq!(plan.total_price_per_hour, node.price_per_hour);
}

#[test]
fn the_expected_launch_is_the_cheapest_candidate_and_candidates_come_cheapest_first() {
    let plan = cluster()
        .pods(pod("web").cpu("1").memory("1Gi").times(3))
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    let node = &plan.nodes[0];
    assert_eq!(node.instance_type, node.instance_types[0]);
    // c5.xlarge spot (4 vCPU) is the cheapest type that holds 3 cpu beside kube-reserved.
    assert_eq!(node.instance_type, "c5.xlarge");
    assert!(node.instance_types.len() <= 60);
    assert!(!node.instance_types.contains(&"c5.large".to_string()));
}

#[test]
fn at_most_the_configured_number_of_types_go_to_ec2() {
    let plan = cluster()
        .pods([pod("small").cpu("100m").build()])
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .settings(|s| s.max_instance_types = 3)
        .plan();
    assert_eq!(plan.nodes[0].instance_types.len(), 3);
}

#[test]
fn spot_is_preferred_when_the_requirements_allow_it() {
    let plan = cluster()
        .pods([pod("a").cpu("1").build()])
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert_eq!(plan.nodes[0].capacity_type, CapacityType::Spot);
}

#[test]
fn a_pod_that_requires_on_demand_gets_on_demand() {
    let plan = cluster()
        .pods([pod("a")
            .cpu("1")
            .node_selector(labels::CAPACITY_TYPE, labels::CAPACITY_TYPE_ON_DEMAND)
            .build()])
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert_eq!(plan.nodes[0].capacity_type, CapacityType::OnDemand);
}

#[test]
fn existing_nodes_take_pods_before_new_machines_are_planned() {
    let m5_large = instance("m5.large")
        .vcpus(2)
        .memory_gib(8)
        .on_demand(0.096)
        .build();
    let plan = cluster()
        .node(node("ip-10-0-1-5", &m5_large, "us-east-1a"))
        .pods(pod("web").cpu("500m").memory("512Mi").times(5))
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    let on_existing: usize = plan.existing.iter().map(|e| e.pods.len()).sum();
    // 1930m allocatable: three 500m pods fit, two spill over to one new node.
    assert_eq!(on_existing, 3);
    assert_eq!(plan.existing[0].node, "ip-10-0-1-5");
    assert_eq!(plan.nodes.len(), 1);
    assert_eq!(plan.nodes[0].pods.len(), 2);
}

#[test]
fn pods_already_running_use_up_an_existing_node() {
    let m5_large = instance("m5.large")
        .vcpus(2)
        .memory_gib(8)
        .on_demand(0.096)
        .build();
    let mut busy = node("busy", &m5_large, "us-east-1a");
    busy.pods.push(pod("running").cpu("1500m").build().into());
    let plan = cluster()
        .node(busy)
        .pods([pod("new").cpu("500m").build()])
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert!(plan.existing.is_empty());
    assert_eq!(plan.nodes.len(), 1);
}

/// An m5.large with all its room free, cordoned.
fn cordoned_node_with_room() -> nodewright_scheduling::node::ExistingNode {
    let m5_large = instance("m5.large")
        .vcpus(2)
        .memory_gib(8)
        .on_demand(0.096)
        .build();
    let mut cordoned = node("cordoned", &m5_large, "us-east-1a");
    cordoned.unschedulable = true;
    cordoned
}

#[test]
fn a_cordoned_node_takes_no_pods() {
    let plan = cluster()
        .node(cordoned_node_with_room())
        .pods([pod("a").cpu("100m").build()])
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert!(plan.existing.is_empty());
    assert_eq!(plan.nodes.len(), 1);
}

#[test]
fn a_cordoned_node_is_named_as_cordoned_not_full() {
    let plan = cluster()
        .node(cordoned_node_with_room())
        .pods([pod("a").cpu("100m").build()])
        .plan();
    assert_eq!(plan.unschedulable.len(), 1, "{plan:#?}");
    let reason = &plan.unschedulable[0].reason;
    assert!(reason.contains("cordoned"), "{reason}");
    assert!(!reason.contains("without room"), "{reason}");
}

#[test]
fn in_flight_machines_take_pods_and_reserve_their_daemonsets() {
    let m5_large = instance("m5.large")
        .vcpus(2)
        .memory_gib(8)
        .on_demand(0.096)
        .build();
    let mut launching = node("launching", &m5_large, "us-east-1a");
    launching.in_flight = true;
    let plan = cluster()
        .node(launching)
        .daemonset(daemonset("agent", "500m", "256Mi"))
        .pods(pod("web").cpu("500m").times(4))
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    // 1930m less the 500m daemon leaves room for two 500m pods.
    assert_eq!(plan.existing[0].pods.len(), 2);
    assert_eq!(plan.nodes.iter().map(|n| n.pods.len()).sum::<usize>(), 2);
}

#[test]
fn new_nodes_hold_room_for_daemonsets_that_would_run_there() {
    let types = general_purpose_types();
    let plan = cluster()
        .daemonset(daemonset("agent", "1", "1Gi"))
        .pods(pod("web").cpu("1").times(2))
        .provisioner(provisioner("default").with_types(&types))
        .plan();
    let node = &plan.nodes[0];
    // Two pods and the daemon need 3 cpu: no 2-vCPU type may be offered.
    assert!(!node.instance_types.iter().any(|t| t.ends_with(".large")));
    assert_eq!(node.requests.cpu_millis, 3000);
}

#[test]
fn a_type_whose_allocatable_cannot_hold_its_daemonsets_is_never_a_candidate() {
    // c5.large, m5.large and r5.large have 1930m allocatable: a 2-cpu daemon does not fit,
    // so even a pod that requests nothing must not land there.
    let types = general_purpose_types();
    let plan = cluster()
        .daemonset(daemonset("agent", "2", "100Mi"))
        .pods([pod("tiny").build()])
        .provisioner(provisioner("default").with_types(&types))
        .plan();
    assert!(plan.unschedulable.is_empty(), "{plan:#?}");
    let node = &plan.nodes[0];
    assert!(
        !node.instance_types.iter().any(|t| t.ends_with(".large")),
        "{:?}",
        node.instance_types
    );
    assert_eq!(node.instance_type, "c5.xlarge");
}

#[test]
fn daemonsets_too_big_for_every_type_leave_pods_pending_and_say_so() {
    let types = general_purpose_types();
    let plan = cluster()
        .daemonset(daemonset("agent", "20", "100Mi"))
        .pods([pod("tiny").build()])
        .provisioner(provisioner("default").with_types(&types))
        .plan();
    assert!(plan.nodes.is_empty(), "{plan:#?}");
    assert_eq!(
        plan.unschedulable[0].reason,
        "provisioner default: its daemonsets alone do not fit on any of the 12 instance types \
         that meet its requirements"
    );
    let pinned = cluster()
        .daemonset(daemonset("agent", "2", "100Mi"))
        .pods([pod("tiny")
            .node_selector(labels::INSTANCE_TYPE, "c5.large")
            .build()])
        .provisioner(provisioner("default").with_types(&types))
        .plan();
    assert!(pinned.nodes.is_empty(), "{pinned:#?}");
    assert_eq!(
        pinned.unschedulable[0].reason,
        "provisioner default: instance types with node.kubernetes.io/instance-type In [c5.large] \
         cannot hold its daemonsets"
    );
}

#[test]
fn daemonsets_that_do_not_tolerate_the_provisioner_taint_add_no_overhead() {
    let plan = cluster()
        .daemonset(daemonset("agent", "1", "1Gi"))
        .pods([pod("gpu-job")
            .cpu("1")
            .tolerates(Toleration::exists("dedicated"))
            .build()])
        .provisioner(
            provisioner("dedicated")
                .taint("dedicated", "ml", TaintEffect::NoSchedule)
                .with_types(&general_purpose_types()),
        )
        .plan();
    assert_eq!(plan.nodes[0].requests.cpu_millis, 1000);
    assert!(
        plan.nodes[0]
            .instance_types
            .contains(&"c5.large".to_string())
    );
}

#[test]
fn heavier_provisioners_are_tried_first_and_ties_go_by_name() {
    let types = general_purpose_types();
    let plan = cluster()
        .pods([pod("a").cpu("1").build()])
        .provisioner(provisioner("light").weight(1).with_types(&types))
        .provisioner(provisioner("heavy").weight(50).with_types(&types))
        .plan();
    assert_eq!(plan.nodes[0].provisioner, "heavy");
    let tie = cluster()
        .pods([pod("a").cpu("1").build()])
        .provisioner(provisioner("zeta").with_types(&types))
        .provisioner(provisioner("alpha").with_types(&types))
        .plan();
    assert_eq!(tie.nodes[0].provisioner, "alpha");
}

#[test]
fn provisioner_taints_keep_untolerated_pods_off_and_say_so() {
    let plan = cluster()
        .pods([pod("web").cpu("1").build()])
        .provisioner(
            provisioner("gpu")
                .taint("nvidia.com/gpu", "true", TaintEffect::NoSchedule)
                .with_types(&[gpu_type()]),
        )
        .plan();
    assert!(plan.nodes.is_empty());
    assert_eq!(
        plan.unschedulable[0].reason,
        "provisioner gpu: taint nvidia.com/gpu=true:NoSchedule not tolerated"
    );
}

#[test]
fn tolerating_pods_use_tainted_provisioners_and_startup_taints_never_block() {
    let plan = cluster()
        .pods([pod("train")
            .cpu("1")
            .gpus(1)
            .tolerates(Toleration::equal("nvidia.com/gpu", "true"))
            .build()])
        .pods([pod("web").cpu("1").build()])
        .provisioner(
            provisioner("gpu")
                .taint("nvidia.com/gpu", "true", TaintEffect::NoSchedule)
                .with_types(&[gpu_type()]),
        )
        .provisioner(
            provisioner("general")
                .startup_taint("node.cilium.io/agent-not-ready", "true")
                .with_types(&general_purpose_types()),
        )
        .plan();
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let by_pod = placement(&plan);
    let gpu_node = &plan.nodes[by_pod["default/train"]
        .trim_start_matches("new-")
        .parse::<usize>()
        .unwrap()];
    assert_eq!(gpu_node.provisioner, "gpu");
    assert_eq!(gpu_node.instance_type, "g4dn.xlarge");
}

#[test]
fn prefer_no_schedule_taints_do_not_block() {
    let plan = cluster()
        .pods([pod("web").cpu("1").build()])
        .provisioner(
            provisioner("soft")
                .taint("spot-only", "true", TaintEffect::PreferNoSchedule)
                .with_types(&general_purpose_types()),
        )
        .plan();
    assert_eq!(plan.nodes.len(), 1);
}

#[test]
fn each_excluding_provisioner_is_named_in_the_reason() {
    let plan = cluster()
        .pods([pod("huge").cpu("900").build()])
        .provisioner(
            provisioner("gpu")
                .taint("nvidia.com/gpu", "true", TaintEffect::NoSchedule)
                .weight(10)
                .with_types(&[gpu_type()]),
        )
        .provisioner(provisioner("general").with_types(&general_purpose_types()))
        .plan();
    assert_eq!(
        plan.unschedulable[0].reason,
        "provisioner gpu: taint nvidia.com/gpu=true:NoSchedule not tolerated; \
         provisioner general: no instance type has 900 vCPU"
    );
}

#[test]
fn a_memory_hungry_pod_names_the_memory_it_needs() {
    let plan = cluster()
        .pods([pod("db").cpu("1").memory("512Gi").build()])
        .provisioner(provisioner("general").with_types(&general_purpose_types()))
        .plan();
    assert_eq!(
        plan.unschedulable[0].reason,
        "provisioner general: no instance type has 512Gi memory"
    );
}

#[test]
fn incompatible_requirements_name_the_key() {
    let plan = cluster()
        .pods([pod("a")
            .cpu("1")
            .node_selector(labels::CAPACITY_TYPE, labels::CAPACITY_TYPE_ON_DEMAND)
            .build()])
        .provisioner(
            provisioner("default")
                .spot_only()
                .with_types(&general_purpose_types()),
        )
        .plan();
    let reason = &plan.unschedulable[0].reason;
    assert!(
        reason.starts_with("provisioner default: incompatible requirements"),
        "{reason}"
    );
    assert!(reason.contains(labels::CAPACITY_TYPE), "{reason}");
}

#[test]
fn custom_labels_need_the_provisioner_to_define_them() {
    let types = general_purpose_types();
    let undefined = cluster()
        .pods([pod("a").cpu("1").node_selector("team", "payments").build()])
        .provisioner(provisioner("default").with_types(&types))
        .plan();
    assert!(undefined.nodes.is_empty());
    assert!(undefined.unschedulable[0].reason.contains("team"));

    let by_label = cluster()
        .pods([pod("a").cpu("1").node_selector("team", "payments").build()])
        .provisioner(
            provisioner("default")
                .label("team", "payments")
                .with_types(&types),
        )
        .plan();
    assert_eq!(by_label.nodes.len(), 1);

    let by_requirement = cluster()
        .pods([pod("a").cpu("1").node_selector("team", "payments").build()])
        .provisioner(
            provisioner("default")
                .requires("team", Operator::In, &["payments", "search"])
                .with_types(&types),
        )
        .plan();
    assert_eq!(by_requirement.nodes.len(), 1);
    assert!(
        by_requirement.nodes[0]
            .requirements
            .iter()
            .any(|r| r.key == "team" && r.values == ["payments"])
    );
}

#[test]
fn undefined_keys_satisfy_does_not_exist_and_not_in() {
    let plan = cluster()
        .pods([pod("a")
            .cpu("1")
            .requires_one_of(vec![
                requirement("team", Operator::DoesNotExist, &[]),
                requirement("tier", Operator::NotIn, &["batch"]),
            ])
            .build()])
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert_eq!(plan.nodes.len(), 1);
}

#[test]
fn a_daemonset_for_nodes_without_gpus_counts_on_types_that_lack_the_gpu_label() {
    // Daemonsets commonly keep off GPU nodes with `instance-gpu-count DoesNotExist`.
    let mut types = general_purpose_types();
    types.push(gpu_type());
    let template = pod("agent")
        .cpu("1")
        .memory("1Gi")
        .requires(labels::INSTANCE_GPU_COUNT, Operator::DoesNotExist, &[])
        .build();
    let agent =
        nodewright_scheduling::pod::DaemonSet::from_template("kube-system", "agent", &template);
    let plan = cluster()
        .daemonset(agent.clone())
        .pods(pod("web").cpu("1").times(2))
        .provisioner(provisioner("default").with_types(&types))
        .plan();
    let node = &plan.nodes[0];
    assert_eq!(node.requests.cpu_millis, 3000, "{node:#?}");
    assert!(!node.instance_types.iter().any(|t| t.ends_with(".large")));
    let gpu = cluster()
        .daemonset(agent)
        .pods([pod("train").cpu("1").gpus(1).build()])
        .provisioner(provisioner("default").with_types(&types))
        .plan();
    assert_eq!(gpu.nodes[0].instance_types, ["g4dn.xlarge"]);
    assert_eq!(gpu.nodes[0].requests.cpu_millis, 1000);
}

#[test]
fn gt_on_instance_cpu_keeps_only_bigger_types() {
    let plan = cluster()
        .pods([pod("a")
            .cpu("1")
            .requires(labels::INSTANCE_CPU, Operator::Gt, &["4"])
            .build()])
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    let node = &plan.nodes[0];
    assert!(!node.instance_types.is_empty());
    assert!(
        node.instance_types
            .iter()
            .all(|t| t.ends_with(".2xlarge") || t.ends_with(".4xlarge"))
    );
}

#[test]
fn required_node_affinity_terms_are_alternatives() {
    let plan = cluster()
        .pods([pod("a")
            .cpu("1")
            .requires_one_of(vec![requirement(
                labels::INSTANCE_FAMILY,
                Operator::In,
                &["p4d"],
            )])
            .requires_one_of(vec![requirement(
                labels::INSTANCE_FAMILY,
                Operator::In,
                &["r5"],
            )])
            .build()])
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert!(
        plan.nodes[0]
            .instance_types
            .iter()
            .all(|t| t.starts_with("r5."))
    );
}

#[test]
fn beta_label_aliases_match_their_stable_keys() {
    let plan = cluster()
        .pods([pod("a")
            .cpu("1")
            .node_selector("failure-domain.beta.kubernetes.io/zone", "us-east-1b")
            .build()])
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert_eq!(plan.nodes[0].zone, "us-east-1b");
}

#[test]
fn preferred_node_affinity_is_honoured_when_possible() {
    let plan = cluster()
        .pods([pod("a")
            .cpu("1")
            .prefers(10, labels::ZONE, Operator::In, &["us-east-1c"])
            .build()])
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert_eq!(plan.nodes[0].zone, "us-east-1c");
}

#[test]
fn heavier_node_preferences_win_and_impossible_ones_are_relaxed() {
    let plan = cluster()
        .pods([pod("a")
            .cpu("1")
            .prefers(100, labels::ZONE, Operator::In, &["eu-west-1a"])
            .prefers(50, labels::INSTANCE_FAMILY, Operator::In, &["r5"])
            .prefers(1, labels::INSTANCE_FAMILY, Operator::In, &["m5"])
            .build()])
        .provisioner(provisioner("default").with_types(&general_purpose_types()))
        .plan();
    assert!(plan.unschedulable.is_empty());
    assert!(
        plan.nodes[0]
            .instance_types
            .iter()
            .all(|t| t.starts_with("r5."))
    );
}
