//! Consolidation: delete, replace with cheaper, anti-churn rules, order.

use super::*;
use crate::controllers::disruption::consolidation::{
    ConsolidationSettings, MIN_SPOT_TO_SPOT_TYPES, MULTI_NODE, SINGLE_NODE, consolidate,
    consolidate_timed, order,
};
use crate::controllers::disruption::partition;
use crate::controllers::disruption::room::Room;

#[test]
fn a_node_whose_pods_fit_on_another_node_is_deleted() {
    let mut cluster = Cluster::new();
    cluster
        .node("busy", "m5.2xlarge", "on-demand")
        .pod("a", "busy", "6")
        .node("idle", "m5.xlarge", "on-demand")
        .pod("b", "idle", "500m");
    let command = cluster.command();
    assert_eq!(command.reason, Reason::Consolidation);
    assert_eq!(command.node_names(), ["idle"]);
    assert!(command.replacements.is_empty(), "{command:?}");
    assert_eq!(command.action(), "delete");
    assert!((command.savings() - 0.192).abs() < 1e-9);
    assert_eq!(
        command.describe(),
        "Consolidating: deleting node idle (m5.xlarge, $0.1920/h), saves $0.1920/h"
    );
}

#[test]
fn two_half_empty_nodes_are_replaced_by_one_cheaper_node() {
    let mut cluster = Cluster::new();
    cluster
        .node("one", "m5.2xlarge", "on-demand")
        .pod("a", "one", "1")
        .node("two", "m5.2xlarge", "on-demand")
        .pod("b", "two", "1");
    let command = cluster.command();
    assert_eq!(command.node_names(), ["one", "two"]);
    assert_eq!(command.replacements.len(), 1);
    let replacement = &command.replacements[0];
    assert_eq!(replacement.instance_type, "m5.xlarge", "{replacement:?}");
    assert!(command.savings() > 0.5, "{}", command.describe());
}

#[test]
fn an_oversized_node_is_replaced_by_a_cheaper_type_and_never_by_its_own() {
    let mut cluster = Cluster::new();
    cluster
        .node("big", "m5.2xlarge", "on-demand")
        .pod("a", "big", "1");
    let command = cluster.command();
    assert_eq!(command.action(), "replace");
    let types = replacement_types(&command);
    assert!(!types.contains(&"m5.2xlarge"), "{types:?}");
    assert_eq!(command.replacements[0].instance_type, "m5.large");
    assert!(
        command.describe().starts_with(
            "Consolidating: replacing node big (m5.2xlarge, $0.3840/h) with m5.large ($0.0960/h)"
        ),
        "{}",
        command.describe()
    );

    // Only its own type fits its pods: nothing to do.
    let mut snug = Cluster::new();
    snug.node("snug", "m5.xlarge", "on-demand")
        .pod("a", "snug", "3");
    let pass = snug.decide();
    assert!(pass.command.is_none(), "{:?}", pass.command);
}

#[test]
fn a_replacement_must_save_the_minimum_fraction() {
    let mut cluster = Cluster::new();
    // A type 5% cheaper than the node's, big enough for its pod.
    cluster.types = vec![
        instance_type("m5.xlarge", 4, 0.200, 0.07),
        instance_type("m6.xlarge", 4, 0.190, 0.07),
    ];
    cluster
        .node("node", "m5.xlarge", "on-demand")
        .pod("a", "node", "3");
    assert!(
        cluster.decide().command.is_none(),
        "5% is below the 10% asked"
    );

    cluster.settings.consolidation_min_saving_fraction = 0.04;
    let command = cluster.command();
    assert_eq!(replacement_types(&command), ["m6.xlarge"]);
}

#[test]
fn spot_nodes_are_replaced_only_with_the_gate_and_a_choice_of_spot_types() {
    let mut cluster = Cluster::new();
    cluster.provisioner(json!({
        "consolidation": {"enabled": true},
        "requirements": [{"key": labels::CAPACITY_TYPE, "operator": "In", "values": ["spot", "on-demand"]}],
    }));
    cluster
        .node("spot", "m5.2xlarge", "spot")
        .pod("a", "spot", "1");
    let pass = cluster.decide();
    assert!(
        pass.command.is_none(),
        "spot to spot needs the SpotToSpotConsolidation gate"
    );
    // The node says why it stays (the Unconsolidatable Event).
    let [(node, why)] = pass.unconsolidatable.as_slice() else {
        panic!("one unconsolidatable node: {:?}", pass.unconsolidatable);
    };
    assert_eq!(node, "spot");
    assert!(why.contains("SpotToSpotConsolidation"), "{why}");

    cluster.settings.feature_gates.spot_to_spot_consolidation = true;
    assert!(
        cluster.decide().command.is_none(),
        "one cheaper spot type is too few to choose from"
    );

    // Enough cheaper spot types: the replacement is spot, the cheapest that fits first.
    cluster.types.extend(
        (0..MIN_SPOT_TO_SPOT_TYPES)
            .map(|i| instance_type(&format!("m5.t{i:02}"), 4, 0.2, 0.05 + 0.001 * i as f64)),
    );
    let command = cluster.command();
    let replacement = &command.replacements[0];
    assert_eq!(replacement.capacity_type, CapacityType::Spot);
    assert_eq!(replacement.instance_type, "m5.large");
    assert_eq!(replacement.price_per_hour, 0.035);
    assert!(replacement.instance_types.len() > MIN_SPOT_TO_SPOT_TYPES);
    assert!(
        replacement
            .requirements
            .iter()
            .any(|r| r.key == labels::CAPACITY_TYPE && r.values == [labels::CAPACITY_TYPE_SPOT])
    );
}

