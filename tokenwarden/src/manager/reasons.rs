//! Why each flight runs ([`RefreshReason`]) and how it ended ([`LastRefresh`]):
//! decided when the flight starts, recorded when it ends.

use super::cached::State;
use super::chain::{precise_now, Mode};
use super::Shared;
use crate::refresh::{LastRefresh, RefreshOutcome, RefreshReason};
use crate::Result;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::PoisonError;

/// Why a flight in `mode` starts now, from the token the manager holds.
fn reason_for(shared: &Shared, mode: Mode) -> RefreshReason {
    let cached = shared.current.load();
    match mode {
        Mode::Forced => RefreshReason::Forced,
        Mode::StoreOnly => RefreshReason::StoreCheck,
        Mode::Due if cached.token().is_none() => RefreshReason::FirstUse,
        Mode::Due if !cached.is_held() => RefreshReason::Invalidated,
        Mode::Due => match cached.state(precise_now(shared)) {
            State::Fresh => RefreshReason::StoreCheck,
            State::Stale => RefreshReason::AheadOfExpiry,
            State::Expiring | State::Expired => RefreshReason::Expired,
        },
    }
}

/// Notes why the flight that starts now runs (one flight at a time per manager).
pub(super) fn begin(shared: &Shared, mode: Mode) {
    shared
        .reason
        .store(reason_for(shared, mode).to_u8(), SeqCst);
}

/// The reason of the flight in progress, or of the last one.
pub(super) fn current(shared: &Shared) -> RefreshReason {
    RefreshReason::from_u8(shared.reason.load(SeqCst))
}

/// What the counters said as a flight began: its outcome is told by how they moved.
pub(super) struct Attempt {
    fetches: u64,
    refreshes: u64,
    store_loads: u64,
    started: std::time::Duration,
}

impl Attempt {
    pub(super) fn begin(shared: &Shared) -> Self {
        let c = &shared.counters;
        Self {
            fetches: c.fetches.load(Relaxed),
            refreshes: c.refreshes.load(Relaxed),
            store_loads: c.store_loads.load(Relaxed),
            started: shared.settings.clock.monotonic(),
        }
    }

    /// Records how the flight ended, as the manager's last refresh.
    pub(super) fn end<T>(self, shared: &Shared, outcome: &Result<T>) {
        let c = &shared.counters;
        let outcome = match outcome {
            Err(error) => RefreshOutcome::Failed(error.kind()),
            // The last request made decides: a refresh that fell back to a login
            // made both.
            Ok(_) if c.fetches.load(Relaxed) > self.fetches => RefreshOutcome::Fetched,
            Ok(_) if c.refreshes.load(Relaxed) > self.refreshes => RefreshOutcome::Refreshed,
            Ok(_) if c.store_loads.load(Relaxed) > self.store_loads => {
                RefreshOutcome::AdoptedFromStore
            }
            Ok(_) => RefreshOutcome::Unchanged,
        };
        let s = &shared.settings;
        let last = LastRefresh {
            at: s.clock.now(),
            reason: current(shared),
            outcome,
            took: s.clock.monotonic().saturating_sub(self.started),
        };
        super::observe::attempt(shared, &last);
        *shared
            .last_refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(last);
    }
}
