//! The embedded catalog, EC2-shaped input, and prices from the shared price file.

use std::path::PathBuf;

use super::*;
use crate::allocatable::{AllocatableSettings, KubeletConfig};
use crate::instance_type::CapacityType;
use crate::labels;

const MIB: i64 = 1 << 20;

fn us_east_1() -> Vec<InstanceType> {
    Catalog::embedded()
        .and_then(|c| c.instance_types("us-east-1", None))
        .expect("the embedded catalog covers us-east-1")
}

fn find<'a>(types: &'a [InstanceType], name: &str) -> &'a InstanceType {
    types
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} is in the catalog"))
}

fn label<'a>(it: &'a InstanceType, key: &str) -> Option<&'a str> {
    it.labels.get(key).map(String::as_str)
}

/// The shared test data directory: `NODEWRIGHT_DATA`, else `../shared/data` beside the repo.
fn shared_data() -> PathBuf {
    std::env::var_os("NODEWRIGHT_DATA").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")),
        PathBuf::from,
    )
}

fn shared_prices() -> PriceTable {
    let path = shared_data().join("prices-us-east-1.json");
    let json =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    PriceTable::from_json(&json).expect("the shared price file parses")
}

#[test]
fn embedded_catalog_has_m5_large_with_2_vcpus_and_8192_mib() {
    let catalog = Catalog::embedded().expect("embedded catalog parses");
    let record = catalog.record("m5.large").expect("m5.large record");
    assert_eq!(record.vcpu_info.default_vcpus, 2);
    assert_eq!(record.memory_info.size_in_mib, 8192);
    assert!(catalog.records().len() > 1000);
    let regions: Vec<&str> = catalog.regions().collect();
    for region in ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1"] {
        assert!(
            regions.contains(&region),
            "{region} missing from {regions:?}"
        );
    }
}

#[test]
fn m5_large_capacity_labels_and_offerings() {
    let types = us_east_1();
    let m5 = find(&types, "m5.large");
    assert_eq!(m5.capacity.cpu_millis, 2000);
    assert_eq!(m5.capacity.memory_bytes, 8192 * MIB);
    assert_eq!(m5.capacity.ephemeral_storage_bytes, 20 << 30);
    assert_eq!(m5.capacity.pods, 29);
    assert!(m5.capacity.extended.is_empty());
    assert_eq!((m5.max_enis, m5.ipv4_per_eni), (3, 10));
    for (key, value) in [
        (labels::INSTANCE_TYPE, "m5.large"),
        (labels::ARCH, "amd64"),
        (labels::OS, "linux"),
        (labels::REGION, "us-east-1"),
        (labels::INSTANCE_CATEGORY, "m"),
        (labels::INSTANCE_FAMILY, "m5"),
        (labels::INSTANCE_GENERATION, "5"),
        (labels::INSTANCE_SIZE, "large"),
        (labels::INSTANCE_CPU, "2"),
        (labels::INSTANCE_MEMORY, "8192"),
        (labels::INSTANCE_PODS, "29"),
        (labels::INSTANCE_HYPERVISOR, "nitro"),
        (labels::INSTANCE_NETWORK_BANDWIDTH, "750"),
        (labels::INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED, "false"),
    ] {
        assert_eq!(label(m5, key), Some(value), "{key}");
    }
    assert_eq!(label(m5, labels::INSTANCE_LOCAL_NVME), None);
    assert_eq!(label(m5, labels::INSTANCE_GPU_COUNT), None);
    // moto's us-east-1 data offers m5.large in five zones (not us-east-1e), spot and on-demand.
    assert_eq!(m5.offerings.len(), 10);
    assert!(
        m5.offerings
            .iter()
            .all(|o| o.zone != "us-east-1e" && o.available)
    );
    assert!(m5.offerings.iter().all(|o| o.price_per_hour.is_none()));
}

