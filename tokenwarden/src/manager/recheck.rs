//! Copies that lapse: a token read from a shared store (or written to it) is
//! served for [`store_recheck`] only; then the store is read again before it is
//! served once more. A logout that deleted the stored token waits as long before
//! it returns, so that afterwards no instance sharing the store serves a token
//! issued before it (DESIGN.md, coordination protocol;
//! `docs/design/002-copies-that-lapse.md`).
//!
//! The re-read is the first step of a due flight (one per manager at a time):
//! [`reconcile`] keeps the copy if the store still holds it, takes the stored
//! token if another instance put one there, and drops the copy if the store no
//! longer holds it (a logout elsewhere), so that the flight goes on to a new login.
//!
//! [`store_recheck`]: crate::TokenManagerBuilder::store_recheck

use super::cached::Cached;
use super::install::{install_stored, publish};
use super::{unsaved, Shared};
use crate::clock::{millis, system_monotonic_millis, unix_millis};
use crate::events::TokenEventKind;
use crate::{Result, Token};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

/// How long a copy is served on when the store cannot be read to check it: the
/// store's outage is not an API outage.
const STORE_DOWN_RETRY_MS: u64 = 1_000;

/// How much longer than the interval a logout waits: the hit path reads a coarse
/// monotonic clock, up to one kernel tick behind the precise one.
pub(super) const COARSE_MARGIN_MS: u64 = 20;

/// The manager's monotonic time in ms, precise.
pub(super) fn now(shared: &Shared) -> u64 {
    millis(shared.settings.clock.monotonic())
}

/// Whether `cached` must not be served before the store is read again (the hit
/// path's check: a coarse reading of the system's monotonic clock, and the
/// wall-clock time `wall` the caller read, in Unix ms).
#[inline]
pub(super) fn due(shared: &Shared, cached: &Cached, wall: u64) -> bool {
    let s = &shared.settings;
    if s.store_recheck.is_none() {
        return false;
    }
    let monotonic = if s.system_clock {
        system_monotonic_millis()
    } else {
        now(shared)
    };
    cached.check_due(monotonic, wall)
}

/// Whether `cached` must not be served before the store is read again, on the
/// precise clocks (off the hit path).
pub(super) fn due_precisely(shared: &Shared, cached: &Cached) -> bool {
    shared.settings.store_recheck.is_some()
        && cached.check_due(now(shared), unix_millis(shared.settings.clock.now()))
}

/// Records that the store held `cached` at `from` (monotonic ms, taken before the
/// read or write that showed it began): it is served until `from` plus the
/// interval.
pub(super) fn found(shared: &Shared, cached: &Cached, from: u64) {
    if let Some(every) = shared.settings.store_recheck {
        lapse_at(shared, cached, from, millis(every));
    }
}

/// After a read of the store that began at `from` and could not be completed:
/// the copy is served a little longer, and the store is tried again then.
pub(super) fn unreadable(shared: &Shared, cached: &Cached, from: u64) {
    if due_precisely(shared, cached) {
        lapse_at(shared, cached, from, STORE_DOWN_RETRY_MS);
    }
}

/// Makes `cached` due `after` ms past `from` on the monotonic clock, and at the
/// same moment on the wall clock (which goes on while a machine is suspended,
/// when the monotonic clock stands still).
fn lapse_at(shared: &Shared, cached: &Cached, from: u64, after: u64) {
    let wall_now = unix_millis(shared.settings.clock.now());
    let wall_from = wall_now.saturating_sub(now(shared).saturating_sub(from));
    cached.check_again_at(from.saturating_add(after), wall_from.saturating_add(after));
}

/// How long a logout waits after deleting the stored token (zero without re-reads).
pub(super) fn logout_wait(shared: &Shared) -> std::time::Duration {
    shared
        .settings
        .store_recheck
        .map_or(std::time::Duration::ZERO, |every| {
            every + std::time::Duration::from_millis(COARSE_MARGIN_MS)
        })
}

/// Brings the manager's copy in line with what a read of the store that began
/// at `from` found, and returns the token now current:
/// - the store holds the copy (or, for a copy the store failed to save, still
///   the token it replaced): the copy is kept, checked as of `from`;
/// - the store holds another token that can be served: that one, as of `from`;
/// - the store holds nothing usable (a logout elsewhere cleared it): the copy
///   is dropped, and the caller's flight goes on to get a new token.
///
/// Nothing changes if re-reads are off, the copy is not held, or a `set_tokens`
/// or `logout` came since `epoch`.
pub(super) async fn reconcile(
    shared: &Shared,
    current: &Arc<Cached>,
    stored: Option<&Token>,
    from: u64,
    epoch: u64,
) -> Result<Arc<Cached>> {
    let Some(ours) = current.token() else {
        return Ok(current.clone());
    };
    if shared.settings.store_recheck.is_none() || !current.is_held() {
        return Ok(current.clone());
    }
    let same = stored.is_some_and(|t| t.access_token.ct_eq(&ours.access_token));
    // A copy the store failed to save is kept while the store still holds the
    // token it replaced. One that replaced nothing is not kept over an empty
    // store: that store may have been emptied by a logout since (a store without
    // fences cannot tell), and the logout must win; the next call logs in again.
    let unsaved_over_it = unsaved::is(shared, current)
        && stored.is_some_and(|stored| unsaved::replaced(shared, current, stored));
    if same || unsaved_over_it {
        found(shared, current, from);
        return Ok(current.clone());
    }
    if let Some(stored) = stored {
        if let Some(installed) = install_stored(shared, stored, epoch, from).await? {
            return Ok(installed);
        }
    }
    let _writing = shared.writes.lock().await;
    if shared.epoch.load(SeqCst) != epoch || !Arc::ptr_eq(&shared.current.load_full(), current) {
        return Ok(shared.current.load_full());
    }
    tracing::info!(
        fingerprint = %current.fingerprint,
        "the store no longer holds this token (a logout elsewhere?); it is not served any more"
    );
    let empty = Cached::empty();
    publish(shared, empty.clone());
    shared.emit(TokenEventKind::Cleared, None);
    Ok(empty)
}
