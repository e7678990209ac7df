//! The recovery chain of one refresh, under the store's lease (DESIGN.md,
//! coordination protocol; `docs/design/001-fenced-leases.md`):
//!
//! 1. a token another instance stored → served, nothing sent;
//! 2. the lease: of all instances sharing the store, one goes on; without it no
//!    refresh token is spent; a waiter whose wait ends because the holder stored
//!    a token takes that token instead (every waiter at once, not in turn);
//! 3. the store read again (whoever held the lease before may have stored a token);
//! 4. the refresh with the stored token's refresh token (or this manager's own
//!    token, if the store failed to save it; an empty store means a new login),
//!    sent only if no `set_tokens`/`logout` superseded this flight and the lease
//!    is still held, with the lease's end as the source's deadline;
//! 5. on `invalid_grant`, the store read again before a full login;
//! 6. the new token saved under the lease (a compare-and-set against its fence)
//!    before anyone sees it; refused, the stored token is adopted instead.

use super::cached::{Cached, State};
use super::install::{adopt, complete, load_stored, prepare, publish, read_store};
use super::observe::{self, LeaseOutcome};
use super::stats::Counters;
use super::{recheck, unsaved, Shared};
use crate::events::TokenEventKind;
use crate::source::{self, Deadline};
use crate::store::{Lease, LeaseWait};
use crate::{Error, Result, Token};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

/// What a flight is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// The token is stale, expiring or gone: a token in the store will do.
    Due,
    /// The caller wants a new token from the source, whatever is cached or stored.
    Forced,
    /// Backing off after a failure: only a token another process stored will do.
    StoreOnly,
}

/// Whether the flight in progress has sent a request to the source (its
/// `Shared::sending`): one that has not can be stopped by `set_tokens`; one that
/// has may bring a rotated refresh token, which must reach the store.
pub(super) const IDLE: u8 = 0;
pub(super) const SENDING: u8 = 1;
pub(super) const STOPPED: u8 = 2;

/// A new token for a due or forced refresh, within `deadline`.
pub(super) async fn obtain(
    shared: &Arc<Shared>,
    mode: Mode,
    epoch: u64,
    deadline: &Deadline,
) -> Result<Arc<Cached>> {
    let s = &shared.settings;
    let mut current = shared.current.load_full();
    let fresh = |c: &Cached| {
        c.state(precise_now(shared)) == State::Fresh && !recheck::due_precisely(shared, c)
    };
    if mode == Mode::Due && fresh(&current) {
        // Put in place while this flight waited to start (`set_tokens`).
        return Ok(current);
    }
    let Some(store) = &s.store else {
        return refresh(shared, &current, Seen::NoStore, None, epoch, deadline).await;
    };
    // An unsaved token of this manager saved first, under the lease it kept; if
    // that fails, the flight goes on under that lease.
    if let Some(kept) = unsaved::save_under_kept_lease(shared).await {
        return finish_under(shared, mode, &current, epoch, kept, deadline).await;
    }
    // A store whose lease wait sees a changed token at once needs no read first
    // where a new token is wanted; a copy still fresh (a flight that only checks
    // the store, see `recheck`) is checked by a read, which takes no lease.
    let wanted = current.state(precise_now(shared)) != State::Fresh;
    if mode == Mode::Due && !(wanted && store.leases_see_changes()) {
        let from = recheck::now(shared);
        let read = within(shared, deadline, async { Ok(read_store(shared).await) }).await?;
        let stored = match read {
            Ok(stored) => {
                // The copy checked against the store: kept, replaced, or dropped.
                current =
                    recheck::reconcile(shared, &current, stored.as_ref(), from, epoch).await?;
                if fresh(&current) {
                    return Ok(current);
                }
                stored
            }
            Err(_) => {
                recheck::unreadable(shared, &current, from);
                None
            }
        };
        if let Some(adopted) = adopt(shared, &current, stored.as_ref(), epoch, from).await? {
            return Ok(adopted);
        }
    }
    // Any token newer than ours will do: one the holder stores ends the wait.
    // A wait that ends on a token this flight cannot use is made once more: the
    // store now knows what it holds, and watches from there.
    let mut watches = 0;
    let lease = loop {
        let from = recheck::now(shared);
        let waited = within(
            shared,
            deadline,
            store.lease_unless_changed(&s.key, s.lease_ttl),
        )
        .await;
        let stored = match waited {
            Ok(LeaseWait::Held(lease)) => {
                observe::granted(shared, &lease);
                break lease;
            }
            Ok(LeaseWait::Changed(stored)) => {
                observe::lease(shared, LeaseOutcome::Changed);
                stored
            }
            Err(error) => return without_lease(shared, &current, epoch, deadline, error).await,
        };
        // What the wait found is a read of the store: it counts for the copy.
        current = recheck::reconcile(shared, &current, stored.as_ref(), from, epoch).await?;
        if mode == Mode::Due && fresh(&current) {
            return Ok(current);
        }
        if let Some(adopted) = adopt(shared, &current, stored.as_ref(), epoch, from).await? {
            return Ok(adopted);
        }
        watches += 1;
        if watches == 2 {
            match within(shared, deadline, store.lease(&s.key, s.lease_ttl)).await {
                Ok(lease) => {
                    observe::granted(shared, &lease);
                    break lease;
                }
                Err(error) => return without_lease(shared, &current, epoch, deadline, error).await,
            }
        }
    };
    finish_under(shared, mode, &current, epoch, lease, deadline).await
}

