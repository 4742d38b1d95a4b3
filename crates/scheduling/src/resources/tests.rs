use super::*;

const MI: i64 = 1024 * 1024;
const GI: i64 = 1024 * MI;

fn q(text: &str) -> Quantity {
    parse_quantity(text).unwrap()
}

#[test]
fn cpu_quantities_read_as_millicores() {
    assert_eq!(q("100m").millis(), 100);
    assert_eq!(q("1").millis(), 1000);
    assert_eq!(q("1.5").millis(), 1500);
    assert_eq!(q("0.1").millis(), 100);
    assert_eq!(q("2k").millis(), 2_000_000);
    assert_eq!(q("+3").millis(), 3000);
}

#[test]
fn fractions_of_a_millicore_round_up() {
    assert_eq!(q("0.0001").millis(), 1);
    assert_eq!(q("1u").millis(), 1);
    assert_eq!(q("100n").millis(), 1);
    assert_eq!(q("0").millis(), 0);
}

#[test]
fn memory_quantities_read_as_bytes() {
    assert_eq!(q("2Gi").units(), 2 * GI);
    assert_eq!(q("512Mi").units(), 512 * MI);
    assert_eq!(q("1Ki").units(), 1024);
    assert_eq!(q("1.5Gi").units(), 3 * GI / 2);
    assert_eq!(q("1M").units(), 1_000_000);
    assert_eq!(q("1k").units(), 1000);
    assert_eq!(q("1G").units(), 1_000_000_000);
    assert_eq!(q("1Ti").units(), 1024 * GI);
}

#[test]
fn exponents_scale_by_powers_of_ten() {
    assert_eq!(q("1e3").units(), 1000);
    assert_eq!(q("1E3").units(), 1000);
    assert_eq!(q("15e-1").millis(), 1500);
    assert_eq!(q("1.5e1").units(), 15);
    // A bare E is the exa suffix, not an exponent.
    assert_eq!(q("1E").units(), 1_000_000_000_000_000_000);
}

#[test]
fn fractional_bytes_round_up_to_a_whole_byte() {
    assert_eq!(q("0.5").units(), 1);
    assert_eq!(q("1.0001Ki").units(), 1025);
}

#[test]
fn negative_quantities_keep_their_sign() {
    assert_eq!(q("-100m").millis(), -100);
    assert_eq!(q("-1Gi").units(), -GI);
}

#[test]
fn garbage_is_refused_with_a_reason() {
    assert_eq!(parse_quantity(""), Err(QuantityError::Empty));
    assert!(matches!(
        parse_quantity("abc"),
        Err(QuantityError::Malformed(_))
    ));
    assert!(matches!(
        parse_quantity("."),
        Err(QuantityError::Malformed(_))
    ));
    assert!(matches!(
        parse_quantity("1.2.3"),
        Err(QuantityError::Malformed(_))
    ));
    assert!(matches!(
        parse_quantity("-"),
        Err(QuantityError::Malformed(_))
    ));
    assert!(matches!(
        parse_quantity("5GB"),
        Err(QuantityError::UnknownSuffix { .. })
    ));
    assert!(matches!(
        parse_quantity("1e"),
        Err(QuantityError::UnknownSuffix { .. })
    ));
    assert!(matches!(
        parse_quantity("1 Gi"),
        Err(QuantityError::UnknownSuffix { .. })
    ));
    let message = parse_quantity("5GB").unwrap_err().to_string();
    assert!(message.contains("GB"), "{message}");
}

#[test]
fn huge_quantities_saturate_instead_of_overflowing() {
    assert_eq!(q("1e40").units(), i64::MAX);
    assert!(matches!(
        parse_quantity("1000000000000000000000000000000000000000000000"),
        Err(QuantityError::TooLarge(_))
    ));
}

#[test]
fn resource_lists_convert_by_resource_kind() {
    let resources = Resources::from_quantities([
        ("cpu", "250m"),
        ("memory", "1Gi"),
        ("ephemeral-storage", "10Gi"),
        ("nvidia.com/gpu", "2"),
        ("pods", "3"),
    ])
    .unwrap();
    assert_eq!(resources.cpu_millis, 250);
    assert_eq!(resources.memory_bytes, GI);
    assert_eq!(resources.ephemeral_storage_bytes, 10 * GI);
    assert_eq!(resources.pods, 3);
    assert_eq!(resources.get(labels::RESOURCE_NVIDIA_GPU), 2);
}

