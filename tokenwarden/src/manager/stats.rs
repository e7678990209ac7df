//! The manager's counters: [`Stats`], and the striped hit counter that keeps the
//! hit path free of shared writes and of locked instructions.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock, PoisonError};

/// What a manager has done since it was built. Taken by
/// [`TokenManager::stats`](crate::TokenManager::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls answered from the cache without waiting.
    pub hits: u64,
    /// Calls to the source's `fetch` (full logins).
    pub fetches: u64,
    /// Calls to the source's `refresh`.
    pub refreshes: u64,
    /// Tokens adopted from the store (another process or an earlier run got them).
    pub store_loads: u64,
    /// Attempts to get a token that failed.
    pub failures: u64,
    /// Calls that waited for a refresh another caller had started.
    pub waits: u64,
    /// New tokens the store failed to save (each is retried until saved or replaced).
    pub save_failures: u64,
    /// Times a store lease ended before its work was done: a request not sent, or a
    /// save refused because another instance took over (its token was used).
    pub lease_losses: u64,
    /// Whether the token being served is not saved to the store yet.
    pub unsaved: bool,
}

/// One cache line per stripe, so stripes of different threads never share a line.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Stripe(AtomicU64);

/// Hits are counted in stripes. A thread that owns a stripe is its only writer and
/// adds with a plain load and store (no locked instruction, no shared line); the
/// threads beyond the owned stripes share the last one with atomic adds. Slots are
/// handed back when a thread ends, so thread pools that churn keep their stripes.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: Box<[Stripe]>,
    pub(crate) fetches: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) store_loads: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) save_failures: AtomicU64,
    pub(crate) lease_losses: AtomicU64,
}

/// Stripes per manager: twice the parallelism (threads outnumber cores), at least
/// 4, at most 32.
fn stripe_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        (cores * 2).next_power_of_two().clamp(4, 32)
    })
}

static FREE_SLOTS: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// No slot claimed yet on this thread.
const UNCLAIMED: usize = usize::MAX;
/// The thread is ending and gave its slot back: count in the shared stripe.
const RELEASED: usize = usize::MAX - 1;

thread_local! {
    // Const-initialised and without a destructor, so reading it is one load.
    static SLOT: Cell<usize> = const { Cell::new(UNCLAIMED) };
    // Touched once, at claim time, only to hand the slot back when the thread ends.
    static RELEASE: Release = const { Release };
}

struct Release;

impl Drop for Release {
    fn drop(&mut self) {
        let slot = SLOT.with(|s| s.replace(RELEASED));
        if slot < RELEASED {
            FREE_SLOTS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(slot);
        }
    }
}

#[cold]
fn claim_slot() -> usize {
    if RELEASE.try_with(|_| ()).is_err() {
        return RELEASED; // the thread is already ending
    }
    let free = FREE_SLOTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop();
    let slot = free.unwrap_or_else(|| NEXT_SLOT.fetch_add(1, Relaxed));
    SLOT.with(|s| s.set(slot));
    slot
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            hits: (0..stripe_count()).map(|_| Stripe::default()).collect(),
            ..Self::default()
        }
    }

    #[inline]
    pub(crate) fn hit(&self) {
        let owned = self.hits.len() - 1;
        let mut slot = SLOT.with(Cell::get);
        if slot == UNCLAIMED {
            slot = claim_slot();
        }
        if slot < owned {
            let stripe = &self.hits[slot].0;
            stripe.store(stripe.load(Relaxed) + 1, Relaxed);
        } else {
            self.hits[owned].0.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            hits: self.hits.iter().map(|s| s.0.load(Relaxed)).sum(),
            fetches: self.fetches.load(Relaxed),
            refreshes: self.refreshes.load(Relaxed),
            store_loads: self.store_loads.load(Relaxed),
            failures: self.failures.load(Relaxed),
            waits: self.waits.load(Relaxed),
            save_failures: self.save_failures.load(Relaxed),
            lease_losses: self.lease_losses.load(Relaxed),
            unsaved: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn hits_are_exact_with_more_threads_than_stripes() {
        let counters = Arc::new(Counters::new());
        let threads = stripe_count() * 3;
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let counters = counters.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        counters.hit();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(counters.snapshot().hits, threads as u64 * 10_000);
    }
}
