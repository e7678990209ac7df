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
use super::chain::{self, precise_now, refresh_timed_out, Mode, IDLE, STOPPED};
use super::install::{adopt, read_store};
use super::recheck;
use super::stats::Counters;
use super::Shared;
use crate::source::Deadline;
use crate::{Error, Result};
use arc_swap::Guard;
use futures_util::future::{BoxFuture, Shared as SharedFuture};
use futures_util::FutureExt as _;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, PoisonError};
use tracing::Instrument as _;

/// A refresh in flight, awaited by every caller that needs its result.
type Flight = SharedFuture<BoxFuture<'static, Result<Arc<Cached>>>>;

/// The flight in the slot, and which one it is (so that a flight that outlived its
/// timeout can be cleared from the slot, and only that one).
#[derive(Clone)]
pub(super) struct InFlight {
    id: u64,
    flight: Flight,
    /// Set once the task is spawned (after the slot lock is let go).
    task: Arc<std::sync::OnceLock<tokio::task::AbortHandle>>,
}

impl InFlight {
    /// The flight's outcome, waited for without a bound of the caller's (for the
    /// background task, which holds no caller).
    pub(super) fn finished(self) -> impl std::future::Future<Output = Result<Arc<Cached>>> {
        self.flight
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight").field("id", &self.id).finish()
    }
}

static FLIGHT_IDS: AtomicU64 = AtomicU64::new(1);

/// How often callers that are backing off look in the store for a token.
pub(super) const STORE_RECHECK_MS: u64 = 100;

