use std::sync::Arc;

use nodewright_scheduling::instance_type::Offering;
use nodewright_scheduling::labels;
use nodewright_scheduling::resources::Resources;
use proptest::prelude::*;

use super::*;
use crate::cloudprovider::aws::ami::{Accelerator, Arch};
use crate::cloudprovider::aws::unavailable::UNAVAILABLE_OFFERINGS_TTL;
use crate::cloudprovider::clock::ManualClock;

fn instance_type(
    name: &str,
    arch: &str,
    cpus: i64,
    offerings: &[(&str, CapacityType, Option<f64>)],
) -> InstanceType {
    InstanceType {
        name: name.into(),
        labels: [(labels::ARCH.to_string(), arch.to_string())].into(),
        capacity: Resources {
            cpu_millis: cpus * 1000,
            memory_bytes: (cpus * 4) << 30,
            ..Default::default()
        },
        max_enis: 3,
        ipv4_per_eni: 10,
        offerings: offerings
            .iter()
            .map(|(zone, capacity_type, price)| Offering {
                zone: zone.to_string(),
                capacity_type: *capacity_type,
                price_per_hour: *price,
                available: true,
            })
            .collect(),
    }
}

fn subnets(zones: &[&str]) -> BTreeMap<String, Subnet> {
    zones
        .iter()
        .map(|zone| {
            (
                zone.to_string(),
                Subnet {
                    id: format!("subnet-{zone}"),
                    zone: zone.to_string(),
                    vpc_id: None,
                    available_ip_address_count: 100,
                    tags: BTreeMap::new(),
                },
            )
        })
        .collect()
}

fn cache() -> UnavailableOfferings {
    UnavailableOfferings::new(Arc::new(ManualClock::fixed()), UNAVAILABLE_OFFERINGS_TTL)
}

const SPOT: CapacityType = CapacityType::Spot;
const OD: CapacityType = CapacityType::OnDemand;
const AMD64: ImageVariant = ImageVariant {
    arch: Arch::Amd64,
    accelerator: Accelerator::None,
};

