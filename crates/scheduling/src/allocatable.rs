//! Allocatable capacity of an instance type once booted: what the kubelet will offer to pods
//! after its own reservations (the rules Karpenter's AWS provider applies for the AL2 AMI family).
//!
//! `allocatable = node capacity − kube-reserved − system-reserved − eviction thresholds`, never
//! negative, where node capacity is the EC2 figure less the VM memory overhead and with the
//! kubelet's pod limit applied.

use serde::{Deserialize, Serialize};

use crate::instance_type::InstanceType;
use crate::labels;
use crate::resources::Resources;

const MIB: i64 = 1 << 20;
const GIB: i64 = 1 << 30;

/// Memory Graviton (arm64) instances keep for the contiguous memory allocator: never usable.
pub const ARM64_CMA_RESERVED_BYTES: i64 = 64 * MIB;
/// Default `memory.available` hard eviction threshold of the EKS AMIs.
pub const DEFAULT_EVICTION_MEMORY_BYTES: i64 = 100 * MIB;
/// Default `nodefs.available` hard eviction threshold, percent of ephemeral storage.
pub const DEFAULT_EVICTION_NODEFS_PERCENT: f64 = 10.0;
/// Default kube-reserved memory: a fixed part plus a part per pod the node may run.
pub const KUBE_RESERVED_MEMORY_BASE_BYTES: i64 = 255 * MIB;
pub const KUBE_RESERVED_MEMORY_PER_POD_BYTES: i64 = 11 * MIB;
/// Default kube-reserved ephemeral storage.
pub const KUBE_RESERVED_EPHEMERAL_STORAGE_BYTES: i64 = GIB;

/// Kube-reserved cpu by core range: (range start, range end, thousandths of a millicore per
/// millicore in the range). 6% of the first core, 1% of the second, 0.5% of cores 3–4 and
/// 0.25% of the rest — the EKS AMI / Bottlerocket formula Karpenter uses.
const KUBE_RESERVED_CPU_RANGES: [(i64, i64, i64); 4] = [
    (0, 1000, 60),
    (1000, 2000, 10),
    (2000, 4000, 5),
    (4000, i64::MAX, 25),
];
/// Denominators matching the thousandths above: the last range is 0.25% = 25 / 10 000.
const KUBE_RESERVED_CPU_DENOMINATORS: [i64; 4] = [1000, 1000, 1000, 10_000];

/// An eviction threshold: an absolute quantity or a percentage of capacity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Threshold {
    /// Bytes (memory, ephemeral storage) — already parsed from a quantity.
    Quantity(i64),
    /// Percent of capacity, 0–100.
    Percent(f64),
}

impl Threshold {
    /// Bytes this threshold holds back from `capacity_bytes`.
    ///
    /// A percentage is of the node's capacity (memory after the VM overhead, or ephemeral
    /// storage), rounded up; 100% means "disabled" in the kubelet's configuration, so it holds
    /// back nothing.
    pub fn bytes_of(&self, capacity_bytes: i64) -> i64 {
        match *self {
            Threshold::Quantity(bytes) => bytes.max(0),
            Threshold::Percent(percent) => {
                let percent = if percent == 100.0 { 0.0 } else { percent };
                ceil_to_i64(capacity_bytes as f64 / 100.0 * percent)
            }
        }
    }
}

/// The parts of a provisioner's `kubeletConfiguration` that change allocatable capacity,
/// already parsed from their Kubernetes quantity strings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfig {
    pub max_pods: Option<i64>,
    pub pods_per_core: Option<i64>,
    /// Replaces the default system reservation for each resource it sets.
    pub system_reserved: Option<Resources>,
    /// Replaces the default kube reservation for each resource it sets.
    ///
    /// A resource counts as set when its quantity is non-zero: an explicit `cpu: 0` keeps the
    /// default, which errs on the side of a smaller (safer) allocatable.
    pub kube_reserved: Option<Resources>,
    /// `memory.available` and `nodefs.available` hard thresholds.
    pub eviction_hard_memory: Option<Threshold>,
    pub eviction_hard_nodefs: Option<Threshold>,
    pub eviction_soft_memory: Option<Threshold>,
    pub eviction_soft_nodefs: Option<Threshold>,
}

/// Cluster-wide settings that shape allocatable capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocatableSettings {
    /// Fraction of memory the hypervisor and OS take before the kubelet sees it
    /// (VM_MEMORY_OVERHEAD_PERCENT, default 0.075).
    pub vm_memory_overhead_percent: f64,
}