/// Steps 3 to 6 under `lease`, which is then kept by a token it could not save
/// (see `unsaved`), or given up.
async fn finish_under(
    shared: &Arc<Shared>,
    mode: Mode,
    current: &Arc<Cached>,
    epoch: u64,
    lease: Lease,
    deadline: &Deadline,
) -> Result<Arc<Cached>> {
    let outcome = under_lease(shared, mode, current, epoch, &lease, deadline).await;
    if let Some(lease) = unsaved::keep_lease(shared, lease) {
        if let Err(error) = lease.release().await {
            tracing::warn!(%error, "the store's lease ended before this refresh released it");
        }
    }
    outcome
}

/// Steps 3 to 6.
async fn under_lease(
    shared: &Arc<Shared>,
    mode: Mode,
    current: &Arc<Cached>,
    epoch: u64,
    lease: &Lease,
    deadline: &Deadline,
) -> Result<Arc<Cached>> {
    // A token stored by the lease's previous holder (for a forced refresh: a token
    // newer than the caller's counts as the forced refresh).
    let from = recheck::now(shared);
    let (stored, readable) = match within(shared, deadline, read_store(shared)).await {
        Ok(stored) => (stored, true),
        // Unreadable: this manager's refresh token may have been rotated by
        // another instance since; only a fetch, which spends nothing, may go on.
        Err(error) if current.token().is_some_and(|t| t.refresh_token.is_some()) => {
            return Err(error)
        }
        Err(_) => (None, false),
    };
    // What this read shows counts for the copy too: one the store no longer
    // holds is not served on if what follows fails; another token stored there
    // is served instead.
    let reconciled;
    let current = if readable {
        reconciled = recheck::reconcile(shared, current, stored.as_ref(), from, epoch).await?;
        if !Arc::ptr_eq(&reconciled, current) && reconciled.is_held() {
            return Ok(reconciled);
        }
        &reconciled
    } else {
        current
    };
    if let Some(adopted) = adopt(shared, current, stored.as_ref(), epoch, from).await? {
        return Ok(adopted);
    }
    if mode == Mode::Due {
        // `set_tokens` in this process may have put a good token in place meanwhile.
        let now = shared.current.load_full();
        let state = now.state(precise_now(shared));
        if now.generation != current.generation && matches!(state, State::Fresh | State::Stale) {
            return Ok(now);
        }
    }
    refresh(
        shared,
        current,
        Seen::Store(stored),
        Some(lease),
        epoch,
        deadline,
    )
    .await
}

/// The lease could not be had (held past its TTL by a stuck instance, or the store
/// is down). A refresh token is not spent without it: another instance may be
/// spending it. A fetch spends nothing, so one is made, served by this instance
/// only and not stored (the store belongs to the lease's holder).
async fn without_lease(
    shared: &Arc<Shared>,
    current: &Arc<Cached>,
    epoch: u64,
    deadline: &Deadline,
    error: Error,
) -> Result<Arc<Cached>> {
    observe::lease(shared, LeaseOutcome::Unavailable);
    let from = recheck::now(shared);
    let stored = within(shared, deadline, async { Ok(load_stored(shared).await) }).await?;
    if let Some(adopted) = adopt(shared, current, stored.as_ref(), epoch, from).await? {
        return Ok(adopted);
    }
    let spends = stored
        .iter()
        .chain(current.token())
        .any(|t| t.refresh_token.is_some());
    if spends {
        tracing::warn!(%error, "no lease: the refresh token is not spent without it");
        return Err(error);
    }
    tracing::warn!(%error, "no lease: fetching a token for this instance only; it is not stored");
    refresh(shared, current, Seen::Store(None), None, epoch, deadline).await
}

/// What the chain saw of the store.
enum Seen {
    /// The manager has no store: its own token is all there is.
    NoStore,
    /// What the store held (under the lease, when there is one).
    Store(Option<Token>),
}

