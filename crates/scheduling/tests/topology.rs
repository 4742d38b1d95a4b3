//! Topology spread and pod (anti-)affinity.

mod common;

use std::collections::BTreeMap;

use common::*;
use nodewright_scheduling::labels;
use nodewright_scheduling::plan::Plan;
use nodewright_scheduling::requirements::Operator;
use proptest::prelude::*;

fn default_provisioner() -> nodewright_scheduling::provisioner::ProvisionerInput {
    provisioner("default").with_types(&general_purpose_types())
}

/// Pods per node, keyed by placement (new node index or existing node name).
fn pods_per_node(plan: &Plan) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for node in placement(plan).values() {
        *out.entry(node.clone()).or_insert(0) += 1;
    }
    out
}

#[test]
fn zonal_spread_puts_pods_evenly_across_zones() {
    let plan = cluster()
        .pods(
            pod("web")
                .cpu("500m")
                .label("app", "web")
                .spread(labels::ZONE, 1, &[("app", "web")])
                .times(7),
        )
        .provisioner(default_provisioner())
        .plan();
    assert!(plan.unschedulable.is_empty());
    let per_zone = pods_per_zone(&plan);
    assert_eq!(per_zone.len(), 3, "{per_zone:?}");
    let (min, max) = (
        per_zone.values().min().unwrap(),
        per_zone.values().max().unwrap(),
    );
    assert!(max - min <= 1, "{per_zone:?}");
}

#[test]
fn zonal_spread_counts_pods_already_running() {
    let m5_xlarge = instance("m5.xlarge")
        .vcpus(4)
        .memory_gib(16)
        .on_demand(0.192)
        .build();
    let mut busy = node("busy", &m5_xlarge, "us-east-1a");
    for i in 0..2 {
        busy.pods.push(
            pod(&format!("old-{i}"))
                .cpu("100m")
                .label("app", "web")
                .build()
                .into(),
        );
    }
    busy.pods.push(pod("filler").cpu("3500m").build().into());
    let plan = cluster()
        .node(busy)
        .pods(
            pod("web")
                .cpu("500m")
                .label("app", "web")
                .spread(labels::ZONE, 1, &[("app", "web")])
                .times(4),
        )
        .provisioner(default_provisioner())
        .plan();
    // Zone a already has 2: b and c catch up first, then one more each way at most.
    let per_zone = pods_per_zone(&plan);
    assert_eq!(per_zone.get("us-east-1b"), Some(&2), "{per_zone:?}");
    assert_eq!(per_zone.get("us-east-1c"), Some(&2), "{per_zone:?}");
    assert_eq!(per_zone.get("us-east-1a"), None);
}

#[test]
fn spread_domains_are_the_zones_the_provisioner_offers() {
    let types: Vec<_> = general_purpose_types();
    let plan = cluster()
        .pods(
            pod("web")
                .cpu("500m")
                .label("app", "web")
                .spread(labels::ZONE, 1, &[("app", "web")])
                .times(4),
        )
        .provisioner(
            provisioner("two-zones")
                .requires(labels::ZONE, Operator::In, &["us-east-1a", "us-east-1b"])
                .with_types(&types),
        )
        .plan();
    assert!(plan.unschedulable.is_empty());
    assert_eq!(
        pods_per_zone(&plan),
        BTreeMap::from([("us-east-1a".to_string(), 2), ("us-east-1b".to_string(), 2)])
    );
}

#[test]
fn min_domains_caps_each_zone_while_too_few_zones_exist() {
    let plan = cluster()
        .pods(
            pod("web")
                .cpu("500m")
                .label("app", "web")
                .spread(labels::ZONE, 1, &[("app", "web")])
                .min_domains(5)
                .times(6),
        )
        .provisioner(default_provisioner())
        .plan();
    // Only 3 zones exist, so the global minimum counts as 0: one pod per zone.
    assert_eq!(plan.unschedulable.len(), 3);
    assert!(pods_per_zone(&plan).values().all(|&n| n == 1));
    assert!(plan.unschedulable[0].reason.contains("topology spread"));
}

#[test]
fn hostname_spread_puts_at_most_max_skew_matching_pods_on_a_node() {
    let plan = cluster()
        .pods(
            pod("web")
                .cpu("100m")
                .label("app", "web")
                .spread(labels::HOSTNAME, 2, &[("app", "web")])
                .times(6),
        )
        .provisioner(default_provisioner())
        .plan();
    assert!(plan.unschedulable.is_empty());
    assert_eq!(plan.nodes.len(), 3);
    assert!(pods_per_node(&plan).values().all(|&n| n <= 2));
}

