//! `nodewright simulate SCENARIO`: the whole controller against the simulated cluster on
//! virtual time (or a sped-up real-time clock), printing the controller's own log lines stamped with simulated time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::sim::kubelet::KubeletSettings;
use crate::sim::scenario::{
    AwsSimOptions, CloudKind, DEFAULT_SPEED, OutputFormat, Pacing, Scenario, ScenarioError,
    Simulation, SimulationOptions, controller_hook_with, log_layer,
};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The scenario file (see examples/tutorial/scenario.yaml).
    pub scenario: PathBuf,
    /// Where instances are launched: the in-process fake, or the AWS provider against the EC2
    /// at AWS_ENDPOINT_URL (e.g. moto_server).
    #[arg(long, value_enum, default_value = "fake")]
    pub cloud: CloudKind,
    /// Run on real time sped up this many times (simulated seconds per real second) instead of
    /// virtual time. `--cloud aws` and `--no-controller` always run on real time (default 30),
    /// since another process (moto, the controller) keeps real time beside the simulation.
    #[arg(long)]
    pub speed: Option<f64>,
    /// `text`: log lines and step results as they happen; `json`: one report object at the end.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Serve the simulated API server here, and keep serving after the run (for kubectl).
    #[arg(long)]
    pub serve: Option<SocketAddr>,
    /// Serve only the simulated cluster; a separately started `nodewright controller` acts.
    #[arg(long)]
    pub no_controller: bool,
    /// Write a kubeconfig for the simulated API server here.
    #[arg(long)]
    pub write_kubeconfig: Option<PathBuf>,
    /// A price file (`{"region", "onDemand", "spot"}`, as `nodewright plan --prices` takes),
    /// instead of the scenario's own `prices:`; without either, the embedded on-demand list
    /// prices, spot estimated at 40% of on-demand.
    #[arg(long)]
    pub prices: Option<PathBuf>,
    /// Run the controller with BIND_PODS: pods are bound to their node as its instance launches.
    /// (The in-process controller reads all of `nodewright controller`'s environment variables:
    /// BIND_PODS, FEATURE_GATES, BATCH_IDLE_DURATION, ….)
    #[arg(long)]
    pub bind_pods: bool,
    /// With `--cloud aws`: the cluster whose instances the simulated kubelets register (a
    /// separately started controller tags its instances with its own `CLUSTER_NAME`).
    #[arg(long, env = "CLUSTER_NAME", default_value = "nodewright-sim")]
    pub cluster_name: String,
    /// Write what the controller's `/metrics` serves at the end of the run to this file.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Simulated time from an instance running to its node registering.
    #[arg(long, default_value = "30s", value_parser = crate::settings::parse_duration)]
    pub boot_delay: std::time::Duration,
}

/// How often a simulated kubelet looks at its pods on virtual time (a real kubelet reports
/// within seconds).
const VIRTUAL_KUBELET_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Virtual time unless a speed is asked for or another process takes part.
fn pacing(args: &SimulateArgs) -> Pacing {
    let other_process = args.cloud == CloudKind::Aws || args.no_controller;
    match args.speed {
        Some(speed) => Pacing::RealTime { speed },
        None if other_process => Pacing::RealTime {
            speed: DEFAULT_SPEED,
        },
        None => Pacing::Virtual,
    }
}

/// Runs the scenario; the exit code is 0 when every step held, 1 when an `until` timed out or
/// the run failed, 2 for a bad scenario.
pub fn run(args: SimulateArgs, log_level: &str) -> ExitCode {
    let scenario = match Scenario::load_with_prices(&args.scenario, args.prices.as_deref()) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(ScenarioError::EXIT_CODE);
        }
    };
    let pacing = pacing(&args);
    // Virtual time needs every task on one thread, the clock paused from the start.
    let runtime = match pacing {
        Pacing::Virtual => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build(),
        Pacing::RealTime { .. } => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut kubelet = KubeletSettings {
            boot_delay: args.boot_delay,
            ..KubeletSettings::default()
        };
        if pacing == Pacing::Virtual {
            kubelet.poll_interval = VIRTUAL_KUBELET_POLL;
        }
        let options = SimulationOptions {
            pacing,
            cloud: args.cloud,
            output: args.output,
            serve: args.serve,
            write_kubeconfig: args.write_kubeconfig,
            aws: AwsSimOptions {
                cluster_name: args.cluster_name.clone(),
                ..AwsSimOptions::default()
            },
            kubelet,
            ..SimulationOptions::default()
        };
        let simulation = Simulation::new(scenario, options);
        let filter = match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives),
            _ => EnvFilter::try_new(log_level),
        };
        let filter = match filter {
            Ok(filter) => filter,
            Err(error) => {
                eprintln!("error: bad log filter: {error}");
                return ExitCode::from(ScenarioError::EXIT_CODE);
            }
        };
        let _ = tracing_subscriber::registry()
            .with(log_layer(simulation.clock(), args.output))
            .with(filter)
            .try_init();
        let metrics = match crate::metrics::Metrics::new() {
            Ok(metrics) => Arc::new(metrics),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        };
        // The in-process controller reads the environment `nodewright controller` reads, under
        // the scenario's own settings.
        let named = &simulation.scenario().settings;
        let resolved = match crate::settings::named::resolve(named, &args.cluster_name) {
            Ok(resolved) => resolved,
            Err(error) => {
                eprintln!("error: the controller's settings: {error}");
                return ExitCode::from(ScenarioError::EXIT_CODE);
            }
        };
        for warning in &resolved.warnings {
            tracing::warn!("scenario settings: {warning}");
        }
        let mut settings = resolved.settings;
        settings.bind_pods |= args.bind_pods;
        let hook = (!args.no_controller)
            .then(|| controller_hook_with(metrics.clone(), settings, resolved.explicit));
        let mut stdout = std::io::stdout();
        match simulation.run(hook, &mut stdout).await {
            Ok(report) => {
                if let Some(path) = &args.metrics {
                    let written = metrics
                        .encode()
                        .map_err(|e| e.to_string())
                        .and_then(|text| std::fs::write(path, text).map_err(|e| e.to_string()));
                    if let Err(error) = written {
                        eprintln!("error: cannot write {}: {error}", path.display());
                        return ExitCode::FAILURE;
                    }
                }
                ExitCode::from(report.exit_code())
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        }
    })
}
