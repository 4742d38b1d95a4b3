//! An EC2 record and its zones become an [`InstanceType`]: capacity, labels and offerings.

use std::collections::BTreeMap;

use super::ec2::{DeviceInfo, InstanceTypeInfo};
use crate::instance_type::{CapacityType, InstanceType, Offering};
use crate::labels;
use crate::resources::Resources;

const MIB: i64 = 1 << 20;
const GIB: i64 = 1 << 30;

/// Ephemeral storage of a node without `blockDeviceMappings`: the 20 GiB root volume that
/// Karpenter's AL2 AMI family gives `/dev/xvda` (Bottlerocket's data volume is 20 GiB too).
pub const DEFAULT_EPHEMERAL_STORAGE_BYTES: i64 = 20 * GIB;

/// Whether nodewright can run Kubernetes nodes on this type: the same filter Karpenter puts on
/// DescribeInstanceTypes (HVM virtualisation; x86_64 or arm64, so no Mac instances).
pub fn is_supported(info: &InstanceTypeInfo) -> bool {
    let hvm = info.supported_virtualization_types.is_empty()
        || info
            .supported_virtualization_types
            .iter()
            .any(|v| v == "hvm");
    hvm && kube_arch(info).is_some()
}

/// The Kubernetes architecture of the first EC2 architecture that has one.
pub fn kube_arch(info: &InstanceTypeInfo) -> Option<&'static str> {
    info.processor_info
        .supported_architectures
        .iter()
        .find_map(|arch| match arch.as_str() {
            "x86_64" => Some(labels::ARCH_AMD64),
            "arm64" => Some(labels::ARCH_ARM64),
            _ => None,
        })
}

/// The instance type for `region`, offered in `zones` for each capacity type it supports.
/// Prices are unset (see [`super::PriceTable::apply`]); every offering is available.
pub fn instance_type(info: &InstanceTypeInfo, region: &str, zones: &[&str]) -> InstanceType {
    let capacity_types: Vec<CapacityType> = [CapacityType::OnDemand, CapacityType::Spot]
        .into_iter()
        .filter(|ct| {
            info.supported_usage_classes.iter().any(|class| {
                class
                    == match ct {
                        CapacityType::OnDemand => labels::CAPACITY_TYPE_ON_DEMAND,
                        CapacityType::Spot => labels::CAPACITY_TYPE_SPOT,
                    }
            })
        })
        .collect();
    let offerings = zones
        .iter()
        .flat_map(|zone| {
            capacity_types.iter().map(move |&capacity_type| Offering {
                zone: (*zone).to_string(),
                capacity_type,
                price_per_hour: None,
                available: true,
            })
        })
        .collect();
    InstanceType {
        name: info.instance_type.clone(),
        labels: instance_labels(info, region),
        capacity: capacity(info),
        max_enis: info.cni_network_interfaces(),
        ipv4_per_eni: info.network_info.ipv4_addresses_per_interface,
        offerings,
    }
}

fn capacity(info: &InstanceTypeInfo) -> Resources {
    let gpus = info.gpu_info.as_ref().map_or(&[][..], |g| &g.gpus[..]);
    let gpus_by = |manufacturer: &str| -> i64 {
        gpus.iter()
            .filter(|gpu| gpu.manufacturer.as_deref() == Some(manufacturer))
            .map(|gpu| gpu.count)
            .sum()
    };
    let mut extended = BTreeMap::new();
    for (resource, count) in [
        (labels::RESOURCE_NVIDIA_GPU, gpus_by("NVIDIA")),
        (labels::RESOURCE_AMD_GPU, gpus_by("AMD")),
        (labels::RESOURCE_HABANA_GAUDI, gpus_by("Habana")),
        (labels::RESOURCE_AWS_NEURON, neuron_devices(info)),
    ] {
        if count > 0 {
            extended.insert(resource.to_string(), count);
        }
    }
    Resources {
        cpu_millis: info.vcpu_info.default_vcpus.saturating_mul(1000),
        memory_bytes: info.memory_info.size_in_mib.saturating_mul(MIB),
        ephemeral_storage_bytes: DEFAULT_EPHEMERAL_STORAGE_BYTES,
        pods: info.eni_limited_pods(),
        extended,
    }
}

/// Neuron devices (Inferentia, Trainium) the Neuron device plugin advertises. Records without
/// `NeuronInfo` (older API output) fall back to AWS-made inference accelerators.
fn neuron_devices(info: &InstanceTypeInfo) -> i64 {
    match (&info.neuron_info, &info.inference_accelerator_info) {
        (Some(neuron), _) => neuron.neuron_devices.iter().map(|d| d.count).sum(),
        (None, Some(inference)) => inference
            .accelerators
            .iter()
            .filter(|a| a.manufacturer.as_deref() == Some("AWS"))
            .map(|a| a.count)
            .sum(),
        (None, None) => 0,
    }
}

