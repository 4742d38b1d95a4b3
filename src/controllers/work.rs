//! Per-object actions for the loops that act on many objects (machines, terminating nodes): at
//! most one action in flight per object, retries with doubling backoff after a failure, and a
//! requested second look at a given time.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::clock::{Clock, sleep_until};
use crate::state::Changes;

/// How an action ended: `Ok(Some(time))` asks for another look at that time.
pub type Outcome = Result<Option<SystemTime>, String>;

/// First retry delay after a failed action; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Work {
    tasks: JoinSet<(String, Outcome)>,
    busy: HashSet<String>,
    not_before: HashMap<String, SystemTime>,
    failures: HashMap<String, u32>,
}

impl Work {
    /// Whether `name` may be acted on at `now` (nothing in flight, no backoff pending).
    pub fn is_idle(&self, name: &str, now: SystemTime) -> bool {
        !self.busy.contains(name) && self.not_before.get(name).is_none_or(|at| *at <= now)
    }

    pub fn spawn(&mut self, name: String, action: impl Future<Output = Outcome> + Send + 'static) {
        self.busy.insert(name.clone());
        self.not_before.remove(&name);
        self.tasks.spawn(async move { (name, action.await) });
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
        let Some(done) = self.tasks.join_next().await else {
            return std::future::pending().await;
        };
        let Ok((name, outcome)) = done else { return };
        self.busy.remove(&name);
        match outcome {
            Ok(again) => {
                self.failures.remove(&name);
                if let Some(at) = again {
                    self.not_before.insert(name, at);
                }
            }
            Err(error) => {
                let count = self.failures.entry(name.clone()).or_default();
                *count += 1;
                let delay = FIRST_BACKOFF
                    .saturating_mul(1 << (*count - 1).min(5))
                    .min(MAX_BACKOFF);
                tracing::warn!(object = %name, %error, retry_in = ?delay, "{what} failed");
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