#[test]
fn candidates_go_in_order_of_savings_per_disrupted_pod() {
    let mut cluster = Cluster::new();
    cluster
        .node("crowded", "m5.2xlarge", "on-demand")
        .node("sparse", "m5.xlarge", "on-demand");
    for i in 0..8 {
        cluster.pod(&format!("c{i}"), "crowded", "100m");
    }
    cluster.pod("s", "sparse", "100m");
    let mut found =
        cluster.with_inputs(|inputs| partition(&cluster.state, Reason::Consolidation, inputs).0);
    order(&mut found);
    let names: Vec<&str> = found.iter().map(|c| c.node.as_str()).collect();
    // 0.192 for one pod beats 0.384 for eight.
    assert_eq!(names, ["sparse", "crowded"]);
}

#[test]
fn crumbs_of_room_on_packed_nodes_never_add_up_to_a_node() {
    let mut cluster = Cluster::new();
    // 13 nodes, each 300m short of full: 3.9 cpu of crumbs, none big enough for a 1.2 cpu pod.
    for n in 0..13 {
        let node = format!("n{n:02}");
        cluster.node(&node, "m5.xlarge", "on-demand");
        for p in 0..3 {
            cluster.pod(&format!("{node}-{p}"), &node, "1200m");
        }
    }
    let found =
        cluster.with_inputs(|inputs| partition(&cluster.state, Reason::Consolidation, inputs).0);
    let types = cluster.catalog();
    let base = cluster.state.schedule_input(&types, &cluster.settings);
    let room = Room::new(&base);
    let settings = ConsolidationSettings::new(0.1, false);
    assert_eq!(found.len(), 13);
    for candidate in &found {
        assert!(
            !room.may_consolidate(&[candidate], &settings),
            "{}",
            candidate.node
        );
    }
    assert!(cluster.decide().command.is_none());

    // One node emptier than the rest: its pod fits in another's room, and the bound agrees.
    cluster.state.delete_pod("default", "n00-1");
    cluster.state.delete_pod("default", "n00-2");
    cluster.state.delete_pod("default", "n01-2");
    let base = cluster.state.schedule_input(&types, &cluster.settings);
    let room = Room::new(&base);
    let found =
        cluster.with_inputs(|inputs| partition(&cluster.state, Reason::Consolidation, inputs).0);
    let emptiest = found.iter().find(|c| c.node == "n00").expect("n00");
    assert!(room.may_consolidate(&[emptiest], &settings));
    assert_eq!(cluster.command().node_names(), ["n00"]);
}

#[test]
fn a_search_out_of_time_decides_nothing_rather_than_hold_the_loop() {
    let mut cluster = Cluster::new();
    cluster
        .node("one", "m5.2xlarge", "on-demand")
        .pod("a", "one", "1")
        .node("two", "m5.2xlarge", "on-demand")
        .pod("b", "two", "1");
    let mut found =
        cluster.with_inputs(|inputs| partition(&cluster.state, Reason::Consolidation, inputs).0);
    order(&mut found);
    let mut base = cluster
        .state
        .schedule_input(&cluster.catalog(), &cluster.settings);
    let in_time = ConsolidationSettings::new(0.1, false);
    assert!(consolidate(&mut base, &found, &in_time).is_some());
    let no_time = ConsolidationSettings {
        multi_node_budget: Duration::ZERO,
        single_node_budget: Duration::ZERO,
        ..in_time
    };
    let searched = consolidate_timed(&mut base, &found, &no_time);
    assert_eq!(searched.command, None);
    assert_eq!(
        searched.timed_out,
        [MULTI_NODE, SINGLE_NODE],
        "both searches say they ran out of time"
    );
    // With time for single nodes only, one node at a time is still found.
    let single_only = ConsolidationSettings {
        multi_node_budget: Duration::ZERO,
        ..in_time
    };
    let command = consolidate(&mut base, &found, &single_only).expect("a single-node action");
    assert_eq!(command.node_names().len(), 1, "{}", command.describe());
}
