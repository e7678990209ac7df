//! How long the refresh in progress may still take: the manager sets it around
//! each call to a source (the end of its store lease, or of its refresh timeout,
//! whichever comes first), and sources that send requests read it so that they
//! never start (or retry) a request they could not finish in time.

use crate::Clock;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

tokio::task_local! {
    static DEADLINE: Deadline;
}

/// A point on a clock's [monotonic](Clock::monotonic) time.
#[derive(Debug, Clone)]
pub(crate) struct Deadline {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) at: Duration,
}

impl Deadline {
    /// `within` from now on `clock`.
    pub(crate) fn after(clock: Arc<dyn Clock>, within: Duration) -> Self {
        let at = clock.monotonic().saturating_add(within);
        Self { clock, at }
    }

    /// This deadline, or `within` from now if that comes first.
    pub(crate) fn capped(&self, within: Duration) -> Self {
        let at = self.clock.monotonic().saturating_add(within).min(self.at);
        Self {
            clock: self.clock.clone(),
            at,
        }
    }

    /// The time left until the deadline (zero once it passed).
    pub(crate) fn remaining(&self) -> Duration {
        self.at.saturating_sub(self.clock.monotonic())
    }
}

/// Runs `future` with `deadline` readable through [`time_left`].
pub(crate) async fn scope<F: Future>(deadline: Deadline, future: F) -> F::Output {
    DEADLINE.scope(deadline, future).await
}

/// How long the refresh that called this source may still take, or `None`
/// outside a manager's refresh.
///
/// A [`TokenSource`](crate::TokenSource) that sends a request which spends
/// something (a refresh token, an authorization code) should not start it, or
/// retry it, when it could not finish within this time: the manager's lease
/// would have ended, and another process could send the same refresh token. The
/// built-in OAuth2 sources do this.
pub fn time_left() -> Option<Duration> {
    DEADLINE.try_with(Deadline::remaining).ok()
}
