//! Per-object actions for the loops that act on many objects (machines, terminating nodes): at
//! most one action in flight per object, retries with doubling backoff after a failure, and a
//! requested second look at a given time. Every failure is logged with its object and counted
//! by kind (`nodewright_controller_errors_total`); an action that panics is a failure like any
//! other.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio::task::{Id, JoinSet};

use crate::clock::{Clock, sleep_until};
use crate::controllers::error::ControllerError;
use crate::metrics::{Metrics, Reconciled};
use crate::state::Changes;

/// How an action ended: `Ok(Some(time))` asks for another look at that time.
pub type Outcome = Result<Option<SystemTime>, ControllerError>;

/// First retry delay after a failed action; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Work {
    tasks: JoinSet<Outcome>,
    /// The object of each action in flight, and when it started, by task: known even when the
    /// action panics.
    names: HashMap<Id, (String, Instant)>,
    busy: HashSet<String>,
    not_before: HashMap<String, SystemTime>,
    failures: HashMap<String, u32>,
    /// Where failures are counted, under the controller's name.
    errors: Option<(&'static str, Arc<Metrics>)>,
}

impl Work {
    /// Work whose failures are counted under `controller`.
    pub fn counted(controller: &'static str, metrics: Arc<Metrics>) -> Work {
        Work {
            errors: Some((controller, metrics)),
            ..Work::default()
        }
    }

    /// Whether `name` may be acted on at `now` (nothing in flight, no backoff pending).
    pub fn is_idle(&self, name: &str, now: SystemTime) -> bool {
        !self.busy.contains(name) && self.not_before.get(name).is_none_or(|at| *at <= now)
    }

    pub fn spawn(&mut self, name: String, action: impl Future<Output = Outcome> + Send + 'static) {
        self.busy.insert(name.clone());
        self.not_before.remove(&name);
        let id = self.tasks.spawn(action).id();
        self.names.insert(id, (name, Instant::now()));
    }

    /// The earliest time an object asked to be looked at again.
    pub fn next_wake(&self) -> Option<SystemTime> {
        self.not_before.values().copied().min()
    }

    pub fn has_tasks(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// Waits for one action to end and records its outcome; `now` dates a backoff.
    /// Pending forever when nothing is in flight.
    pub async fn completed(&mut self, now: impl Fn() -> SystemTime, what: &str) {
        let Some(done) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let id = match &done {
            Ok((id, _)) => *id,
            Err(error) => error.id(),
        };
        let Some((name, started)) = self.names.remove(&id) else {
            return;
        };
        let outcome = match done {
            Ok((_, outcome)) => outcome,
            Err(error) if error.is_panic() => {
                Err(ControllerError::Panicked(panic_message(error.into_panic())))
            }
            // Aborted: only `abort_all` does that, on the way out.
            Err(_) => {
                self.busy.remove(&name);
                return;
            }
        };
        self.busy.remove(&name);
        if let Some((controller, metrics)) = &self.errors {
            let result = match &outcome {
                Ok(None) => Reconciled::Success,
                Ok(Some(_)) => Reconciled::RequeueAfter,
                Err(_) => Reconciled::Error,
            };
            metrics.reconciled(controller, result, started.elapsed());
        }
        match outcome {
            Ok(again) => {
                self.failures.remove(&name);
                if let Some(at) = again {
                    self.not_before.insert(name, at);
                }
            }
            Err(error) => {
                if let Some((controller, metrics)) = &self.errors {
                    metrics.controller_error(controller, &error);
                }
                let count = self.failures.entry(name.clone()).or_default();
                *count += 1;
                let delay = FIRST_BACKOFF
                    .saturating_mul(1 << (*count - 1).min(5))
                    .min(MAX_BACKOFF);
                tracing::warn!(object = %name, %error, kind = error.metric_label(), retry_in = ?delay, "{what} failed");
                self.not_before.insert(name, now() + delay);
            }
        }
    }

    /// Forgets objects that no longer exist.
    pub fn retain(&mut self, exists: impl Fn(&str) -> bool) {
        self.not_before.retain(|name, _| exists(name));
        self.failures.retain(|name, _| exists(name));
    }

    pub fn abort_all(&mut self) {
        self.tasks.abort_all();
        self.names.clear();
        self.busy.clear();
    }

    /// Waits for the next reason to look again: a change to the cache, an action ending, the
    /// earliest of `wake_at` and the asked-for second looks. False when the loop must end
    /// (`stop` turned true, in-flight actions aborted, or the cache went away).
    pub async fn wait(
        &mut self,
        clock: &dyn Clock,
        changes: &mut watch::Receiver<Changes>,
        stop: &mut watch::Receiver<bool>,
        wake_at: Option<SystemTime>,
        what: &str,
    ) -> bool {
        let now = clock.now();
        let wake_at = self.next_wake().into_iter().chain(wake_at).min();
        let has_tasks = self.has_tasks();
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => {
                self.abort_all();
                false
            }
            changed = changes.changed() => changed.is_ok(),
            () = self.completed(|| clock.now(), what), if has_tasks => true,
            () = sleep_until(clock, wake_at.unwrap_or(now)), if wake_at.is_some() => true,
        }
    }
}

/// The text a panic was raised with, when it was a string.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_string())
            .unwrap_or_else(|| "a panic without a message".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    #[tokio::test]
    async fn each_action_is_one_reconcile_counted_by_how_it_ended() {
        let metrics = Arc::new(Metrics::new().expect("metrics register"));
        let mut work = Work::counted("lifecycle", metrics.clone());
        work.spawn("a".to_string(), async { Ok(None) });
        work.spawn("b".to_string(), async { Ok(Some(at(30))) });
        work.spawn("c".to_string(), async {
            Err(ControllerError::Invalid("bad".to_string()))
        });
        for _ in 0..3 {
            work.completed(|| at(0), "test action").await;
        }
        let text = metrics.encode().expect("encodes");
        for result in ["success", "requeue_after", "error"] {
            let line = format!(
                "controller_runtime_reconcile_total{{controller=\"lifecycle\",result=\"{result}\"}} 1"
            );
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(text.contains(
            "controller_runtime_reconcile_time_seconds_count{controller=\"lifecycle\"} 3"
        ));
        assert!(
            text.contains("controller_runtime_reconcile_errors_total{controller=\"lifecycle\"} 1")
        );
    }

    #[tokio::test]
    async fn a_panicking_action_is_a_counted_failure_that_is_retried_after_its_backoff() {
        let metrics = Arc::new(Metrics::new().expect("metrics register"));
        let mut work = Work::counted("test", metrics.clone());
        work.spawn("node-a".to_string(), async {
            panic!("a bug in the action");
        });
        assert!(!work.is_idle("node-a", at(0)), "busy while in flight");
        work.completed(|| at(0), "test action").await;
        assert_eq!(
            metrics.controller_errors("test", "panic"),
            1,
            "the panic is counted"
        );
        assert!(!work.has_tasks());
        assert!(
            !work.is_idle("node-a", at(1)),
            "backing off like any failed action"
        );
        assert!(
            work.is_idle("node-a", at(0) + FIRST_BACKOFF),
            "not wedged: the object is acted on again after the backoff"
        );
        work.spawn("node-a".to_string(), async { Ok(None) });
        work.completed(|| at(3), "test action").await;
        assert!(
            work.is_idle("node-a", at(3)),
            "a success clears the failure"
        );
    }
}