fn types_in(plan: &FleetPlan, variant: ImageVariant) -> Vec<(String, String)> {
    plan.overrides
        .get(&variant)
        .map(|o| {
            o.iter()
                .map(|o| (o.instance_type.clone(), o.zone.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn spot_is_chosen_when_allowed_and_offered() {
    let types = [instance_type(
        "m5.large",
        "amd64",
        2,
        &[("a", SPOT, Some(0.03)), ("a", OD, Some(0.096))],
    )];
    let either = BTreeSet::new();
    let plan = plan(&types, &subnets(&["a"]), &either, &cache());
    assert_eq!(plan.map(|p| p.capacity_type), Some(SPOT));
}

#[test]
fn on_demand_when_spot_is_not_allowed_or_not_offered() {
    let types = [instance_type(
        "m5.large",
        "amd64",
        2,
        &[("a", SPOT, Some(0.03)), ("a", OD, Some(0.096))],
    )];
    let only_od = BTreeSet::from([OD]);
    assert_eq!(
        plan(&types, &subnets(&["a"]), &only_od, &cache()).map(|p| p.capacity_type),
        Some(OD)
    );
    // Spot offered only in a zone without a subnet.
    let types = [instance_type(
        "m5.large",
        "amd64",
        2,
        &[("b", SPOT, Some(0.03)), ("a", OD, Some(0.096))],
    )];
    assert_eq!(
        plan(&types, &subnets(&["a"]), &BTreeSet::new(), &cache()).map(|p| p.capacity_type),
        Some(OD)
    );
}

#[test]
fn held_out_spot_offerings_fall_back_to_on_demand() {
    let types = [instance_type(
        "m5.large",
        "amd64",
        2,
        &[("a", SPOT, Some(0.03)), ("a", OD, Some(0.096))],
    )];
    let held = cache();
    held.mark_unavailable("m5.large", "a", SPOT);
    let plan = plan(&types, &subnets(&["a"]), &BTreeSet::new(), &held);
    assert_eq!(plan.map(|p| p.capacity_type), Some(OD));
}

#[test]
fn nothing_to_launch_when_every_allowed_offering_is_out() {
    let types = [instance_type(
        "m5.large",
        "amd64",
        2,
        &[("a", SPOT, Some(0.03))],
    )];
    let held = cache();
    held.mark_unavailable("m5.large", "a", SPOT);
    assert_eq!(
        plan(&types, &subnets(&["a"]), &BTreeSet::new(), &held),
        None
    );
    assert_eq!(
        plan(&types, &subnets(&["a"]), &BTreeSet::from([OD]), &cache()),
        None
    );
}

#[test]
fn overrides_list_cheapest_types_first_in_every_offering_zone() {
    let types = [
        instance_type(
            "m5.xlarge",
            "amd64",
            4,
            &[("a", OD, Some(0.192)), ("b", OD, Some(0.192))],
        ),
        instance_type("c5.large", "amd64", 2, &[("a", OD, Some(0.085))]),
        instance_type(
            "m5.large",
            "amd64",
            2,
            &[("a", OD, Some(0.096)), ("b", OD, Some(0.096))],
        ),
    ];
    let plan = plan(
        &types,
        &subnets(&["a", "b"]),
        &BTreeSet::from([OD]),
        &cache(),
    );
    let overrides = plan.map(|p| types_in(&p, AMD64)).unwrap_or_default();
    let expected: Vec<(String, String)> = [
        ("c5.large", "a"),
        ("m5.large", "a"),
        ("m5.large", "b"),
        ("m5.xlarge", "a"),
        ("m5.xlarge", "b"),
    ]
    .iter()
    .map(|(t, z)| (t.to_string(), z.to_string()))
    .collect();
    assert_eq!(overrides, expected);
}

#[test]
fn unpriced_types_come_after_priced_ones_smallest_first() {
    let types = [
        instance_type("x.big", "amd64", 16, &[("a", OD, None)]),
        instance_type("x.small", "amd64", 2, &[("a", OD, None)]),
        instance_type("m5.2xlarge", "amd64", 8, &[("a", OD, Some(0.384))]),
    ];
    let plan = plan(&types, &subnets(&["a"]), &BTreeSet::new(), &cache());
    let names: Vec<String> = plan
        .map(|p| types_in(&p, AMD64).into_iter().map(|(t, _)| t).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["m5.2xlarge", "x.small", "x.big"]);
}

#[test]
fn types_are_grouped_by_the_image_they_need() {
    let mut gpu = instance_type("g4dn.xlarge", "amd64", 4, &[("a", OD, Some(0.526))]);
    gpu.capacity
        .extended
        .insert(labels::RESOURCE_NVIDIA_GPU.to_string(), 1);
    let types = [
        instance_type("m6g.large", "arm64", 2, &[("a", OD, Some(0.077))]),
        instance_type("m5.large", "amd64", 2, &[("a", OD, Some(0.096))]),
        gpu,
    ];
    let plan = plan(&types, &subnets(&["a"]), &BTreeSet::new(), &cache());
    let variants: Vec<ImageVariant> = plan
        .map(|p| p.overrides.keys().copied().collect())
        .unwrap_or_default();
    assert_eq!(
        variants,
        vec![
            AMD64,
            ImageVariant {
                arch: Arch::Amd64,
                accelerator: Accelerator::Nvidia
            },
            ImageVariant {
                arch: Arch::Arm64,
                accelerator: Accelerator::None
            },
        ]
    );
}

#[test]
fn capacity_errors_hold_out_the_offering_they_name() {
    let error = FleetError {
        code: "InsufficientInstanceCapacity".into(),
        message: "none".into(),
        instance_type: Some("m5.large".into()),
        subnet_id: Some("subnet-a".into()),
        zone: None,
        capacity_type: None,
    };
    let action = action_for(&error, SPOT, |subnet| {
        (subnet == "subnet-a").then(|| "us-east-1a".to_string())
    });
    assert_eq!(
        action,
        FleetErrorAction::HoldOutOffering {
            instance_type: "m5.large".into(),
            zone: "us-east-1a".into(),
            capacity_type: SPOT,
        }
    );
    let full = FleetError {
        code: "InsufficientFreeAddressesInSubnet".into(),
        ..error.clone()
    };
    assert_eq!(
        action_for(&full, SPOT, |_| None),
        FleetErrorAction::HoldOutSubnet("subnet-a".into())
    );
    let gone = FleetError {
        code: "InvalidLaunchTemplateName.NotFoundException".into(),
        ..error.clone()
    };
    assert_eq!(
        action_for(&gone, SPOT, |_| None),
        FleetErrorAction::RecreateLaunchTemplates
    );
    let denied = FleetError {
        code: "UnauthorizedOperation".into(),
        ..error
    };
    assert_eq!(
        action_for(&denied, SPOT, |_| None),
        FleetErrorAction::Report
    );
}

fn arbitrary_types() -> impl Strategy<Value = Vec<InstanceType>> {
    let offering = (
        0..3usize,
        any::<bool>(),
        proptest::option::of(0.001f64..10.0),
    );
    let one = (1i64..64, proptest::collection::vec(offering, 0..6));
    proptest::collection::vec(one, 0..90).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (cpus, offerings))| {
                let offerings: Vec<(&str, CapacityType, Option<f64>)> = offerings
                    .into_iter()
                    .map(|(zone, spot, price)| {
                        (["a", "b", "c"][zone], if spot { SPOT } else { OD }, price)
                    })
                    .collect();
                instance_type(&format!("t{i}.large"), "amd64", cpus, &offerings)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn plans_only_offered_types_in_allowed_zones_and_at_most_sixty(
        types in arbitrary_types(),
        zones in proptest::sample::subsequence(vec!["a", "b", "c"], 1..=3),
        spot_allowed in any::<bool>(),
    ) {
        let allowed = if spot_allowed { BTreeSet::new() } else { BTreeSet::from([OD]) };
        let subnets = subnets(&zones);
        match plan(&types, &subnets, &allowed, &cache()) {
            None => {
                // Nothing allowed was on offer in any zone with a subnet.
                for t in &types {
                    for o in &t.offerings {
                        let allowed_ct = spot_allowed || o.capacity_type == OD;
                        prop_assert!(!(allowed_ct && zones.contains(&o.zone.as_str())));
                    }
                }
            }
            Some(plan) => {
                prop_assert!(spot_allowed || plan.capacity_type == OD);
                let overrides = &plan.overrides[&AMD64];
                let names: BTreeSet<&str> = overrides.iter().map(|o| o.instance_type.as_str()).collect();
                prop_assert!(names.len() <= MAX_INSTANCE_TYPES);
                for o in overrides {
                    prop_assert!(zones.contains(&o.zone.as_str()));
                    prop_assert_eq!(&o.subnet_id, &format!("subnet-{}", o.zone));
                    let t = types.iter().find(|t| t.name == o.instance_type);
                    prop_assert!(t.is_some_and(|t| t.offerings.iter().any(|x| x.zone == o.zone && x.capacity_type == plan.capacity_type)));
                }
                // Cheapest first: each type's best price is no lower than the one before it.
                let zone_set: BTreeSet<&str> = zones.iter().copied().collect();
                let mut seen = Vec::new();
                for o in overrides {
                    if seen.last() != Some(&o.instance_type) {
                        seen.push(o.instance_type.clone());
                    }
                }
                let prices: Vec<Option<f64>> = seen
                    .iter()
                    .filter_map(|n| types.iter().find(|t| &t.name == n))
                    .map(|t| cheapest(t, &zone_set, plan.capacity_type))
                    .collect();
                for pair in prices.windows(2) {
                    match (pair[0], pair[1]) {
                        (Some(a), Some(b)) => prop_assert!(a <= b),
                        (None, Some(_)) => prop_assert!(false, "an unpriced type before a priced one"),
                        _ => {}
                    }
                }
            }
        }
    }
}
