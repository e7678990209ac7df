//! The workers: tasks that share one [`AuthClient`] and call the API in a loop
//! until told to stop, counting what came back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokenwarden_reqwest::AuthClient;

/// The pause between two calls of one worker.
const PAUSE: Duration = Duration::from_millis(5);
/// How many different items the workers ask for.
const ITEMS: u64 = 100;

/// What the workers saw, shared by all of them.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests sent (a replay is part of its request, not another one).
    pub requests: AtomicU64,
    /// Requests whose final answer was not 2xx, or that failed with an error.
    pub failures: AtomicU64,
    /// Requests whose final answer was a 401 (rejected even after the replay).
    pub final_401s: AtomicU64,
    /// The first failure, to say what went wrong.
    first_failure: Mutex<Option<String>>,
}

impl Tally {
    /// Counts a failure, keeping the first one's description.
    pub fn fail(&self, what: impl FnOnce() -> String) {
        self.failures.fetch_add(1, Relaxed);
        let mut first = self
            .first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(what());
        }
    }

    /// The first failure, if any.
    pub fn first_failure(&self) -> Option<String> {
        self.first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Worker `id`: GETs `items/{n}` through `client` until `stop` is set.
pub async fn work(id: usize, client: AuthClient, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut n = id as u64;
    while !stop.load(Relaxed) {
        n = n.wrapping_add(1);
        let path = format!("items/{}", n % ITEMS + 1);
        tally.requests.fetch_add(1, Relaxed);
        match client.get(&path).send().await {
            Ok(response) => {
                let status = response.status();
                // Read to the end, so that the connection goes back to the pool.
                let body = response.bytes().await;
                if status == reqwest::StatusCode::UNAUTHORIZED {
                    tally.final_401s.fetch_add(1, Relaxed);
                }
                if !status.is_success() {
                    tally.fail(|| format!("GET {path} answered {status}"));
                } else if let Err(error) = body {
                    tally.fail(|| format!("GET {path}: reading the body failed: {error}"));
                }
            }
            // tokenwarden's errors carry no secret; reqwest's name loopback URLs only.
            Err(error) => tally.fail(|| format!("GET {path} failed: {error}")),
        }
        tokio::time::sleep(PAUSE).await;
    }
}
