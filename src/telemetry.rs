//! Logging in Karpenter's layout ([`format`]): its console lines for people, its JSON for
//! machines, chosen once at start-up, on standard output as Karpenter writes them.

mod format;

use std::io::IsTerminal;
use std::sync::Arc;

pub use format::{COMMIT, KarpenterFormat, logger_name, timestamp};

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// JSON when standard output is not a terminal (in a cluster), text when it is.
    Auto,
    Json,
    Text,
}

impl LogFormat {
    /// The concrete format, resolving `Auto` against whether stdout is a terminal.
    pub fn resolve(self, stdout_is_terminal: bool) -> LogFormat {
        match self {
            LogFormat::Auto if stdout_is_terminal => LogFormat::Text,
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }
}

/// Install the global subscriber, writing to stdout when `to_stdout` (the controller), else
/// to stderr. `level` is a `tracing` filter directive such as `info` or
/// `nodewright=debug,kube=warn`; `RUST_LOG`, when set, wins.
pub fn init(format: LogFormat, level: &str, to_stdout: bool) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::try_new(level)?,
    };
    let json = format.resolve(std::io::stdout().is_terminal()) == LogFormat::Json;
    let writer = if to_stdout {
        BoxMakeWriter::new(std::io::stdout)
    } else {
        BoxMakeWriter::new(std::io::stderr)
    };
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .event_format(KarpenterFormat {
            json,
            clock: Arc::new(crate::clock::SystemClock),
        })
        .try_init();
    installed.map_err(|err| anyhow::anyhow!("installing the log subscriber: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_format_is_json_off_a_terminal_and_text_on_one() {
        assert_eq!(LogFormat::Auto.resolve(false), LogFormat::Json);
        assert_eq!(LogFormat::Auto.resolve(true), LogFormat::Text);
        assert_eq!(LogFormat::Json.resolve(true), LogFormat::Json);
        assert_eq!(LogFormat::Text.resolve(false), LogFormat::Text);
    }
}
