//! The command line: `nodewright controller`, `plan`, `simulate` and `crds`.

mod controller;
mod simulate;

pub use controller::ControllerArgs;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use nodewright_scheduling::allocatable::AllocatableSettings;

use crate::plan::{self, CatalogSource, ClusterInput};
use crate::telemetry::{self, LogFormat};

/// Exit code for input the command cannot use (unparseable or invalid files, bad flags).
const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "nodewright",
    version,
    about = "Just-in-time worker nodes for Kubernetes on AWS"
)]
pub struct Cli {
    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "auto"
    )]
    pub log_format: LogFormat,
    /// Log level or filter directives (e.g. `info`, `nodewright=debug,kube=warn`).
    #[arg(long, global = true, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller in a cluster (what the Helm chart runs).
    Controller(Box<controller::ControllerArgs>),
    /// Run a scenario against the simulated cluster with the whole controller, on a fast clock.
    Simulate(simulate::SimulateArgs),
    /// Offline what-if: the nodes that pending pods need, their instance types and $/hour.
    Plan(PlanArgs),
    /// Print the CustomResourceDefinitions as a multi-document YAML stream.
    Crds,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// YAML files (multi-document or `kind: List`) with Provisioners, AWSNodeTemplates, Pods,
    /// Nodes and DaemonSets. Pods without `spec.nodeName` are placed; the rest is load.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Price file: `{"region", "onDemand": {type: usd}, "spot": {zone: {type: usd}}}`.
    /// Without it, the embedded on-demand list prices, spot estimated at 40% of on-demand.
    #[arg(long)]
    pub prices: Option<PathBuf>,
    /// Region to plan in (default: the price file's, else us-east-1).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// DescribeInstanceTypes output to use instead of the embedded catalog.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// DescribeInstanceTypeOfferings output (LocationType availability-zone) to use instead of
    /// the embedded offerings.
    #[arg(long)]
    pub offerings: Option<PathBuf>,
    /// Fraction of instance memory lost to the hypervisor and OS.
    #[arg(long, env = "VM_MEMORY_OVERHEAD_PERCENT", default_value_t = AllocatableSettings::default().vm_memory_overhead_percent)]
    pub vm_memory_overhead_percent: f64,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: PlanOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanOutput {
    Table,
    Json,
}

/// What went wrong, and whether the input (exit 2) or the run (exit 1) is to blame.
enum Failure {
    BadInput(anyhow::Error),
    Run(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(err: E) -> Self {
        Failure::Run(err.into())
    }
}

fn bad_input(err: impl Into<anyhow::Error>) -> Failure {
    Failure::BadInput(err.into())
}

/// Parse the arguments, set up logging and run the chosen subcommand.
pub fn main() -> ExitCode {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    // Which settings the flags and environment gave: the settings ConfigMap yields to those.
    if let (Command::Controller(args), Some(("controller", sub))) =
        (&mut cli.command, matches.subcommand())
    {
        args.explicit = crate::settings::Settings::explicit_fields(sub);
    }
    // The simulation stamps log lines with simulated time: it installs its own subscriber.
    if let Command::Simulate(args) = cli.command {
        return simulate::run(args, &cli.log_level);
    }
    // The controller logs to stdout as Karpenter does; the other commands' output is there.
    let to_stdout = matches!(cli.command, Command::Controller(_));
    if let Err(err) = telemetry::init(cli.log_format, &cli.log_level, to_stdout) {
        eprintln!("error: {err:#}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::BadInput(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(Failure::Run(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Plan(args) => run_plan(args),
        Command::Controller(args) => {
            crate::memory::use_one_heap_arena();
            let runtime = tokio::runtime::Runtime::new()?;
            runtime
                .block_on(controller::run(*args))
                .map_err(Failure::Run)
        }
        Command::Simulate(_) => Ok(()),
        Command::Crds => write_stdout(&crate::apis::crds_yaml()?),
    }
}

fn run_plan(args: PlanArgs) -> Result<(), Failure> {
    if !(0.0..1.0).contains(&args.vm_memory_overhead_percent) {
        return Err(bad_input(anyhow::anyhow!(
            "--vm-memory-overhead-percent must be in [0, 1), got {}",
            args.vm_memory_overhead_percent
        )));
    }
    let input = ClusterInput::read_files(&args.files).map_err(bad_input)?;
    let offerings = CatalogSource {
        instance_types: args.catalog,
        offerings: args.offerings,
        prices: args.prices,
        region: args.region,
    }
    .load()
    .map_err(bad_input)?;
    let allocatable = AllocatableSettings {
        vm_memory_overhead_percent: args.vm_memory_overhead_percent,
    };
    let report = plan::plan(&input, &offerings, &allocatable).map_err(bad_input)?;
    let text = match args.output {
        PlanOutput::Json => plan::output::json(&report)? + "\n",
        PlanOutput::Table => plan::output::table(&report),
    };
    write_stdout(&text)
}

/// Print to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}