#[test]
fn capacity_type_spread_uses_both_capacity_types() {
    let plan = cluster()
        .pods(
            pod("web")
                .cpu("500m")
                .label("app", "web")
                .spread(labels::CAPACITY_TYPE, 1, &[("app", "web")])
                .times(4),
        )
        .provisioner(default_provisioner())
        .plan();
    let mut by_type = BTreeMap::new();
    for n in &plan.nodes {
        *by_type.entry(format!("{:?}", n.capacity_type)).or_insert(0) += n.pods.len();
    }
    assert_eq!(by_type.get("Spot"), Some(&2), "{by_type:?}");
    assert_eq!(by_type.get("OnDemand"), Some(&2), "{by_type:?}");
}

#[test]
fn soft_spread_is_dropped_when_it_cannot_be_met() {
    let plan = cluster()
        .pods(
            pod("web")
                .cpu("500m")
                .label("app", "web")
                .soft_spread(labels::ZONE, 1, &[("app", "web")])
                .times(4),
        )
        .provisioner(
            provisioner("one-zone")
                .requires(labels::ZONE, Operator::In, &["us-east-1a"])
                .with_types(&general_purpose_types()),
        )
        .node({
            // A running pod in zone b the provisioner cannot reach makes the skew unmeetable.
            let it = instance("m5.large")
                .vcpus(2)
                .memory_gib(8)
                .on_demand(0.1)
                .build();
            let mut n = node("b-node", &it, "us-east-1b");
            n.taints.push(nodewright_scheduling::taints::Taint::new(
                "full",
                "",
                nodewright_scheduling::taints::TaintEffect::NoSchedule,
            ));
            n.pods.push(pod("x").label("app", "other").build().into());
            n
        })
        .plan();
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
}

#[test]
fn hostname_anti_affinity_puts_one_pod_per_node() {
    let plan = cluster()
        .pods(
            pod("db")
                .cpu("100m")
                .label("app", "db")
                .anti_affinity(labels::HOSTNAME, &[("app", "db")])
                .times(4),
        )
        .provisioner(default_provisioner())
        .plan();
    assert_eq!(plan.nodes.len(), 4);
    assert!(plan.nodes.iter().all(|n| n.pods.len() == 1));
}

#[test]
fn other_pods_share_nodes_with_anti_affinity_pods() {
    let plan = cluster()
        .pods(
            pod("db")
                .cpu("100m")
                .label("app", "db")
                .anti_affinity(labels::HOSTNAME, &[("app", "db")])
                .times(2),
        )
        .pods(pod("web").cpu("100m").times(4))
        .provisioner(default_provisioner())
        .plan();
    assert_eq!(plan.nodes.len(), 2);
}

#[test]
fn running_pods_anti_affinity_keeps_matching_pods_away() {
    let m5_xlarge = instance("m5.xlarge")
        .vcpus(4)
        .memory_gib(16)
        .on_demand(0.192)
        .build();
    let mut existing = node("n1", &m5_xlarge, "us-east-1a");
    existing.pods.push(
        pod("lonely")
            .label("app", "lonely")
            .anti_affinity(labels::HOSTNAME, &[("app", "web")])
            .build()
            .into(),
    );
    let plan = cluster()
        .node(existing)
        .pods([pod("web").cpu("100m").label("app", "web").build()])
        .pods([pod("other").cpu("100m").label("app", "other").build()])
        .provisioner(default_provisioner())
        .plan();
    let by_pod = placement(&plan);
    assert_eq!(by_pod["default/other"], "n1");
    assert_ne!(by_pod["default/web"], "n1");
}

#[test]
fn zonal_anti_affinity_against_a_running_pod_avoids_its_zone() {
    let m5_large = instance("m5.large")
        .vcpus(2)
        .memory_gib(8)
        .on_demand(0.096)
        .build();
    let mut existing = node("n1", &m5_large, "us-east-1a");
    existing
        .pods
        .push(pod("cache").label("app", "cache").build().into());
    let plan = cluster()
        .node(existing)
        .pods(
            pod("web")
                .cpu("100m")
                .anti_affinity(labels::ZONE, &[("app", "cache")])
                .times(3),
        )
        .provisioner(default_provisioner())
        .plan();
    assert!(plan.existing.is_empty());
    assert!(plan.nodes.iter().all(|n| n.zone != "us-east-1a"));
}

