//! Karpenter v0.27–v0.31's `karpenter-global-settings` ConfigMap: its keys over the defaults,
//! under what the flags and environment set explicitly (those win, as the more specific).
//!
//! A key nodewright has no use for is named in a warning, never an error, so a ConfigMap
//! written for Karpenter loads as it is.

use std::collections::{BTreeMap, BTreeSet};

use super::{Settings, parse_duration};

/// The ConfigMap's name in Karpenter v0.27–v0.31 (and nodewright's default).
pub const DEFAULT_CONFIGMAP: &str = "karpenter-global-settings";

/// Keys Karpenter read that change nothing here, with why.
const WITHOUT_EFFECT: [(&str, &str); 4] = [
    (
        "aws.enablePodENI",
        "security groups for pods (pod-eni resources) are not modelled",
    ),
    (
        "aws.enableENILimitedPodDensity",
        "pod density follows the instance type's ENI limit, as when it is true",
    ),
    (
        "aws.reservedENIs",
        "pod density does not hold ENIs back for other uses",
    ),
    (
        "aws.assumeRoleARN",
        "credentials come from the SDK's default chain (IRSA)",
    ),
];

/// What the ConfigMap's `data` made of `base`: the settings and one warning per key that
/// changed nothing (unknown, or without effect here, or overridden by the environment).
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

/// `data` over `base`, except for the fields in `explicit` (ids of [`Settings`] fields the
/// flags or environment gave). A bad value is an error naming the key; so are settings that
/// do not validate together.
pub fn apply(
    base: &Settings,
    explicit: &BTreeSet<String>,
    data: &BTreeMap<String, String>,
) -> Result<Applied, String> {
    let mut settings = base.clone();
    let mut warnings = Vec::new();
    for (key, value) in data {
        let value = value.trim();
        let Some(field) = Field::of(key) else {
            match WITHOUT_EFFECT.iter().find(|(name, _)| name == key) {
                Some((_, why)) => warnings.push(format!("{key} has no effect: {why}")),
                None => warnings.push(format!("{key} is not a setting nodewright knows; ignored")),
            }
            continue;
        };
        if explicit.contains(field.id()) {
            warnings.push(format!(
                "{key} is ignored: the flag or environment variable for it is set"
            ));
            continue;
        }
        let bad = |why: String| format!("{DEFAULT_CONFIGMAP} key {key}: {why}");
        match field {
            Field::BatchMaxDuration => {
                settings.batch_max_duration = parse_duration(value).map_err(bad)?
            }
            Field::BatchIdleDuration => {
                settings.batch_idle_duration = parse_duration(value).map_err(bad)?
            }
            Field::ClusterName => settings.cluster_name = value.to_string(),
            Field::ClusterEndpoint => settings.cluster_endpoint = non_empty(value),
            Field::DefaultInstanceProfile => settings.default_instance_profile = non_empty(value),
            Field::InterruptionQueue => settings.interruption_queue = non_empty(value),
            Field::VmMemoryOverheadPercent => {
                settings.vm_memory_overhead_percent = value
                    .parse()
                    .map_err(|_| bad(format!("{value:?} is not a number")))?
            }
            Field::IsolatedVpc => settings.isolated_vpc = boolean(value).map_err(bad)?,
            Field::Tags => settings.tags = tags(value).map_err(bad)?,
            Field::Drift => settings.feature_gates.drift = boolean(value).map_err(bad)?,
        }
    }
    settings
        .validate()
        .map_err(|error| format!("{DEFAULT_CONFIGMAP}: {error}"))?;
    Ok(Applied { settings, warnings })
}

/// The [`Settings`] field a ConfigMap key sets.
#[derive(Debug, Clone, Copy)]
enum Field {
    BatchMaxDuration,
    BatchIdleDuration,
    ClusterName,
    ClusterEndpoint,
    DefaultInstanceProfile,
    InterruptionQueue,
    VmMemoryOverheadPercent,
    IsolatedVpc,
    Tags,
    Drift,
}

