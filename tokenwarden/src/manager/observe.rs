//! What a manager records for metrics (feature `metrics`, see
//! [`crate::metrics`]): token requests, attempts, waits, failures, leases, and
//! its state when metrics are collected. Without the feature, nothing: each
//! function is empty.

use super::Shared;
use crate::refresh::LastRefresh;
use crate::{Error, Result};
use std::future::Future;
use std::time::Duration;

/// A manager's metric settings: its labels, and whether a registry holds it.
#[derive(Debug, Default)]
pub(super) struct Observed {
    #[cfg(feature = "metrics")]
    labels: arc_swap::ArcSwap<crate::metrics::Labels>,
    #[cfg(feature = "metrics")]
    in_registry: std::sync::atomic::AtomicBool,
    /// The hits counted before its labels last changed (they went with the old ones).
    #[cfg(feature = "metrics")]
    hits_before: std::sync::atomic::AtomicU64,
}

impl Observed {
    /// Labelled with `key` and `source`, or not at all.
    pub(super) fn new(per_key: bool, key: &str, source: &str) -> Self {
        #[cfg(feature = "metrics")]
        {
            use crate::metrics::Labels;
            let labels = if per_key {
                Labels::per_key(key, source)
            } else {
                Labels::none()
            };
            Self {
                labels: arc_swap::ArcSwap::from_pointee(labels),
                in_registry: Default::default(),
                hits_before: Default::default(),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (per_key, key, source);
            Self {}
        }
    }
}

#[cfg(feature = "metrics")]
fn labels(shared: &Shared) -> crate::metrics::Labels {
    crate::metrics::Labels::clone(&shared.observed.labels.load())
}

/// The hits counted under its current labels.
#[cfg(feature = "metrics")]
fn hits(shared: &Shared) -> u64 {
    use std::sync::atomic::Ordering::SeqCst;
    let before = shared.observed.hits_before.load(SeqCst);
    shared.counters.snapshot().hits.saturating_sub(before)
}

#[cfg(feature = "metrics")]
fn seconds(took: Duration) -> f64 {
    took.as_secs_f64()
}

/// Adds a new manager to those that [`publish`](crate::metrics::publish) reads.
pub(super) fn watch(shared: &std::sync::Arc<Shared>) {
    #[cfg(feature = "metrics")]
    {
        let weak: std::sync::Weak<dyn crate::metrics::Watched> =
            std::sync::Arc::downgrade(shared) as _;
        crate::metrics::register(weak, &labels(shared));
    }
    #[cfg(not(feature = "metrics"))]
    let _ = shared;
}

/// Keeps the hits of a manager being dropped.
pub(super) fn retire(shared: &Shared) {
    #[cfg(feature = "metrics")]
    crate::metrics::retire(&labels(shared), hits(shared));
    #[cfg(not(feature = "metrics"))]
    let _ = shared;
}

/// A registry holds this manager (`true`) or let it go; held without
/// `per_key`, its metrics are added up with the other managers' that have no
/// labels from now on (its hits so far stay with its old labels).
pub(super) fn held_by_registry(shared: &Shared, held: bool, per_key: bool) {
    #[cfg(feature = "metrics")]
    {
        use crate::metrics::Labels;
        use std::sync::atomic::Ordering::{Relaxed, SeqCst};
        shared.observed.in_registry.store(held, Relaxed);
        let old = labels(shared);
        if held && !per_key && old != Labels::none() {
            let counted = hits(shared);
            let all = shared.observed.hits_before.load(SeqCst) + counted;
            crate::metrics::retire(&old, counted);
            shared.observed.hits_before.store(all, SeqCst);
            shared
                .observed
                .labels
                .store(std::sync::Arc::new(Labels::none()));
            crate::metrics::relabel(&Labels::none());
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (shared, held, per_key);
}

/// Runs one token request (`grant`: `refresh_token`, or the source's grant) and
/// counts it, by outcome, with its duration.
pub(super) async fn request<T>(
    shared: &Shared,
    grant: &str,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    #[cfg(feature = "metrics")]
    {
        let clock = &shared.settings.clock;
        let started = clock.monotonic();
        let outcome = work.await;
        let took = clock.monotonic().saturating_sub(started);
        let series = labels(shared).with(&[
            ("tokenwarden.grant", grant),
            (
                "tokenwarden.outcome",
                crate::metrics::request_outcome(&outcome),
            ),
        ]);
        ::metrics::counter!(crate::metrics::TOKEN_REQUESTS, series.clone()).increment(1);
        ::metrics::histogram!(crate::metrics::TOKEN_REQUEST_DURATION, series).record(seconds(took));
        outcome
    }
    #[cfg(not(feature = "metrics"))]
    {
        let _ = (shared, grant);
        work.await
    }
}

/// An attempt ended (its reason, outcome and duration).
pub(super) fn attempt(shared: &Shared, last: &LastRefresh) {
    #[cfg(feature = "metrics")]
    {
        let series = labels(shared).with(&[
            ("tokenwarden.reason", last.reason.as_str()),
            ("tokenwarden.outcome", last.outcome.as_str()),
        ]);
        ::metrics::counter!(crate::metrics::REFRESHES, series.clone()).increment(1);
        ::metrics::histogram!(crate::metrics::REFRESH_DURATION, series).record(seconds(last.took));
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (shared, last);
}

/// A caller waited `took` for a refresh.
pub(super) fn waited(shared: &Shared, took: Duration) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!(crate::metrics::WAIT_DURATION, labels(shared).to_vec())
        .record(seconds(took));
    #[cfg(not(feature = "metrics"))]
    let _ = (shared, took);
}

/// An attempt failed with `error`: the manager backs off.
pub(super) fn failure(shared: &Shared, error: &Error) {
    #[cfg(feature = "metrics")]
    {
        let series = labels(shared).with(&[("error.type", error.type_name())]);
        ::metrics::counter!(crate::metrics::FAILURES, series).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (shared, error);
}

/// What became of the store's lease in a refresh.
#[derive(Debug, Clone, Copy)]
pub(super) enum LeaseOutcome {
    /// Granted at once.
    Acquired,
    /// Granted after another holder's lease ended (released, or expired).
    TakenOver,
    /// The stored token had changed (another instance refreshed, before the
    /// ask or while it waited): taken instead of the lease.
    Changed,
    /// It ended too soon for the token request to be sent.
    Lost,
    /// A save under it was refused: another instance had taken it over.
    Fenced,
    /// It could not be had (the store is down, or a holder stuck).
    Unavailable,
}

/// Counts a lease outcome.
pub(super) fn lease(shared: &Shared, outcome: LeaseOutcome) {
    #[cfg(feature = "metrics")]
    {
        let name = match outcome {
            LeaseOutcome::Acquired => "acquired",
            LeaseOutcome::TakenOver => "taken_over",
            LeaseOutcome::Changed => "changed",
            LeaseOutcome::Lost => "lost",
            LeaseOutcome::Fenced => "fenced",
            LeaseOutcome::Unavailable => "unavailable",
        };
        let series = labels(shared).with(&[("tokenwarden.outcome", name)]);
        ::metrics::counter!(crate::metrics::LEASE_OUTCOMES, series).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (shared, outcome);
}

/// A lease just granted: at once, or after waiting out another holder.
pub(super) fn granted(shared: &Shared, lease: &crate::store::Lease) {
    if lease.is_held() {
        let outcome = match lease.contended() {
            true => LeaseOutcome::TakenOver,
            false => LeaseOutcome::Acquired,
        };
        self::lease(shared, outcome);
    }
}

#[cfg(feature = "metrics")]
impl crate::metrics::Watched for Shared {
    fn read(&self) -> crate::metrics::Reading {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.settings.clock.now();
        let cached = self.current.load();
        crate::metrics::Reading {
            labels: labels(self),
            hits: hits(self),
            expires_in: cached.token().and_then(|t| t.expires_at).map(|at| {
                match at.duration_since(now) {
                    Ok(left) => left.as_secs_f64(),
                    Err(past) => -past.duration().as_secs_f64(),
                }
            }),
            backing_off: self.backoff.is_waiting(crate::clock::unix_millis(now)),
            unsaved: super::unsaved::is_unsaved(self),
            in_registry: self.observed.in_registry.load(Relaxed),
        }
    }
}
