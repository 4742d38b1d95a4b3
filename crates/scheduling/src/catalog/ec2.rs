//! EC2 API shapes: DescribeInstanceTypes records and DescribeInstanceTypeOfferings entries.
//!
//! Field names are the EC2 API's (PascalCase), as the AWS CLI prints them and as moto stores
//! them, so the embedded catalog, `--catalog FILE` and `--offerings FILE` share one parser.
//! Only the fields nodewright reads are declared; others are ignored.

use serde::{Deserialize, Serialize};

/// One DescribeInstanceTypes record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceTypeInfo {
    pub instance_type: String,
    #[serde(default)]
    pub current_generation: bool,
    #[serde(default)]
    pub bare_metal: bool,
    /// `nitro` or `xen`; absent on bare metal.
    #[serde(default)]
    pub hypervisor: Option<String>,
    /// `on-demand`, `spot`, `capacity-block`.
    #[serde(default)]
    pub supported_usage_classes: Vec<String>,
    /// `hvm`, `paravirtual`; empty when the record does not say.
    #[serde(default)]
    pub supported_virtualization_types: Vec<String>,
    #[serde(rename = "VCpuInfo")]
    pub vcpu_info: VCpuInfo,
    pub memory_info: MemoryInfo,
    pub processor_info: ProcessorInfo,
    #[serde(default)]
    pub gpu_info: Option<GpuInfo>,
    #[serde(default)]
    pub inference_accelerator_info: Option<InferenceAcceleratorInfo>,
    #[serde(default)]
    pub neuron_info: Option<NeuronInfo>,
    #[serde(default)]
    pub instance_storage_info: Option<InstanceStorageInfo>,
    #[serde(default)]
    pub network_info: NetworkInfo,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VCpuInfo {
    #[serde(rename = "DefaultVCpus")]
    pub default_vcpus: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryInfo {
    #[serde(rename = "SizeInMiB")]
    pub size_in_mib: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessorInfo {
    /// `x86_64`, `arm64`, `i386`, `x86_64_mac`, `arm64_mac`.
    pub supported_architectures: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GpuInfo {
    #[serde(default)]
    pub gpus: Vec<DeviceInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InferenceAcceleratorInfo {
    #[serde(default)]
    pub accelerators: Vec<DeviceInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NeuronInfo {
    #[serde(default)]
    pub neuron_devices: Vec<DeviceInfo>,
}

/// A GPU, inference accelerator or Neuron device entry: `Count` devices of one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceInfo {
    #[serde(default)]
    pub name: String,
    /// Absent on Neuron devices (always AWS).
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub count: i64,
    #[serde(default)]
    pub memory_info: Option<MemoryInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceStorageInfo {
    #[serde(rename = "TotalSizeInGB", default)]
    pub total_size_in_gb: i64,
    /// `unsupported`, `supported` or `required`.
    #[serde(default)]
    pub nvme_support: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInfo {
    #[serde(default)]
    pub maximum_network_interfaces: i64,
    #[serde(default)]
    pub ipv4_addresses_per_interface: i64,
    #[serde(default)]
    pub default_network_card_index: i64,
    #[serde(default)]
    pub network_cards: Vec<NetworkCard>,
    #[serde(default)]
    pub efa_supported: bool,
    #[serde(default)]
    pub efa_info: Option<EfaInfo>,
    #[serde(default)]
    pub encryption_in_transit_supported: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCard {
    #[serde(default)]
    pub network_card_index: i64,
    #[serde(default)]
    pub maximum_network_interfaces: i64,
    #[serde(default)]
    pub baseline_bandwidth_in_gbps: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EfaInfo {
    #[serde(default)]
    pub maximum_efa_interfaces: i64,
}

/// DescribeInstanceTypes output.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeInstanceTypesOutput {
    pub instance_types: Vec<InstanceTypeInfo>,
}

/// One DescribeInstanceTypeOfferings entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceTypeOffering {
    pub instance_type: String,
    /// `availability-zone`, `availability-zone-id` or `region`; moto's files omit it (they
    /// are all by availability zone).
    #[serde(default)]
    pub location_type: Option<String>,
    pub location: String,
}

/// DescribeInstanceTypeOfferings output.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeInstanceTypeOfferingsOutput {
    pub instance_type_offerings: Vec<InstanceTypeOffering>,
}

impl InstanceTypeInfo {
    /// Network interfaces the VPC CNI can use: those of the default network card (it ignores
    /// the others), or the instance's maximum when the record lists no cards.
    pub fn cni_network_interfaces(&self) -> i64 {
        let network = &self.network_info;
        network
            .network_cards
            .iter()
            .find(|card| card.network_card_index == network.default_network_card_index)
            .map_or(network.maximum_network_interfaces, |card| {
                card.maximum_network_interfaces
            })
    }

    /// Pods the VPC CNI can address: `ENIs × (IPv4 per ENI − 1) + 2`, or 0 without ENIs
    /// (the EKS AMI's eni-max-pods formula).
    pub fn eni_limited_pods(&self) -> i64 {
        let enis = self.cni_network_interfaces();
        if enis <= 0 {
            return 0;
        }
        enis * (self.network_info.ipv4_addresses_per_interface - 1).max(0) + 2
    }

    /// Baseline network bandwidth in Mbit/s, summed over the network cards.
    pub fn network_bandwidth_mbps(&self) -> Option<i64> {
        let cards = &self.network_info.network_cards;
        let gbps: Option<f64> = cards
            .iter()
            .map(|card| card.baseline_bandwidth_in_gbps)
            .sum();
        gbps.filter(|_| !cards.is_empty())
            .map(|gbps| (gbps * 1000.0).round() as i64)
    }
}
