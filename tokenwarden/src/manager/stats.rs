//! The manager's counters: [`Stats`], and the striped hit counter that keeps the
//! hit path free of shared writes.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

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
}

/// Stripes for the hit counter: each thread increments its own cache line, so two
/// threads reading the same token never write the same line.
const HIT_STRIPES: usize = 4;

#[repr(align(64))]
#[derive(Debug, Default)]
struct Stripe(AtomicU64);

#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: [Stripe; HIT_STRIPES],
    pub(crate) fetches: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) store_loads: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) waits: AtomicU64,
}

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn stripe_of_this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    STRIPE.with(|stripe| {
        let mut index = stripe.get();
        if index == usize::MAX {
            index = NEXT.fetch_add(1, Relaxed) % HIT_STRIPES;
            stripe.set(index);
        }
        index
    })
}

impl Counters {
    #[inline]
    pub(crate) fn hit(&self) {
        self.hits[stripe_of_this_thread()].0.fetch_add(1, Relaxed);
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
        }
    }
}
