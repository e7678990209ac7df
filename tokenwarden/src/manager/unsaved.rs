//! A token that could not be saved: it is served (the old refresh token is spent,
//! so it is the only usable one), and saved again with backoff until the save
//! lands or a newer token replaces it. [`TokenInfo::unsaved`](crate::TokenInfo)
//! and [`Stats::unsaved`](crate::Stats) show the state meanwhile.

use super::cached::Cached;
use super::install::{load_stored, replaces};
use super::Shared;
use crate::Result;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Marks `cached` unsaved and starts saving it again in the background.
pub(super) fn keep_saving(shared: &Arc<Shared>, cached: &Arc<Cached>) {
    shared.unsaved.store(cached.generation, SeqCst);
    // Backoff is counted from the failure, whenever the task first runs.
    let failed_at = shared.settings.clock.monotonic();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(retry(Arc::downgrade(shared), cached.generation, failed_at));
    }
}

/// Whether the token being served is one that could not be saved yet.
pub(super) fn is_unsaved(shared: &Shared) -> bool {
    let unsaved = shared.unsaved.load(SeqCst);
    unsaved != 0 && unsaved == shared.current.load().generation
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
        if current.generation != generation || shared.unsaved.load(SeqCst) != generation {
            return; // replaced by a newer token, or cleared
        }
        match save(&shared, &current).await {
            Ok(()) => {
                let _ = shared
                    .unsaved
                    .compare_exchange(generation, 0, SeqCst, SeqCst);
                tracing::info!(fingerprint = %current.fingerprint, "the token is stored now");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "could not store the token yet; trying again");
            }
        }
    }
}

/// One attempt, under the lease: unless the store holds a newer token already.
async fn save(shared: &Shared, current: &Cached) -> Result<()> {
    let s = &shared.settings;
    let Some(store) = &s.store else {
        return Ok(());
    };
    let lease = store.lease(&s.key, s.lease_ttl).await?;
    let newer = load_stored(shared)
        .await
        .is_some_and(|stored| replaces(shared, current, &stored));
    let outcome = {
        let _writing = shared.writes.lock().await;
        if newer || shared.current.load().generation != current.generation {
            Ok(()) // nothing of ours left to save
        } else {
            store.save_leased(&s.key, &current.token, &lease).await
        }
    };
    if let Err(error) = lease.release().await {
        tracing::debug!(%error, "the lease ended before the save released it");
    }
    outcome
}