/// The token whose refresh token to send: with a store, the stored one (the
/// store is the fleet's truth: another instance may have rotated the token since
/// this one got its copy, and an empty store was cleared by a logout), except
/// this manager's own token that the store failed to save; without a store, its
/// own. `None`: log in again.
fn refresh_base(shared: &Shared, current: &Cached, seen: &Seen) -> Option<Token> {
    let ours = current.token().filter(|t| t.refresh_token.is_some());
    match seen {
        Seen::Store(_) if ours.is_some() && unsaved::is(shared, current) => ours.cloned(),
        Seen::Store(stored) => stored.clone().filter(|t| t.refresh_token.is_some()),
        Seen::NoStore => ours.cloned(),
    }
}

/// Refresh with the refresh token of [`refresh_base`], else fetch; then
/// [`accept`]. `lease` is `None` when nothing may be stored.
async fn refresh(
    shared: &Arc<Shared>,
    current: &Arc<Cached>,
    seen: Seen,
    lease: Option<&Lease>,
    epoch: u64,
    deadline: &Deadline,
) -> Result<Arc<Cached>> {
    let s = &shared.settings;
    let replaces = match &seen {
        Seen::Store(stored) => stored.clone(),
        Seen::NoStore => None,
    };
    if let Some(base) = refresh_base(shared, current, &seen) {
        let deadline = ready_to_send(shared, epoch, lease, deadline)?;
        Counters::add(&shared.counters.refreshes);
        tracing::debug!(fingerprint = %base.fingerprint(), "refreshing the token");
        let refreshed = source::scope(deadline.clone(), s.source.refresh(&base));
        let refreshed = within(shared, &deadline, refreshed);
        match observe::request(shared, "refresh_token", refreshed).await {
            Ok(mut token) => {
                if token.refresh_token.is_none() {
                    token.refresh_token = base.refresh_token.clone();
                }
                let kind = TokenEventKind::Refreshed;
                return accept(shared, token, kind, epoch, lease, replaces.as_ref()).await;
            }
            Err(error) if error.is_invalid_grant() => {
                // Another instance may have rotated the refresh token: its token
                // is in the store, and a new login is needed only if it is not.
                let from = recheck::now(shared);
                let stored = within(shared, &deadline, async { Ok(load_stored(shared).await) });
                let rotated = stored.await?.filter(|t| !same_refresh_token(t, &base));
                if let Some(adopted) = adopt(shared, current, rotated.as_ref(), epoch, from).await?
                {
                    return Ok(adopted);
                }
                tracing::info!(%error, "the refresh token was rejected; logging in again");
            }
            Err(error) => return Err(error),
        }
    }
    let deadline = ready_to_send(shared, epoch, lease, deadline)?;
    Counters::add(&shared.counters.fetches);
    tracing::debug!("fetching a new token");
    let fetched = within(
        shared,
        &deadline,
        source::scope(deadline.clone(), s.source.fetch()),
    );
    let token = observe::request(shared, s.source.grant_name(), fetched).await?;
    accept(
        shared,
        token,
        TokenEventKind::Fetched,
        epoch,
        lease,
        replaces.as_ref(),
    )
    .await
}

fn same_refresh_token(a: &Token, b: &Token) -> bool {
    match (&a.refresh_token, &b.refresh_token) {
        (Some(a), Some(b)) => a.ct_eq(b),
        (None, None) => true,
        _ => false,
    }
}

/// Whether a request may go to the source now, and by when it must be done: not
/// once a `set_tokens` or `logout` superseded this flight, nor once the lease has
/// ended (its end is the source's deadline).
fn ready_to_send(
    shared: &Shared,
    epoch: u64,
    lease: Option<&Lease>,
    deadline: &Deadline,
) -> Result<Deadline> {
    let s = &shared.settings;
    if shared.epoch.load(SeqCst) != epoch {
        return Err(superseded(shared));
    }
    // From here on a `set_tokens` waits for this flight instead of stopping it.
    let sending = shared
        .sending
        .compare_exchange(IDLE, SENDING, SeqCst, SeqCst);
    if sending == Err(STOPPED) {
        return Err(superseded(shared));
    }
    // The answer must reach the store while the lease is held: the request's
    // time ends a margin before the lease does.
    let margin = s.lease_ttl / super::SAVE_MARGIN_DIVISOR;
    match lease.and_then(Lease::held_for) {
        Some(left) if left <= margin => {
            Counters::add(&shared.counters.lease_losses);
            observe::lease(shared, LeaseOutcome::Lost);
            Err(Error::lease_lost(
                s.store_name.as_deref().unwrap_or_default(),
                "the lease ends too soon to store an answer; the token request was not sent",
            ))
        }
        Some(left) => Ok(deadline.capped(left - margin)),
        None => Ok(deadline.clone()),
    }
}

