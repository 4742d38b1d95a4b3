//! Worked examples checked against Karpenter's published AL2 figures (v0.31 instance-type docs),
//! and properties of the arithmetic.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const MIB: i64 = 1 << 20;
const GIB: i64 = 1 << 30;

/// An instance type as the catalog builds it: EC2 capacity, 20 GiB root volume, ENI pods.
fn instance(name: &str, arch: &str, vcpus: i64, memory_mib: i64, eni_pods: i64) -> InstanceType {
    InstanceType {
        name: name.to_string(),
        labels: BTreeMap::from([(labels::ARCH.to_string(), arch.to_string())]),
        capacity: Resources {
            cpu_millis: vcpus * 1000,
            memory_bytes: memory_mib * MIB,
            ephemeral_storage_bytes: 20 * GIB,
            pods: eni_pods,
            extended: BTreeMap::new(),
        },
        max_enis: 0,
        ipv4_per_eni: 0,
        offerings: Vec::new(),
    }
}

fn m5_large() -> InstanceType {
    instance("m5.large", labels::ARCH_AMD64, 2, 8192, 29)
}

fn defaults(it: &InstanceType) -> Resources {
    it.allocatable(&KubeletConfig::default(), &AllocatableSettings::default())
}

#[test]
fn m5_large_allocatable_matches_hand_computation() {
    // cpu: 2000m − (6% of 1000m = 60m + 1% of 1000m = 10m) = 1930m.
    // memory: 8192 MiB − ceil(8192 × 0.075 = 614.4) = 7577 MiB capacity;
    //   − kube-reserved (11 × 29 + 255 = 574 MiB) − eviction 100 MiB = 6903 MiB.
    // ephemeral: 20 GiB − kube-reserved 1 GiB − 10% nodefs (2 GiB) = 17 GiB.
    let allocatable = defaults(&m5_large());
    assert_eq!(allocatable.cpu_millis, 1930);
    assert_eq!(allocatable.memory_bytes, 6903 * MIB);
    assert_eq!(allocatable.ephemeral_storage_bytes, 17 * GIB);
    assert_eq!(allocatable.pods, 29);
}

#[test]
fn c5_large_and_c4_8xlarge_match_karpenter_published_figures() {
    // Karpenter v0.31 docs: c5.large 1930m / 3114Mi / 29 pods; c4.8xlarge 35840m / 53903Mi / 234.
    let c5 = defaults(&instance("c5.large", labels::ARCH_AMD64, 2, 4096, 29));
    assert_eq!(
        (c5.cpu_millis, c5.memory_bytes, c5.pods),
        (1930, 3114 * MIB, 29)
    );
    let c4 = defaults(&instance("c4.8xlarge", labels::ARCH_AMD64, 36, 61440, 234));
    assert_eq!(
        (c4.cpu_millis, c4.memory_bytes, c4.pods),
        (35840, 53903 * MIB, 234)
    );
}

#[test]
fn arm64_loses_64_mib_before_the_vm_overhead() {
    // a1.large: 4096 − 64 = 4032 MiB; − ceil(4032 × 0.075 = 302.4) = 3729; − 574 − 100 = 3055.
    // a1.medium: 2048 − 64 = 1984; − ceil(148.8) = 1835; − (11 × 8 + 255 = 343) − 100 = 1392,
    // cpu 1000m − 60m = 940m. Both are Karpenter's published figures.
    let a1_large = defaults(&instance("a1.large", labels::ARCH_ARM64, 2, 4096, 29));
    assert_eq!(a1_large.memory_bytes, 3055 * MIB);
    let a1_medium = defaults(&instance("a1.medium", labels::ARCH_ARM64, 1, 2048, 8));
    assert_eq!(
        (a1_medium.cpu_millis, a1_medium.memory_bytes),
        (940, 1392 * MIB)
    );
}

#[test]
fn kube_reserved_cpu_follows_the_per_core_ranges() {
    assert_eq!(kube_reserved_cpu_millis(0), 0);
    assert_eq!(kube_reserved_cpu_millis(500), 30);
    assert_eq!(kube_reserved_cpu_millis(1000), 60);
    assert_eq!(kube_reserved_cpu_millis(2000), 70);
    assert_eq!(kube_reserved_cpu_millis(4000), 80);
    // 96 vCPU: 60 + 10 + 10 + 0.25% of 92 000m (230m) = 310m.
    assert_eq!(kube_reserved_cpu_millis(96_000), 310);
}

#[test]
fn max_pods_replaces_eni_pods_but_not_the_memory_reservation() {
    let kubelet = KubeletConfig {
        max_pods: Some(110),
        ..KubeletConfig::default()
    };
    let allocatable = m5_large().allocatable(&kubelet, &AllocatableSettings::default());
    assert_eq!(allocatable.pods, 110);
    // kube-reserved memory still counts the 29 ENI pods, as the AL2 bootstrap does.
    assert_eq!(allocatable.memory_bytes, 6903 * MIB);
}