impl Field {
    fn of(key: &str) -> Option<Field> {
        Some(match key {
            "batchMaxDuration" => Field::BatchMaxDuration,
            "batchIdleDuration" => Field::BatchIdleDuration,
            "aws.clusterName" => Field::ClusterName,
            "aws.clusterEndpoint" => Field::ClusterEndpoint,
            "aws.defaultInstanceProfile" => Field::DefaultInstanceProfile,
            "aws.interruptionQueueName" => Field::InterruptionQueue,
            "aws.vmMemoryOverheadPercent" => Field::VmMemoryOverheadPercent,
            "aws.isolatedVPC" => Field::IsolatedVpc,
            "aws.tags" => Field::Tags,
            "featureGates.driftEnabled" => Field::Drift,
            _ => return None,
        })
    }

    /// The clap id of the flag or environment variable that sets the same field.
    fn id(self) -> &'static str {
        match self {
            Field::BatchMaxDuration => "batch_max_duration",
            Field::BatchIdleDuration => "batch_idle_duration",
            Field::ClusterName => "cluster_name",
            Field::ClusterEndpoint => "cluster_endpoint",
            Field::DefaultInstanceProfile => "default_instance_profile",
            Field::InterruptionQueue => "interruption_queue",
            Field::VmMemoryOverheadPercent => "vm_memory_overhead_percent",
            Field::IsolatedVpc => "isolated_vpc",
            Field::Tags => "tags",
            // FEATURE_GATES sets every gate at once: when it is given, it decides drift.
            Field::Drift => "feature_gates",
        }
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// A JSON object of strings (`{"team": "ml"}`), as Karpenter's chart renders `aws.tags`.
fn tags(value: &str) -> Result<BTreeMap<String, String>, String> {
    if value.is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_str(value)
        .map_err(|error| format!("not a JSON object of strings ({error}): {value:?}"))
}

fn boolean(value: &str) -> Result<bool, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} is neither true nor false"))
}