/// The time (Unix ms) from the clock's precise reading, not the hit path's coarse
/// one: off the hit path, the last moments before expiry are decided with it.
pub(super) fn precise_now(shared: &Shared) -> u64 {
    crate::clock::unix_millis(shared.settings.clock.now())
}

/// `work`, unless `deadline` comes first. Everything up to the token request's
/// answer runs within the refresh timeout; saving what the answer brought does
/// not: a rotated refresh token is never dropped for our own timeout (the save is
/// fenced, so a late one is refused rather than harmful).
pub(super) async fn within<T>(
    shared: &Shared,
    deadline: &Deadline,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let timeout = shared.settings.clock.sleep(deadline.remaining());
    tokio::select! {
        biased;
        done = work => done,
        () = timeout => Err(refresh_timed_out(shared)),
    }
}

/// A refresh that took longer than the refresh timeout.
pub(super) fn refresh_timed_out(shared: &Shared) -> Error {
    let s = &shared.settings;
    Error::transport(
        &s.source_name,
        format!(
            "no token within the refresh timeout of {:?}: the token endpoint or the store hangs",
            s.refresh_timeout
        ),
    )
    .with_timeout()
}

/// The error of a flight that a `set_tokens` or `logout` made pointless.
pub(super) fn superseded(shared: &Shared) -> Error {
    Error::source_failed(
        &shared.settings.source_name,
        "the token was replaced or cleared (set_tokens or logout) while a refresh was in flight",
    )
    .with_transient(true)
}

/// Checks and completes a new token, stores it under the lease, then serves it
/// and tells listeners. A save refused for a lost lease serves what is stored
/// instead; a save that failed otherwise serves the token (its refresh token is
/// the only usable one now) and keeps retrying the save.
async fn accept(
    shared: &Arc<Shared>,
    token: Token,
    kind: TokenEventKind,
    epoch: u64,
    lease: Option<&Lease>,
    replaces: Option<&Token>,
) -> Result<Arc<Cached>> {
    let s = &shared.settings;
    let now = s.clock.now();
    // A token that looks expired on arrival (the wall clock stepped forward) is
    // still stored if it has a refresh token: that refresh token may be the
    // grant's only live one now. It is not served; the next attempt refreshes it.
    let token = complete(shared, token, now, true)?;
    let cached = prepare(shared, token, now)?;
    let writing = shared.writes.lock().await;
    if shared.epoch.load(SeqCst) != epoch {
        // Superseded by `set_tokens` after the request went out: the rotated
        // token is stored all the same (fenced), so that no instance sends the
        // spent refresh token, and `set_tokens` writes over it next.
        if let (Some(store), Some(lease), TokenEventKind::Refreshed) = (&s.store, lease, kind) {
            if let Err(error) = store.save_leased(&s.key, &cached.token, lease).await {
                if error.is_lease_lost() {
                    observe::lease(shared, LeaseOutcome::Fenced);
                }
                tracing::warn!(%error, "could not store the token of a superseded refresh");
            }
        }
        let current = shared.current.load_full();
        return match current.state(s.clock.now_millis()) {
            State::Expired => Err(superseded(shared)),
            _ => Ok(current),
        };
    }
    let mut saved = true;
    if let (Some(store), Some(lease)) = (&s.store, lease) {
        // Stored before anyone sees it, so a rotated refresh token is never lost.
        match store.save_leased(&s.key, &cached.token, lease).await {
            Ok(()) => {}
            Err(error) if error.is_lease_lost() => {
                drop(writing);
                Counters::add(&shared.counters.lease_losses);
                observe::lease(shared, LeaseOutcome::Fenced);
                tracing::warn!(%error, "another instance took over the lease; using what it stored");
                let from = recheck::now(shared);
                let stored = store.load(&s.key).await.ok().flatten();
                let current = shared.current.load_full();
                return match adopt(shared, &current, stored.as_ref(), epoch, from).await? {
                    Some(adopted) => Ok(adopted),
                    None => Err(error),
                };
            }
            Err(error) => {
                Counters::add(&shared.counters.save_failures);
                tracing::warn!(%error, "could not store the new token; serving it and retrying the save");
                saved = false;
            }
        }
    }
    let cached = Arc::new(cached);
    if !saved {
        // Marked before anyone sees it: the token is this manager's only copy.
        unsaved::keep_saving(shared, &cached, replaces, lease.and_then(Lease::fence));
    }
    tracing::info!(
        kind = ?kind,
        fingerprint = %cached.token.fingerprint(),
        expires_in_secs = cached.token.expires_in(now).map(|d| d.as_secs()),
        "new token"
    );
    publish(shared, cached.clone());
    drop(writing);
    shared.emit(kind, Some(&cached.token));
    Ok(cached)
}