#[test]
fn catalog_m5_large_allocatable_is_karpenters() {
    let allocatable = find(&us_east_1(), "m5.large")
        .allocatable(&KubeletConfig::default(), &AllocatableSettings::default());
    assert_eq!(allocatable.cpu_millis, 1930);
    assert_eq!(allocatable.memory_bytes, 6903 * MIB);
    assert_eq!(allocatable.pods, 29);
}

#[test]
fn gpus_and_accelerators_become_extended_resources_and_labels() {
    let types = us_east_1();
    let p4d = find(&types, "p4d.24xlarge");
    assert_eq!(
        p4d.capacity.extended.get(labels::RESOURCE_NVIDIA_GPU),
        Some(&8)
    );
    assert_eq!(label(p4d, labels::INSTANCE_GPU_NAME), Some("a100"));
    assert_eq!(
        label(p4d, labels::INSTANCE_GPU_MANUFACTURER),
        Some("nvidia")
    );
    assert_eq!(label(p4d, labels::INSTANCE_GPU_COUNT), Some("8"));
    assert_eq!(label(p4d, labels::INSTANCE_GPU_MEMORY), Some("40960"));
    assert_eq!(label(p4d, labels::INSTANCE_LOCAL_NVME), Some("8000"));
    // Only the default network card's 15 ENIs serve pods: 15 × 49 + 2 (EKS eni-max-pods: 737).
    assert_eq!(p4d.capacity.pods, 737);
    assert_eq!(
        label(p4d, labels::INSTANCE_NETWORK_BANDWIDTH),
        Some("400000")
    );

    let g4ad = find(&types, "g4ad.xlarge");
    assert_eq!(
        g4ad.capacity.extended.get(labels::RESOURCE_AMD_GPU),
        Some(&1)
    );
    assert_eq!(
        label(g4ad, labels::INSTANCE_GPU_NAME),
        Some("radeon-pro-v520")
    );

    let dl1 = find(&types, "dl1.24xlarge");
    assert_eq!(
        dl1.capacity.extended.get(labels::RESOURCE_HABANA_GAUDI),
        Some(&8)
    );

    let inf2 = find(&types, "inf2.xlarge");
    assert_eq!(
        inf2.capacity.extended.get(labels::RESOURCE_AWS_NEURON),
        Some(&1)
    );
    assert_eq!(
        label(inf2, labels::INSTANCE_ACCELERATOR_NAME),
        Some("inferentia2")
    );
    assert_eq!(
        label(inf2, labels::INSTANCE_ACCELERATOR_MANUFACTURER),
        Some("aws")
    );
    assert_eq!(label(inf2, labels::INSTANCE_CATEGORY), Some("inf"));

    let trn1 = find(&types, "trn1.32xlarge");
    assert_eq!(
        trn1.capacity.extended.get(labels::RESOURCE_AWS_NEURON),
        Some(&16)
    );
    assert_eq!(
        label(trn1, labels::INSTANCE_ACCELERATOR_NAME),
        Some("trainium")
    );
    assert_eq!(label(trn1, labels::INSTANCE_ACCELERATOR_COUNT), Some("16"));
}

#[test]
fn graviton_is_arm64_and_local_nvme_is_labelled() {
    let types = us_east_1();
    assert_eq!(
        label(find(&types, "m6g.large"), labels::ARCH),
        Some("arm64")
    );
    assert_eq!(
        label(find(&types, "m5d.large"), labels::INSTANCE_LOCAL_NVME),
        Some("75")
    );
    let flex = find(&types, "m7i-flex.large");
    assert_eq!(label(flex, labels::INSTANCE_FAMILY), Some("m7i-flex"));
    assert_eq!(label(flex, labels::INSTANCE_GENERATION), Some("7"));
}

#[test]
fn mac_instances_and_types_not_offered_in_the_region_are_left_out() {
    let catalog = Catalog::embedded().expect("embedded catalog parses");
    let types = catalog
        .instance_types("us-east-1", None)
        .expect("us-east-1");
    assert!(catalog.record("mac1.metal").is_some());
    assert!(types.iter().all(|t| !t.name.starts_with("mac")));
    assert!(types.iter().all(|t| !t.offerings.is_empty()));
    // p5e.48xlarge exists but moto's data offers it in no us-east-1 zone.
    assert!(catalog.record("p5e.48xlarge").is_some());
    assert!(types.iter().all(|t| t.name != "p5e.48xlarge"));
    let names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
}