fn instance_labels(info: &InstanceTypeInfo, region: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        labels.insert(key.to_string(), value);
    };
    let name = info.instance_type.as_str();
    put(labels::INSTANCE_TYPE, name.to_string());
    if let Some(arch) = kube_arch(info) {
        put(labels::ARCH, arch.to_string());
    }
    put(labels::OS, labels::OS_LINUX.to_string());
    put(labels::REGION, region.to_string());
    put(
        labels::INSTANCE_CPU,
        info.vcpu_info.default_vcpus.to_string(),
    );
    put(
        labels::INSTANCE_MEMORY,
        info.memory_info.size_in_mib.to_string(),
    );
    put(labels::INSTANCE_PODS, info.eni_limited_pods().to_string());
    put(
        labels::INSTANCE_ENCRYPTION_IN_TRANSIT_SUPPORTED,
        info.network_info
            .encryption_in_transit_supported
            .to_string(),
    );
    if let Some(hypervisor) = info.hypervisor.as_deref().filter(|h| !h.is_empty()) {
        put(labels::INSTANCE_HYPERVISOR, hypervisor.to_string());
    }
    if let Some((category, generation)) = category_and_generation(name) {
        put(labels::INSTANCE_CATEGORY, category.to_string());
        put(labels::INSTANCE_GENERATION, generation.to_string());
    }
    if let Some((family, size)) = name.split_once('.').filter(|(_, size)| !size.contains('.')) {
        put(labels::INSTANCE_FAMILY, family.to_string());
        put(labels::INSTANCE_SIZE, size.to_string());
    }
    if let Some(storage) = &info.instance_storage_info
        && storage.nvme_support.as_deref() != Some("unsupported")
    {
        put(
            labels::INSTANCE_LOCAL_NVME,
            storage.total_size_in_gb.to_string(),
        );
    }
    if let Some(mbps) = info.network_bandwidth_mbps() {
        put(labels::INSTANCE_NETWORK_BANDWIDTH, mbps.to_string());
    }
    // Device labels only when the type has a single device model, as Karpenter does.
    if let Some([gpu]) = info.gpu_info.as_ref().map(|g| &g.gpus[..]) {
        put(labels::INSTANCE_GPU_NAME, kebab(&gpu.name));
        put(
            labels::INSTANCE_GPU_MANUFACTURER,
            kebab(gpu.manufacturer.as_deref().unwrap_or_default()),
        );
        put(labels::INSTANCE_GPU_COUNT, gpu.count.to_string());
        if let Some(memory) = &gpu.memory_info {
            put(labels::INSTANCE_GPU_MEMORY, memory.size_in_mib.to_string());
        }
    }
    if let Some(accelerator) = single_accelerator(info) {
        put(labels::INSTANCE_ACCELERATOR_NAME, kebab(&accelerator.name));
        put(
            labels::INSTANCE_ACCELERATOR_MANUFACTURER,
            kebab(accelerator.manufacturer.as_deref().unwrap_or("AWS")),
        );
        put(
            labels::INSTANCE_ACCELERATOR_COUNT,
            accelerator.count.to_string(),
        );
    }
    labels
}

/// The inference accelerator model, or else the Neuron device model (Trainium has only the
/// latter), when the type has exactly one.
fn single_accelerator(info: &InstanceTypeInfo) -> Option<&DeviceInfo> {
    let inference = info.inference_accelerator_info.as_ref();
    let neuron = info.neuron_info.as_ref();
    match (
        inference.map(|i| &i.accelerators[..]),
        neuron.map(|n| &n.neuron_devices[..]),
    ) {
        (Some([one]), _) => Some(one),
        (None, Some([one])) => Some(one),
        _ => None,
    }
}

/// Category and generation of a type name, Karpenter's way: the leading letters, then
/// (after an optional `-<n>tb` as in `u-6tb1`) the digits; a `.` must follow somewhere.
/// `m5d.large` → (`m`, `5`), `inf2.xlarge` → (`inf`, `2`), `u-6tb1.metal` → (`u`, `1`).
pub fn category_and_generation(name: &str) -> Option<(&str, &str)> {
    let letters = name.bytes().take_while(u8::is_ascii_lowercase).count();
    if letters == 0 {
        return None;
    }
    let (category, mut rest) = name.split_at(letters);
    if let Some(after_dash) = rest.strip_prefix('-') {
        let digits = after_dash.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0
            && let Some(after_tb) = after_dash[digits..].strip_prefix("tb")
        {
            rest = after_tb;
        }
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !rest[digits..].contains('.') {
        return None;
    }
    Some((category, &rest[..digits]))
}

/// Lower-case with spaces as hyphens: `Radeon Pro V520` → `radeon-pro-v520`.
fn kebab(s: &str) -> String {
    s.replace(' ', "-").to_lowercase()
}