#[test]
fn zonal_self_affinity_keeps_a_group_in_one_zone() {
    let plan = cluster()
        .pods(
            pod("web")
                .cpu("1500m")
                .label("app", "web")
                .affinity(labels::ZONE, &[("app", "web")])
                .times(14),
        )
        .provisioner(default_provisioner())
        .plan();
    assert!(plan.unschedulable.is_empty());
    assert!(plan.nodes.len() > 1);
    assert_eq!(pods_per_zone(&plan).len(), 1);
}

#[test]
fn affinity_follows_running_pods_to_their_zone() {
    let m5_large = instance("m5.large")
        .vcpus(2)
        .memory_gib(8)
        .on_demand(0.096)
        .build();
    let mut existing = node("n1", &m5_large, "us-east-1b");
    existing
        .pods
        .push(pod("db").cpu("1800m").label("app", "db").build().into());
    let plan = cluster()
        .node(existing)
        .pods(
            pod("web")
                .cpu("500m")
                .affinity(labels::ZONE, &[("app", "db")])
                .times(2),
        )
        .provisioner(default_provisioner())
        .plan();
    assert!(plan.nodes.iter().all(|n| n.zone == "us-east-1b"));
}

#[test]
fn affinity_to_pods_planned_in_the_same_batch_is_met() {
    let plan = cluster()
        .pods(
            pod("web")
                .cpu("500m")
                .affinity(labels::HOSTNAME, &[("app", "cache")])
                .times(2),
        )
        .pods([pod("cache").cpu("200m").label("app", "cache").build()])
        .provisioner(default_provisioner())
        .plan();
    assert!(plan.unschedulable.is_empty());
    assert_eq!(plan.nodes.len(), 1);
}

#[test]
fn affinity_to_pods_that_exist_nowhere_explains_itself() {
    let plan = cluster()
        .pods([pod("web")
            .cpu("500m")
            .affinity(labels::ZONE, &[("app", "ghost")])
            .build()])
        .provisioner(default_provisioner())
        .plan();
    assert_eq!(
        plan.unschedulable[0].reason,
        "pod affinity on topology.kubernetes.io/zone to app=ghost: no matching pod runs or is planned"
    );
}

#[test]
fn preferred_anti_affinity_is_relaxed_when_limits_allow_one_node_only() {
    let plan = cluster()
        .pods(
            pod("web")
                .cpu("100m")
                .label("app", "web")
                .prefers_anti_affinity(10, labels::HOSTNAME, &[("app", "web")])
                .times(3),
        )
        .provisioner(
            provisioner("default")
                .limit_cpu(2)
                .with_types(&general_purpose_types()),
        )
        .plan();
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    assert_eq!(plan.nodes.len(), 1);
}

#[test]
fn preferred_anti_affinity_is_honoured_when_nodes_are_available() {
    let plan = cluster()
        .pods(
            pod("web")
                .cpu("100m")
                .label("app", "web")
                .prefers_anti_affinity(10, labels::HOSTNAME, &[("app", "web")])
                .times(3),
        )
        .provisioner(default_provisioner())
        .plan();
    assert_eq!(plan.nodes.len(), 3);
}

#[test]
fn preferred_affinity_to_a_missing_pod_is_relaxed() {
    let plan = cluster()
        .pods([pod("web")
            .cpu("100m")
            .prefers_affinity(10, labels::ZONE, &[("app", "ghost")])
            .build()])
        .provisioner(default_provisioner())
        .plan();
    assert!(plan.unschedulable.is_empty());
}

#[test]
fn anti_affinity_only_counts_pods_in_the_selected_namespaces() {
    let m5_xlarge = instance("m5.xlarge")
        .vcpus(4)
        .memory_gib(16)
        .on_demand(0.192)
        .build();
    let mut existing = node("n1", &m5_xlarge, "us-east-1a");
    existing.pods.push(
        pod("db")
            .namespace("other")
            .label("app", "db")
            .build()
            .into(),
    );
    let plan = cluster()
        .node(existing)
        .pods([pod("db")
            .cpu("100m")
            .label("app", "db")
            .anti_affinity(labels::HOSTNAME, &[("app", "db")])
            .build()])
        .provisioner(default_provisioner())
        .plan();
    assert_eq!(plan.existing.len(), 1, "{plan:#?}");
}

