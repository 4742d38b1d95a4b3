//! Checks for the building blocks several kinds share: labels, annotations, requirements,
//! taints, kubelet settings, quantity maps and node template references.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use nodewright_scheduling::labels;

use super::syntax::{
    duration_problem, eviction_threshold_problem, label_value_problem, parse_quantity,
    qualified_name_problem,
};
use super::{FieldPath, Problem, Report};
use crate::apis::cel;
use crate::apis::common::ProviderRef;
use crate::apis::kubelet::KubeletConfiguration;
use crate::apis::requirement::{NodeSelectorRequirement, Operator};
use crate::apis::schema::{MAX_LABELS, MAX_REQUIREMENTS, TAINT_EFFECTS};

/// Node labels a provisioner sets: syntax, restricted domains, the provisioner-name label.
pub(super) fn node_labels(
    report: &mut Report,
    path: &FieldPath,
    node_labels: &BTreeMap<String, String>,
) {
    if node_labels.len() > MAX_LABELS {
        report.add(
            path.clone(),
            Problem::TooMany {
                len: node_labels.len(),
                max: MAX_LABELS,
            },
        );
    }
    for (key, value) in node_labels {
        let at = path.key(key);
        label_key(report, &at, key, true);
        if let Some(reason) = label_value_problem(value) {
            report.add(
                at,
                Problem::InvalidValue {
                    value: value.clone(),
                    reason,
                },
            );
        }
    }
}

/// A label key a user gives: well formed, not in a restricted domain, and — on a provisioner —
/// not the provisioner-name label, which nodewright sets itself.
fn label_key(report: &mut Report, at: &FieldPath, key: &str, forbid_provisioner_name: bool) {
    if let Some(reason) = qualified_name_problem(key) {
        report.add(
            at.clone(),
            Problem::InvalidKey {
                key: key.to_owned(),
                reason,
            },
        );
    }
    if forbid_provisioner_name && labels::normalize_key(key) == labels::PROVISIONER_NAME {
        report.add(
            at.clone(),
            Problem::Rule(cel::PROVISIONER_NAME_RESTRICTED_MESSAGE),
        );
    } else if let Some(reason) = labels::restricted_label_reason(key) {
        report.add(
            at.clone(),
            Problem::RestrictedLabel {
                key: key.to_owned(),
                reason,
            },
        );
    }
}

/// Annotation keys are qualified names.
pub(super) fn annotations(
    report: &mut Report,
    path: &FieldPath,
    annotations: &BTreeMap<String, String>,
) {
    for key in annotations.keys() {
        if let Some(reason) = qualified_name_problem(key) {
            report.add(
                path.key(key),
                Problem::InvalidKey {
                    key: key.clone(),
                    reason,
                },
            );
        }
    }
}

pub(super) fn requirements(
    report: &mut Report,
    path: &FieldPath,
    requirements: &[NodeSelectorRequirement],
    forbid_provisioner_name: bool,
) {
    if requirements.len() > MAX_REQUIREMENTS {
        report.add(
            path.clone(),
            Problem::TooMany {
                len: requirements.len(),
                max: MAX_REQUIREMENTS,
            },
        );
    }
    for (index, requirement) in requirements.iter().enumerate() {
        self::requirement(
            report,
            &path.index(index),
            requirement,
            forbid_provisioner_name,
        );
    }
}

