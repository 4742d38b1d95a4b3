//! The command line: `nodewright crds` (more subcommands join as they are built).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::telemetry::{self, LogFormat};

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
    /// Print the CustomResourceDefinitions as a multi-document YAML stream.
    Crds,
}

/// Parse the arguments, set up logging and run the chosen subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = telemetry::init(cli.log_format, &cli.log_level) {
        eprintln!("error: {err:#}");
        return ExitCode::from(2);
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Crds => {
            print!("{}", crate::apis::crds_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
