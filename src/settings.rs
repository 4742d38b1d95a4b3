//! The controller's settings, from flags and environment variables named like Karpenter's
//! (`CLUSTER_NAME`, `BATCH_IDLE_DURATION`, …), with Karpenter's defaults. The one place a
//! default lives: controllers read these values, never literals of their own.
//!
//! [`Settings`] is a clap [`Args`] struct, so `nodewright controller` can flatten it; call
//! [`Settings::validate`] after parsing to catch what clap cannot (cross-field rules, ranges).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::{ArgAction, Args};
use nodewright_scheduling::SchedulerSettings;
use nodewright_scheduling::allocatable::AllocatableSettings;

use crate::controllers::provisioning::batcher::BatchWindow;

pub mod global;
pub mod named;

/// Everything `nodewright controller` is configured with.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct Settings {
    /// Name of the cluster: instances are tagged `kubernetes.io/cluster/<name>` and found by it.
    /// Required, here or as `aws.clusterName` in the karpenter-global-settings ConfigMap.
    #[arg(long, env = "CLUSTER_NAME", default_value = "")]
    pub cluster_name: String,
    /// API server endpoint that new nodes join (discovered from EKS when unset).
    #[arg(long, env = "CLUSTER_ENDPOINT")]
    pub cluster_endpoint: Option<String>,
    /// AWS region to launch in (the SDK's default chain when unset).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// A batch of pending pods closes this long after the last new pod.
    #[arg(long, env = "BATCH_IDLE_DURATION", default_value = "1s", value_parser = parse_duration)]
    pub batch_idle_duration: Duration,
    /// A batch of pending pods closes at the latest this long after its first pod.
    #[arg(long, env = "BATCH_MAX_DURATION", default_value = "10s", value_parser = parse_duration)]
    pub batch_max_duration: Duration,
    /// Fraction of instance memory lost to the hypervisor and OS.
    #[arg(long, env = "VM_MEMORY_OVERHEAD_PERCENT", default_value_t = AllocatableSettings::default().vm_memory_overhead_percent)]
    pub vm_memory_overhead_percent: f64,
    /// SQS queue with spot interruption and instance state events (interruption handling is off
    /// when unset).
    #[arg(long, env = "INTERRUPTION_QUEUE")]
    pub interruption_queue: Option<String>,
    /// Instance profile for nodes whose AWSNodeTemplate (or provider) names none (Karpenter's
    /// `aws.defaultInstanceProfile`). Without either, such a provisioner launches nothing.
    #[arg(long, env = "AWS_DEFAULT_INSTANCE_PROFILE")]
    pub default_instance_profile: Option<String>,
    /// What an EC2 rebalance recommendation (elevated interruption risk) does: `event` records
    /// an Event and counts it, as Karpenter does; `drain` also holds the spot offering out and
    /// replaces and drains the node before a warning may come.
    #[arg(long, env = "INTERRUPTION_REBALANCE_ACTION", value_enum, default_value_t = RebalanceAction::Event)]
    pub rebalance_action: RebalanceAction,
    /// Port of the Prometheus `/metrics` endpoint.
    #[arg(long, env = "METRICS_PORT", default_value_t = 8080)]
    pub metrics_port: u16,
    /// Port of `/healthz` and `/readyz`.
    #[arg(long, env = "HEALTH_PROBE_PORT", default_value_t = 8081)]
    pub health_probe_port: u16,
    /// Act only while holding the leader Lease (`--leader-elect=false` for a single replica).
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = ArgAction::Set)]
    pub leader_elect: bool,
    /// Feature gates, `Name=bool` separated by commas (`Drift=true`). Drift is off unless
    /// turned on, as in Karpenter v0.27-v0.31.
    #[arg(long, env = "FEATURE_GATES", default_value = "Drift=false")]
    pub feature_gates: FeatureGates,
    /// Consolidation replaces a node only when the replacement saves at least this fraction of
    /// its price.
    #[arg(
        long,
        env = "CONSOLIDATION_MIN_SAVING_FRACTION",
        default_value_t = 0.10
    )]
    pub consolidation_min_saving_fraction: f64,
    /// A launched machine whose node has not registered within this is deleted.
    #[arg(long, env = "MACHINE_REGISTRATION_TTL", default_value = "15m", value_parser = parse_duration)]
    pub registration_ttl: Duration,
    /// A machine not launched within this is deleted and its pods go back to the next batch.
    #[arg(long, env = "MACHINE_LAUNCH_TTL", default_value = "5m", value_parser = parse_duration)]
    pub launch_ttl: Duration,
    /// Bind the pods a new node is for as soon as its instance launches (as early Karpenter
    /// did), so images pull while it boots. Only controller-owned pods without volumes or
    /// preferences are bound; if the node never registers they are deleted to be recreated.
    #[arg(long, env = "BIND_PODS", default_value_t = false, action = ArgAction::Set)]
    pub bind_pods: bool,
    /// No AWS endpoint without a VPC endpoint is called: on-demand prices are the embedded
    /// list prices instead of the Pricing API's (Karpenter's `aws.isolatedVPC`).
    #[arg(long, env = "ISOLATED_VPC", default_value_t = false, action = ArgAction::Set)]
    pub isolated_vpc: bool,
    /// Tags on every instance and launch template, under each node template's own (Karpenter
    /// v0.31's `aws.tags`; only the settings ConfigMap sets them).
    #[arg(skip)]
    pub tags: std::collections::BTreeMap<String, String>,
}

