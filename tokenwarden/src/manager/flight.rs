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
use super::stats::Counters;
use super::Shared;
use crate::events::TokenEventKind;
use crate::store::Lease;
use crate::{Error, Result, Token};
use arc_swap::Guard;
use futures_util::future::{BoxFuture, Shared as SharedFuture};
use futures_util::FutureExt as _;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, PoisonError};
use std::time::SystemTime;
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
async fn run(shared: &Shared, mode: Mode) -> Result<Arc<Cached>> {
    let span = tracing::debug_span!(
        "tokenwarden.refresh",
        source = %shared.settings.source_name,
        key = %shared.settings.key,
        ?mode
    );
    let epoch = shared.epoch.load(SeqCst);
    let s = &shared.settings;
    let attempt = AssertUnwindSafe(obtain(shared, mode, epoch)).catch_unwind();
    let deadline = s.clock.sleep_until(s.clock.now() + s.refresh_timeout);
    let outcome = tokio::select! {
        outcome = attempt.instrument(span.clone()) => outcome.unwrap_or_else(|_| {
            Err(Error::source_failed(
                &s.source_name,
                "the token source panicked; see the panic message above",
            ))
        }),
        () = deadline => Err(Error::transport(
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

/// The recovery chain, under the store's lease when there is a store.
async fn obtain(shared: &Shared, mode: Mode, epoch: u64) -> Result<Arc<Cached>> {
    let s = &shared.settings;
    let current = shared.current.load_full();
    let mut stored = None;
    let mut lease = Lease::none();
    if mode == Mode::StoreOnly {
        let stored = load_stored(shared).await;
        return match adopt(shared, &current, stored.as_ref(), epoch).await? {
            Some(adopted) => Ok(adopted),
            None => Err(last_error(shared)),
        };
    }
    if let Some(store) = &s.store {
        if mode == Mode::Due {
            stored = load_stored(shared).await;
            if let Some(adopted) = adopt(shared, &current, stored.as_ref(), epoch).await? {
                return Ok(adopted);
            }
        }
        lease = store
            .lease(&s.key, s.lease_ttl)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "could not take the store's lease; refreshing without it");
                Lease::none()
            });
        if mode == Mode::Due && lease.is_held() {
            // Whoever held the lease before us may have stored a new token.
            stored = load_stored(shared).await;
            if let Some(adopted) = adopt(shared, &current, stored.as_ref(), epoch).await? {
                release(lease).await;
                return Ok(adopted);
            }
        }
    }
    let result = match new_token(shared, &current, stored.as_ref()).await {
        Ok((token, kind)) => accept(shared, token, kind, epoch).await,
        Err(error) => Err(error),
    };
    release(lease).await;
    result
}

async fn release(lease: Lease) {
    if let Err(error) = lease.release().await {
        tracing::warn!(%error, "could not release the store's lease; it will expire");
    }
}

async fn load_stored(shared: &Shared) -> Option<Token> {
    let store = shared.settings.store.as_ref()?;
    match store.load(&shared.settings.key).await {
        Ok(token) => token,
        Err(error) => {
            tracing::warn!(%error, "could not read the stored token; getting a new one");
            None
        }
    }
}

/// Uses the stored token if it is another one than ours (another process got it),
/// still valid, and expires later than ours.
async fn adopt(
    shared: &Shared,
    current: &Cached,
    stored: Option<&Token>,
    epoch: u64,
) -> Result<Option<Arc<Cached>>> {
    let Some(stored) = stored else {
        return Ok(None);
    };
    let now = shared.settings.clock.now();
    let ours = current.token();
    let newer = match ours {
        Some(ours) => {
            !ours.access_token.ct_eq(&stored.access_token) && stored.expires_at > ours.expires_at
        }
        None => true,
    };
    let expires_at = stored.expires_at.or_else(|| stored.jwt_expiry());
    if !newer || stored.access_token.is_empty() || expires_at.is_none_or(|at| at <= now) {
        return Ok(None);
    }
    let _writing = shared.writes.lock().await;
    if shared.epoch.load(SeqCst) != epoch {
        return Ok(None);
    }
    let mut token = stored.clone();
    token.expires_at = expires_at;
    let cached = Arc::new(prepare(shared, token, now)?);
    Counters::add(&shared.counters.store_loads);
    tracing::debug!(fingerprint = %cached.token.fingerprint(), "using the token found in the store");
    publish(shared, cached.clone());
    Ok(Some(cached))
}

/// Refresh with the best refresh token we know (the store's may be newer), falling
/// back to a full fetch when the refresh token is rejected.
async fn new_token(
    shared: &Shared,
    current: &Cached,
    stored: Option<&Token>,
) -> Result<(Token, TokenEventKind)> {
    let s = &shared.settings;
    let base = stored
        .into_iter()
        .chain(current.token())
        .find(|t| t.refresh_token.is_some());
    if let Some(base) = base {
        Counters::add(&shared.counters.refreshes);
        tracing::debug!(fingerprint = %base.fingerprint(), "refreshing the token");
        match s.source.refresh(base).await {
            Ok(mut token) => {
                if token.refresh_token.is_none() {
                    token.refresh_token = base.refresh_token.clone();
                }
                return Ok((token, TokenEventKind::Refreshed));
            }
            Err(error) if error.is_invalid_grant() => {
                tracing::info!(%error, "the refresh token was rejected; logging in again");
            }
            Err(error) => return Err(error),
        }
    }
    Counters::add(&shared.counters.fetches);
    tracing::debug!("fetching a new token");
    s.source
        .fetch()
        .await
        .map(|token| (token, TokenEventKind::Fetched))
}

/// Checks and completes a new token, stores it, then serves it and tells listeners.
async fn accept(
    shared: &Shared,
    token: Token,
    kind: TokenEventKind,
    epoch: u64,
) -> Result<Arc<Cached>> {
    let s = &shared.settings;
    let now = s.clock.now();
    let token = complete(shared, token, now, false)?;
    let cached = prepare(shared, token, now)?;
    let _writing = shared.writes.lock().await;
    if shared.epoch.load(SeqCst) != epoch {
        // A logout or set_tokens happened meanwhile: theirs wins.
        let current = shared.current.load_full();
        return match current.state(s.clock.now_millis()) {
            State::Expired => Err(Error::source_failed(
                &s.source_name,
                "the token was cleared while a refresh was in flight",
            )),
            _ => Ok(current),
        };
    }
    if let Some(store) = &s.store {
        // Stored before anyone sees it, so a rotated refresh token is never lost.
        if let Err(error) = store.save(&s.key, &cached.token).await {
            tracing::warn!(%error, "could not store the new token; serving it anyway");
        }
    }
    let cached = Arc::new(cached);
    tracing::info!(
        kind = ?kind,
        fingerprint = %cached.token.fingerprint(),
        expires_in_secs = cached.token.expires_in(now).map(|d| d.as_secs()),
        "new token"
    );
    publish(shared, cached.clone());
    shared.emit(kind, Some(&cached.token));
    Ok(cached)
}

/// Gives the token an expiry (relative lifetime, JWT `exp`, or the default) and
/// rejects tokens that cannot be served.
fn complete(
    shared: &Shared,
    mut token: Token,
    now: SystemTime,
    allow_expired: bool,
) -> Result<Token> {
    let s = &shared.settings;
    if let Some(lifetime) = token.lifetime.take() {
        token.expires_at = Some(now + lifetime);
    }
    token.issued_at.get_or_insert(now);
    if token.expires_at.is_none() {
        token.expires_at = Some(token.jwt_expiry().unwrap_or(now + s.default_lifetime));
    }
    let invalid = |message: String| Error::invalid_response(&s.source_name, message);
    let refreshable = allow_expired && token.refresh_token.is_some();
    if token.access_token.is_empty() && !refreshable {
        return Err(invalid("the access token is empty".into()));
    }
    if token.is_expired_at(now) && !refreshable {
        let ago = token
            .expires_at
            .and_then(|at| now.duration_since(at).ok())
            .unwrap_or_default();
        return Err(invalid(format!(
            "the token had already expired {}s ago when it arrived; check the clocks of this machine and the server",
            ago.as_secs()
        )));
    }
    Ok(token)
}

/// The cached form of a completed token, with the next generation number.
fn prepare(shared: &Shared, token: Token, now: SystemTime) -> Result<Cached> {
    let s = &shared.settings;
    Cached::new(
        token,
        now,
        &s.windows,
        next_generation(shared),
        &s.source_name,
    )
}

fn next_generation(shared: &Shared) -> u64 {
    shared.generations.fetch_add(1, SeqCst) + 1
}

fn publish(shared: &Shared, cached: Arc<Cached>) {
    shared.current.store(cached);
    shared.wake.notify_one();
}

/// [`TokenManager::set_tokens`](crate::TokenManager::set_tokens).
pub(super) async fn set(shared: &Shared, token: Token) -> Result<()> {
    let s = &shared.settings;
    let now = s.clock.now();
    let token = complete(shared, token, now, true)?;
    let cached = prepare(shared, token, now)?;
    let _writing = shared.writes.lock().await;
    if let Some(store) = &s.store {
        store.save(&s.key, &cached.token).await?;
    }
    shared.epoch.fetch_add(1, SeqCst);
    shared.logged_out.store(false, SeqCst);
    shared.backoff.reset();
    let cached = Arc::new(cached);
    publish(shared, cached.clone());
    shared.emit(TokenEventKind::Set, Some(&cached.token));
    Ok(())
}

/// [`TokenManager::logout`](crate::TokenManager::logout).
pub(super) async fn logout(shared: &Shared) -> Result<()> {
    let s = &shared.settings;
    // Under the write lock, a refresh cannot land between reading the token to
    // revoke and clearing it; the epoch bump makes any refresh in flight drop its result.
    let writing = shared.writes.lock().await;
    shared.epoch.fetch_add(1, SeqCst);
    shared.logged_out.store(true, SeqCst);
    let cached = shared.current.load_full();
    let token = match cached.token() {
        Some(token) => Some(token.clone()),
        None => load_stored(shared).await,
    };
    publish(shared, Cached::empty());
    shared.backoff.reset();
    let mut first_error = None;
    if let Some(token) = token.filter(|t| !t.access_token.is_empty()) {
        if let Err(error) = s.source.revoke(&token).await {
            tracing::warn!(%error, "could not revoke the token; clearing it anyway");
            first_error = Some(error);
        }
    }
    if let Some(store) = &s.store {
        if let Err(error) = store.delete(&s.key).await {
            first_error.get_or_insert(error);
        }
    }
    drop(writing);
    tracing::info!(source = %s.source_name, "logged out");
    shared.emit(TokenEventKind::Cleared, None);
    first_error.map_or(Ok(()), Err)
}
