//! Injected time, so that TTLs, batching windows, cache lifetimes and hold-out periods are tested
//! without sleeping. Shared by the controllers and the cloud provider.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::sync::lock;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> SystemTime;
}

/// The machine's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Starts at a fixed instant (2023-06-01T00:00:00Z), so runs are repeatable.
    pub fn fixed() -> Self {
        Self::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_685_577_600))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = lock(&self.now);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *lock(&self.now)
    }
}

/// Whether `since` lies at least `ttl` before `now` (a clock that went backwards never expires).
pub(crate) fn expired(since: SystemTime, ttl: Duration, now: SystemTime) -> bool {
    now.duration_since(since).is_ok_and(|age| age >= ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::fixed();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now(), start + Duration::from_secs(90));
    }

    #[test]
    fn expiry_counts_from_the_start_and_ignores_clocks_going_backwards() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let ttl = Duration::from_secs(60);
        assert!(!expired(start, ttl, start + Duration::from_secs(59)));
        assert!(expired(start, ttl, start + Duration::from_secs(60)));
        assert!(!expired(start, ttl, start - Duration::from_secs(5)));
    }
}
