//! Karpenter's log layout, so that a pipeline that parses Karpenter's lines parses ours:
//! console `TIME\tLEVEL\tLOGGER\tMESSAGE\t{"commit": "…", fields…}` and JSON with the keys
//! `level`, `time`, `logger`, `message`, `commit` and the fields, as its zap configuration writes
//! them. The logger is Karpenter's controller name for the module that logs
//! (`controller.provisioning`, `controller.node`, `controller.termination`, …).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::clock::Clock;

/// The build's commit (`NODEWRIGHT_COMMIT` at build time), else the package version.
pub const COMMIT: &str = match option_env!("NODEWRIGHT_COMMIT") {
    Some(commit) => commit,
    None => env!("CARGO_PKG_VERSION"),
};

/// Karpenter's line layout; time from `clock` (the simulator's clock in `simulate`).
pub struct KarpenterFormat {
    pub json: bool,
    pub clock: Arc<dyn Clock>,
}

/// The controller names Karpenter logs under, by our module.
const LOGGERS: [(&str, &str); 10] = [
    (
        "nodewright::controllers::provisioning",
        "controller.provisioning",
    ),
    // The seed's `Launched instance` line is the provisioning controller's.
    (
        "nodewright::controllers::lifecycle",
        "controller.provisioning",
    ),
    ("nodewright::controllers::emptiness", "controller.node"),
    (
        "nodewright::controllers::termination",
        "controller.termination",
    ),
    (
        "nodewright::controllers::disruption",
        "controller.deprovisioning",
    ),
    (
        "nodewright::controllers::interruption",
        "controller.interruption",
    ),
    (
        "nodewright::controllers::gc",
        "controller.machine.garbagecollection",
    ),
    ("nodewright::controllers::counter", "controller.counter"),
    (
        "nodewright::controllers::node_template",
        "controller.awsnodetemplate",
    ),
    ("nodewright::controllers", "controller"),
];

/// The logger name for a `tracing` target.
pub fn logger_name(target: &str) -> Cow<'_, str> {
    for (module, logger) in LOGGERS {
        let within = target
            .strip_prefix(module)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
        if within {
            return Cow::Borrowed(logger);
        }
    }
    let local = target.strip_prefix("nodewright::").unwrap_or(target);
    Cow::Owned(local.replace("::", "."))
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        // zap has no trace level.
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// RFC 3339 in UTC with milliseconds, as zap's ISO 8601 encoder writes it.
pub fn timestamp(clock: &dyn Clock) -> String {
    Timestamp::try_from(clock.now())
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// The message and the fields of one event, in the order they were given.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
        } else {
            self.fields.push((field.name().to_string(), value));
        }
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for KarpenterFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let time = timestamp(self.clock.as_ref());
        let level = level_name(metadata.level());
        let logger = logger_name(metadata.target());
        if self.json {
            let mut object = serde_json::Map::new();
            object.insert("level".into(), level.into());
            object.insert("time".into(), time.into());
            object.insert("logger".into(), logger.into_owned().into());
            object.insert("message".into(), fields.message.into());
            object.insert("commit".into(), COMMIT.into());
            for (name, value) in fields.fields {
                object.insert(name, value);
            }
            return writeln!(writer, "{}", Value::Object(object));
        }
        // zap's console encoder: tab-separated, the context as JSON with spaces.
        let context: Vec<String> = std::iter::once(("commit".to_string(), Value::from(COMMIT)))
            .chain(fields.fields)
            .map(|(name, value)| format!("{}: {value}", Value::from(name)))
            .collect();
        writeln!(
            writer,
            "{time}\t{level}\t{logger}\t{}\t{{{}}}",
            fields.message,
            context.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;
    use crate::clock::ManualClock;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    fn logged(json: bool) -> String {
        // 2022-08-10T08:32:46.737Z, the seed's first line.
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_660_120_366_737);
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .event_format(KarpenterFormat {
                json,
                clock: Arc::new(ManualClock::new(at)),
            })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "nodewright::controllers::lifecycle::run",
                provisioner = "default",
                "Launched instance: i-01e6e2fef1d6d7c5d, hostname: ip-192-168-121-175.ec2.internal"
            );
        });
        let bytes = captured.0.lock().expect("buffer").clone();
        String::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn console_lines_are_laid_out_as_karpenters() {
        assert_eq!(
            logged(false),
            format!(
                "2022-08-10T08:32:46.737Z\tINFO\tcontroller.provisioning\tLaunched instance: \
                 i-01e6e2fef1d6d7c5d, hostname: ip-192-168-121-175.ec2.internal\t\
                 {{\"commit\": \"{COMMIT}\", \"provisioner\": \"default\"}}\n"
            )
        );
    }

    #[test]
    fn json_lines_carry_karpenters_keys() {
        let line = logged(true);
        let object: Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(object["level"], "INFO");
        assert_eq!(object["time"], "2022-08-10T08:32:46.737Z");
        assert_eq!(object["logger"], "controller.provisioning");
        assert_eq!(object["commit"], COMMIT);
        assert_eq!(object["provisioner"], "default");
        assert!(
            object["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Launched instance: i-01e6e2fef1d6d7c5d")),
            "{line}"
        );
    }

    #[test]
    fn loggers_are_karpenters_controller_names() {
        for (target, logger) in [
            ("nodewright::controllers::emptiness", "controller.node"),
            (
                "nodewright::controllers::termination",
                "controller.termination",
            ),
            (
                "nodewright::controllers::disruption::act",
                "controller.deprovisioning",
            ),
            ("nodewright::controllers::work", "controller"),
            ("nodewright::leader", "leader"),
            ("kube_runtime::watcher", "kube_runtime.watcher"),
        ] {
            assert_eq!(logger_name(target), logger, "{target}");
        }
    }
}