#[test]
fn pods_per_core_caps_pods_only_when_positive() {
    let capped = KubeletConfig {
        pods_per_core: Some(4),
        ..KubeletConfig::default()
    };
    assert_eq!(m5_large().max_pods(&capped), 8);
    let loose = KubeletConfig {
        pods_per_core: Some(100),
        ..KubeletConfig::default()
    };
    assert_eq!(m5_large().max_pods(&loose), 29);
    let zero = KubeletConfig {
        pods_per_core: Some(0),
        ..KubeletConfig::default()
    };
    assert_eq!(m5_large().max_pods(&zero), 29);
    let both = KubeletConfig {
        max_pods: Some(200),
        pods_per_core: Some(10),
        ..KubeletConfig::default()
    };
    assert_eq!(m5_large().max_pods(&both), 20);
}

#[test]
fn kube_reserved_overrides_only_the_resources_it_sets() {
    let kubelet = KubeletConfig {
        kube_reserved: Some(Resources {
            cpu_millis: 500,
            ..Resources::default()
        }),
        ..KubeletConfig::default()
    };
    let allocatable = m5_large().allocatable(&kubelet, &AllocatableSettings::default());
    assert_eq!(allocatable.cpu_millis, 1500);
    assert_eq!(allocatable.memory_bytes, 6903 * MIB);
}

#[test]
fn system_reserved_is_subtracted_and_has_no_default() {
    let kubelet = KubeletConfig {
        system_reserved: Some(Resources {
            cpu_millis: 100,
            memory_bytes: 100 * MIB,
            ..Resources::default()
        }),
        ..KubeletConfig::default()
    };
    let allocatable = m5_large().allocatable(&kubelet, &AllocatableSettings::default());
    assert_eq!(allocatable.cpu_millis, 1830);
    assert_eq!(allocatable.memory_bytes, 6803 * MIB);
    assert_eq!(
        m5_large()
            .overhead(&KubeletConfig::default(), &AllocatableSettings::default())
            .system_reserved,
        Resources::default()
    );
}

#[test]
fn eviction_hard_replaces_the_default_even_when_smaller() {
    let kubelet = KubeletConfig {
        eviction_hard_memory: Some(Threshold::Quantity(50 * MIB)),
        ..KubeletConfig::default()
    };
    let allocatable = m5_large().allocatable(&kubelet, &AllocatableSettings::default());
    assert_eq!(allocatable.memory_bytes, 6953 * MIB);
}

#[test]
fn eviction_percentages_are_of_capacity_after_vm_overhead_and_soft_can_win() {
    // 5% of 7577 MiB, rounded up to the byte, beats a 100 MiB hard threshold.
    let kubelet = KubeletConfig {
        eviction_hard_memory: Some(Threshold::Quantity(100 * MIB)),
        eviction_soft_memory: Some(Threshold::Percent(5.0)),
        eviction_hard_nodefs: Some(Threshold::Percent(15.0)),
        ..KubeletConfig::default()
    };
    let allocatable = m5_large().allocatable(&kubelet, &AllocatableSettings::default());
    let five_percent = (7577 * MIB * 5 + 99) / 100;
    assert_eq!(
        allocatable.memory_bytes,
        7577 * MIB - 574 * MIB - five_percent
    );
    // nodefs 15% of 20 GiB = 3 GiB.
    assert_eq!(
        allocatable.ephemeral_storage_bytes,
        20 * GIB - GIB - 3 * GIB
    );
}

#[test]
fn a_hundred_percent_threshold_disables_the_signal() {
    assert_eq!(Threshold::Percent(100.0).bytes_of(8 * GIB), 0);
    assert_eq!(Threshold::Percent(10.0).bytes_of(20 * GIB), 2 * GIB);
}

#[test]
fn vm_memory_overhead_is_configurable() {
    let settings = AllocatableSettings {
        vm_memory_overhead_percent: 0.0,
    };
    let allocatable = m5_large().allocatable(&KubeletConfig::default(), &settings);
    assert_eq!(allocatable.memory_bytes, (8192 - 574 - 100) * MIB);
}

#[test]
fn extended_resources_pass_through_unchanged() {
    let mut gpu = instance("p3.2xlarge", labels::ARCH_AMD64, 8, 62464, 58);
    gpu.capacity
        .extended
        .insert(labels::RESOURCE_NVIDIA_GPU.to_string(), 1);
    let allocatable = defaults(&gpu);
    assert_eq!(
        allocatable.extended.get(labels::RESOURCE_NVIDIA_GPU),
        Some(&1)
    );
}

#[test]
fn reservations_larger_than_capacity_leave_zero_not_negative() {
    let kubelet = KubeletConfig {
        system_reserved: Some(Resources {
            cpu_millis: 10_000,
            memory_bytes: 100 * GIB,
            ephemeral_storage_bytes: 100 * GIB,
            ..Resources::default()
        }),
        ..KubeletConfig::default()
    };
    let allocatable = m5_large().allocatable(&kubelet, &AllocatableSettings::default());
    assert_eq!(
        (
            allocatable.cpu_millis,
            allocatable.memory_bytes,
            allocatable.ephemeral_storage_bytes
        ),
        (0, 0, 0)
    );
}

