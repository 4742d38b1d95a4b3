//! [`Simulation`]: the simulated cluster on one accelerated clock, with the scenario's steps run
//! against it.
//!
//! Assembly: one [`SimClock`] (virtual time, or real time sped up; see [`Pacing`]) drives the
//! API server's timestamps, the kubelets' boot delay, the cloud's hold-outs and the
//! controller's timers alike; the API server (on `serve`, else a free port),
//! the scenario's pre-existing nodes, the kube-scheduler, the deployment controller, the
//! kubelets, the cloud (fake or AWS, wrapped in an [`ObservedCloud`]) and, when given, the
//! controller through a [`ControllerHook`].

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::ValueEnum;
use futures::future::BoxFuture;
use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cloud::{self, AwsSimOptions, CloudKind, ObservedCloud};
use super::report::{self, Report, StepReport, stamp};
use super::steps::{self, ClusterView, StepFailure};
use super::{Action, Scenario, cluster};
use crate::clock::{Clock, ScaledClock, SimClock, VirtualClock};
use crate::cloudprovider::CloudProvider;
use crate::cloudprovider::aws::AwsCloudProvider;
use crate::sim::kubelet::{self, KubeletSettings};
use crate::sim::{ApiServer, ApiServerConfig, SimError, deployments, scheduler};

/// Simulated seconds per real second on a real-time clock unless told otherwise: the
/// tutorial's boot delays, batch windows and 30 s emptiness TTL pass in a few seconds.
pub const DEFAULT_SPEED: f64 = 30.0;

/// How simulated time passes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Time moves only when every component and the controller wait on a timer, so the run
    /// decides the same way however busy the machine is. Needs Tokio's current-thread runtime
    /// started paused, and nothing outside the process to wait for.
    Virtual,
    /// Real time, `speed` simulated seconds per real second (values below 1 are taken as 1):
    /// for runs where another process (moto, a separately started controller) takes part.
    RealTime { speed: f64 },
}

impl Pacing {
    /// How often an `until` step looks at the cluster: on a real-time clock, a pause of real
    /// time (the CPU a look costs); on virtual time, of simulated time.
    fn until_poll(self, real_time_poll: Duration) -> Duration {
        match self {
            Pacing::Virtual => VIRTUAL_UNTIL_POLL,
            Pacing::RealTime { .. } => real_time_poll,
        }
    }
}

/// An `until` step's pause between looks on virtual time: its result is exact to this.
const VIRTUAL_UNTIL_POLL: Duration = Duration::from_millis(500);

/// How long stopping waits for a component before aborting it (real time).
const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// What the run prints on its output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A line per step, stamped with simulated time, and a summary.
    #[default]
    Text,
    /// One JSON object at the end (see [`Report`]).
    Json,
}

/// How a simulation runs.
#[derive(Debug, Clone)]
pub struct SimulationOptions {
    pub pacing: Pacing,
    pub cloud: CloudKind,
    pub aws: AwsSimOptions,
    pub output: OutputFormat,
    /// Listen here (else on a free port of 127.0.0.1) and, after the steps, keep serving until
    /// Ctrl-C so kubectl can look in.
    pub serve: Option<SocketAddr>,
    /// Write a kubeconfig for the simulated API server here once it listens.
    pub write_kubeconfig: Option<PathBuf>,
    pub kubelet: KubeletSettings,
    /// Real time between two looks at the cluster in an `until` step (on a real-time clock).
    pub poll_interval: Duration,
}

impl Default for SimulationOptions {
    fn default() -> Self {
        SimulationOptions {
            pacing: Pacing::RealTime {
                speed: DEFAULT_SPEED,
            },
            cloud: CloudKind::Fake,
            aws: AwsSimOptions::default(),
            output: OutputFormat::Text,
            serve: None,
            write_kubeconfig: None,
            kubelet: KubeletSettings::default(),
            poll_interval: Duration::from_millis(50),
        }
    }
}

/// What the controller gets to run against the simulated cluster.
pub struct ControllerParts {
    pub client: Client,
    /// The client's configuration, for a controller that tunes its own client.
    pub kube_config: kube::Config,
    /// The cloud to launch in; launches through it are counted in the report.
    pub cloud: Arc<dyn CloudProvider>,
    /// The AWS provider itself with `--cloud aws` (node template resolution, price refresh).
    pub aws: Option<Arc<AwsCloudProvider>>,
    /// The simulation's clock: the controller's timers must use it.
    pub clock: Arc<dyn Clock>,
    pub region: String,
    /// The cluster name instances are tagged with (`--cloud aws`).
    pub cluster_name: String,
    pub api_server_url: String,
    /// Turns `true` when the simulation ends; the controller's future must then complete.
    pub shutdown: watch::Receiver<bool>,
}

impl ControllerParts {
    /// Completes when the simulation ends.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        stopped(self.shutdown.clone())
    }
}