#[test]
fn a_bad_quantity_names_its_resource() {
    let err = Resources::from_quantities([("memory", "lots")]).unwrap_err();
    assert_eq!(err.name, "memory");
    assert!(err.to_string().starts_with("resource memory:"));
}

#[test]
fn fits_compares_every_resource_including_extended_ones() {
    let node = Resources::cpu_memory(4000, 16 * GI).with(labels::RESOURCE_PODS, 10);
    let small = Resources::cpu_memory(1000, GI).with(labels::RESOURCE_PODS, 1);
    assert!(small.fits(&node));
    let gpu = small.clone().with(labels::RESOURCE_NVIDIA_GPU, 1);
    assert!(!gpu.fits(&node));
    assert_eq!(
        gpu.first_shortfall(&node),
        Some(labels::RESOURCE_NVIDIA_GPU)
    );
    let big = Resources::cpu_memory(4001, GI);
    assert_eq!(big.first_shortfall(&node), Some("cpu"));
}

#[test]
fn arithmetic_keeps_extended_resources_and_drops_zeros() {
    let a = Resources::cpu_memory(1000, GI).with("example.com/foo", 2);
    let b = Resources::cpu_memory(500, GI).with("example.com/foo", 2);
    let sum = &a + &b;
    assert_eq!(sum.cpu_millis, 1500);
    assert_eq!(sum.get("example.com/foo"), 4);
    let diff = &a - &b;
    assert_eq!(diff, Resources::cpu_memory(500, 0));
    assert!(diff.extended.is_empty());
    let floored = b.saturating_sub(&Resources::cpu_memory(2000, 0));
    assert_eq!(floored.cpu_millis, 0);
    assert_eq!(floored.memory_bytes, GI);
    assert_eq!(a.times(3).get("example.com/foo"), 6);
}

#[test]
fn display_uses_readable_units() {
    let r = Resources::cpu_memory(1500, 2 * GI).with(labels::RESOURCE_PODS, 1);
    assert_eq!(r.to_string(), "cpu=1500m, memory=2Gi, pods=1");
    assert_eq!(Resources::default().to_string(), "none");
    assert_eq!(format_bytes(1000), "1000");
    assert_eq!(format_cpu(96000), "96");
}

#[test]
fn pod_requests_sum_containers_and_take_the_larger_init_container() {
    let containers = [
        Resources::cpu_memory(500, 256 * MI),
        Resources::cpu_memory(250, 256 * MI),
    ];
    let inits = [InitContainer {
        requests: Resources::cpu_memory(2000, 64 * MI),
        restartable: false,
    }];
    let total = pod_requests(&containers, &inits, None);
    assert_eq!(total.cpu_millis, 2000);
    assert_eq!(total.memory_bytes, 512 * MI);
    assert_eq!(total.pods, 1);
}

#[test]
fn sidecar_init_containers_add_to_the_app_containers() {
    let containers = [Resources::cpu_memory(500, 256 * MI)];
    let inits = [
        InitContainer {
            requests: Resources::cpu_memory(100, 64 * MI),
            restartable: true,
        },
        InitContainer {
            requests: Resources::cpu_memory(550, 10 * MI),
            restartable: false,
        },
    ];
    let total = pod_requests(&containers, &inits, None);
    // Running: 500 + 100 sidecar = 600; init peak: 550 + 100 sidecar = 650.
    assert_eq!(total.cpu_millis, 650);
    assert_eq!(total.memory_bytes, 320 * MI);
}

#[test]
fn pod_overhead_is_added_on_top() {
    let overhead = Resources::cpu_memory(250, 120 * MI);
    let total = pod_requests(&[Resources::cpu_memory(1000, GI)], &[], Some(&overhead));
    assert_eq!(total.cpu_millis, 1250);
    assert_eq!(total.memory_bytes, GI + 120 * MI);
    assert_eq!(total.pods, 1);
}

#[test]
fn a_pod_without_requests_still_takes_a_pod_slot() {
    assert_eq!(pod_requests(&[], &[], None).pods, 1);
}