/// What the interruption loop does with an EC2 rebalance recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RebalanceAction {
    /// An Event on the node and the message counted; the node stays (Karpenter's way: most
    /// recommendations are not followed by an interruption, and acting on each churns nodes).
    #[default]
    Event,
    /// As a spot interruption warning: the offering is held out, the node replaced and drained.
    Drain,
}

/// Switches for behaviour that can be turned on or off, with Karpenter's gate names; all off by
/// default, as in Karpenter v0.27-v0.31.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeatureGates {
    /// Replace nodes that no longer match their provisioner or node template.
    pub drift: bool,
    /// Consolidate spot nodes onto cheaper spot nodes (accepted for Karpenter compatibility).
    pub spot_to_spot_consolidation: bool,
}

const GATE_DRIFT: &str = "Drift";
const GATE_SPOT_TO_SPOT: &str = "SpotToSpotConsolidation";

impl FromStr for FeatureGates {
    type Err = String;

    /// `Drift=true,SpotToSpotConsolidation=false`; gates not named keep their defaults.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut gates = FeatureGates::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, value) = entry
                .split_once('=')
                .ok_or_else(|| format!("feature gate {entry:?} is not Name=true|false"))?;
            let value: bool = value
                .trim()
                .parse()
                .map_err(|_| format!("feature gate {name}: {value:?} is neither true nor false"))?;
            match name.trim() {
                GATE_DRIFT => gates.drift = value,
                GATE_SPOT_TO_SPOT => gates.spot_to_spot_consolidation = value,
                other => {
                    return Err(format!(
                        "unknown feature gate {other:?} (known: {GATE_DRIFT}, {GATE_SPOT_TO_SPOT})"
                    ));
                }
            }
        }
        Ok(gates)
    }
}

impl fmt::Display for FeatureGates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{GATE_DRIFT}={},{GATE_SPOT_TO_SPOT}={}",
            self.drift, self.spot_to_spot_consolidation
        )
    }
}