/// Starts the controller: called once with the parts, its future is spawned and awaited (up to
/// a grace period) when the simulation stops. `None` runs without a controller.
pub type ControllerHook = Box<dyn FnOnce(ControllerParts) -> BoxFuture<'static, ()> + Send>;

#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    #[error(transparent)]
    Server(#[from] SimError),
    #[error("cannot set up the {cloud} cloud: {reason}")]
    Cloud { cloud: &'static str, reason: String },
    #[error("cannot create the scenario's nodes: {0}")]
    Nodes(String),
    #[error("cannot read the cluster for the report: {0}")]
    Report(kube::Error),
    #[error("cannot encode the report: {0}")]
    Encode(serde_json::Error),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

/// A scenario ready to run on its own clock.
pub struct Simulation {
    scenario: Scenario,
    options: SimulationOptions,
    clock: Arc<SimClock>,
}

impl Simulation {
    /// The clock starts now, so log lines can be stamped from before the cluster starts. With
    /// [`Pacing::Virtual`], call it on the paused runtime the simulation runs on.
    pub fn new(scenario: Scenario, options: SimulationOptions) -> Simulation {
        let clock = Arc::new(match options.pacing {
            Pacing::Virtual => SimClock::Virtual(VirtualClock::new(SystemTime::now())),
            Pacing::RealTime { speed } => {
                SimClock::Scaled(ScaledClock::new(SystemTime::now(), speed))
            }
        });
        Simulation {
            scenario,
            options,
            clock,
        }
    }

    /// For [`super::log_layer`].
    pub fn clock(&self) -> Arc<SimClock> {
        self.clock.clone()
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Runs everything: starts the cluster, runs the steps (printing a line per step in text
    /// mode), prints the report, serves until Ctrl-C when `serve` is set, and stops. The exit
    /// code is [`Report::exit_code`].
    pub async fn run(
        self,
        controller: Option<ControllerHook>,
        out: &mut (impl Write + Send),
    ) -> Result<Report, SimulationError> {
        let output = self.options.output;
        let serving = self.options.serve.is_some();
        let running = self.start(controller).await?;
        let steps = running.run_steps(out).await;
        let report = running.report(steps).await?;
        let text = match output {
            OutputFormat::Text => report.text(),
            OutputFormat::Json => report.json().map_err(SimulationError::Encode)? + "\n",
        };
        write_all(out, &text).map_err(SimulationError::Output)?;
        if serving {
            let note = format!(
                "serving the simulated cluster at {} until Ctrl-C (kubectl --server {})\n",
                running.url(),
                running.url()
            );
            match output {
                OutputFormat::Text => write_all(out, &note),
                OutputFormat::Json => write_all(&mut std::io::stderr(), &note),
            }
            .map_err(SimulationError::Output)?;
            if running.clock.is_virtual() {
                // Idle, virtual time would race through the controller's timers while kubectl
                // looks: from here on it follows real time.
                tokio::time::resume();
            }
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::warn!(%error, "cannot wait for Ctrl-C; stopping now");
            }
        }
        running.stop().await?;
        Ok(report)
    }

    /// Starts the cluster, the cloud and the controller (when given).
    pub async fn start(
        self,
        controller: Option<ControllerHook>,
    ) -> Result<RunningSimulation, SimulationError> {
        let Simulation {
            scenario,
            options,
            clock,
        } = self;
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let mut config = ApiServerConfig {
            clock: dyn_clock.clone(),
            ..ApiServerConfig::default()
        };
        if let Some(address) = options.serve {
            config.address = address;
        }
        let server = ApiServer::start(config).await?;
        if let Some(path) = &options.write_kubeconfig {
            server.write_kubeconfig(path)?;
        }
        let kube_config = server.kube_config()?;
        let client = server.client()?;
        cluster::seed_nodes(&client, &scenario.nodes)
            .await
            .map_err(SimulationError::Nodes)?;
        let built = cloud::build(
            options.cloud,
            &options.aws,
            &scenario,
            dyn_clock.clone(),
            &server.url(),
        )
        .await
        .map_err(|reason| SimulationError::Cloud {
            cloud: match options.cloud {
                CloudKind::Fake => "fake",
                CloudKind::Aws => "aws",
            },
            reason,
        })?;
        let observed = Arc::new(ObservedCloud::new(built.provider));
        let (shutdown, shutdown_signal) = watch::channel(false);
        let static_nodes = scenario
            .nodes
            .iter()
            .filter_map(|node| node["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        let (view, view_task) = ClusterView::start(&client, stopped(shutdown_signal.clone()));
        let components = vec![
            tokio::spawn(scheduler::run(
                client.clone(),
                stopped(shutdown_signal.clone()),
            )),
            tokio::spawn(deployments::run(
                client.clone(),
                stopped(shutdown_signal.clone()),
            )),
            tokio::spawn(kubelet::run(
                client.clone(),
                observed.clone(),
                dyn_clock.clone(),
                options.kubelet.clone(),
                stopped(shutdown_signal.clone()),
            )),
            view_task,
            tokio::spawn(cluster::run_static_kubelet(
                client.clone(),
                static_nodes,
                options.kubelet.poll_interval,
                dyn_clock.clone(),
                stopped(shutdown_signal.clone()),
            )),
        ];
        let controller = controller.map(|hook| {
            tokio::spawn(hook(ControllerParts {
                client: client.clone(),
                kube_config,
                cloud: observed.clone(),
                aws: built.aws.clone(),
                clock: dyn_clock.clone(),
                region: scenario.region.clone(),
                cluster_name: options.aws.cluster_name.clone(),
                api_server_url: server.url(),
                shutdown: shutdown_signal.clone(),
            }))
        });
        Ok(RunningSimulation {
            scenario,
            options,
            clock,
            server,
            client,
            view,
            cloud: observed,
            shutdown,
            components,
            controller,
        })
    }
}

/// A started simulation.
pub struct RunningSimulation {
    scenario: Scenario,
    options: SimulationOptions,
    clock: Arc<SimClock>,
    server: ApiServer,
    client: Client,
    view: ClusterView,
    cloud: Arc<ObservedCloud>,
    shutdown: watch::Sender<bool>,
    components: Vec<JoinHandle<()>>,
    controller: Option<JoinHandle<()>>,
}

impl RunningSimulation {
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn cloud(&self) -> Arc<ObservedCloud> {
        self.cloud.clone()
    }

    pub fn clock(&self) -> Arc<SimClock> {
        self.clock.clone()
    }

    /// Runs the steps in order; after a failed step the rest are reported skipped. In text
    /// mode a line per step goes to `out` (and one when a wait or until starts).
    pub async fn run_steps(&self, out: &mut (impl Write + Send)) -> Vec<StepReport> {
        let text = self.options.output == OutputFormat::Text;
        // Progress lines are best effort: a closed stdout must not stop the run.
        let mut say = |line: String| {
            if text {
                let _ = write_all(out, &(line + "\n"));
            }
        };
        let mut reports = Vec::new();
        let mut failed = false;
        for step in &self.scenario.steps {
            let now = || report::seconds(self.clock.elapsed());
            if failed {
                say(format!("{} {}: skipped", stamp(now()), step.label));
                reports.push(step_report(&step.label, now(), Some(StepFailure::Skipped)));
                continue;
            }
            if matches!(step.action, Action::Wait(_) | Action::Until(_)) {
                say(format!("{} {}", stamp(now()), step.label));
            }
            let outcome = steps::execute(
                &self.client,
                &self.view,
                self.clock.as_ref(),
                self.options.pacing.until_poll(self.options.poll_interval),
                &step.action,
            )
            .await;
            let at = now();
            match outcome {
                Ok(note) if note.is_empty() => say(format!("{} {}: ok", stamp(at), step.label)),
                Ok(note) => say(format!("{} {}: ok ({note})", stamp(at), step.label)),
                Err(failure) => {
                    let how = match &failure {
                        StepFailure::TimedOut(message) => message.clone(),
                        other => format!("failed: {}", other.message()),
                    };
                    say(format!("{} {}: {how}", stamp(at), step.label));
                    reports.push(step_report(&step.label, at, Some(failure)));
                    failed = true;
                    continue;
                }
            }
            reports.push(step_report(&step.label, at, None));
        }
        reports
    }

    /// The cluster and the cloud as they are now, with `steps`.
    pub async fn report(&self, steps: Vec<StepReport>) -> Result<Report, SimulationError> {
        report::build(
            &self.client,
            &self.cloud,
            &self.scenario.offerings.instance_types,
            steps,
            self.clock.elapsed(),
        )
        .await
        .map_err(SimulationError::Report)
    }

    /// Signals every component and the controller to stop, waits for them (aborting what does
    /// not stop within a grace period), then stops the API server.
    pub async fn stop(self) -> Result<(), SimulationError> {
        let _ = self.shutdown.send(true);
        if let Some(controller) = self.controller {
            finish("controller", controller).await;
        }
        for component in self.components {
            finish("simulated cluster component", component).await;
        }
        self.server.shutdown().await?;
        Ok(())
    }
}

async fn finish(what: &str, mut task: JoinHandle<()>) {
    match tokio::time::timeout(STOP_PATIENCE, &mut task).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "the {what} ended abnormally"),
        Err(_) => {
            tracing::warn!("the {what} did not stop within {STOP_PATIENCE:?}; aborting it");
            task.abort();
        }
    }
}

fn step_report(label: &str, at: f64, failure: Option<StepFailure>) -> StepReport {
    StepReport {
        step: label.to_string(),
        ok: failure.is_none(),
        at,
        error: failure.as_ref().map(StepFailure::message),
        failure,
    }
}

/// Completes once `signal` turns true (or its sender is gone).
async fn stopped(mut signal: watch::Receiver<bool>) {
    let _ = signal.wait_for(|stop| *stop).await;
}

fn write_all(out: &mut (impl Write + ?Sized), text: &str) -> std::io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.flush()
}