#[test]
fn category_and_generation_follow_karpenters_pattern() {
    assert_eq!(category_and_generation("m5d.large"), Some(("m", "5")));
    assert_eq!(category_and_generation("inf2.xlarge"), Some(("inf", "2")));
    assert_eq!(
        category_and_generation("trn1n.32xlarge"),
        Some(("trn", "1"))
    );
    assert_eq!(category_and_generation("u-6tb1.metal"), Some(("u", "1")));
    assert_eq!(category_and_generation("x2iezn.2xlarge"), Some(("x", "2")));
    assert_eq!(category_and_generation("nodigits.large"), None);
    assert_eq!(category_and_generation("m5"), None);
}

#[test]
fn zones_map_to_their_region() {
    assert_eq!(region_of_zone("us-east-1a"), Some("us-east-1"));
    assert_eq!(region_of_zone("us-east-1-bos-1a"), Some("us-east-1"));
    assert_eq!(region_of_zone("us-gov-west-1b"), Some("us-gov-west-1"));
    assert_eq!(region_of_zone("ap-southeast-5c"), Some("ap-southeast-5"));
    assert_eq!(region_of_zone("us-east-1"), None);
    assert_eq!(region_of_zone("use1-az1"), None);
}

const TYPES_JSON: &str = r#"{"InstanceTypes": [
  {"InstanceType": "c7g.xlarge", "CurrentGeneration": true, "Hypervisor": "nitro",
   "SupportedUsageClasses": ["on-demand"], "SupportedVirtualizationTypes": ["hvm"],
   "VCpuInfo": {"DefaultVCpus": 4, "DefaultCores": 4}, "MemoryInfo": {"SizeInMiB": 8192},
   "ProcessorInfo": {"SupportedArchitectures": ["arm64"], "Manufacturer": "AWS"},
   "NetworkInfo": {"MaximumNetworkInterfaces": 4, "Ipv4AddressesPerInterface": 15,
     "DefaultNetworkCardIndex": 0,
     "NetworkCards": [{"NetworkCardIndex": 0, "MaximumNetworkInterfaces": 4,
                       "BaselineBandwidthInGbps": 1.876}]}},
  {"InstanceType": "t2.micro", "SupportedUsageClasses": ["on-demand", "spot"],
   "VCpuInfo": {"DefaultVCpus": 1}, "MemoryInfo": {"SizeInMiB": 1024},
   "ProcessorInfo": {"SupportedArchitectures": ["i386", "x86_64"]},
   "NetworkInfo": {"MaximumNetworkInterfaces": 2, "Ipv4AddressesPerInterface": 2}}
], "NextToken": null}"#;

const OFFERINGS_JSON: &str = r#"{"InstanceTypeOfferings": [
  {"InstanceType": "c7g.xlarge", "LocationType": "availability-zone", "Location": "eu-west-1a"},
  {"InstanceType": "c7g.xlarge", "LocationType": "availability-zone", "Location": "eu-west-1b"},
  {"InstanceType": "t2.micro", "LocationType": "availability-zone", "Location": "eu-west-1b"},
  {"InstanceType": "t2.micro", "LocationType": "availability-zone", "Location": "us-east-2a"}
]}"#;

