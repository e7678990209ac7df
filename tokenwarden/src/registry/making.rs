//! Who makes which key's manager, and who waits for whom: a factory may ask the
//! registry for other keys, so a caller waiting for a key's factory could close
//! a cycle (`a`'s factory needs `b`, `b`'s needs `a`, on one thread or on two)
//! and wait for ever. Every wait is checked against the threads it would wait
//! on, and one that would close a cycle is refused instead.
//!
//! Written by hand: lock-order checkers (`parking_lot`'s `deadlock_detection`,
//! `tracing-mutex`) report a deadlock after the fact or panic in debug builds;
//! the registry needs a typed error at the moment of the wait, in every build.

use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::ThreadId;

/// Every registry's makers and waiters, by entry (its `making` lock's address).
#[derive(Default)]
struct Graph {
    /// The thread running each entry's factory.
    makers: HashMap<usize, ThreadId>,
    /// The entry each waiting thread waits for.
    waits: HashMap<ThreadId, usize>,
}

static GRAPH: LazyLock<Mutex<Graph>> = LazyLock::new(Mutex::default);

fn graph() -> MutexGuard<'static, Graph> {
    // Each change is one step: a panic elsewhere leaves nothing half-made.
    GRAPH.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The right to run an entry's factory: its `making` lock, and this thread
/// named as its maker until dropped.
pub(super) struct Making<'a> {
    entry: usize,
    // Dropped after `Drop::drop` took the maker out of the graph.
    _lock: MutexGuard<'a, ()>,
}

/// Takes `making` (an entry's lock), waiting while another thread runs its
/// factory, unless that wait would close a cycle of factories.
pub(super) fn enter(making: &Mutex<()>) -> Result<Making<'_>> {
    let entry = making as *const Mutex<()> as usize;
    let me = std::thread::current().id();
    {
        let mut graph = graph();
        match making.try_lock() {
            Ok(lock) => {
                graph.makers.insert(entry, me);
                return Ok(Making { entry, _lock: lock });
            }
            Err(TryLockError::Poisoned(poisoned)) => {
                graph.makers.insert(entry, me);
                return Ok(Making {
                    entry,
                    _lock: poisoned.into_inner(),
                });
            }
            Err(TryLockError::WouldBlock) => {}
        }
        if graph.closes_cycle(entry, me) {
            return Err(Error::config(
                "a cycle of keys in the registry: the factory making a key asked the \
                 registry for that same key (directly, or through another key's \
                 factory), which would wait for itself; make a dependent key's manager \
                 from keys that do not need it",
            ));
        }
        graph.waits.insert(me, entry);
    }
    let lock = making.lock().unwrap_or_else(PoisonError::into_inner);
    let mut graph = graph();
    graph.waits.remove(&me);
    graph.makers.insert(entry, me);
    Ok(Making { entry, _lock: lock })
}

impl Graph {
    /// Whether `me` waiting for `entry` would wait, through the makers and what
    /// they wait for, on `me`.
    fn closes_cycle(&self, entry: usize, me: ThreadId) -> bool {
        let mut at = entry;
        // Each step names another waiting thread: at most one step per waiter.
        for _ in 0..=self.waits.len() {
            let Some(maker) = self.makers.get(&at) else {
                return false;
            };
            if *maker == me {
                return true;
            }
            match self.waits.get(maker) {
                Some(next) => at = *next,
                None => return false,
            }
        }
        false
    }
}

impl Drop for Making<'_> {
    fn drop(&mut self) {
        graph().makers.remove(&self.entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_on_a_thread_that_waits_on_this_one_is_refused() {
        let (a, b) = (Mutex::new(()), Mutex::new(()));
        let held_a = enter(&a).expect("free");
        assert!(enter(&a).is_err(), "its own key, on the same thread");
        let (a, b) = (&a, &b);
        std::thread::scope(|scope| {
            let (taken_b, go_on) = std::sync::mpsc::channel();
            let other = scope.spawn(move || {
                let held_b = enter(b).expect("free");
                taken_b.send(()).unwrap();
                // Waits for `a`, which this test's thread makes.
                let outcome = enter(a).map(|_| ());
                drop(held_b);
                outcome
            });
            go_on.recv().unwrap();
            // The other thread now waits for `a`, or is about to: once it waits,
            // this thread waiting for `b` would close the cycle.
            loop {
                let waiting = graph().waits.values().any(|e| *e == a as *const _ as usize);
                if waiting {
                    break;
                }
                std::thread::yield_now();
            }
            assert!(enter(b).is_err(), "a cycle across two threads");
            drop(held_a);
            assert!(other.join().unwrap().is_ok(), "the other thread goes on");
        });
        assert!(enter(b).is_ok(), "free again");
    }
}
