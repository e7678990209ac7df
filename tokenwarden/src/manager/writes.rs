//! The writes a caller asks for: [`set`] (`set_tokens`) and [`logout`]. Each
//! supersedes the refresh in flight before it can send a request, takes the
//! store's lease (so that no instance's refresh lands after it), and makes its
//! change under the lease.

use super::cached::Cached;
use super::install::{complete, load_stored, prepare, publish};
use super::{flight, recheck, Shared};
use crate::events::TokenEventKind;
use crate::store::Lease;
use crate::{Error, Result, Token};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

/// The store's lease, or an empty one without a store.
async fn take_lease(shared: &Shared) -> Result<Lease> {
    // A lease an unsaved token keeps is this manager's own: given up first.
    if let Some(kept) = super::unsaved::take_lease(shared) {
        release(kept).await;
    }
    let s = &shared.settings;
    match &s.store {
        Some(store) => store.lease(&s.key, s.lease_ttl).await,
        None => Ok(Lease::none()),
    }
}

async fn release(lease: Lease) {
    if let Err(error) = lease.release().await {
        tracing::warn!(%error, "the store's lease ended before it was released");
    }
}

/// A `set_tokens` or `logout` under way, from before it cancels the flight in
/// progress until it gives `changing` up, however it ends: flights started
/// meanwhile (a caller that retries after its flight was cancelled) wait for it,
/// so that none runs ahead of it between the cancel and its taking of `changing`.
pub(super) struct Pending<'a>(&'a Shared);

impl<'a> Pending<'a> {
    pub(super) fn begin(shared: &'a Shared) -> Self {
        shared.changes.fetch_add(1, SeqCst);
        Self(shared)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.changes.fetch_sub(1, SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// [`TokenManager::set_tokens`](crate::TokenManager::set_tokens).
pub(super) async fn set(shared: &Shared, token: Token) -> Result<()> {
    let _pending = Pending::begin(shared);
    let s = &shared.settings;
    let now = s.clock.now();
    let token = complete(shared, token, now, true)?;
    let cached = prepare(shared, token, now)?;
    // The flight in progress ends here if it has not sent its request (it would
    // spend the refresh token this call replaces, or the one it sets); if it has,
    // it stores what it brings (so that no instance sends the spent one) and
    // serves nothing, and this call waits for it.
    shared.epoch.fetch_add(1, SeqCst);
    flight::cancel(shared);
    let _changing = shared.changing.write().await;
    let lease = take_lease(shared).await?;
    let saved = {
        let _writing = shared.writes.lock().await;
        let saved = match &s.store {
            Some(store) => store.save_leased(&s.key, &cached.token, &lease).await,
            None => Ok(()),
        };
        if saved.is_ok() {
            // Whatever was read before this point is older than this token.
            shared.epoch.fetch_add(1, SeqCst);
            shared.logged_out.store(false, SeqCst);
            shared.backoff.reset();
            let cached = Arc::new(cached);
            publish(shared, cached.clone());
            shared.emit(TokenEventKind::Set, Some(&cached.token));
        }
        saved
    };
    release(lease).await;
    saved
}

/// [`TokenManager::logout`](crate::TokenManager::logout): runs to its end in a
/// task of its own, so that a caller who stops waiting (a timeout, a dropped
/// future) does not leave the token in the store to be served again.
pub(super) async fn logout(shared: &Arc<Shared>) -> Result<()> {
    let task = {
        let shared = shared.clone();
        async move { logout_now(&shared).await }
    };
    match super::runtime(shared) {
        Some(runtime) => runtime.spawn(task).await.unwrap_or_else(|_| {
            Err(Error::source_failed(
                &shared.settings.source_name,
                "the logout task was cancelled (is the runtime shutting down?)",
            ))
        }),
        None => task.await,
    }
}

async fn logout_now(shared: &Shared) -> Result<()> {
    let pending = Pending::begin(shared);
    let s = &shared.settings;
    shared.epoch.fetch_add(1, SeqCst);
    shared.logged_out.store(true, SeqCst);
    // As for `set_tokens`: a flight that has sent its request stores what it
    // brings (fenced) before the store entry is deleted below, so that no other
    // instance reads the refresh token it spent.
    flight::cancel(shared);
    // A flight stuck saving to a store that hangs does not hold the logout for
    // good: after the refresh timeout it goes on (the epoch keeps that flight
    // from serving anything, and its save is fenced out by the lease below).
    let changing = tokio::select! {
        biased;
        guard = shared.changing.write() => Some(guard),
        () = s.clock.sleep(s.refresh_timeout) => None,
    };
    // Not served from now on; a refresh still running drops its result.
    let held = shared.current.load_full();
    publish(shared, Cached::empty());
    let mut first_error = None;
    let lease = take_lease(shared).await.unwrap_or_else(|error| {
        tracing::warn!(%error, "logging out without the store's lease");
        first_error = Some(error);
        Lease::none()
    });
    // Copies read elsewhere before the delete took effect (at the latest, when
    // it returned) lapse within the re-read interval of that moment.
    let mut deleted_at = None;
    let stored = {
        let _writing = shared.writes.lock().await;
        let stored = load_stored(shared).await;
        if let Some(store) = &s.store {
            let deleted = match lease.is_held() {
                true => store.delete_leased(&s.key, &lease).await,
                false => store.delete(&s.key).await,
            };
            // Waited for after an error too: the delete may have landed (an
            // answer lost, a command that timed out but ran).
            deleted_at = Some(recheck::now(shared));
            if let Err(error) = deleted {
                first_error.get_or_insert(error);
            }
        }
        // A token read before this point (a refresh that looked in the store just
        // before the delete) is never served.
        shared.epoch.fetch_add(1, SeqCst);
        publish(shared, Cached::empty());
        shared.backoff.reset();
        stored
    };
    release(lease).await;
    drop(changing);
    // Flights may start again: the revocation and the wait below hold nobody.
    drop(pending);
    // Revoked once nothing serves them any more: a slow server delays nobody.
    let mut revoked: Vec<Token> = Vec::new();
    for token in held.token().cloned().into_iter().chain(stored) {
        let known = revoked
            .iter()
            .any(|t| t.access_token.ct_eq(&token.access_token));
        if known || (token.access_token.is_empty() && token.refresh_token.is_none()) {
            continue;
        }
        if let Err(error) = s.source.revoke(&token).await {
            tracing::warn!(%error, "could not revoke the token; it is cleared all the same");
            first_error.get_or_insert(error);
        }
        revoked.push(token);
    }
    // Until every copy read before the delete has lapsed: from then on, no
    // instance sharing the store serves a token issued before this logout.
    if let Some(at) = deleted_at {
        let until = std::time::Duration::from_millis(at) + recheck::logout_wait(shared);
        let left = until.saturating_sub(s.clock.monotonic());
        if !left.is_zero() {
            tracing::debug!(
                wait_ms = left.as_millis() as u64,
                "waiting for copies elsewhere to lapse"
            );
            s.clock.sleep(left).await;
        }
    }
    tracing::info!(source = %s.source_name, "logged out");
    shared.emit(TokenEventKind::Cleared, None);
    first_error.map_or(Ok(()), Err)
}
