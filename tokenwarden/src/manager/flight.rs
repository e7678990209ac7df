//! Single-flight refreshes and the recovery chain.
//!
//! At most one refresh per manager is in flight: a spawned task whose result every
//! waiting caller shares (so a caller that gives up does not abort it). The task
//! walks the chain: a token another process stored → refresh with the refresh
//! token → full fetch if that was rejected → error and backoff. Callers that find
//! no flight re-check the cache under the slot lock first, so a flight that just
//! ended is never repeated. While backing off, callers without a valid token
//! still look in the store (at most every [`STORE_RECHECK_MS`]): another process
//! may have got a token meanwhile.

use super::cached::{Cached, State};
use super::install::{adopt, load_stored};
use super::stats::Counters;
use super::{chain, Shared};
use crate::source::Deadline;
use crate::{Error, Result};
use arc_swap::Guard;
use futures_util::future::{BoxFuture, Shared as SharedFuture};
use futures_util::FutureExt as _;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, PoisonError};
use tracing::Instrument as _;

/// A refresh in flight, awaited by every caller that needs its result.
pub(super) type Flight = SharedFuture<BoxFuture<'static, Result<Arc<Cached>>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// The token is stale, expiring or gone: a token in the store will do.
    Due,
    /// The caller wants a new token from the source, whatever is cached or stored.
    Forced,
    /// Backing off after a failure: only a token another process stored will do.
    StoreOnly,
}

/// How often callers that are backing off look in the store for a token.
pub(super) const STORE_RECHECK_MS: u64 = 100;

pub(super) enum Start {
    /// A flight was already running.
    Joined(Flight),
    /// This call started the flight.
    Started(Flight),
    /// A flight ended just before; its token is fresh.
    Done(Arc<Cached>),
    /// A recent failure says to wait before trying again.
    BackingOff,
    /// No refresh can start here: there is no Tokio runtime.
    NoRuntime(Error),
}

/// Joins the flight in progress or starts one.
pub(super) fn join_or_start(shared: &Arc<Shared>, mode: Mode) -> Start {
    let slot = shared.flight.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(flight) = slot.as_ref() {
        return Start::Joined(flight.clone());
    }
    if mode == Mode::Due {
        let now = shared.settings.clock.now_millis();
        let cached = shared.current.load_full();
        if cached.state(now) == State::Fresh {
            return Start::Done(cached);
        }
        if shared.backoff.is_waiting(now) {
            // The slot lock is held: one caller at a time gets here.
            let checked = shared.store_checked_at.load(SeqCst);
            if shared.settings.store.is_none() || now.saturating_sub(checked) < STORE_RECHECK_MS {
                return Start::BackingOff;
            }
            shared.store_checked_at.store(now, SeqCst);
            return start(shared, Mode::StoreOnly, slot);
        }
    }
    start(shared, mode, slot)
}

/// Spawns the flight task and puts it in the (locked, empty) slot.
fn start(
    shared: &Arc<Shared>,
    mode: Mode,
    mut slot: std::sync::MutexGuard<'_, Option<Flight>>,
) -> Start {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Start::NoRuntime(Error::config(
            "tokenwarden refreshes tokens on a Tokio runtime: call it from within one",
        ));
    };
    let source_name = shared.settings.source_name.clone();
    // Moved into the task, so the slot is freed however the task ends: finished,
    // panicked, or dropped unpolled by a runtime shutting down.
    let slot_guard = FreeSlot(shared.clone());
    let task = runtime.spawn(async move {
        let slot_guard = slot_guard;
        run(&slot_guard.0, mode).await
    });
    let flight = async move {
        task.await.unwrap_or_else(|_| {
            Err(Error::source_failed(
                source_name,
                "the refresh task was cancelled (is the runtime shutting down?)",
            )
            .with_transient(true))
        })
    }
    .boxed()
    .shared();
    *slot = Some(flight.clone());
    shared.in_flight.store(true, SeqCst);
    Start::Started(flight)
}

/// Empties the flight slot when the flight task ends, however it ends.
struct FreeSlot(Arc<Shared>);

impl Drop for FreeSlot {
    fn drop(&mut self) {
        let mut slot = self.0.flight.lock().unwrap_or_else(PoisonError::into_inner);
        *slot = None;
        self.0.in_flight.store(false, SeqCst);
    }
}

/// In the stale window: starts the one background refresh unless it is running
/// or backing off. Never waits, and takes no lock unless it starts one.
pub(super) fn refresh_in_background(shared: &Arc<Shared>, now: u64) {
    if !shared.in_flight.load(SeqCst) && !shared.backoff.is_waiting(now) {
        let _ = join_or_start(shared, Mode::Due);
    }
}