fn arb_threshold() -> impl Strategy<Value = Option<Threshold>> {
    prop_oneof![
        Just(None),
        (0i64..4 * GIB).prop_map(|b| Some(Threshold::Quantity(b))),
        (0.0f64..100.0).prop_map(|p| Some(Threshold::Percent(p))),
    ]
}

fn arb_reserved() -> impl Strategy<Value = Option<Resources>> {
    proptest::option::of(
        (0i64..8000, 0i64..8 * GIB, 0i64..8 * GIB).prop_map(|(c, m, e)| Resources {
            cpu_millis: c,
            memory_bytes: m,
            ephemeral_storage_bytes: e,
            ..Resources::default()
        }),
    )
}

prop_compose! {
    fn arb_kubelet()(
        max_pods in proptest::option::of(0i64..500),
        pods_per_core in proptest::option::of(-1i64..50),
        system_reserved in arb_reserved(),
        kube_reserved in arb_reserved(),
        eviction_hard_memory in arb_threshold(),
        eviction_soft_memory in arb_threshold(),
        eviction_hard_nodefs in arb_threshold(),
        eviction_soft_nodefs in arb_threshold(),
    ) -> KubeletConfig {
        KubeletConfig {
            max_pods,
            pods_per_core,
            system_reserved,
            kube_reserved,
            eviction_hard_memory,
            eviction_hard_nodefs,
            eviction_soft_memory,
            eviction_soft_nodefs,
        }
    }
}

prop_compose! {
    fn arb_instance()(
        vcpus in 1i64..448,
        memory_mib in 512i64..(24 * 1024 * 1024),
        pods in 0i64..800,
        arm in any::<bool>(),
        gpus in 0i64..16,
    ) -> InstanceType {
        let arch = if arm { labels::ARCH_ARM64 } else { labels::ARCH_AMD64 };
        let mut it = instance("x.large", arch, vcpus, memory_mib, pods);
        if gpus > 0 {
            it.capacity.extended.insert(labels::RESOURCE_NVIDIA_GPU.to_string(), gpus);
        }
        it
    }
}

fn le(a: &Resources, b: &Resources) -> bool {
    a.cpu_millis <= b.cpu_millis
        && a.memory_bytes <= b.memory_bytes
        && a.ephemeral_storage_bytes <= b.ephemeral_storage_bytes
        && a.pods <= b.pods
        && a.extended
            .iter()
            .all(|(k, v)| *v <= b.extended.get(k).copied().unwrap_or(0))
}

proptest! {
    #[test]
    fn allocatable_never_exceeds_node_capacity_and_is_never_negative(
        it in arb_instance(), kubelet in arb_kubelet(), overhead in 0.0f64..0.5,
    ) {
        let settings = AllocatableSettings { vm_memory_overhead_percent: overhead };
        let allocatable = it.allocatable(&kubelet, &settings);
        let node = it.node_capacity(&kubelet, &settings);
        prop_assert!(le(&allocatable, &node));
        prop_assert!(node.memory_bytes <= it.capacity.memory_bytes);
        prop_assert!(allocatable.cpu_millis <= it.capacity.cpu_millis);
        prop_assert!(allocatable.cpu_millis >= 0 && allocatable.memory_bytes >= 0);
        prop_assert!(allocatable.ephemeral_storage_bytes >= 0 && allocatable.pods >= 0);
        prop_assert_eq!(&allocatable.extended, &it.capacity.extended);
    }

    #[test]
    fn more_system_reserved_never_increases_allocatable(
        it in arb_instance(),
        kubelet in arb_kubelet(),
        extra_cpu in 0i64..4000,
        extra_memory in 0i64..4 * GIB,
        extra_storage in 0i64..4 * GIB,
    ) {
        let settings = AllocatableSettings::default();
        let before = it.allocatable(&kubelet, &settings);
        let mut more = kubelet.clone();
        let reserved = more.system_reserved.get_or_insert_with(Resources::default);
        reserved.cpu_millis += extra_cpu;
        reserved.memory_bytes += extra_memory;
        reserved.ephemeral_storage_bytes += extra_storage;
        prop_assert!(le(&it.allocatable(&more, &settings), &before));
    }

    #[test]
    fn a_larger_eviction_threshold_or_vm_overhead_never_increases_allocatable(
        it in arb_instance(),
        kubelet in arb_kubelet(),
        extra in 0i64..GIB,
        overhead in 0.0f64..0.3,
        more_overhead in 0.0f64..0.2,
    ) {
        let settings = AllocatableSettings { vm_memory_overhead_percent: overhead };
        let mut kubelet = kubelet;
        kubelet.eviction_hard_memory = Some(Threshold::Quantity(100 * MIB));
        kubelet.eviction_soft_memory = None;
        let before = it.allocatable(&kubelet, &settings);
        let mut stricter = kubelet.clone();
        stricter.eviction_hard_memory = Some(Threshold::Quantity(100 * MIB + extra));
        prop_assert!(le(&it.allocatable(&stricter, &settings), &before));
        let heavier = AllocatableSettings { vm_memory_overhead_percent: overhead + more_overhead };
        prop_assert!(le(&it.allocatable(&kubelet, &heavier), &before));
    }
}
