//! `Provisioner` objects into the scheduling core's provisioner model.

use std::collections::BTreeMap;

use nodewright_scheduling::allocatable::{KubeletConfig, Threshold};
use nodewright_scheduling::labels;
use nodewright_scheduling::provisioner::Provisioner as CoreProvisioner;
use nodewright_scheduling::requirements::{NodeSelectorRequirement, Operator};
use nodewright_scheduling::resources::parse_quantity;

use super::ConvertError;
use super::node::taints;
use super::pod::{operator, quantities};
use crate::apis::{KubeletConfiguration, Provisioner};

const MEMORY_SIGNAL: &str = "memory.available";
const NODEFS_SIGNAL: &str = "nodefs.available";

/// The core's view of a provisioner: requirements, labels, taints, limits, current usage
/// (from status) and the kubelet settings that change allocatable capacity.
pub fn provisioner(provisioner: &Provisioner) -> Result<CoreProvisioner, ConvertError> {
    let name = provisioner.metadata.name.clone().unwrap_or_default();
    let object = format!("provisioner {name}");
    let err = |field: &str, message: String| ConvertError::new(&object, field, message);
    let spec = &provisioner.spec;
    let requirements = spec
        .requirements
        .iter()
        .map(|r| {
            Ok(NodeSelectorRequirement::new(
                r.key.clone(),
                operator(r.operator.as_str())?,
                r.values.clone(),
            ))
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|m| err("spec.requirements", m))?;
    let requirements = with_defaults(requirements, &spec.labels);
    // Every listed resource is a limit, zero included: `cpu: 0` pauses a provisioner.
    let limits = match &spec.limits {
        Some(limits) => {
            let amounts =
                quantities(&limits.resources).map_err(|m| err("spec.limits.resources", m))?;
            limits
                .resources
                .keys()
                .map(|resource| (resource.clone(), amounts.get(resource)))
                .collect()
        }
        None => BTreeMap::new(),
    };
    let usage = provisioner
        .status
        .as_ref()
        .filter(|s| !s.resources.is_empty())
        .map(|s| quantities(&s.resources))
        .transpose()
        .map_err(|m| err("status.resources", m))?;
    let kubelet = match &spec.kubelet_configuration {
        Some(config) => kubelet(config).map_err(|m| err("spec.kubeletConfiguration", m))?,
        None => KubeletConfig::default(),
    };
    Ok(CoreProvisioner {
        labels: spec.labels.clone(),
        taints: taints(&spec.taints).map_err(|m| err("spec.taints", m))?,
        startup_taints: taints(&spec.startup_taints).map_err(|m| err("spec.startupTaints", m))?,
        name,
        weight: spec.weight.unwrap_or(0),
        requirements,
        limits,
        usage,
        kubelet,
    })
}

/// Keys that narrow which instance types a provisioner launches: naming any of them turns off
/// the general-purpose default.
const INSTANCE_SELECTING_KEYS: &[&str] = &[
    labels::INSTANCE_TYPE,
    labels::INSTANCE_FAMILY,
    labels::INSTANCE_CATEGORY,
    labels::INSTANCE_GENERATION,
];
/// The general-purpose default: current-generation compute, general and memory types.
const DEFAULT_INSTANCE_CATEGORIES: &[&str] = &["c", "m", "r"];
const DEFAULT_MIN_GENERATION_EXCLUSIVE: &str = "2";

/// Karpenter's defaults for what a provisioner leaves open, as its defaulting webhook fills them
/// in: on-demand capacity, amd64, and general-purpose types (categories c, m and r, generation
/// above 2). A key counts as set when a requirement or a label names it.
fn with_defaults(
    mut requirements: Vec<NodeSelectorRequirement>,
    node_labels: &BTreeMap<String, String>,
) -> Vec<NodeSelectorRequirement> {
    let named: Vec<String> = requirements
        .iter()
        .map(|r| labels::normalize_key(&r.key).to_string())
        .chain(
            node_labels
                .keys()
                .map(|k| labels::normalize_key(k).to_string()),
        )
        .collect();
    let is_named = |key: &str| named.iter().any(|n| n == key);
    if !is_named(labels::CAPACITY_TYPE) {
        requirements.push(NodeSelectorRequirement::new(
            labels::CAPACITY_TYPE,
            Operator::In,
            [labels::CAPACITY_TYPE_ON_DEMAND],
        ));
    }
    if !is_named(labels::ARCH) {
        requirements.push(NodeSelectorRequirement::new(
            labels::ARCH,
            Operator::In,
            [labels::ARCH_AMD64],
        ));
    }
    if !INSTANCE_SELECTING_KEYS.iter().any(|key| is_named(key)) {
        requirements.push(NodeSelectorRequirement::new(
            labels::INSTANCE_CATEGORY,
            Operator::In,
            DEFAULT_INSTANCE_CATEGORIES.iter().copied(),
        ));
        requirements.push(NodeSelectorRequirement::new(
            labels::INSTANCE_GENERATION,
            Operator::Gt,
            [DEFAULT_MIN_GENERATION_EXCLUSIVE],
        ));
    }
    requirements
}

/// The allocatable-relevant part of a kubelet configuration.
pub fn kubelet(config: &KubeletConfiguration) -> Result<KubeletConfig, String> {
    let reserved = |list: &BTreeMap<_, _>| (!list.is_empty()).then(|| quantities(list)).transpose();
    let threshold = |signals: &BTreeMap<String, String>, signal: &str| {
        signals
            .get(signal)
            .map(|text| eviction_threshold(text))
            .transpose()
    };
    Ok(KubeletConfig {
        max_pods: config.max_pods.map(i64::from),
        pods_per_core: config.pods_per_core.map(i64::from),
        system_reserved: reserved(&config.system_reserved)?,
        kube_reserved: reserved(&config.kube_reserved)?,
        eviction_hard_memory: threshold(&config.eviction_hard, MEMORY_SIGNAL)?,
        eviction_hard_nodefs: threshold(&config.eviction_hard, NODEFS_SIGNAL)?,
        eviction_soft_memory: threshold(&config.eviction_soft, MEMORY_SIGNAL)?,
        eviction_soft_nodefs: threshold(&config.eviction_soft, NODEFS_SIGNAL)?,
    })
}

/// `"10%"` or a quantity such as `"100Mi"`.
fn eviction_threshold(text: &str) -> Result<Threshold, String> {
    if let Some(percent) = text.strip_suffix('%') {
        return percent
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|p| (0.0..=100.0).contains(p))
            .map(Threshold::Percent)
            .ok_or_else(|| format!("eviction threshold {text:?} is not a percentage"));
    }
    parse_quantity(text)
        .map(|q| Threshold::Quantity(q.units()))
        .map_err(|e| format!("eviction threshold {text:?}: {e}"))
}