/// What `token()` and `header()` do when the cached token is expiring or gone:
/// wait for the refresh. Boxed so that the hit path's future stays small.
pub(super) fn slow_path(
    shared: &Arc<Shared>,
    cached: Guard<Arc<Cached>>,
) -> BoxFuture<'_, Result<Guard<Arc<Cached>>>> {
    async move {
        if shared.settings.background_refresh {
            super::background::ensure_started(shared);
        }
        // A caller asking for a token after a logout means: log in again.
        if shared.logged_out.swap(false, SeqCst) {
            shared.wake.notify_one();
        }
        let state = cached.state(shared.settings.clock.now_millis());
        if matches!(state, State::Fresh | State::Stale) {
            // The clock moved back between the caller's check and this one.
            shared.counters.hit();
            return Ok(cached);
        }
        let flight = match join_or_start(shared, Mode::Due) {
            Start::Done(fresh) => {
                shared.counters.hit();
                return Ok(Guard::from_inner(fresh));
            }
            Start::BackingOff if state == State::Expiring => {
                shared.counters.hit();
                return Ok(cached);
            }
            Start::BackingOff => return Err(no_valid_token(shared, last_error(shared))),
            Start::NoRuntime(error) => return Err(error),
            Start::Joined(flight) => {
                Counters::add(&shared.counters.waits);
                flight
            }
            Start::Started(flight) => flight,
        };
        drop(cached);
        match flight.await {
            Ok(fresh) => Ok(Guard::from_inner(fresh)),
            Err(error) => {
                // Static stability: a token that is still valid beats an error.
                let current = shared.current.load();
                match current.state(shared.settings.clock.now_millis()) {
                    State::Expired => Err(no_valid_token(shared, error)),
                    _ => Ok(current),
                }
            }
        }
    }
    .boxed()
}

/// A new token from the source now, joining a flight already running.
pub(super) async fn forced(shared: &Arc<Shared>) -> Result<Arc<Cached>> {
    match join_or_start(shared, Mode::Forced) {
        Start::Joined(flight) | Start::Started(flight) => flight.await,
        // Neither happens in forced mode; answered sensibly all the same.
        Start::Done(cached) => Ok(cached),
        Start::BackingOff => Err(no_valid_token(shared, last_error(shared))),
        Start::NoRuntime(error) => Err(error),
    }
}

fn last_error(shared: &Shared) -> Error {
    shared.backoff.last_error().unwrap_or_else(|| {
        Error::source_failed(&shared.settings.source_name, "a recent attempt failed")
    })
}

fn no_valid_token(shared: &Shared, last_attempt: Error) -> Error {
    Error::no_valid_token(&shared.settings.source_name, last_attempt)
}

/// The flight task: runs the chain, records the outcome, and frees the slot.
async fn run(shared: &Arc<Shared>, mode: Mode) -> Result<Arc<Cached>> {
    let span = tracing::debug_span!(
        "tokenwarden.refresh",
        source = %shared.settings.source_name,
        key = %shared.settings.key,
        ?mode
    );
    let epoch = shared.epoch.load(SeqCst);
    let s = &shared.settings;
    // On the monotonic clock: a wall clock stepped back extends no wait.
    let deadline = Deadline::after(s.clock.clone(), s.refresh_timeout);
    let attempt = AssertUnwindSafe(attempt(shared, mode, epoch, &deadline)).catch_unwind();
    let timeout = s.clock.sleep(s.refresh_timeout);
    let outcome = tokio::select! {
        outcome = attempt.instrument(span.clone()) => outcome.unwrap_or_else(|_| {
            Err(Error::source_failed(
                &s.source_name,
                "the token source panicked; see the panic message above",
            ))
        }),
        () = timeout => Err(Error::transport(
            &s.source_name,
            format!(
                "no token within the refresh timeout of {:?}: the token endpoint or the store hangs",
                s.refresh_timeout
            ),
        )),
    };
    let _entered = span.enter();
    match &outcome {
        Ok(_) => shared.backoff.reset(),
        // Superseded by a logout or set_tokens: not a failure of the source.
        Err(_) if shared.epoch.load(SeqCst) != epoch => {}
        // Nothing new in the store: the backoff goes on as it was.
        Err(_) if mode == Mode::StoreOnly => {}
        Err(error) => {
            Counters::add(&shared.counters.failures);
            let now = s.clock.now_millis();
            // The attempt looked in the store as it began; the next look waits.
            shared.store_checked_at.store(now, SeqCst);
            let delay =
                shared
                    .backoff
                    .record_failure(now, error.clone(), s.backoff_initial, s.backoff_max);
            tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "getting a token failed; backing off");
        }
    }
    outcome
}

/// The chain for `mode`: only the store's token while backing off, else a due or
/// forced refresh.
async fn attempt(
    shared: &Arc<Shared>,
    mode: Mode,
    epoch: u64,
    deadline: &Deadline,
) -> Result<Arc<Cached>> {
    if mode == Mode::StoreOnly {
        let current = shared.current.load_full();
        let stored = load_stored(shared).await;
        return match adopt(shared, &current, stored.as_ref(), epoch).await? {
            Some(adopted) => Ok(adopted),
            None => Err(last_error(shared)),
        };
    }
    chain::obtain(shared, mode, epoch, deadline).await
}