#[test]
fn zone_pinned_pods_keep_their_zone_from_a_flexible_anti_affinity_pod() {
    // The anti-affinity pod could go to any zone; the pinned pods only to us-east-1a. Taking
    // us-east-1a for the flexible pod first would leave both pinned pods pending.
    let plan = cluster()
        .pods(
            pod("pinned")
                .cpu("500m")
                .label("app", "cache")
                .node_selector(labels::ZONE, "us-east-1a")
                .times(2),
        )
        .pod(
            pod("client")
                .cpu("1")
                .anti_affinity(labels::ZONE, &[("app", "cache")])
                .build(),
        )
        .provisioner(default_provisioner())
        .plan();
    assert!(plan.unschedulable.is_empty(), "{plan:#?}");
    let zone_of = |name: &str| {
        plan.nodes
            .iter()
            .find(|n| n.pods.iter().any(|p| p == name))
            .map(|n| n.zone.clone())
    };
    assert_eq!(zone_of("default/pinned-0").as_deref(), Some("us-east-1a"));
    assert_eq!(zone_of("default/pinned-1").as_deref(), Some("us-east-1a"));
    assert_ne!(zone_of("default/client").as_deref(), Some("us-east-1a"));
}

#[test]
fn zone_pinned_anti_affinity_pods_are_placed_before_the_pod_they_repel() {
    // Karpenter's "pod anti-affinity on zone (inverse)": one pinned pod per zone, each repelling
    // the labelled pod; the pinned pods schedule, the labelled pod has no zone left.
    let mut batch = cluster().provisioner(default_provisioner());
    for zone in ZONES {
        batch = batch.pod(
            pod(&format!("pinned-{zone}"))
                .cpu("1")
                .anti_affinity(labels::ZONE, &[("app", "cache")])
                .node_selector(labels::ZONE, zone)
                .build(),
        );
    }
    let plan = batch.pod(pod("cache").label("app", "cache").build()).plan();
    assert_eq!(plan.nodes.len(), 3, "{plan:#?}");
    assert_eq!(plan.unschedulable.len(), 1);
    assert_eq!(plan.unschedulable[0].pod, "default/cache");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Zone-pinned pods and flexible pods that repel them by zone, in any order: pinned pods
    /// only lose their zone when that lets more of the batch schedule, and a zone nobody is
    /// pinned to takes every flexible pod.
    #[test]
    fn pinned_pods_are_not_crowded_out_by_pods_with_a_choice(
        pinned in prop::collection::vec(0..4usize, 3),
        clients in 1..4usize,
        client_cpu in prop::sample::select(vec!["100m", "1", "3"]),
        order in Just((0..16usize).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let mut pods = Vec::new();
        for (z, &n) in pinned.iter().enumerate() {
            pods.extend(
                pod(&format!("pinned-{z}"))
                    .cpu("500m")
                    .label("app", "cache")
                    .node_selector(labels::ZONE, ZONES[z])
                    .times(n),
            );
        }
        pods.extend(
            pod("client")
                .cpu(client_cpu)
                .anti_affinity(labels::ZONE, &[("app", "cache")])
                .times(clients),
        );
        let mut shuffled = Vec::new();
        for &i in order.iter().filter(|&&i| i < pods.len()) {
            shuffled.push(pods[i].clone());
        }
        let plan = cluster().pods(shuffled).provisioner(default_provisioner()).plan();
        let mut cache_zones = std::collections::BTreeSet::new();
        let mut client_zones = std::collections::BTreeSet::new();
        for node in &plan.nodes {
            for p in &node.pods {
                if p.contains("pinned") {
                    cache_zones.insert(node.zone.clone());
                } else {
                    client_zones.insert(node.zone.clone());
                }
            }
        }
        prop_assert!(cache_zones.is_disjoint(&client_zones), "{plan:#?}");
        let total_pinned: usize = pinned.iter().sum();
        let placed_pinned = placement(&plan).keys().filter(|p| p.contains("pinned")).count();
        if pinned.contains(&0) {
            prop_assert!(plan.unschedulable.is_empty(), "{plan:#?}");
        }
        if pinned.iter().all(|&n| n >= clients) {
            prop_assert_eq!(placed_pinned, total_pinned, "{:#?}", plan);
        }
    }
}
