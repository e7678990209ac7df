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
    use std::sync::atomic::{AtomicU64, Ordering};
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
        moved: Notify,
    }

    impl ManualClock {
        /// A clock standing at `start`.
        pub fn new(start: SystemTime) -> Self {
            let clock = Self {
                inner: Arc::new(Inner {
                    nanos: AtomicU64::new(0),
                    moved: Notify::new(),
                }),
            };
            clock.set(start);
            clock
        }

        /// Moves the clock forward by `by`.
        pub fn advance(&self, by: Duration) {
            self.set(self.now() + by);
        }

        /// Moves the clock back by `by` (a wall-clock step backwards).
        pub fn rewind(&self, by: Duration) {
            self.set(self.now() - by);
        }

        /// Sets the clock to `to`, forwards or backwards.
        pub fn set(&self, to: SystemTime) {
            let nanos = to
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .unwrap_or(0);
            self.inner.nanos.store(nanos, Ordering::SeqCst);
            self.inner.moved.notify_waiters();
        }
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

    #[test]
    fn millis_round_trip() {
        let t = from_unix_millis(1_700_000_000_123);
        assert_eq!(unix_millis(t), 1_700_000_000_123);
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