fn requirement(
    report: &mut Report,
    path: &FieldPath,
    requirement: &NodeSelectorRequirement,
    forbid_provisioner_name: bool,
) {
    label_key(
        report,
        &path.child("key"),
        &requirement.key,
        forbid_provisioner_name,
    );
    let values = &requirement.values;
    let values_path = path.child("values");
    match &requirement.operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            report.add(
                values_path.clone(),
                Problem::Rule(cel::REQUIREMENT_VALUES_REQUIRED.message),
            );
        }
        Operator::Gt | Operator::Lt
            if values.len() != 1
                || !values[0].chars().all(|c| c.is_ascii_digit())
                || values[0].is_empty() =>
        {
            report.add(
                values_path.clone(),
                Problem::Rule(cel::REQUIREMENT_SINGLE_INTEGER.message),
            );
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            report.add(
                values_path.clone(),
                Problem::Rule(cel::REQUIREMENT_NO_VALUES.message),
            );
        }
        Operator::Other(operator) => report.add(
            path.child("operator"),
            Problem::Unsupported {
                value: operator.clone(),
                supported: Operator::KNOWN,
            },
        ),
        _ => {}
    }
    for (index, value) in values.iter().enumerate() {
        if let Some(reason) = label_value_problem(value) {
            report.add(
                values_path.index(index),
                Problem::InvalidValue {
                    value: value.clone(),
                    reason,
                },
            );
        }
    }
}

/// `taints` and `startupTaints` of one object: syntax of each, and no key/effect pair twice.
pub(super) fn taint_lists(
    report: &mut Report,
    path: &FieldPath,
    taints: &[Taint],
    startup_taints: &[Taint],
) {
    let mut seen = BTreeSet::new();
    for (field, list) in [("taints", taints), ("startupTaints", startup_taints)] {
        for (index, taint) in list.iter().enumerate() {
            let at = path.child(field).index(index);
            self::taint(report, &at, taint);
            if !seen.insert((taint.key.as_str(), taint.effect.as_str())) {
                report.add(
                    at,
                    Problem::DuplicateTaint {
                        key: taint.key.clone(),
                        effect: taint.effect.clone(),
                    },
                );
            }
        }
    }
}

fn taint(report: &mut Report, path: &FieldPath, taint: &Taint) {
    if let Some(reason) = qualified_name_problem(&taint.key) {
        report.add(
            path.child("key"),
            Problem::InvalidKey {
                key: taint.key.clone(),
                reason,
            },
        );
    }
    if let Some(value) = &taint.value
        && let Some(reason) = label_value_problem(value)
    {
        report.add(
            path.child("value"),
            Problem::InvalidValue {
                value: value.clone(),
                reason,
            },
        );
    }
    if !TAINT_EFFECTS.contains(&taint.effect.as_str()) {
        report.add(
            path.child("effect"),
            Problem::Unsupported {
                value: taint.effect.clone(),
                supported: TAINT_EFFECTS,
            },
        );
    }
}

/// Quantities that may not be negative (limits, requests, reservations).
pub(super) fn quantities(
    report: &mut Report,
    path: &FieldPath,
    quantities: &BTreeMap<String, Quantity>,
) {
    for (name, quantity) in quantities {
        non_negative_quantity(report, &path.key(name), quantity);
    }
}

/// The value of a quantity that must parse and not be negative.
pub(super) fn non_negative_quantity(
    report: &mut Report,
    at: &FieldPath,
    quantity: &Quantity,
) -> Option<f64> {
    match parse_quantity(&quantity.0) {
        None => report.add(
            at.clone(),
            Problem::InvalidQuantity {
                value: quantity.0.clone(),
            },
        ),
        Some(value) if value < 0.0 || quantity.0.starts_with('-') => {
            report.add(
                at.clone(),
                Problem::Negative {
                    value: quantity.0.clone(),
                },
            );
        }
        Some(value) => return Some(value),
    }
    None
}

pub(super) fn non_negative(report: &mut Report, at: FieldPath, value: Option<i64>) {
    if let Some(value) = value.filter(|value| *value < 0) {
        report.add(
            at,
            Problem::Negative {
                value: value.to_string(),
            },
        );
    }
}

pub(super) fn in_range(report: &mut Report, at: FieldPath, value: Option<i64>, min: i64, max: i64) {
    if let Some(value) = value.filter(|value| !(min..=max).contains(value)) {
        report.add(at, Problem::OutOfRange { value, min, max });
    }
}

