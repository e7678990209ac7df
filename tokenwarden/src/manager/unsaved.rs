//! A token that could not be saved: it is served (the old refresh token is spent,
//! so it is the only usable one), and saved again with backoff until the save
//! lands, a newer token replaces it, or the store no longer holds the token it
//! replaced (another instance stored a newer one, or a logout cleared it).
//! [`TokenInfo::unsaved`](crate::TokenInfo) and [`Stats::unsaved`](crate::Stats)
//! show the state meanwhile.
//!
//! A lease that ends by itself (a store's lease with a TTL, such as Redis's) is
//! kept by the token it could not save, and its first retries save under it: the
//! store still holds the token it replaced, and another instance that took the
//! lease meanwhile would spend that token's refresh token again (a primary that
//! died in the save leaves the lease on the replica promoted: docs/design/004).

use super::cached::Cached;
use super::install::{publish, read_store};
use super::Shared;
use crate::store::Lease;
use crate::{Result, Token};
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

/// The token that could not be saved, and what the store held when it was made.
#[derive(Debug)]
pub(super) struct Unsaved {
    generation: u64,
    /// The fingerprint of the stored token it replaces (`None`: the store was empty).
    replaces: Option<String>,
    /// The fence of this manager's last lease on the key (made under it, or
    /// taken to save it since), where the store fences its leases.
    fence: Option<u64>,
    /// Whether another instance took a lease since the token was made.
    disturbed: bool,
    /// Whether the flight that made it still holds its lease, to hand over.
    lease_wanted: bool,
    /// The flight's lease, kept until a save under it lands or it ends.
    lease: Option<Lease>,
}

fn state(shared: &Shared) -> std::sync::MutexGuard<'_, Option<Unsaved>> {
    shared
        .unsaved
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Marks `cached` unsaved and starts saving it again in the background.
/// `replaces` is the token the store held when `cached` was made.
pub(super) fn keep_saving(
    shared: &Arc<Shared>,
    cached: &Arc<Cached>,
    replaces: Option<&Token>,
    fence: Option<u64>,
) {
    *state(shared) = Some(Unsaved {
        generation: cached.generation,
        replaces: replaces.map(Token::fingerprint),
        fence: fence.filter(|&f| f != 0),
        disturbed: false,
        lease_wanted: true,
        lease: None,
    });
    // Backoff is counted from the failure, whenever the task first runs.
    let failed_at = shared.settings.clock.monotonic();
    if let Some(runtime) = super::runtime(shared) {
        runtime.spawn(retry(Arc::downgrade(shared), cached.generation, failed_at));
    }
}

/// Hands `lease` to the unsaved token that the flight holding it made, if
/// there is one and the lease ends by itself; else gives it back.
pub(super) fn keep_lease(shared: &Shared, lease: Lease) -> Option<Lease> {
    let serving = shared.current.load().generation;
    let mut state = state(shared);
    match state.as_mut() {
        Some(unsaved)
            if unsaved.lease_wanted
                && unsaved.generation == serving
                && lease.held_for().is_some() =>
        {
            unsaved.lease_wanted = false;
            unsaved.lease = Some(lease);
            None
        }
        _ => Some(lease),
    }
}

/// The lease an unsaved token keeps, taken from it (to save under it, or to
/// give it up before a write of this manager takes its own).
pub(super) fn take_lease(shared: &Shared) -> Option<Lease> {
    let mut state = state(shared);
    let unsaved = state.as_mut()?;
    unsaved.lease_wanted = false;
    unsaved.lease.take()
}

/// Saves the unsaved token now under the lease it keeps, if it keeps one: what
/// a flight of this manager does before it takes a lease of its own (it would
/// wait for the one kept, and the store's token is not the one to refresh).
///
/// Where that save landed unconfirmed ([`Error::is_unconfirmed_write`](crate::Error::is_unconfirmed_write))
/// and the lease still holds, the lease is lent to the flight, which goes on under it (waiting for a lease of its own would wait
/// for this one, its own manager's, to expire); the flight hands it back
/// ([`keep_lease`]) if it makes no token that replaces the unsaved one.
pub(super) async fn save_under_kept_lease(shared: &Arc<Shared>) -> Option<Lease> {
    let current = shared.current.load_full();
    if !is(shared, &current) || state(shared).as_ref().is_none_or(|u| u.lease.is_none()) {
        return None;
    }
    match save(shared, &current).await {
        Ok(()) => {
            clear(shared, current.generation);
            None
        }
        Err(error) => {
            tracing::warn!(%error, "could not store the token yet");
            // Lent only after a write that landed (a late copy of one that
            // timed out could overwrite the flight's newer token under the
            // same lease), and with time for a refresh left: else the flight
            // waits for it to end, as for any other holder's.
            if !error.is_unconfirmed_write() {
                return None;
            }
            let margin = shared.settings.lease_ttl / super::SAVE_MARGIN_DIVISOR;
            let mut state = state(shared);
            let unsaved = state.as_mut()?;
            let left = unsaved.lease.as_ref()?.held_for()?;
            if left <= margin * 2 {
                return None;
            }
            unsaved.lease_wanted = true;
            unsaved.lease.take()
        }
    }
}

/// Whether `cached` is a token that could not be saved yet.
pub(super) fn is(shared: &Shared, cached: &Cached) -> bool {
    state(shared)
        .as_ref()
        .is_some_and(|u| u.generation == cached.generation && cached.generation != 0)
}

