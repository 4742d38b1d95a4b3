//! Settings given by name, as a scenario's `settings:` block gives them: Karpenter's environment
//! variable names (`FEATURE_GATES`, `BATCH_IDLE_DURATION`, …) or its karpenter-global-settings
//! keys (`batchIdleDuration`, `featureGates.driftEnabled`, …), whichever a user has at hand.

use std::collections::{BTreeMap, BTreeSet};

use clap::Args as _;

use super::{Settings, global};

/// What named settings made of the controller's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub settings: Settings,
    /// Fields set as by the environment; a ConfigMap applied later does not change them.
    pub explicit: BTreeSet<String>,
    /// One line per ConfigMap key that changed nothing (unknown, or without effect here).
    pub warnings: Vec<String>,
}

/// `named` over the process environment for `cluster_name`: a variable's name sets its field as
/// the environment would (over the process's own value), any other name is read as a
/// karpenter-global-settings key. A bad value is an error naming it.
pub fn resolve(named: &BTreeMap<String, String>, cluster_name: &str) -> Result<Resolved, String> {
    let flags_by_variable: BTreeMap<String, String> =
        Settings::augment_args(clap::Command::new("settings"))
            .get_arguments()
            .filter_map(|arg| {
                let variable = arg.get_env()?.to_str()?.to_string();
                Some((variable, arg.get_long()?.to_string()))
            })
            .collect();
    let mut flags = Vec::new();
    let mut configmap = BTreeMap::new();
    for (name, value) in named {
        match flags_by_variable.get(name) {
            Some(flag) => flags.push(format!("--{flag}={value}")),
            None => {
                configmap.insert(name.clone(), value.clone());
            }
        }
    }
    if !named.contains_key("CLUSTER_NAME") {
        flags.push(format!("--cluster-name={cluster_name}"));
    }
    let (settings, explicit) = Settings::from_flags_and_environment(flags)?;
    let applied = global::apply(&settings, &explicit, &configmap)?;
    Ok(Resolved {
        settings: applied.settings,
        explicit,
        warnings: applied.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn variable_names_and_configmap_keys_both_set_their_fields() {
        let resolved = resolve(
            &named(&[
                ("FEATURE_GATES", "SpotToSpotConsolidation=true"),
                ("batchIdleDuration", "3s"),
                ("featureGates.driftEnabled", "true"),
                ("aws.enablePodENI", "true"),
            ]),
            "sim",
        )
        .expect("valid settings");
        // FEATURE_GATES names every gate: drift stays off, as in a cluster with both set.
        assert!(resolved.settings.feature_gates.spot_to_spot_consolidation);
        assert!(!resolved.settings.feature_gates.drift);
        assert_eq!(
            resolved.settings.batch_idle_duration,
            std::time::Duration::from_secs(3)
        );
        assert_eq!(resolved.settings.cluster_name, "sim");
        assert!(resolved.explicit.contains("feature_gates"));
        assert_eq!(resolved.warnings.len(), 2, "{:?}", resolved.warnings);
    }

    #[test]
    fn a_bad_value_is_an_error_naming_it() {
        let error =
            resolve(&named(&[("BATCH_IDLE_DURATION", "soon")]), "sim").expect_err("not a duration");
        assert!(error.contains("soon"), "{error}");
        let error =
            resolve(&named(&[("batchMaxDuration", "-1")]), "sim").expect_err("not a duration");
        assert!(error.contains("batchMaxDuration"), "{error}");
        let error = resolve(&named(&[("FEATURE_GATES", "Teleport=true")]), "sim")
            .expect_err("no such gate");
        assert!(error.contains("Teleport"), "{error}");
    }
}