#[test]
fn ec2_api_output_builds_instance_types_per_region() {
    let catalog = Catalog::from_ec2_json(TYPES_JSON, OFFERINGS_JSON).expect("valid EC2 JSON");
    assert_eq!(
        catalog.regions().collect::<Vec<_>>(),
        ["eu-west-1", "us-east-2"]
    );
    assert_eq!(
        catalog.zones("eu-west-1").collect::<Vec<_>>(),
        ["eu-west-1a", "eu-west-1b"]
    );
    let types = catalog
        .instance_types("eu-west-1", None)
        .expect("eu-west-1");
    let c7g = find(&types, "c7g.xlarge");
    assert_eq!(label(c7g, labels::ARCH), Some("arm64"));
    assert_eq!(c7g.capacity.pods, 58);
    assert_eq!(label(c7g, labels::INSTANCE_NETWORK_BANDWIDTH), Some("1876"));
    // On-demand only: no spot offerings.
    assert_eq!(c7g.offerings.len(), 2);
    assert!(
        c7g.offerings
            .iter()
            .all(|o| o.capacity_type == CapacityType::OnDemand)
    );
    let t2 = find(&types, "t2.micro");
    assert_eq!(label(t2, labels::ARCH), Some("amd64"));
    // Without NetworkCards the instance maximum counts: 2 × (2 − 1) + 2.
    assert_eq!(t2.capacity.pods, 4);
    assert_eq!(t2.offerings.len(), 2);
    assert_eq!(t2.offerings[0].zone, "eu-west-1b");
}

#[test]
fn bare_lists_are_accepted_as_moto_stores_them() {
    let types = format!(
        "[{}]",
        r#"{"InstanceType": "m5.large", "VCpuInfo": {"DefaultVCpus": 2},
            "MemoryInfo": {"SizeInMiB": 8192}, "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]},
            "SupportedUsageClasses": ["spot"]}"#
    );
    let offerings = r#"[{"InstanceType": "m5.large", "Location": "us-east-1a"}]"#;
    let catalog = Catalog::from_ec2_json(&types, offerings).expect("bare lists parse");
    let types = catalog
        .instance_types("us-east-1", None)
        .expect("us-east-1");
    assert_eq!(types[0].offerings[0].capacity_type, CapacityType::Spot);
}

#[test]
fn file_overrides_replace_one_half_of_the_embedded_catalog() {
    let embedded = Catalog::embedded().expect("embedded");
    let catalog = embedded
        .clone()
        .with_instance_types_json(TYPES_JSON)
        .expect("types");
    // Embedded offerings, file records: only t2.micro and c7g.xlarge can appear.
    let types = catalog
        .instance_types("us-east-1", None)
        .expect("us-east-1");
    assert!(
        types
            .iter()
            .all(|t| t.name == "t2.micro" || t.name == "c7g.xlarge")
    );
    assert!(!types.is_empty());
    let catalog = embedded
        .with_offerings_json(OFFERINGS_JSON)
        .expect("offerings");
    assert_eq!(
        catalog.regions().collect::<Vec<_>>(),
        ["eu-west-1", "us-east-2"]
    );
    let types = catalog
        .instance_types("us-east-2", None)
        .expect("us-east-2");
    assert_eq!(types.len(), 1);
    assert_eq!(types[0].capacity.memory_bytes, 1024 * MIB);
}

#[test]
fn unreadable_json_says_what_and_where() {
    let err = Catalog::from_ec2_json("{\"InstanceTypes\": [\n  {\"InstanceType\": 5}]}", "[]")
        .expect_err("a number is no instance type name");
    let message = err.to_string();
    assert!(matches!(
        err,
        CatalogError::Json {
            what: "DescribeInstanceTypes JSON",
            ..
        }
    ));
    assert!(message.contains("line 2"), "{message}");

    let err = Catalog::from_ec2_json(
        r#"[{"InstanceType": "m5.large", "MemoryInfo": {"SizeInMiB": 1},
             "ProcessorInfo": {"SupportedArchitectures": []}}]"#,
        "[]",
    )
    .expect_err("VCpuInfo is required");
    assert!(err.to_string().contains("VCpuInfo"), "{err}");

    let err = Catalog::from_ec2_json("[]", "not json").expect_err("garbage offerings");
    assert!(
        err.to_string()
            .starts_with("DescribeInstanceTypeOfferings JSON"),
        "{err}"
    );
}

