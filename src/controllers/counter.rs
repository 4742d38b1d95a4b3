//! A provisioner's status as pure functions: `status.resources` (the capacity of everything it
//! launched) and the `LimitsReached` condition that tells users why no more nodes come.
//! The counter loop computes usage from the cache (`ClusterState::provisioner_usage`), calls
//! [`next_status`] and writes the status only when it changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use nodewright_scheduling::provisioner::Provisioner as CoreProvisioner;
use nodewright_scheduling::resources::{Resources, format_amount};

use crate::apis::ProvisionerStatus;
use crate::apis::common::{CONDITION_FALSE, CONDITION_TRUE, Condition};
use crate::controllers::resource_list;

pub mod run;

/// Condition type on a provisioner whose usage reached a limit.
pub const LIMITS_REACHED: &str = "LimitsReached";
/// Reason of a True `LimitsReached`; also the reason of the Event on the provisioner.
pub const REASON_LIMITS_REACHED: &str = "LimitsReached";
pub const REASON_WITHIN_LIMITS: &str = "WithinLimits";

/// Each limited resource whose usage reached its limit: `(resource, used, limit)`.
pub fn reached_limits<'a>(
    limits: &'a std::collections::BTreeMap<String, i64>,
    usage: &Resources,
) -> Vec<(&'a str, i64, i64)> {
    limits
        .iter()
        .map(|(resource, limit)| (resource.as_str(), usage.get(resource), *limit))
        .filter(|(_, used, limit)| used >= limit)
        .collect()
}

/// The `LimitsReached` condition for this usage. The transition time is kept from `previous`
/// while the status stays the same, as Kubernetes conditions do.
pub fn limits_condition(
    provisioner: &CoreProvisioner,
    usage: &Resources,
    previous: Option<&Condition>,
    now: Time,
) -> Condition {
    let reached = reached_limits(&provisioner.limits, usage);
    let (status, reason, message) = if reached.is_empty() {
        (
            CONDITION_FALSE,
            REASON_WITHIN_LIMITS,
            "usage is below every limit".to_string(),
        )
    } else {
        let parts: Vec<String> = reached
            .iter()
            .map(|(resource, used, limit)| {
                format!(
                    "{resource} {} of {}",
                    format_amount(resource, *used),
                    format_amount(resource, *limit)
                )
            })
            .collect();
        (
            CONDITION_TRUE,
            REASON_LIMITS_REACHED,
            format!(
                "provisioner {} reached its limits ({}): no new nodes until usage falls or limits rise",
                provisioner.name,
                parts.join(", ")
            ),
        )
    };
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone().or(Some(now)),
        _ => Some(now),
    };
    Condition {
        type_: LIMITS_REACHED.to_string(),
        status: status.to_string(),
        severity: None,
        last_transition_time,
        reason: Some(reason.to_string()),
        message: Some(message),
    }
}

/// The status a provisioner should have: `resources` = `usage` as a resource list, the
/// `LimitsReached` condition (only when it has limits), other conditions and the scale time
/// kept. Compare with the current status to decide whether to write.
pub fn next_status(
    current: Option<&ProvisionerStatus>,
    provisioner: &CoreProvisioner,
    usage: &Resources,
    now: Time,
) -> ProvisionerStatus {
    let mut status = current.cloned().unwrap_or_default();
    status.resources = resource_list(usage);
    let previous = status
        .conditions
        .iter()
        .position(|c| c.type_ == LIMITS_REACHED);
    if provisioner.limits.is_empty() {
        if let Some(index) = previous {
            status.conditions.remove(index);
        }
        return status;
    }
    let condition = limits_condition(
        provisioner,
        usage,
        previous.map(|i| &status.conditions[i]),
        now,
    );
    match previous {
        Some(index) => status.conditions[index] = condition,
        None => status.conditions.push(condition),
    }
    status
}

/// Whether the condition just turned True (then an Event goes on the provisioner).
pub fn limits_newly_reached(before: Option<&ProvisionerStatus>, after: &ProvisionerStatus) -> bool {
    let reached = |status: Option<&ProvisionerStatus>| {
        status
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == LIMITS_REACHED))
            .is_some_and(Condition::is_true)
    };
    !reached(before) && reached(Some(after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid time"))
    }

    fn provisioner(cpu_limit_millis: Option<i64>) -> CoreProvisioner {
        CoreProvisioner {
            name: "default".into(),
            limits: cpu_limit_millis
                .map(|l| [("cpu".to_string(), l)].into())
                .unwrap_or_default(),
            ..CoreProvisioner::default()
        }
    }

    #[test]
    fn status_resources_sum_in_kubernetes_quantities() {
        let usage = Resources::cpu_memory(12_500, 48 << 30).with("pods", 174);
        let status = next_status(None, &provisioner(None), &usage, at(0));
        assert_eq!(status.resources["cpu"].0, "12500m");
        assert_eq!(status.resources["memory"].0, "48Gi");
        assert_eq!(status.resources["pods"].0, "174");
        assert!(status.conditions.is_empty(), "no limits, no condition");
    }

    #[test]
    fn reaching_a_limit_sets_the_condition_with_a_message_and_one_event() {
        let prov = provisioner(Some(16_000));
        let below = next_status(None, &prov, &Resources::cpu_memory(8_000, 0), at(10));
        let condition = &below.conditions[0];
        assert_eq!(condition.type_, LIMITS_REACHED);
        assert_eq!(condition.status, CONDITION_FALSE);
        assert!(!limits_newly_reached(None, &below));

        let full = next_status(
            Some(&below),
            &prov,
            &Resources::cpu_memory(16_000, 0),
            at(20),
        );
        let condition = &full.conditions[0];
        assert_eq!(condition.status, CONDITION_TRUE);
        assert_eq!(condition.last_transition_time, Some(at(20)));
        let message = condition.message.clone().unwrap_or_default();
        assert!(message.contains("cpu 16 of 16"), "{message}");
        assert!(limits_newly_reached(Some(&below), &full));

        let still = next_status(
            Some(&full),
            &prov,
            &Resources::cpu_memory(20_000, 0),
            at(30),
        );
        assert_eq!(
            still.conditions[0].last_transition_time,
            Some(at(20)),
            "unchanged status keeps its transition time"
        );
        assert!(
            !limits_newly_reached(Some(&full), &still),
            "one event per crossing"
        );
        assert_eq!(still.conditions.len(), 1);
    }

    #[test]
    fn other_conditions_survive_and_removed_limits_drop_the_condition() {
        let prov = provisioner(Some(1_000));
        let mut current = next_status(None, &prov, &Resources::cpu_memory(1_000, 0), at(0));
        current.conditions.push(Condition {
            type_: "Ready".into(),
            status: CONDITION_TRUE.into(),
            ..Condition::default()
        });
        let unlimited = next_status(
            Some(&current),
            &provisioner(None),
            &Resources::default(),
            at(5),
        );
        let types: Vec<&str> = unlimited
            .conditions
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, ["Ready"]);
    }
}