/// Puts back into `new` the fields that only apply at a restart (the cloud provider and the
/// interruption queue are built once, with them) and names those that `new` would change.
pub fn hold_back_restart_only(running: &Settings, new: &mut Settings) -> Vec<&'static str> {
    let mut held = Vec::new();
    if running.cluster_name != new.cluster_name {
        new.cluster_name.clone_from(&running.cluster_name);
        held.push("aws.clusterName");
    }
    if running.cluster_endpoint != new.cluster_endpoint {
        new.cluster_endpoint.clone_from(&running.cluster_endpoint);
        held.push("aws.clusterEndpoint");
    }
    if running.interruption_queue != new.interruption_queue {
        new.interruption_queue
            .clone_from(&running.interruption_queue);
        held.push("aws.interruptionQueueName");
    }
    if running.isolated_vpc != new.isolated_vpc {
        new.isolated_vpc = running.isolated_vpc;
        held.push("aws.isolatedVPC");
    }
    held
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The ConfigMap Karpenter v0.31's chart renders, with values a user would set.
    fn karpenter_v031() -> BTreeMap<String, String> {
        data(&[
            ("batchMaxDuration", "20s"),
            ("batchIdleDuration", "2s"),
            ("aws.clusterName", "my-cluster"),
            (
                "aws.clusterEndpoint",
                "https://ABC.gr7.us-east-1.eks.amazonaws.com",
            ),
            (
                "aws.defaultInstanceProfile",
                "KarpenterNodeInstanceProfile-my-cluster",
            ),
            ("aws.enableENILimitedPodDensity", "true"),
            ("aws.enablePodENI", "false"),
            ("aws.interruptionQueueName", "my-cluster"),
            ("aws.isolatedVPC", "false"),
            ("aws.reservedENIs", "0"),
            ("aws.vmMemoryOverheadPercent", "0.075"),
            ("featureGates.driftEnabled", "true"),
            ("aws.tags", r#"{"team": "ml", "cost-center": "42"}"#),
        ])
    }

    #[test]
    fn karpenter_v031s_configmap_sets_what_its_keys_name() {
        let base = Settings::for_cluster("");
        let applied = apply(&base, &BTreeSet::new(), &karpenter_v031()).expect("applies");
        let s = &applied.settings;
        assert_eq!(s.cluster_name, "my-cluster");
        assert_eq!(
            s.cluster_endpoint.as_deref(),
            Some("https://ABC.gr7.us-east-1.eks.amazonaws.com")
        );
        assert_eq!(
            s.default_instance_profile.as_deref(),
            Some("KarpenterNodeInstanceProfile-my-cluster")
        );
        assert_eq!(s.interruption_queue.as_deref(), Some("my-cluster"));
        assert_eq!(s.batch_max_duration, Duration::from_secs(20));
        assert_eq!(s.batch_idle_duration, Duration::from_secs(2));
        assert!(s.feature_gates.drift);
        assert!(!s.isolated_vpc);
        assert_eq!(s.tags.get("team").map(String::as_str), Some("ml"));
        assert_eq!(s.tags.len(), 2);
        // The three ENI keys load and say they change nothing.
        assert_eq!(applied.warnings.len(), 3, "{:?}", applied.warnings);
        assert!(applied.warnings.iter().all(|w| w.contains("has no effect")));
    }

    #[test]
    fn what_the_environment_sets_wins_over_the_configmap() {
        let mut base = Settings::for_cluster("from-env");
        base.batch_idle_duration = Duration::from_millis(500);
        let explicit: BTreeSet<String> = ["cluster_name", "batch_idle_duration"]
            .map(String::from)
            .into();
        let applied = apply(&base, &explicit, &karpenter_v031()).expect("applies");
        assert_eq!(applied.settings.cluster_name, "from-env");
        assert_eq!(
            applied.settings.batch_idle_duration,
            Duration::from_millis(500)
        );
        assert_eq!(applied.settings.batch_max_duration, Duration::from_secs(20));
        assert!(
            applied
                .warnings
                .iter()
                .any(|w| w.starts_with("aws.clusterName is ignored")),
            "{:?}",
            applied.warnings
        );
    }

    #[test]
    fn a_bad_value_is_one_error_naming_its_key() {
        let base = Settings::for_cluster("c");
        let error = apply(
            &base,
            &BTreeSet::new(),
            &data(&[("batchMaxDuration", "soon")]),
        )
        .expect_err("not a duration");
        assert!(error.contains("batchMaxDuration"), "{error}");
        let error = apply(
            &base,
            &BTreeSet::new(),
            &data(&[("featureGates.driftEnabled", "yes")]),
        )
        .expect_err("not a boolean");
        assert!(error.contains("featureGates.driftEnabled"), "{error}");
        let error = apply(&base, &BTreeSet::new(), &data(&[("aws.tags", "team=ml")]))
            .expect_err("not JSON");
        assert!(error.contains("aws.tags"), "{error}");
        // Each value parses, yet together they do not hold.
        let error = apply(
            &base,
            &BTreeSet::new(),
            &data(&[("batchIdleDuration", "30s"), ("batchMaxDuration", "10s")]),
        )
        .expect_err("idle longer than max");
        assert!(error.contains(DEFAULT_CONFIGMAP), "{error}");
    }

    #[test]
    fn an_unknown_key_is_a_warning_not_an_error() {
        let base = Settings::for_cluster("c");
        let applied =
            apply(&base, &BTreeSet::new(), &data(&[("aws.somethingNew", "1")])).expect("loads");
        assert_eq!(applied.settings, base);
        assert_eq!(applied.warnings.len(), 1);
    }

    #[test]
    fn a_changed_cluster_or_queue_waits_for_a_restart_and_batch_windows_do_not() {
        let running = Settings::for_cluster("a");
        let mut new = running.clone();
        new.batch_idle_duration = Duration::from_secs(3);
        assert!(hold_back_restart_only(&running, &mut new).is_empty());
        new.cluster_name = "b".into();
        new.interruption_queue = Some("q".into());
        assert_eq!(
            hold_back_restart_only(&running, &mut new),
            ["aws.clusterName", "aws.interruptionQueueName"]
        );
        assert_eq!(new.cluster_name, "a");
        assert_eq!(new.interruption_queue, None);
        assert_eq!(new.batch_idle_duration, Duration::from_secs(3));
    }
}