pub(super) enum Start {
    /// A flight was already running.
    Joined(InFlight),
    /// This call started the flight.
    Started(InFlight),
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
        let now = precise_now(shared);
        let cached = shared.current.load_full();
        if cached.state(now) == State::Fresh && !recheck::due_precisely(shared, &cached) {
            return Start::Done(cached);
        }
        if shared.backoff.is_waiting(now) {
            // The slot lock is held: one caller at a time gets here.
            let checked = shared.store_checked_at.load(SeqCst);
            let recently = now.saturating_sub(checked) < STORE_RECHECK_MS;
            // A copy due for its re-read gets it, backing off or not.
            let due = recheck::due_precisely(shared, &cached);
            if shared.settings.store.is_none() || (recently && !due) {
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
    mut slot: std::sync::MutexGuard<'_, Option<InFlight>>,
) -> Start {
    let Some(runtime) = super::runtime(shared) else {
        return Start::NoRuntime(Error::config(
            "tokenwarden refreshes tokens on a Tokio runtime: call it from within one",
        ));
    };
    let id = FLIGHT_IDS.fetch_add(1, SeqCst);
    super::reasons::begin(shared, mode);
    let (send, outcome) = tokio::sync::oneshot::channel();
    let source_name = shared.settings.source_name.clone();
    let flight = async move {
        outcome.await.unwrap_or_else(|_| {
            Err(Error::source_failed(
                source_name,
                "the refresh was cancelled (by set_tokens or logout, or its runtime shut down)",
            )
            .with_transient(true))
        })
    }
    .boxed()
    .shared();
    let in_flight = InFlight {
        id,
        flight,
        task: Arc::default(),
    };
    *slot = Some(in_flight.clone());
    shared.in_flight.store(true, SeqCst);
    // Unlocked before spawning: a runtime that is shutting down drops the task at
    // once, inside `spawn`, and its `FreeSlot` takes this lock.
    drop(slot);
    // Moved into the task, so the slot is freed however the task ends: finished,
    // panicked, cancelled, or dropped unpolled by a runtime shutting down.
    let slot_guard = FreeSlot {
        shared: shared.clone(),
        id,
    };
    // The epoch the flight was started in: a `set_tokens` or `logout` that comes
    // before the flight gets going ends it.
    let started = shared.epoch.load(SeqCst);
    // The task waits for its abort handle to be in place before it does
    // anything: else, on a busy machine, it could run as far as its store read
    // (holding the `changing` lock) before this thread stores the handle, and a
    // `set_tokens` or `logout` then could not stop it (they wait for that lock).
    // A cancel before the handle is in place is seen by the epoch check.
    let (registered, wait_registered) = tokio::sync::oneshot::channel::<()>();
    let task = runtime.spawn(async move {
        let slot_guard = slot_guard;
        let _ = wait_registered.await;
        let outcome = run(&slot_guard.shared, mode, started).await;
        // Freed first: a caller who gets this outcome and asks again starts anew.
        drop(slot_guard);
        let _ = send.send(outcome);
    });
    let _ = in_flight.task.set(task.abort_handle());
    let _ = registered.send(());
    Start::Started(in_flight)
}

/// Ends the flight in progress if it has not sent its request yet (its callers
/// get an error, and the store's lease it held is given up). One that has sent
/// goes on: it may bring a rotated refresh token, which must reach the store; it
/// stores it (fenced) and serves nothing, as the caller bumped the epoch.
pub(super) fn cancel(shared: &Shared) {
    let unsent = shared
        .sending
        .compare_exchange(IDLE, STOPPED, SeqCst, SeqCst)
        .is_ok();
    if !unsent {
        return;
    }
    let in_flight = shared
        .flight
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(in_flight) = in_flight {
        shared.in_flight.store(false, SeqCst);
        // Not spawned yet (a moment's race): the epoch, bumped by the caller,
        // keeps it from storing or serving anything.
        if let Some(task) = in_flight.task.get() {
            task.abort();
        }
    }
}

/// Empties the flight slot when the flight task ends, however it ends.
struct FreeSlot {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for FreeSlot {
    fn drop(&mut self) {
        free(&self.shared, self.id);
    }
}

/// Empties the slot if it still holds flight `id`.
fn free(shared: &Shared, id: u64) {
    let mut slot = shared.flight.lock().unwrap_or_else(PoisonError::into_inner);
    if slot.as_ref().is_some_and(|f| f.id == id) {
        *slot = None;
        shared.in_flight.store(false, SeqCst);
    }
}

/// Waits for a flight, for at most the refresh timeout (and a second) on the
/// caller's own side: a flight whose runtime stopped running it (shut down, or
/// blocked) never holds its callers longer, and is cleared from the slot so that
/// the next caller starts a new one.
async fn wait(shared: &Shared, in_flight: InFlight) -> Result<Arc<Cached>> {
    let s = &shared.settings;
    let limit = s.refresh_timeout + CALLER_GRACE;
    tokio::select! {
        biased;
        outcome = in_flight.flight => outcome,
        () = s.clock.sleep(limit) => {
            free(shared, in_flight.id);
            Err(refresh_timed_out(shared))
        }
    }
}

fn s_monotonic(shared: &Shared) -> std::time::Duration {
    shared.settings.clock.monotonic()
}

/// How much longer than the refresh timeout a caller waits for a flight.
const CALLER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

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
        let state = cached.state(precise_now(shared));
        // Not held across the waits below (a guard pins a slot of arc-swap's).
        let cached = Guard::into_inner(cached);
        if matches!(state, State::Fresh | State::Stale) && !recheck::due_precisely(shared, &cached) {
            // The clock moved back between the caller's check and this one, or the
            // coarse clock left the token's last moments to the precise one.
            shared.counters.hit();
            return Ok(Guard::from_inner(cached));
        }
        let mut tried_again = false;
        let mut rechecked = false;
        loop {
            let epoch = shared.epoch.load(SeqCst);
            let flight = match join_or_start(shared, Mode::Due) {
                Start::Done(fresh) => {
                    shared.counters.hit();
                    return Ok(Guard::from_inner(fresh));
                }
                Start::BackingOff
                    if state != State::Expired && !recheck::due_precisely(shared, &cached) =>
                {
                    shared.counters.hit();
                    return Ok(Guard::from_inner(cached));
                }
                Start::BackingOff => return Err(no_valid_token(shared, last_error(shared))),
                Start::NoRuntime(error) => return Err(error),
                Start::Joined(flight) => {
                    Counters::add(&shared.counters.waits);
                    flight
                }
                Start::Started(flight) => flight,
            };
            let waiting = s_monotonic(shared);
            let waited = wait(shared, flight).await;
            super::observe::waited(shared, s_monotonic(shared).saturating_sub(waiting));
            let (error, expired) = match waited {
                // A flight that read the store too long ago for this caller
                // (it started before the copy lapsed): one more, which reads it now.
                Ok(fresh) if !rechecked && recheck::due_precisely(shared, &fresh) => {
                    rechecked = true;
                    continue;
                }
                // Not if it expired on its way (a slow store, or the wall clock
                // stepped forward meanwhile).
                Ok(fresh) if fresh.state(precise_now(shared)) != State::Expired => {
                    return Ok(Guard::from_inner(fresh))
                }
                Ok(_) => (
                    Error::source_failed(
                        &shared.settings.source_name,
                        "the new token had expired by the time it was ready; is the clock stepping?",
                    )
                    .with_transient(true),
                    true,
                ),
                Err(error) => (error, false),
            };
            // Static stability: a token that is still valid beats an error (not
            // a copy due for its re-read: one more flight reads the store).
            let current = shared.current.load();
            if current.state(precise_now(shared)) != State::Expired {
                if !recheck::due_precisely(shared, &current) {
                    return Ok(current);
                }
                if !rechecked {
                    rechecked = true;
                    continue;
                }
            }
            // A `set_tokens` ended that flight early: one more, with its token.
            // (After a `logout`, a call made before it gets no new login.)
            // So does a token that expired on its way: its refresh token is fresh.
            let superseded = shared.epoch.load(SeqCst) != epoch;
            if (superseded || expired) && !tried_again && !shared.logged_out.load(SeqCst) {
                tried_again = true;
                continue;
            }
            return Err(no_valid_token(shared, error));
        }
    }
    .boxed()
}

/// A new token from the source now, joining a flight already running.
pub(super) async fn forced(shared: &Arc<Shared>) -> Result<Arc<Cached>> {
    match join_or_start(shared, Mode::Forced) {
        Start::Joined(flight) | Start::Started(flight) => wait(shared, flight).await,
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
async fn run(shared: &Arc<Shared>, mode: Mode, started: u64) -> Result<Arc<Cached>> {
    let span = tracing::debug_span!(
        "tokenwarden.refresh",
        source = %shared.settings.source_name,
        key = %shared.settings.key,
        ?mode,
        reason = super::reasons::current(shared).as_str(),
        error.type = tracing::field::Empty,
    );
    let record = super::reasons::Attempt::begin(shared);
    let s = &shared.settings;
    // On the monotonic clock: a wall clock stepped back extends no wait.
    let deadline = Deadline::after(s.clock.clone(), s.refresh_timeout);
    let epoch = shared.epoch.load(SeqCst);
    // The attempt keeps to `deadline` up to the token request's answer; storing
    // what the answer brought is not cut short (see `chain::within`).
    let attempt = AssertUnwindSafe(async {
        // Not halfway through a `set_tokens` or `logout`: after it, with its epoch.
        let changing = chain::within(shared, &deadline, async {
            Ok(between_changes(shared).await)
        });
        let _changing = match changing.await {
            Ok(guard) => guard,
            Err(error) => return (epoch, Err(error)),
        };
        let epoch = shared.epoch.load(SeqCst);
        if epoch != started {
            return (started, Err(chain::superseded(shared)));
        }
        shared.sending.store(IDLE, SeqCst);
        (epoch, attempt(shared, mode, epoch, &deadline).await)
    })
    .catch_unwind();
    let (epoch, outcome) = match attempt.instrument(span.clone()).await {
        Ok(outcome) => outcome,
        Err(_) => (
            epoch,
            Err(Error::source_failed(
                &s.source_name,
                "the token source panicked; see the panic message above",
            )),
        ),
    };
    let _entered = span.enter();
    record.end(shared, &outcome);
    match &outcome {
        Ok(_) => shared.backoff.reset(),
        // Superseded by a logout or set_tokens: not a failure of the source.
        Err(_) if shared.epoch.load(SeqCst) != epoch => {}
        // Nothing new in the store: the backoff goes on as it was.
        Err(_) if mode == Mode::StoreOnly => {}
        Err(error) => {
            if !span.is_disabled() {
                span.record("error.type", error.type_name());
            }
            let now = s.clock.now_millis();
            // The attempt looked in the store as it began; the next look waits.
            shared.store_checked_at.store(now, SeqCst);
            let delay =
                shared
                    .backoff
                    .record_failure(now, error.clone(), s.backoff_initial, s.backoff_max);
            // Counted once the backoff is in place: whoever sees the failure in
            // the stats sees its backoff too (it starts at the failure's time,
            // not at a later reading of the clock).
            Counters::add(&shared.counters.failures);
            super::observe::failure(shared, error);
            tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "getting a token failed; backing off");
        }
    }
    outcome
}

/// The read side of `changing`, once no `set_tokens` or `logout` is under way:
/// one that has cancelled the flights before it but not yet taken the write side
/// is waited for, so that a flight started in that moment (a caller retrying
/// after its flight was cancelled) does not run ahead of it, holding the read
/// side it waits for.
async fn between_changes(shared: &Shared) -> tokio::sync::RwLockReadGuard<'_, ()> {
    loop {
        let done = shared.changed.notified();
        tokio::pin!(done);
        // Registered before the check: an end told after it is not missed.
        done.as_mut().enable();
        let guard = shared.changing.read().await;
        if shared.changes.load(SeqCst) == 0 {
            return guard;
        }
        drop(guard);
        done.await;
    }
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
        let from = recheck::now(shared);
        let stored = match read_store(shared).await {
            Ok(stored) => stored,
            Err(_) => {
                recheck::unreadable(shared, &current, from);
                return Err(last_error(shared));
            }
        };
        let now = recheck::reconcile(shared, &current, stored.as_ref(), from, epoch).await?;
        if !Arc::ptr_eq(&now, &current) && now.is_held() {
            return Ok(now);
        }
        return match adopt(shared, &now, stored.as_ref(), epoch, from).await? {
            Some(adopted) => Ok(adopted),
            None => Err(last_error(shared)),
        };
    }
    chain::obtain(shared, mode, epoch, deadline).await
}
