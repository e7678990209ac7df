//! Backoff after failed refreshes: jittered, exponential, capped, and robust to the
//! wall clock stepping backwards.

use crate::Error;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

#[derive(Debug, Default)]
pub(crate) struct Backoff {
    /// When the next attempt may start (Unix ms; 0 = no backoff). Read without the
    /// lock by callers deciding whether to start a refresh.
    retry_at: AtomicU64,
    /// When the last failure happened (Unix ms).
    failed_at: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    last_error: Option<Error>,
}

impl Backoff {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether attempts must wait at `now`. A clock that went back before the last
    /// failure ends the wait, so a step backwards never stalls refreshes.
    pub(crate) fn is_waiting(&self, now: u64) -> bool {
        let retry_at = self.retry_at.load(Relaxed);
        retry_at != 0 && now < retry_at && now >= self.failed_at.load(Relaxed)
    }

    /// When the current wait ends (Unix ms), if there is one.
    pub(crate) fn retry_at(&self) -> Option<u64> {
        Some(self.retry_at.load(Relaxed)).filter(|&t| t != 0)
    }

    pub(crate) fn last_error(&self) -> Option<Error> {
        self.state().last_error.clone()
    }

    /// Records a failure at `now` and returns the delay before the next attempt:
    /// `initial * 2^(failures-1)` capped at `max`, then a uniform pick in its upper
    /// half, raised to the server's `Retry-After` (itself capped at `max`).
    pub(crate) fn record_failure(
        &self,
        now: u64,
        error: Error,
        initial: Duration,
        max: Duration,
    ) -> Duration {
        let mut state = self.state();
        state.failures = state.failures.saturating_add(1);
        let exponent = state.failures.saturating_sub(1).min(31);
        let ceiling = initial.saturating_mul(1u32 << exponent).min(max);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let mut delay_ms = ceiling_ms / 2 + fastrand::u64(0..=ceiling_ms - ceiling_ms / 2);
        if let Some(asked) = error.retry_after() {
            let asked_ms = u64::try_from(asked.min(max).as_millis()).unwrap_or(u64::MAX);
            delay_ms = delay_ms.max(asked_ms);
        }
        state.last_error = Some(error);
        self.failed_at.store(now, Relaxed);
        self.retry_at
            .store(now.saturating_add(delay_ms.max(1)), Relaxed);
        Duration::from_millis(delay_ms)
    }

    pub(crate) fn reset(&self) {
        let mut state = self.state();
        *state = State::default();
        self.retry_at.store(0, Relaxed);
        self.failed_at.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> Error {
        Error::source_failed("s", "down")
    }

    #[test]
    fn grows_with_jitter_and_caps() {
        let backoff = Backoff::default();
        let (initial, max) = (Duration::from_secs(1), Duration::from_secs(8));
        let mut now = 1_000_000;
        for ceiling in [1_000u64, 2_000, 4_000, 8_000, 8_000, 8_000] {
            let delay = backoff
                .record_failure(now, failure(), initial, max)
                .as_millis() as u64;
            assert!(
                (ceiling / 2..=ceiling).contains(&delay),
                "{delay} not in upper half of {ceiling}"
            );
            assert!(backoff.is_waiting(now + delay - 1));
            assert!(!backoff.is_waiting(now + delay));
            now += delay;
        }
        backoff.reset();
        assert!(!backoff.is_waiting(now));
        assert!(backoff.last_error().is_none());
    }

    #[test]
    fn clock_stepping_back_ends_the_wait() {
        let backoff = Backoff::default();
        backoff.record_failure(
            1_000_000,
            failure(),
            Duration::from_secs(10),
            Duration::from_secs(60),
        );
        assert!(backoff.is_waiting(1_000_001));
        assert!(!backoff.is_waiting(999_000));
    }

    #[test]
    fn honours_retry_after_up_to_the_cap() {
        let backoff = Backoff::default();
        let error = Error::transport("s", "HTTP 429")
            .with_status(429)
            .with_retry_after(Duration::from_secs(20));
        let delay = backoff.record_failure(
            0,
            error.clone(),
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        assert_eq!(delay, Duration::from_secs(20));
        let delay =
            backoff.record_failure(0, error, Duration::from_secs(1), Duration::from_secs(5));
        assert_eq!(delay, Duration::from_secs(5));
    }
}