#[test]
fn offerings_by_region_or_zone_id_are_refused_with_advice() {
    let offerings = r#"{"InstanceTypeOfferings": [
        {"InstanceType": "m5.large", "LocationType": "region", "Location": "us-east-1"}]}"#;
    let err = Catalog::from_ec2_json("[]", offerings).expect_err("region offerings");
    assert!(matches!(err, CatalogError::UnsupportedLocationType { .. }));
    assert!(
        err.to_string()
            .contains("--location-type availability-zone"),
        "{err}"
    );
}

#[test]
fn duplicate_records_and_unknown_regions_are_errors() {
    let one = r#"{"InstanceType": "m5.large", "VCpuInfo": {"DefaultVCpus": 2},
        "MemoryInfo": {"SizeInMiB": 8192}, "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]}}"#;
    let err = Catalog::from_ec2_json(&format!("[{one},{one}]"), "[]").expect_err("duplicate");
    assert!(matches!(err, CatalogError::DuplicateInstanceType { .. }));
    let catalog = Catalog::embedded().expect("embedded");
    let err = catalog
        .instance_types("mars-north-1", None)
        .expect_err("no such region");
    assert!(err.to_string().contains("us-east-1"), "{err}");
}

#[test]
fn shared_prices_apply_on_demand_and_per_zone_spot() {
    let prices = shared_prices();
    let catalog = Catalog::embedded().expect("embedded");
    let mut types = catalog
        .instance_types("us-east-1", None)
        .expect("us-east-1");
    let gaps = prices.apply(&mut types);
    let m5 = find(&types, "m5.large");
    for offering in &m5.offerings {
        let expected = match offering.capacity_type {
            CapacityType::OnDemand => prices.on_demand["m5.large"],
            CapacityType::Spot => prices.spot[&offering.zone]["m5.large"],
        };
        assert_eq!(offering.price_per_hour, Some(expected), "{offering:?}");
    }
    assert_eq!(prices.on_demand_price("m5.large"), Some(0.096));
    // Every type the file lacks is reported, and its on-demand offerings stay unpriced.
    for name in &gaps.missing_on_demand {
        assert!(!prices.on_demand.contains_key(name));
        let it = find(&types, name);
        assert!(
            it.offerings
                .iter()
                .filter(|o| o.capacity_type == CapacityType::OnDemand)
                .all(|o| o.price_per_hour.is_none())
        );
    }
    let unpriced = types
        .iter()
        .filter(|t| !prices.on_demand.contains_key(&t.name))
        .count();
    assert_eq!(gaps.missing_on_demand.len(), unpriced);
    // The same prices through the one-call path.
    let priced = catalog
        .instance_types("us-east-1", Some(&prices))
        .expect("priced");
    assert_eq!(priced, types);
}

#[test]
fn spot_without_a_spot_price_falls_back_to_on_demand_and_is_reported() {
    let prices = PriceTable::from_json(
        r#"{"region": "us-east-1", "onDemand": {"m5.large": 0.096},
            "spot": {"us-east-1a": {"m5.large": 0.04}}}"#,
    )
    .expect("valid prices");
    let catalog = Catalog::embedded().expect("embedded");
    let mut types = catalog
        .instance_types("us-east-1", None)
        .expect("us-east-1");
    types.retain(|t| t.name == "m5.large" || t.name == "m5.xlarge");
    let gaps = prices.apply(&mut types);
    let m5 = find(&types, "m5.large");
    let spot = |zone: &str| {
        m5.offerings
            .iter()
            .find(|o| o.zone == zone && o.capacity_type == CapacityType::Spot)
            .and_then(|o| o.price_per_hour)
    };
    assert_eq!(spot("us-east-1a"), Some(0.04));
    assert_eq!(spot("us-east-1b"), Some(0.096));
    assert!(
        gaps.spot_from_on_demand
            .contains(&("m5.large".into(), "us-east-1b".into()))
    );
    assert_eq!(gaps.missing_on_demand, ["m5.xlarge"]);
    let xl = find(&types, "m5.xlarge");
    assert!(xl.offerings.iter().all(|o| o.price_per_hour.is_none()));
    let summary = gaps.summary().expect("gaps to report");
    assert!(
        summary.contains("1 instance types have no on-demand price (m5.xlarge)"),
        "{summary}"
    );
}

