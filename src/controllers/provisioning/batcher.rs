//! The batching window of the provisioning loop, as a pure state machine: the first pending pod
//! opens a window; it closes `idle` after the last *new* pod, or `max` after the first, whichever
//! comes first. Time is passed in (`now`), so the window is tested without sleeping; the loop
//! sleeps until [`Batcher::deadline`] and then calls [`Batcher::poll`].

use std::collections::HashSet;
use std::hash::Hash;
use std::time::{Duration, SystemTime};

/// How long a batch may stay open (Karpenter's BATCH_IDLE_DURATION and BATCH_MAX_DURATION).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchWindow {
    pub idle: Duration,
    pub max: Duration,
}

impl Default for BatchWindow {
    fn default() -> Self {
        BatchWindow {
            idle: Duration::from_secs(1),
            max: Duration::from_secs(10),
        }
    }
}

/// Why a batch closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No new pod arrived for the idle duration.
    Idle,
    /// The window reached its maximum length.
    Max,
}

/// A closed batch: each key once, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<K> {
    pub keys: Vec<K>,
    pub opened_at: SystemTime,
    pub closed_at: SystemTime,
    pub reason: CloseReason,
}

/// The open window, if any. `K` identifies a pod (its UID).
#[derive(Debug, Clone)]
pub struct Batcher<K> {
    window: BatchWindow,
    open: Option<Open<K>>,
}

#[derive(Debug, Clone)]
struct Open<K> {
    opened_at: SystemTime,
    last_new_at: SystemTime,
    keys: Vec<K>,
    seen: HashSet<K>,
}

impl<K: Eq + Hash + Clone> Batcher<K> {
    pub fn new(window: BatchWindow) -> Self {
        Batcher { window, open: None }
    }

    /// Adds a pod; true when it is new to this window (only new pods extend the idle time).
    pub fn add(&mut self, key: K, now: SystemTime) -> bool {
        let open = self.open.get_or_insert_with(|| Open {
            opened_at: now,
            last_new_at: now,
            keys: Vec::new(),
            seen: HashSet::new(),
        });
        if !open.seen.insert(key.clone()) {
            return false;
        }
        open.keys.push(key);
        // A clock that stepped back never shortens the window.
        open.last_new_at = open.last_new_at.max(now);
        true
    }

    /// Whether a window is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Pods in the open window.
    pub fn len(&self) -> usize {
        self.open.as_ref().map_or(0, |open| open.keys.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the open window closes if no new pod arrives; `None` when no window is open.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.open.as_ref().map(|open| self.close_at(open).0)
    }

    /// The batch, once the window has closed at `now`; the batcher is then empty again.
    pub fn poll(&mut self, now: SystemTime) -> Option<Batch<K>> {
        let open = self.open.as_ref()?;
        let (deadline, reason) = self.close_at(open);
        if now < deadline {
            return None;
        }
        let open = self.open.take()?;
        Some(Batch {
            keys: open.keys,
            opened_at: open.opened_at,
            closed_at: now,
            reason,
        })
    }

    fn close_at(&self, open: &Open<K>) -> (SystemTime, CloseReason) {
        let idle = open.last_new_at + self.window.idle;
        let max = open.opened_at + self.window.max;
        if idle < max {
            (idle, CloseReason::Idle)
        } else {
            (max, CloseReason::Max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn batcher() -> Batcher<&'static str> {
        Batcher::new(BatchWindow::default())
    }

    #[test]
    fn an_empty_batcher_has_no_deadline_and_no_batch() {
        let mut b = batcher();
        assert!(!b.is_open());
        assert_eq!(b.deadline(), None);
        assert_eq!(b.poll(t0() + Duration::from_secs(3600)), None);
    }

    #[test]
    fn the_window_closes_one_idle_second_after_the_last_new_pod() {
        let mut b = batcher();
        assert!(b.add("a", t0()));
        assert!(b.add("b", t0() + ms(400)));
        assert_eq!(b.deadline(), Some(t0() + ms(1400)));
        assert_eq!(b.poll(t0() + ms(1399)), None);
        let batch = b.poll(t0() + ms(1400)).expect("closed");
        assert_eq!(batch.keys, vec!["a", "b"]);
        assert_eq!(batch.reason, CloseReason::Idle);
        assert_eq!(batch.opened_at, t0());
        assert!(!b.is_open(), "the next pod opens a new window");
    }

    #[test]
    fn a_steady_trickle_is_cut_at_the_maximum_window() {
        let mut b: Batcher<String> = Batcher::new(BatchWindow::default());
        // A new pod every 900 ms keeps the idle window from ever closing.
        let mut at = t0();
        let mut n = 0;
        while at < t0() + Duration::from_secs(10) {
            assert_eq!(b.poll(at), None, "closed early at {n}");
            b.add(format!("pod-{n}"), at);
            n += 1;
            at += ms(900);
        }
        let batch = b.poll(at).expect("closed by the maximum");
        assert_eq!(batch.reason, CloseReason::Max);
        assert_eq!(batch.keys.len(), n);
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn the_max_window_wins_when_it_comes_first() {
        let mut b = Batcher::new(BatchWindow {
            idle: Duration::from_secs(5),
            max: Duration::from_secs(6),
        });
        b.add("a", t0());
        b.add("b", t0() + Duration::from_secs(4));
        assert_eq!(b.deadline(), Some(t0() + Duration::from_secs(6)));
        let batch = b.poll(t0() + Duration::from_secs(6)).expect("closed");
        assert_eq!(batch.reason, CloseReason::Max);
    }

    #[test]
    fn duplicates_are_kept_once_and_do_not_extend_the_window() {
        let mut b = batcher();
        assert!(b.add("a", t0()));
        assert!(!b.add("a", t0() + ms(900)), "seen already");
        assert_eq!(b.len(), 1);
        assert_eq!(b.deadline(), Some(t0() + ms(1000)));
        let batch = b.poll(t0() + ms(1000)).expect("closed");
        assert_eq!(batch.keys, vec!["a"]);
    }

    #[test]
    fn a_clock_stepping_back_does_not_close_the_window_early() {
        let mut b = batcher();
        b.add("a", t0() + ms(500));
        b.add("b", t0());
        assert_eq!(b.deadline(), Some(t0() + ms(1500)));
    }
}
