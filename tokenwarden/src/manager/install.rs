//! Putting a token in place: completing what a source returned, the cached form,
//! publishing it to callers, reading the store, and adopting a token another
//! instance stored.

use super::cached::Cached;
use super::stats::Counters;
use super::Shared;
use crate::{Error, Result, Token};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::SystemTime;

/// The stored token, or `None` when there is none or it cannot be read (logged:
/// an unreadable store is not a reason to stop serving).
pub(super) async fn load_stored(shared: &Shared) -> Option<Token> {
    read_store(shared).await.ok().flatten()
}

/// The stored token (`Ok(None)` without a store); an error is logged.
pub(super) async fn read_store(shared: &Shared) -> Result<Option<Token>> {
    let Some(store) = shared.settings.store.as_ref() else {
        return Ok(None);
    };
    store.load(&shared.settings.key).await.inspect_err(|error| {
        tracing::warn!(%error, "could not read the stored token");
    })
}

/// Whether `stored` is another token than `ours` that may replace it (if it can
/// be served: [`install_stored`] checks that): not older than ours (or ours was rejected or is gone). A store
/// written under fenced leases never goes back, so another token of the same
/// expiry there is newer; except when ours is the one the store failed to save.
fn replaces(shared: &Shared, ours: &Cached, stored: &Token) -> bool {
    match ours.token() {
        Some(token) => {
            let unsaved = super::unsaved::is(shared, ours);
            !token.access_token.ct_eq(&stored.access_token)
                && !super::unsaved::replaced(shared, ours, stored)
                && (!ours.is_held()
                    || stored.expires_at > token.expires_at
                    || (stored.expires_at == token.expires_at && !unsaved))
        }
        None => true,
    }
}

/// Serves the stored token if it [replaces](replaces) `ours` and no logout or
/// `set_tokens` happened since `epoch`. `from`: when the read that found it began
/// (monotonic ms).
pub(super) async fn adopt(
    shared: &Shared,
    ours: &Cached,
    stored: Option<&Token>,
    epoch: u64,
    from: u64,
) -> Result<Option<Arc<Cached>>> {
    match stored.filter(|stored| replaces(shared, ours, stored)) {
        Some(stored) => install_stored(shared, stored, epoch, from).await,
        None => Ok(None),
    }
}

/// Serves `stored` (found by a read that began at `from`) if it can be served and
/// no logout or `set_tokens` happened since `epoch`.
pub(super) async fn install_stored(
    shared: &Shared,
    stored: &Token,
    epoch: u64,
    from: u64,
) -> Result<Option<Arc<Cached>>> {
    let now = shared.settings.clock.now();
    let expires_at = stored.expires_at.or_else(|| stored.jwt_expiry());
    if stored.access_token.is_empty() || expires_at.is_none_or(|at| at <= now) {
        return Ok(None);
    }
    let _writing = shared.writes.lock().await;
    if shared.epoch.load(SeqCst) != epoch {
        return Ok(None);
    }
    let mut token = stored.clone();
    token.expires_at = expires_at;
    let cached = Arc::new(prepare(shared, token, now)?);
    super::recheck::found(shared, &cached, from);
    Counters::add(&shared.counters.store_loads);
    tracing::debug!(fingerprint = %cached.token.fingerprint(), "using the token found in the store");
    publish(shared, cached.clone());
    Ok(Some(cached))
}

/// Gives the token an expiry (relative lifetime, JWT `exp`, or the default) and
/// rejects tokens that cannot be served.
pub(super) fn complete(
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
pub(super) fn prepare(shared: &Shared, token: Token, now: SystemTime) -> Result<Cached> {
    let s = &shared.settings;
    let generation = shared.generations.fetch_add(1, SeqCst) + 1;
    let cached = Cached::new(token, now, &s.windows, generation, &s.source_name)?;
    // Made now, before it is saved: a logout can delete it only after that.
    super::recheck::found(shared, &cached, super::recheck::now(shared));
    Ok(cached)
}

/// Serves `cached` to every caller from now on.
pub(super) fn publish(shared: &Shared, cached: Arc<Cached>) {
    shared.current.store(cached);
    shared.wake.notify_one();
}