#[test]
fn prices_for_another_region_or_negative_prices_are_refused() {
    let catalog = Catalog::embedded().expect("embedded");
    let err = catalog
        .instance_types("us-west-2", Some(&shared_prices()))
        .expect_err("us-east-1 prices for us-west-2");
    assert!(matches!(err, CatalogError::PriceRegionMismatch { .. }));
    let err = PriceTable::from_json(
        r#"{"region": "us-east-1", "spot": {"us-east-1a": {"m5.large": -1}}}"#,
    )
    .expect_err("negative price");
    assert!(
        err.to_string().contains("m5.large (spot, us-east-1a)"),
        "{err}"
    );
}

#[test]
fn the_embedded_list_prices_price_on_demand_and_estimate_spot_saying_so() {
    let prices = PriceTable::embedded("us-east-1")
        .expect("the embedded table decodes")
        .expect("us-east-1 is in it");
    assert!(prices.on_demand.len() > 1_000, "{}", prices.on_demand.len());
    assert_eq!(prices.on_demand_price("m5.large"), Some(0.096));
    let mut types = Catalog::embedded()
        .expect("embedded")
        .instance_types("us-east-1", None)
        .expect("us-east-1");
    let gaps = prices.apply(&mut types);
    let m5 = find(&types, "m5.large");
    for offering in &m5.offerings {
        let expected = match offering.capacity_type {
            CapacityType::OnDemand => 0.096,
            CapacityType::Spot => 0.096 * SPOT_ESTIMATE_OF_ON_DEMAND,
        };
        assert_eq!(offering.price_per_hour, Some(expected), "{offering:?}");
    }
    assert!(gaps.spot_from_on_demand.is_empty());
    let summary = gaps.summary().expect("the estimate is reported");
    assert!(
        summary.contains("estimated at 40% of on-demand"),
        "{summary}"
    );
    assert_eq!(PriceTable::embedded("mars-north-1").expect("decodes"), None);
}

#[test]
fn a_spot_estimate_outside_zero_to_one_is_refused() {
    let err = PriceTable::from_json(r#"{"region": "us-east-1", "spotEstimate": 1.5}"#)
        .expect_err("more than on-demand");
    assert!(err.to_string().contains("spotEstimate 1.5"), "{err}");
}

#[test]
fn records_fetched_in_memory_build_the_same_instance_types() {
    let record = InstanceTypeInfo {
        instance_type: "c6i.large".into(),
        supported_usage_classes: vec!["on-demand".into(), "spot".into()],
        vcpu_info: ec2::VCpuInfo { default_vcpus: 2 },
        memory_info: ec2::MemoryInfo { size_in_mib: 4096 },
        processor_info: ec2::ProcessorInfo {
            supported_architectures: vec!["x86_64".into()],
        },
        network_info: ec2::NetworkInfo {
            maximum_network_interfaces: 3,
            ipv4_addresses_per_interface: 10,
            ..Default::default()
        },
        ..Default::default()
    };
    let offering = |zone: &str| InstanceTypeOffering {
        instance_type: "c6i.large".into(),
        location_type: Some("availability-zone".into()),
        location: zone.into(),
    };
    let catalog = Catalog::from_records(
        vec![record],
        vec![offering("us-west-2a"), offering("us-west-2c")],
        "test",
    )
    .expect("valid records");
    let types = catalog
        .instance_types("us-west-2", None)
        .expect("us-west-2");
    assert_eq!(types.len(), 1);
    assert_eq!(types[0].capacity.pods, 29);
    assert_eq!(types[0].offerings.len(), 4);
    assert_eq!(label(&types[0], labels::INSTANCE_CATEGORY), Some("c"));
}