pub(super) fn provider_ref(report: &mut Report, path: &FieldPath, reference: &ProviderRef) {
    if reference.name.is_empty() {
        report.add(path.child("name"), Problem::Required);
    }
}

pub(super) fn kubelet(report: &mut Report, path: &FieldPath, kubelet: &KubeletConfiguration) {
    for (index, address) in kubelet.cluster_dns.iter().enumerate() {
        if address.parse::<IpAddr>().is_err() {
            report.add(
                path.child("clusterDNS").index(index),
                Problem::InvalidValue {
                    value: address.clone(),
                    reason: "must be an IP address".to_owned(),
                },
            );
        }
    }
    non_negative(
        report,
        path.child("maxPods"),
        kubelet.max_pods.map(i64::from),
    );
    non_negative(
        report,
        path.child("podsPerCore"),
        kubelet.pods_per_core.map(i64::from),
    );
    let high = kubelet.image_gc_high_threshold_percent;
    let low = kubelet.image_gc_low_threshold_percent;
    in_range(
        report,
        path.child("imageGCHighThresholdPercent"),
        high.map(i64::from),
        0,
        100,
    );
    in_range(
        report,
        path.child("imageGCLowThresholdPercent"),
        low.map(i64::from),
        0,
        100,
    );
    if let (Some(high), Some(low)) = (high, low)
        && high <= low
    {
        report.add(
            path.child("imageGCHighThresholdPercent"),
            Problem::Rule(cel::IMAGE_GC_THRESHOLDS.message),
        );
    }
    for (field, reserved) in [
        ("systemReserved", &kubelet.system_reserved),
        ("kubeReserved", &kubelet.kube_reserved),
    ] {
        let path = path.child(field);
        for name in reserved
            .keys()
            .filter(|name| !cel::RESERVABLE_RESOURCES.contains(&name.as_str()))
        {
            report.add(
                path.key(name),
                Problem::Unsupported {
                    value: name.clone(),
                    supported: cel::RESERVABLE_RESOURCES,
                },
            );
        }
        quantities(report, &path, reserved);
    }
    for (field, thresholds) in [
        ("evictionHard", &kubelet.eviction_hard),
        ("evictionSoft", &kubelet.eviction_soft),
    ] {
        let path = path.child(field);
        eviction_signals(report, &path, thresholds);
        for (signal, threshold) in thresholds {
            if let Some(reason) = eviction_threshold_problem(threshold) {
                report.add(
                    path.key(signal),
                    Problem::InvalidValue {
                        value: threshold.clone(),
                        reason,
                    },
                );
            }
        }
    }
    let grace_periods = &kubelet.eviction_soft_grace_period;
    let grace_path = path.child("evictionSoftGracePeriod");
    eviction_signals(report, &grace_path, grace_periods);
    for (signal, period) in grace_periods {
        if let Some(reason) = duration_problem(period) {
            report.add(
                grace_path.key(signal),
                Problem::InvalidValue {
                    value: period.clone(),
                    reason,
                },
            );
        }
        if !kubelet.eviction_soft.contains_key(signal) {
            report.add(
                grace_path.key(signal),
                Problem::Rule(cel::GRACE_PERIOD_NEEDS_EVICTION_SOFT.message),
            );
        }
    }
    for signal in kubelet
        .eviction_soft
        .keys()
        .filter(|signal| !grace_periods.contains_key(*signal))
    {
        report.add(
            path.child("evictionSoft").key(signal),
            Problem::Rule(cel::EVICTION_SOFT_NEEDS_GRACE_PERIOD.message),
        );
    }
}

fn eviction_signals(report: &mut Report, path: &FieldPath, map: &BTreeMap<String, String>) {
    for signal in map
        .keys()
        .filter(|signal| !cel::EVICTION_SIGNALS.contains(&signal.as_str()))
    {
        report.add(
            path.key(signal),
            Problem::Unsupported {
                value: signal.clone(),
                supported: cel::EVICTION_SIGNALS,
            },
        );
    }
}
