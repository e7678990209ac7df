//! The optional background task that keeps a manager's token fresh without calls.
//! It holds the manager only weakly and ends when the last handle is dropped.

use super::cached::State;
use super::chain::Mode;
use super::flight::{join_or_start, Start};
use super::Shared;
use crate::clock::from_unix_millis;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Weak};

/// Starts the task once per manager (needs a Tokio runtime).
pub(super) fn ensure_started(shared: &Arc<Shared>) {
    if let Some(runtime) = super::runtime(shared) {
        if !shared.background_started.swap(true, SeqCst) {
            runtime.spawn(keep_fresh(Arc::downgrade(shared)));
        }
    }
}

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

async fn keep_fresh(manager: Weak<Shared>) {
    let Some(shared) = manager.upgrade() else {
        return;
    };
    let (wake, clock) = (shared.wake.clone(), shared.settings.clock.clone());
    drop(shared);
    loop {
        let wait_until = {
            let Some(shared) = manager.upgrade() else {
                return;
            };
            let now = clock.now_millis();
            let cached = shared.current.load_full();
            if shared.logged_out.load(SeqCst) {
                // Logged out: no new login until someone asks for a token again.
                None
            } else {
                match cached.state(now) {
                    State::Fresh => Some(cached.stale_at()),
                    _ => match join_or_start(&shared, Mode::Due) {
                        Start::Joined(flight) | Start::Started(flight) => {
                            drop(shared);
                            // Errors are recorded (and logged) by the flight itself.
                            let _ = flight.finished().await;
                            continue;
                        }
                        Start::Done(_) => continue,
                        Start::BackingOff => shared.backoff.retry_at(),
                        Start::NoRuntime(_) => return,
                    },
                }
            }
        };
        // Without a deadline, wake once a day anyway (a bounded time on every platform).
        let deadline = wait_until.unwrap_or_else(|| clock.now_millis().saturating_add(DAY_MS));
        let sleep = clock.sleep_until(from_unix_millis(deadline));
        // Biased, here and in every `select!` of the library: no hidden randomness,
        // so that a seeded simulation replays exactly.
        tokio::select! {
            biased;
            () = sleep => {}
            () = wake.notified() => {}
        }
    }
}