/// Whether `stored` is the very token that the unsaved `cached` replaced: its
/// refresh token is spent, and it must not take the unsaved one's place (even
/// once that one is invalidated).
pub(super) fn replaced(shared: &Shared, cached: &Cached, stored: &Token) -> bool {
    let state = state(shared);
    state.as_ref().is_some_and(|u| {
        u.generation == cached.generation
            && u.replaces.as_deref() == Some(stored.fingerprint().as_str())
    })
}

/// Whether the token being served is one that could not be saved yet.
pub(super) fn is_unsaved(shared: &Shared) -> bool {
    is(shared, &shared.current.load())
}

/// Ends the unsaved state of `generation`, if it is still that one's.
fn clear(shared: &Shared, generation: u64) {
    let mut state = state(shared);
    if state.as_ref().is_some_and(|u| u.generation == generation) {
        *state = None;
    }
}

async fn retry(manager: Weak<Shared>, generation: u64, mut failed_at: Duration) {
    let mut delay = None;
    loop {
        let (clock, wait) = {
            let Some(shared) = manager.upgrade() else {
                return;
            };
            let s = &shared.settings;
            let wait = delay.map_or(s.backoff_initial, |d: Duration| (d * 2).min(s.backoff_max));
            (s.clock.clone(), wait)
        };
        delay = Some(wait);
        let retry_at = failed_at + wait;
        clock
            .sleep(retry_at.saturating_sub(clock.monotonic()))
            .await;
        failed_at = clock.monotonic();
        let Some(shared) = manager.upgrade() else {
            return;
        };
        let current = shared.current.load_full();
        if !is(&shared, &current) {
            // Replaced by a newer token, or cleared: a lease this one kept is
            // given up (dropped), not left to its TTL.
            let mut state = state(&shared);
            if let Some(unsaved) = state.as_mut().filter(|u| u.generation == generation) {
                drop(unsaved.lease.take());
            }
            return;
        }
        match save(&shared, &current).await {
            Ok(()) => {
                clear(&shared, generation);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "could not store the token yet; trying again");
            }
        }
    }
}

/// One attempt, under the lease: saved if the store still holds the token ours
/// replaced; given up if it holds another (a newer one, or none after a logout).
/// An empty store is ambiguous (still empty, or emptied by a logout since): where
/// the store fences its leases, nobody else may have taken one in between.
///
/// Under the lease kept from the flight first, if it is still held (the store
/// says so: its save is refused once the lease ended); a failure that is not the
/// lease's end keeps it for the next attempt.
async fn save(shared: &Shared, current: &Arc<Cached>) -> Result<()> {
    let s = &shared.settings;
    let Some(store) = &s.store else {
        return Ok(());
    };
    if let Some(kept) = take_lease(shared) {
        // Held throughout: nobody else took one in between.
        match save_under(shared, current, &kept, true).await {
            Err(error) if !error.is_lease_lost() => {
                let mut state = state(shared);
                match state.as_mut() {
                    Some(unsaved) if unsaved.generation == current.generation => {
                        unsaved.lease = Some(kept);
                    }
                    _ => drop(state),
                }
                return Err(error);
            }
            Err(_) => tracing::debug!("the lease kept for the unsaved token had ended"),
            Ok(()) => {
                if let Err(error) = kept.release().await {
                    tracing::debug!(%error, "the lease ended before the save released it");
                }
                return Ok(());
            }
        }
    }
    let lease = store.lease(&s.key, s.lease_ttl).await?;
    // Whether nobody else took a lease since this manager's last one; noted at
    // once, so that a failed attempt of its own leaves no gap.
    let quiet = {
        let mut state = state(shared);
        let Some(unsaved) = state.as_mut() else {
            return Ok(());
        };
        let taken = lease.fence().filter(|&f| f != 0);
        if let (Some(ours), Some(now)) = (unsaved.fence, taken) {
            // Without fences the stored token is all there is to compare.
            unsaved.disturbed |= now != ours + 1;
        }
        unsaved.fence = taken.or(unsaved.fence);
        !unsaved.disturbed
    };
    let outcome = save_under(shared, current, &lease, quiet).await;
    if let Err(error) = lease.release().await {
        tracing::debug!(%error, "the lease ended before the save released it");
    }
    outcome
}

/// The save of [`save`] under `lease`; `quiet`: nobody else took a lease since
/// the token was made.
async fn save_under(
    shared: &Shared,
    current: &Arc<Cached>,
    lease: &Lease,
    quiet: bool,
) -> Result<()> {
    let s = &shared.settings;
    let Some(store) = &s.store else {
        return Ok(());
    };
    let stored = read_store(shared).await?;
    let _writing = shared.writes.lock().await;
    if !is(shared, current) {
        return Ok(()); // nothing of ours left to save
    }
    let expected = state(shared).as_ref().and_then(|u| u.replaces.clone());
    let holds = stored.as_ref().map(Token::fingerprint);
    // Our own token there: an earlier attempt wrote it, but reported it failed
    // (its replicas did not confirm it): written again, to be confirmed.
    let ours = holds.as_deref() == Some(current.fingerprint.as_str());
    if ours || holds == expected && (holds.is_some() || quiet) {
        store.save_leased(&s.key, &current.token, lease).await?;
        tracing::info!(fingerprint = %current.fingerprint, "the token is stored now");
    } else if holds.is_none() {
        // Cleared by a logout elsewhere: this token goes too.
        tracing::info!(fingerprint = %current.fingerprint, "the store was cleared meanwhile; dropping the unsaved token");
        publish(shared, Cached::empty());
    } else {
        tracing::info!(fingerprint = %current.fingerprint, "the store holds a newer token; the unsaved one is not saved");
    }
    Ok(())
}
