//! Injected time, so that TTLs, batching windows, cache lifetimes and hold-out periods are tested
//! without sleeping. Shared by the controllers and the cloud provider.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::sync::lock;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> SystemTime;

    /// How long to really wait for `simulated` to pass on this clock (timers sleep this long).
    fn real_duration(&self, simulated: Duration) -> Duration {
        simulated
    }

    /// How much time passes on this clock while `real` time passes (the inverse).
    fn simulated_duration(&self, real: Duration) -> Duration {
        real
    }
}

/// Waits until `duration` has passed on `clock`.
pub async fn sleep(clock: &dyn Clock, duration: Duration) {
    tokio::time::sleep(clock.real_duration(duration)).await;
}

/// Waits until `deadline` on `clock` (at once when it has passed).
pub async fn sleep_until(clock: &dyn Clock, deadline: SystemTime) {
    let left = deadline.duration_since(clock.now()).unwrap_or_default();
    sleep(clock, left).await;
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

/// Wall-clock time sped up `speed` times from a fixed start: the simulator's clock, so that
/// minutes of TTLs and boot delays pass in seconds while every component reads one time.
#[derive(Debug)]
pub struct ScaledClock {
    start: SystemTime,
    started: Instant,
    speed: f64,
}

impl ScaledClock {
    /// `speed` simulated seconds pass per real second; values below 1 are taken as 1.
    pub fn new(start: SystemTime, speed: f64) -> Self {
        Self {
            start,
            started: Instant::now(),
            speed: if speed.is_finite() {
                speed.max(1.0)
            } else {
                1.0
            },
        }
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed().mul_f64(self.speed)
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> SystemTime {
        self.start + self.elapsed()
    }

    fn real_duration(&self, simulated: Duration) -> Duration {
        simulated.div_f64(self.speed)
    }

    fn simulated_duration(&self, real: Duration) -> Duration {
        real.mul_f64(self.speed)
    }
}

/// Time that passes only while every task of a Tokio runtime started paused waits on a timer:
/// Tokio then jumps to the next timer. Nothing the machine does (load, slow passes) moves it,
/// so a simulation decides the same way on any machine. Made on the runtime it measures.
#[derive(Debug)]
pub struct VirtualClock {
    start: SystemTime,
    started: tokio::time::Instant,
}

impl VirtualClock {
    pub fn new(start: SystemTime) -> Self {
        Self {
            start,
            started: tokio::time::Instant::now(),
        }
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.started)
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> SystemTime {
        self.start + self.elapsed()
    }

    /// Real time spent computing moves no timer.
    fn simulated_duration(&self, _real: Duration) -> Duration {
        Duration::ZERO
    }
}

/// The simulator's clock: virtual time when only in-process components take part, real time
/// sped up when another process (moto, a separately started controller) keeps real time.
#[derive(Debug)]
pub enum SimClock {
    Virtual(VirtualClock),
    Scaled(ScaledClock),
}

impl SimClock {
    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        match self {
            SimClock::Virtual(clock) => clock.elapsed(),
            SimClock::Scaled(clock) => clock.elapsed(),
        }
    }

    pub fn is_virtual(&self) -> bool {
        matches!(self, SimClock::Virtual(_))
    }
}

impl Clock for SimClock {
    fn now(&self) -> SystemTime {
        match self {
            SimClock::Virtual(clock) => clock.now(),
            SimClock::Scaled(clock) => clock.now(),
        }
    }

    fn real_duration(&self, simulated: Duration) -> Duration {
        match self {
            SimClock::Virtual(clock) => clock.real_duration(simulated),
            SimClock::Scaled(clock) => clock.real_duration(simulated),
        }
    }

    fn simulated_duration(&self, real: Duration) -> Duration {
        match self {
            SimClock::Virtual(clock) => clock.simulated_duration(real),
            SimClock::Scaled(clock) => clock.simulated_duration(real),
        }
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
    fn a_scaled_clock_runs_faster_and_shortens_waits_alike() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let clock = ScaledClock::new(start, 60.0);
        assert_eq!(
            clock.real_duration(Duration::from_secs(30)),
            Duration::from_millis(500)
        );
        assert_eq!(
            clock.simulated_duration(Duration::from_millis(500)),
            Duration::from_secs(30)
        );
        let before = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        let simulated = clock.now().duration_since(before).unwrap_or_default();
        // At least 20 ms of real time passed, so at least 1.2 s of simulated time.
        assert!(simulated >= Duration::from_millis(1200), "{simulated:?}");
        assert!(clock.now() >= start);
        assert_eq!(ScaledClock::new(start, 0.0).speed(), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn virtual_time_jumps_to_the_next_timer_and_ignores_real_time() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let clock = VirtualClock::new(start);
        // Real time spent computing passes no simulated time.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(clock.now(), start);
        assert_eq!(
            clock.simulated_duration(Duration::from_secs(5)),
            Duration::ZERO
        );
        // An hour's wait ends exactly an hour later on the clock.
        sleep(&clock, Duration::from_secs(3600)).await;
        assert_eq!(clock.now(), start + Duration::from_secs(3600));
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