/// One setting that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "CLUSTER_NAME {0:?} is not a cluster name (1 to 100 letters, digits, '-' or '_', starting with a letter or digit)"
    )]
    ClusterName(String),
    #[error(
        "no cluster name: set CLUSTER_NAME, or aws.clusterName in the karpenter-global-settings ConfigMap"
    )]
    MissingClusterName,
    #[error("CLUSTER_ENDPOINT {0:?} is not an http(s) URL with a host")]
    ClusterEndpoint(String),
    #[error("{name} must be more than zero")]
    ZeroDuration { name: &'static str },
    #[error(
        "BATCH_IDLE_DURATION ({idle:?}) must not exceed BATCH_MAX_DURATION ({max:?}): the idle window would never close a batch"
    )]
    IdleLongerThanMax { idle: Duration, max: Duration },
    #[error("{name} must be at least 0 and below 1, got {value}")]
    Fraction { name: &'static str, value: f64 },
    #[error("METRICS_PORT and HEALTH_PROBE_PORT must differ (both are {0})")]
    SamePorts(u16),
    #[error("{name} must not be 0")]
    ZeroPort { name: &'static str },
}

/// Every problem [`Settings::validate`] found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid settings: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidSettings(pub Vec<SettingsError>);

/// [`Settings`] alone on a command line, to read them from the environment.
#[derive(Debug, clap::Parser)]
struct EnvironmentOnly {
    #[command(flatten)]
    settings: Settings,
}

impl Settings {
    /// The settings the controller's environment variables give (`BIND_PODS`, `FEATURE_GATES`,
    /// `BATCH_IDLE_DURATION`, …), for `cluster_name`; a bad value is an error naming it.
    pub fn from_environment(cluster_name: &str) -> Result<Settings, String> {
        Settings::from_environment_explicit(cluster_name).map(|(settings, _)| settings)
    }

    /// [`Settings::from_environment`], with the fields the environment set
    /// (see [`Settings::explicit_fields`]).
    pub fn from_environment_explicit(
        cluster_name: &str,
    ) -> Result<(Settings, std::collections::BTreeSet<String>), String> {
        Settings::from_flags_and_environment(["--cluster-name", cluster_name].map(String::from))
    }

    /// The settings `flags` (`--batch-idle-duration=2s`, …) and, for the rest, the environment
    /// give, with the fields either set.
    pub(crate) fn from_flags_and_environment(
        flags: impl IntoIterator<Item = String>,
    ) -> Result<(Settings, std::collections::BTreeSet<String>), String> {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let arguments = std::iter::once("nodewright".to_string()).chain(flags);
        let matches = EnvironmentOnly::command()
            .try_get_matches_from(arguments)
            .map_err(|error| error.to_string().trim().to_string())?;
        let parsed = EnvironmentOnly::from_arg_matches(&matches)
            .map_err(|error| error.to_string().trim().to_string())?;
        Ok((parsed.settings, Settings::explicit_fields(&matches)))
    }

    /// The defaults for `cluster_name`, as if only `CLUSTER_NAME` were given.
    pub fn for_cluster(cluster_name: impl Into<String>) -> Settings {
        Settings {
            cluster_name: cluster_name.into(),
            cluster_endpoint: None,
            region: None,
            batch_idle_duration: Duration::from_secs(1),
            batch_max_duration: Duration::from_secs(10),
            vm_memory_overhead_percent: AllocatableSettings::default().vm_memory_overhead_percent,
            interruption_queue: None,
            default_instance_profile: None,
            rebalance_action: RebalanceAction::Event,
            metrics_port: 8080,
            health_probe_port: 8081,
            leader_elect: true,
            feature_gates: FeatureGates::default(),
            consolidation_min_saving_fraction: 0.10,
            registration_ttl: Duration::from_secs(15 * 60),
            launch_ttl: Duration::from_secs(5 * 60),
            bind_pods: false,
            isolated_vpc: false,
            tags: Default::default(),
        }
    }

    /// The ids of the fields `matches` took from the command line or the environment, which
    /// the karpenter-global-settings ConfigMap does not override.
    pub fn explicit_fields(matches: &clap::ArgMatches) -> std::collections::BTreeSet<String> {
        use clap::parser::ValueSource;
        Settings::augment_args(clap::Command::new("settings"))
            .get_arguments()
            .map(|arg| arg.get_id().as_str())
            .filter(|id| {
                matches!(
                    matches.value_source(id),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
            })
            .map(str::to_string)
            .collect()
    }

    /// Every rule clap cannot check, reported together.
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        let mut problems = Vec::new();
        if self.cluster_name.is_empty() {
            problems.push(SettingsError::MissingClusterName);
        } else if !is_cluster_name(&self.cluster_name) {
            problems.push(SettingsError::ClusterName(self.cluster_name.clone()));
        }
        if let Some(endpoint) = &self.cluster_endpoint
            && !is_http_url(endpoint)
        {
            problems.push(SettingsError::ClusterEndpoint(endpoint.clone()));
        }
        for (name, value) in [
            ("BATCH_IDLE_DURATION", self.batch_idle_duration),
            ("BATCH_MAX_DURATION", self.batch_max_duration),
            ("MACHINE_REGISTRATION_TTL", self.registration_ttl),
            ("MACHINE_LAUNCH_TTL", self.launch_ttl),
        ] {
            if value.is_zero() {
                problems.push(SettingsError::ZeroDuration { name });
            }
        }
        if self.batch_idle_duration > self.batch_max_duration {
            problems.push(SettingsError::IdleLongerThanMax {
                idle: self.batch_idle_duration,
                max: self.batch_max_duration,
            });
        }
        for (name, value) in [
            (
                "VM_MEMORY_OVERHEAD_PERCENT",
                self.vm_memory_overhead_percent,
            ),
            (
                "CONSOLIDATION_MIN_SAVING_FRACTION",
                self.consolidation_min_saving_fraction,
            ),
        ] {
            if !(0.0..1.0).contains(&value) {
                problems.push(SettingsError::Fraction { name, value });
            }
        }
        for (name, port) in [
            ("METRICS_PORT", self.metrics_port),
            ("HEALTH_PROBE_PORT", self.health_probe_port),
        ] {
            if port == 0 {
                problems.push(SettingsError::ZeroPort { name });
            }
        }
        if self.metrics_port == self.health_probe_port && self.metrics_port != 0 {
            problems.push(SettingsError::SamePorts(self.metrics_port));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidSettings(problems))
        }
    }

    /// The most one cloud provider operation may take, its SDK retries included: half the
    /// launch TTL, so a launch that hangs fails and is retried (or given up) in time.
    pub fn cloud_call_deadline(&self) -> Duration {
        self.launch_ttl / 2
    }

    /// How pending pods are batched.
    pub fn batch_window(&self) -> BatchWindow {
        BatchWindow {
            idle: self.batch_idle_duration,
            max: self.batch_max_duration,
        }
    }

    /// What the allocatable computation needs.
    pub fn allocatable(&self) -> AllocatableSettings {
        AllocatableSettings {
            vm_memory_overhead_percent: self.vm_memory_overhead_percent,
        }
    }

    /// The scheduling core's knobs: the region, the rest at the core's defaults.
    pub fn scheduler(&self) -> SchedulerSettings {
        SchedulerSettings {
            region: self.region.clone(),
            ..SchedulerSettings::default()
        }
    }
}

