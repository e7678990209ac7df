//! Time for everything that depends on it: the [`Clock`] trait, [`SystemClock`] and
//! (feature `test-util`) [`ManualClock`].
//!
//! No other module reads the system clocks (clippy's `disallowed-methods` enforces it),
//! so that tests can move time by hand and every refresh window can be tested
//! without sleeping.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A future that completes when a clock reaches a deadline.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of time and of sleeps, injected into managers and registries.
pub trait Clock: Debug + Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;

    /// Milliseconds since the Unix epoch, as cheaply as the clock can give them.
    ///
    /// The token hit path reads this on every call, so it may be coarse (a few
    /// milliseconds behind `now()`), never ahead of it. Defaults to `now()`.
    fn now_millis(&self) -> u64 {
        unix_millis(self.now())
    }

    /// A future that completes once `now()` has reached `deadline`.
    fn sleep_until(&self, deadline: SystemTime) -> Sleep;

    /// Time elapsed since a fixed point of this clock, which never goes back when
    /// the wall clock is stepped: what every timeout and wait is measured on.
    ///
    /// Defaults to the operating system's monotonic clock.
    fn monotonic(&self) -> Duration {
        monotonic_now()
    }

    /// A future that completes once [`monotonic`](Self::monotonic) has moved on by
    /// `duration`, whatever the wall clock does meanwhile.
    ///
    /// Defaults to a Tokio sleep.
    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// The operating system's monotonic clock (on Linux `CLOCK_MONOTONIC`, the
/// timeline [`system_monotonic_millis`] reads coarsely; elsewhere, time since the
/// first reading in this process).
#[cfg(target_os = "linux")]
fn monotonic_now() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    timespec_duration(ts)
}

#[cfg(not(target_os = "linux"))]
#[allow(clippy::disallowed_methods)] // the one place that reads the system clocks
fn monotonic_now() -> Duration {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now).elapsed()
}

/// [`SystemClock`]'s monotonic time in milliseconds, as cheaply as the system
/// gives it, for the hit path: on Linux `CLOCK_MONOTONIC_COARSE` from the vDSO
/// (the timeline of [`Clock::monotonic`], at most a tick behind, never ahead).
#[inline]
pub(crate) fn system_monotonic_millis() -> u64 {
    #[cfg(target_os = "linux")]
    let now = timespec_duration(rustix::time::clock_gettime(
        rustix::time::ClockId::MonotonicCoarse,
    ));
    #[cfg(not(target_os = "linux"))]
    let now = monotonic_now();
    millis(now)
}

#[cfg(target_os = "linux")]
#[inline]
fn timespec_duration(ts: rustix::time::Timespec) -> Duration {
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

/// Whole milliseconds of `d`, saturating.
#[inline]
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch (0 for earlier times, saturating far in the future).
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The time `millis` milliseconds after the Unix epoch, capped at about the year
/// 2500 (beyond what some platforms' `SystemTime` can hold).
pub fn from_unix_millis(millis: u64) -> SystemTime {
    const CAP_MS: u64 = 16_725_225_600_000; // 2500-01-01T00:00:00Z
    UNIX_EPOCH + Duration::from_millis(millis.min(CAP_MS))
}

/// The operating system's clock. The default everywhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// The longest a [`SystemClock`] sleep waits before it looks at the wall clock again,
/// so that a suspended machine or a clock step is noticed.
const MAX_SLEEP_STEP: Duration = Duration::from_secs(30);

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place that reads the system clock
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    #[cfg(target_os = "linux")]
    #[inline]
    fn now_millis(&self) -> u64 {
        // CLOCK_REALTIME_COARSE is read from the vDSO in a few nanoseconds, against
        // ~20 ns for the precise clock; its few milliseconds of lag are harmless for
        // token windows measured in seconds.
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
        secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        Box::pin(async move {
            loop {
                let remaining = match deadline.duration_since(SystemClock.now()) {
                    Ok(d) if !d.is_zero() => d,
                    _ => return,
                };
                tokio::time::sleep(remaining.min(MAX_SLEEP_STEP)).await;
            }
        })
    }
}

#[cfg(feature = "test-util")]
pub use manual::ManualClock;

#[cfg(feature = "test-util")]
mod manual {
    use super::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::sync::Notify;

    /// A clock that only moves when told to, for tests (feature `test-util`).
    ///
    /// Clones share the same time. Sleeps complete when [`advance`](Self::advance)
    /// or [`set`](Self::set) moves the clock past their deadline, so a test can walk
    /// a token through its whole life in microseconds.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use tokenwarden::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000));
    /// clock.advance(Duration::from_secs(5));
    /// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1_005));
    /// ```
    #[derive(Debug, Clone)]
    pub struct ManualClock {
        inner: Arc<Inner>,
    }