impl Default for AllocatableSettings {
    fn default() -> Self {
        AllocatableSettings {
            vm_memory_overhead_percent: 0.075,
        }
    }
}

/// What a booted node holds back from its capacity, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overhead {
    pub kube_reserved: Resources,
    pub system_reserved: Resources,
    pub eviction_threshold: Resources,
}

impl Overhead {
    /// The three reservations added together.
    pub fn total(&self) -> Resources {
        let mut total = self.kube_reserved.clone();
        add_into(&mut total, &self.system_reserved);
        add_into(&mut total, &self.eviction_threshold);
        total
    }
}

impl InstanceType {
    /// Whole vCPUs (EC2's `DefaultVCpus`).
    pub fn vcpus(&self) -> i64 {
        self.capacity.cpu_millis / 1000
    }

    /// Whether the instance runs on arm64 (Graviton), by its `kubernetes.io/arch` label.
    pub fn is_arm64(&self) -> bool {
        self.labels.get(labels::ARCH).map(String::as_str) == Some(labels::ARCH_ARM64)
    }

    /// Pods the kubelet will admit: `maxPods` when set, else the ENI-limited default in
    /// `capacity.pods`; capped at `podsPerCore × vCPU` when `podsPerCore` is positive.
    pub fn max_pods(&self, kubelet: &KubeletConfig) -> i64 {
        let mut pods = kubelet.max_pods.unwrap_or(self.capacity.pods).max(0);
        if let Some(per_core) = kubelet.pods_per_core.filter(|&n| n > 0) {
            pods = pods.min(per_core.saturating_mul(self.vcpus()));
        }
        pods
    }

    /// Memory the kubelet sees: EC2's figure less 64 MiB on arm64, less the VM overhead
    /// (`ceil` in MiB of the remaining memory × `vm_memory_overhead_percent`, as Karpenter
    /// computes it).
    pub fn memory_after_vm_overhead(&self, settings: &AllocatableSettings) -> i64 {
        let mut memory = self.capacity.memory_bytes;
        if self.is_arm64() {
            memory -= ARM64_CMA_RESERVED_BYTES;
        }
        // Same operation order as Karpenter so the rounding agrees to the MiB.
        let overhead_mib =
            ceil_to_i64(memory as f64 * settings.vm_memory_overhead_percent / 1024.0 / 1024.0);
        (memory - overhead_mib.saturating_mul(MIB)).max(0)
    }

    /// The node's capacity as the kubelet will report it: memory after the VM overhead and the
    /// pod limit of `kubelet`; cpu, ephemeral storage and extended resources as in `capacity`.
    pub fn node_capacity(
        &self,
        kubelet: &KubeletConfig,
        settings: &AllocatableSettings,
    ) -> Resources {
        Resources {
            memory_bytes: self.memory_after_vm_overhead(settings),
            pods: self.max_pods(kubelet),
            ..self.capacity.clone()
        }
    }

    /// Kube-reserved, system-reserved and eviction thresholds for this type under `kubelet`.
    pub fn overhead(&self, kubelet: &KubeletConfig, settings: &AllocatableSettings) -> Overhead {
        Overhead {
            kube_reserved: self.kube_reserved(kubelet),
            system_reserved: kubelet.system_reserved.clone().unwrap_or_default(),
            eviction_threshold: self.eviction_threshold(kubelet, settings),
        }
    }

    /// What pods can request on a booted node of this type: node capacity less the overhead,
    /// never negative. Extended resources pass through unless a reservation names them.
    pub fn allocatable(
        &self,
        kubelet: &KubeletConfig,
        settings: &AllocatableSettings,
    ) -> Resources {
        let capacity = self.node_capacity(kubelet, settings);
        subtract_floor_zero(&capacity, &self.overhead(kubelet, settings).total())
    }

    /// Default kube-reserved, each resource replaced by `kubelet.kube_reserved` where set.
    ///
    /// The memory part counts the ENI-limited pods (`capacity.pods`) even when `maxPods` is
    /// set: the AL2 bootstrap sizes kube-reserved memory from the ENI table, not `maxPods`.
    fn kube_reserved(&self, kubelet: &KubeletConfig) -> Resources {
        let mut reserved = Resources {
            cpu_millis: kube_reserved_cpu_millis(self.capacity.cpu_millis),
            memory_bytes: KUBE_RESERVED_MEMORY_BASE_BYTES
                + KUBE_RESERVED_MEMORY_PER_POD_BYTES * self.capacity.pods.max(0),
            ephemeral_storage_bytes: KUBE_RESERVED_EPHEMERAL_STORAGE_BYTES,
            ..Resources::default()
        };
        if let Some(overrides) = &kubelet.kube_reserved {
            override_set_fields(&mut reserved, overrides);
        }
        reserved
    }