/// EKS's rule: 1–100 characters of letters, digits, `-` and `_`, starting alphanumeric.
fn is_cluster_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 100
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_http_url(text: &str) -> bool {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    rest.and_then(|r| r.split(['/', ':']).next())
        .is_some_and(|host| !host.is_empty() && !host.contains(char::is_whitespace))
}

/// A Go-style duration: one or more `<number><unit>` with units `ns`, `us` (`µs`), `ms`, `s`,
/// `m`, `h` and decimal numbers allowed (`1s`, `500ms`, `1m30s`, `1.5h`); a bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = |why: &str| format!("invalid duration {text:?}: {why} (e.g. 1s, 500ms, 2m, 1m30s)");
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let mut rest = text;
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("a number needs a unit"))?;
        if number_len == 0 {
            return Err(bad("expected a number"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| bad("malformed number"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(bad(&format!("unknown unit {other:?}"))),
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad("out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_given_is_explicit_and_a_default_is_not() {
        let (settings, explicit) = Settings::from_environment_explicit("c").expect("parses");
        assert_eq!(settings.cluster_name, "c");
        assert!(explicit.contains("cluster_name"), "{explicit:?}");
        // No test sets this variable: its value is clap's default, which the ConfigMap may change.
        assert!(
            !explicit.contains("consolidation_min_saving_fraction"),
            "{explicit:?}"
        );
    }
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        Cli::try_parse_from(std::iter::once("nodewright").chain(args.iter().copied()))
            .map(|cli| cli.settings)
    }

    #[test]
    fn defaults_are_karpenters() {
        let settings = parse(&["--cluster-name", "my-cluster"]).expect("parses");
        assert_eq!(settings, Settings::for_cluster("my-cluster"));
        assert_eq!(settings.batch_idle_duration, Duration::from_secs(1));
        assert_eq!(settings.batch_max_duration, Duration::from_secs(10));
        assert_eq!(settings.metrics_port, 8080);
        assert_eq!(settings.health_probe_port, 8081);
        assert!(settings.leader_elect);
        assert!(
            !settings.feature_gates.drift,
            "off unless turned on, as in v0.27-v0.31"
        );
        assert_eq!(settings.registration_ttl, Duration::from_secs(900));
        assert_eq!(settings.launch_ttl, Duration::from_secs(300));
        assert_eq!(settings.allocatable().vm_memory_overhead_percent, 0.075);
        assert_eq!(settings.validate(), Ok(()));
    }

    #[test]
    fn every_setting_is_read_from_its_karpenter_environment_variable() {
        let command = Cli::command();
        let envs: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        for name in [
            "CLUSTER_NAME",
            "CLUSTER_ENDPOINT",
            "AWS_REGION",
            "BATCH_IDLE_DURATION",
            "BATCH_MAX_DURATION",
            "VM_MEMORY_OVERHEAD_PERCENT",
            "INTERRUPTION_QUEUE",
            "INTERRUPTION_REBALANCE_ACTION",
            "METRICS_PORT",
            "HEALTH_PROBE_PORT",
            "LEADER_ELECT",
            "FEATURE_GATES",
        ] {
            assert!(envs.iter().any(|e| e == name), "{name} is not read");
        }
    }

    #[test]
    fn the_cluster_name_is_required_from_the_environment_or_the_configmap() {
        // Parsing allows none: the settings ConfigMap may still give aws.clusterName.
        let settings = parse(&[]).expect("parses");
        let err = settings.validate().expect_err("no cluster name");
        assert!(err.to_string().contains("CLUSTER_NAME"), "{err}");
        assert!(err.to_string().contains("aws.clusterName"), "{err}");
    }

    #[test]
    fn leader_election_can_be_switched_off_and_durations_read() {
        let settings = parse(&[
            "--cluster-name=c",
            "--leader-elect=false",
            "--batch-idle-duration=500ms",
            "--batch-max-duration=2m",
            "--feature-gates=Drift=true",
        ])
        .expect("parses");
        assert!(!settings.leader_elect);
        assert_eq!(settings.batch_window().idle, Duration::from_millis(500));
        assert_eq!(settings.batch_window().max, Duration::from_secs(120));
        assert!(settings.feature_gates.drift);
    }

    #[test]
    fn durations_follow_go_syntax() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "1x", "1..5s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        let err = parse(&["--cluster-name=c", "--batch-idle-duration=soon"]).expect_err("bad");
        assert!(err.to_string().contains("invalid duration"), "{err}");
    }

    #[test]
    fn unknown_or_malformed_feature_gates_are_refused() {
        assert!("Drift=maybe".parse::<FeatureGates>().is_err());
        assert!("Drift".parse::<FeatureGates>().is_err());
        let err = "Teleport=true"
            .parse::<FeatureGates>()
            .expect_err("unknown");
        assert!(err.contains("Teleport") && err.contains("Drift"), "{err}");
        let gates: FeatureGates = "SpotToSpotConsolidation=true".parse().expect("known");
        assert!(!gates.drift && gates.spot_to_spot_consolidation);
        assert_eq!(gates.to_string().parse::<FeatureGates>(), Ok(gates));
    }

    #[test]
    fn validation_reports_every_problem_with_its_variable_name() {
        let settings = Settings {
            cluster_name: "-bad name".into(),
            cluster_endpoint: Some("ftp://x".into()),
            batch_idle_duration: Duration::from_secs(20),
            vm_memory_overhead_percent: 1.5,
            health_probe_port: 8080,
            launch_ttl: Duration::ZERO,
            ..Settings::for_cluster("x")
        };
        let err = settings.validate().expect_err("invalid");
        assert_eq!(err.0.len(), 6, "{err}");
        let text = err.to_string();
        for needle in [
            "CLUSTER_NAME",
            "CLUSTER_ENDPOINT",
            "BATCH_IDLE_DURATION",
            "VM_MEMORY_OVERHEAD_PERCENT",
            "METRICS_PORT and HEALTH_PROBE_PORT",
            "MACHINE_LAUNCH_TTL",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn endpoints_need_a_scheme_and_host() {
        let with = |endpoint: &str| Settings {
            cluster_endpoint: Some(endpoint.into()),
            ..Settings::for_cluster("c")
        };
        assert!(
            with("https://ABC.gr7.us-east-1.eks.amazonaws.com")
                .validate()
                .is_ok()
        );
        assert!(with("http://127.0.0.1:6443").validate().is_ok());
        assert!(with("https://").validate().is_err());
        assert!(with("abc.eks.amazonaws.com").validate().is_err());
    }
}