    #[derive(Debug)]
    struct Inner {
        nanos: AtomicU64,
        /// Monotonic time: moved forward with the wall clock, never back.
        monotonic_nanos: AtomicU64,
        moved: Notify,
        /// Sleeps waiting on this clock now.
        sleepers: AtomicUsize,
    }

    /// Counts a sleep as waiting while it lives.
    struct Sleeper(Arc<Inner>);

    impl Sleeper {
        fn new(inner: &Arc<Inner>) -> Self {
            inner.sleepers.fetch_add(1, Ordering::SeqCst);
            Self(inner.clone())
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            self.0.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl ManualClock {
        /// A clock standing at `start`.
        pub fn new(start: SystemTime) -> Self {
            let clock = Self {
                inner: Arc::new(Inner {
                    nanos: AtomicU64::new(0),
                    monotonic_nanos: AtomicU64::new(0),
                    moved: Notify::new(),
                    sleepers: AtomicUsize::new(0),
                }),
            };
            clock.inner.nanos.store(unix_nanos(start), Ordering::SeqCst);
            clock
        }

        /// How many sleeps on this clock are waiting. A test that moves the
        /// clock only while the code under test sleeps on it (none of its
        /// requests in flight) sees exact times, however busy the machine.
        pub fn sleepers(&self) -> usize {
            self.inner.sleepers.load(Ordering::SeqCst)
        }

        /// Moves the clock forward by `by`.
        pub fn advance(&self, by: Duration) {
            self.set(self.now() + by);
        }

        /// Moves the wall clock forward by `by` while the monotonic time stands
        /// still: a machine suspended (a laptop asleep, a paused VM) for that long.
        pub fn suspend(&self, by: Duration) {
            let nanos = unix_nanos(self.now() + by);
            self.inner.nanos.store(nanos, Ordering::SeqCst);
            self.inner.moved.notify_waiters();
        }

        /// Moves the clock back by `by` (a wall-clock step backwards).
        pub fn rewind(&self, by: Duration) {
            self.set(self.now() - by);
        }

        /// Sets the clock to `to`, forwards or backwards. The
        /// [monotonic](Clock::monotonic) time moves forward by as much as the wall
        /// clock does, and stays where it is when the wall clock goes back.
        pub fn set(&self, to: SystemTime) {
            let nanos = unix_nanos(to);
            let before = self.inner.nanos.swap(nanos, Ordering::SeqCst);
            self.inner
                .monotonic_nanos
                .fetch_add(nanos.saturating_sub(before), Ordering::SeqCst);
            self.inner.moved.notify_waiters();
        }
    }

    fn unix_nanos(time: SystemTime) -> u64 {
        time.duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    impl Default for ManualClock {
        /// A clock standing at 2030-01-01T00:00:00Z.
        fn default() -> Self {
            Self::new(UNIX_EPOCH + Duration::from_secs(1_893_456_000))
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_nanos(self.inner.nanos.load(Ordering::SeqCst))
        }

        fn sleep_until(&self, deadline: SystemTime) -> Sleep {
            let clock = self.clone();
            Box::pin(async move {
                let _waiting = Sleeper::new(&clock.inner);
                loop {
                    let moved = clock.inner.moved.notified();
                    tokio::pin!(moved);
                    // Register before looking at the time, so no move is missed.
                    moved.as_mut().enable();
                    if clock.now() >= deadline {
                        return;
                    }
                    moved.await;
                }
            })
        }

        fn monotonic(&self) -> Duration {
            Duration::from_nanos(self.inner.monotonic_nanos.load(Ordering::SeqCst))
        }

        fn sleep(&self, duration: Duration) -> Sleep {
            let clock = self.clone();
            let deadline = self.monotonic() + duration;
            Box::pin(async move {
                let _waiting = Sleeper::new(&clock.inner);
                loop {
                    let moved = clock.inner.moved.notified();
                    tokio::pin!(moved);
                    moved.as_mut().enable();
                    if clock.monotonic() >= deadline {
                        return;
                    }
                    moved.await;
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_millis_are_close_to_now() {
        let precise = unix_millis(SystemClock.now());
        let coarse = SystemClock.now_millis();
        assert!(coarse.abs_diff(precise) < 1_000, "{coarse} vs {precise}");
    }

    #[cfg(feature = "test-util")]
    #[test]
    fn a_manual_clock_stepped_back_keeps_its_monotonic_time() {
        let clock = ManualClock::default();
        let start = clock.monotonic();
        clock.advance(Duration::from_secs(5));
        clock.rewind(Duration::from_secs(60));
        assert_eq!(clock.monotonic() - start, Duration::from_secs(5));
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.monotonic() - start, Duration::from_secs(6));
    }

    #[test]
    fn millis_round_trip() {
        let t = from_unix_millis(1_700_000_000_123);
        assert_eq!(unix_millis(t), 1_700_000_000_123);
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