    /// Eviction thresholds: 100 MiB of memory and 10% of ephemeral storage unless the kubelet
    /// configuration sets the signal; where both hard and soft thresholds are set, the larger.
    fn eviction_threshold(
        &self,
        kubelet: &KubeletConfig,
        settings: &AllocatableSettings,
    ) -> Resources {
        let memory = self.memory_after_vm_overhead(settings);
        let storage = self.capacity.ephemeral_storage_bytes;
        let signal = |hard: Option<Threshold>, soft: Option<Threshold>, capacity: i64| {
            [hard, soft]
                .into_iter()
                .flatten()
                .map(|threshold| threshold.bytes_of(capacity))
                .max()
        };
        Resources {
            memory_bytes: signal(
                kubelet.eviction_hard_memory,
                kubelet.eviction_soft_memory,
                memory,
            )
            .unwrap_or(DEFAULT_EVICTION_MEMORY_BYTES),
            ephemeral_storage_bytes: signal(
                kubelet.eviction_hard_nodefs,
                kubelet.eviction_soft_nodefs,
                storage,
            )
            .unwrap_or_else(|| {
                Threshold::Percent(DEFAULT_EVICTION_NODEFS_PERCENT).bytes_of(storage)
            }),
            ..Resources::default()
        }
    }
}

/// Default kube-reserved cpu, in millicores, for a node with `cpu_millis` of cpu.
pub fn kube_reserved_cpu_millis(cpu_millis: i64) -> i64 {
    KUBE_RESERVED_CPU_RANGES
        .iter()
        .zip(KUBE_RESERVED_CPU_DENOMINATORS)
        .filter(|((start, _, _), _)| cpu_millis > *start)
        .map(|(&(start, end, numerator), denominator)| {
            (cpu_millis.min(end) - start) * numerator / denominator
        })
        .sum()
}

fn ceil_to_i64(value: f64) -> i64 {
    // `as` saturates on overflow and maps NaN to 0: a nonsense setting cannot panic here.
    value.ceil() as i64
}

fn add_into(total: &mut Resources, more: &Resources) {
    total.cpu_millis = total.cpu_millis.saturating_add(more.cpu_millis);
    total.memory_bytes = total.memory_bytes.saturating_add(more.memory_bytes);
    total.ephemeral_storage_bytes = total
        .ephemeral_storage_bytes
        .saturating_add(more.ephemeral_storage_bytes);
    total.pods = total.pods.saturating_add(more.pods);
    for (name, quantity) in &more.extended {
        let entry = total.extended.entry(name.clone()).or_insert(0);
        *entry = entry.saturating_add(*quantity);
    }
    total.extended.retain(|_, quantity| *quantity != 0);
}

/// `capacity − reserved` per resource, clamped at zero; zero extended entries dropped.
fn subtract_floor_zero(capacity: &Resources, reserved: &Resources) -> Resources {
    let minus = |have: i64, take: i64| have.saturating_sub(take.max(0)).max(0);
    let mut extended = capacity.extended.clone();
    for (name, quantity) in extended.iter_mut() {
        *quantity = minus(*quantity, reserved.extended.get(name).copied().unwrap_or(0));
    }
    extended.retain(|_, quantity| *quantity != 0);
    Resources {
        cpu_millis: minus(capacity.cpu_millis, reserved.cpu_millis),
        memory_bytes: minus(capacity.memory_bytes, reserved.memory_bytes),
        ephemeral_storage_bytes: minus(
            capacity.ephemeral_storage_bytes,
            reserved.ephemeral_storage_bytes,
        ),
        pods: minus(capacity.pods, reserved.pods),
        extended,
    }
}

/// Replaces each resource of `base` that `overrides` sets (non-zero).
fn override_set_fields(base: &mut Resources, overrides: &Resources) {
    let pick = |default: i64, set: i64| if set != 0 { set } else { default };
    base.cpu_millis = pick(base.cpu_millis, overrides.cpu_millis);
    base.memory_bytes = pick(base.memory_bytes, overrides.memory_bytes);
    base.ephemeral_storage_bytes = pick(
        base.ephemeral_storage_bytes,
        overrides.ephemeral_storage_bytes,
    );
    base.pods = pick(base.pods, overrides.pods);
    for (name, quantity) in &overrides.extended {
        if *quantity != 0 {
            base.extended.insert(name.clone(), *quantity);
        }
    }
}

#[cfg(test)]
mod tests;
