//! The shared store model: the real `MemoryStore` (leases with a TTL and fencing,
//! as Redis's) on the world's time, seen by each process through its own door:
//! calls stop while the process is paused, may fail or stall, and every write is
//! checked (the store never goes back to an older token, and holds nothing from
//! before a logout once the logout returned).

use crate::life::{Dice, Life};
use crate::server::{number, Server};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokenwarden::store::{Lease, LeaseWait, MemoryStore, TokenStore};
use tokenwarden::{Error, Result, Token, TokenKey};

/// How the store misbehaves, per call (probabilities).
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreFaults {
    /// An error before the call did anything.
    pub fails: f64,
    /// A write that landed, but whose answer was lost (an error all the same).
    pub answer_lost: f64,
    /// 100 ms to 3 s before the call is made.
    pub stalls: f64,
    /// Not a fault: the store's lease wait ends at once, without the lease, when
    /// the stored token is not the one this process's door last read or wrote,
    /// as the Redis store's does (`TokenStore::leases_see_changes`); the manager
    /// then takes the lease without reading first.
    pub sees_changes: bool,
}

#[derive(Debug, Default)]
struct History {
    /// The number of the token stored last (None: nothing stored).
    last: Option<u64>,
    /// Tokens up to this number were issued before a logout that returned.
    logged_out_up_to: u64,
    /// Tokens given to `set_tokens`: the caller's choice, whatever else the store
    /// held (a set token replaces newer ones, and may follow a logout).
    handed_over: std::collections::HashSet<u64>,
    /// Per process: when a read of the store last failed.
    read_failed: std::collections::HashMap<usize, tokio::time::Instant>,
    pub violations: Vec<String>,
}

/// What all processes share.
#[derive(Debug)]
pub struct Shared {
    pub memory: MemoryStore,
    pub server: Arc<Server>,
    faults: StoreFaults,
    dice: Dice,
    history: Mutex<History>,
}

impl Shared {
    pub fn new(
        memory: MemoryStore,
        server: Arc<Server>,
        faults: StoreFaults,
        seed: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            memory,
            server,
            faults,
            dice: Dice::new(seed ^ 0x5707_e5e5),
            history: Mutex::default(),
        })
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn violations(&self) -> Vec<String> {
        self.history().violations.clone()
    }

    /// A token given to `set_tokens`.
    pub fn handed_over(&self, token: &Token) {
        let n = number(token.access_token.secret());
        self.history().handed_over.insert(n);
    }

    /// Whether a read of process `i` failed at `since` or later: it then serves
    /// its copy on (the store's outage is not an API outage), the one case where
    /// a copy outlives a logout elsewhere.
    pub fn read_failed_since(&self, i: usize, since: tokio::time::Instant) -> bool {
        self.history()
            .read_failed
            .get(&i)
            .is_some_and(|&at| at >= since)
    }

    /// Whether token `n` was given to `set_tokens`.
    pub fn was_handed_over(&self, n: u64) -> bool {
        self.history().handed_over.contains(&n)
    }

    /// A logout returned: nothing issued so far may be stored again.
    pub fn logged_out(&self, issued: u64) {
        let mut history = self.history();
        history.logged_out_up_to = history.logged_out_up_to.max(issued);
    }

    fn wrote(&self, token: &Token) {
        let n = number(token.access_token.secret());
        let mut history = self.history();
        let chosen = history.handed_over.contains(&n);
        if let Some(last) = history.last.filter(|&last| n < last && !chosen) {
            history.violations.push(format!(
                "the store went back from token {last} to token {n}"
            ));
        }
        if n <= history.logged_out_up_to && !chosen {
            let up_to = history.logged_out_up_to;
            history.violations.push(format!(
                "token {n} stored after a logout that cleared every token up to {up_to}"
            ));
        }
        history.last = Some(n);
        tracing::debug!("store: token {n} written");
    }

    fn deleted(&self) {
        tracing::debug!("store: token deleted");
        self.history().last = None;
    }
}

/// One process's view of the shared store.
#[derive(Debug)]
pub struct Door {
    pub shared: Arc<Shared>,
    pub life: Life,
    /// The process's number.
    pub process: usize,
    /// The access token this door last read or wrote (`Some(None)`: nothing
    /// stored; `None`: not known).
    pub last_seen: Mutex<Option<Option<String>>>,
}

impl Door {
    /// Notes what the store holds, as this door last saw it.
    fn saw(&self, token: Option<&Token>) {
        let seen = token.map(|t| t.access_token.secret().to_owned());
        *self.last_seen.lock().unwrap() = Some(seen);
    }

    /// Before a call: the process must run; the store may stall or fail.
    async fn enter(&self) -> Result<()> {
        self.life.step().await;
        let s = &self.shared;
        if s.dice.chance(s.faults.stalls) {
            tokio::time::sleep(s.dice.millis(100..3_000)).await;
        }
        if s.dice.chance(s.faults.fails) {
            return Err(Error::store("sim-store", "connection refused"));
        }
        Ok(())
    }

    /// After a write: the answer may be lost; the process may have paused.
    async fn leave(&self, written: Result<()>) -> Result<()> {
        let s = &self.shared;
        let written = match written {
            Ok(()) if s.dice.chance(s.faults.answer_lost) => {
                Err(Error::store("sim-store", "the connection closed"))
            }
            other => other,
        };
        self.life.step().await;
        written
    }

    async fn write(
        &self,
        token: &Token,
        save: impl std::future::Future<Output = Result<()>>,
    ) -> Result<()> {
        if let Err(error) = self.enter().await {
            self.shared
                .server
                .unsaved
                .lock()
                .unwrap()
                .insert(number(token.access_token.secret()));
            return Err(error);
        }
        // What is stored is not known while the write is under way.
        *self.last_seen.lock().unwrap() = None;
        let saved = save.await;
        match &saved {
            Ok(()) => {
                self.saw(Some(token));
                self.shared.wrote(token);
                let n = number(token.access_token.secret());
                self.shared.server.written.lock().unwrap().insert(n);
            }
            // Refused (its lease ended while the store stalled, say): not saved.
            Err(_) => {
                let n = number(token.access_token.secret());
                self.shared.server.unsaved.lock().unwrap().insert(n);
            }
        }
        self.leave(saved).await
    }
}

#[async_trait::async_trait]
impl TokenStore for Door {
    async fn load(&self, key: &TokenKey) -> Result<Option<Token>> {
        if let Err(error) = self.enter().await {
            let now = tokio::time::Instant::now();
            self.shared.history().read_failed.insert(self.process, now);
            return Err(error);
        }
        let loaded = self.shared.memory.load(key).await;
        if let Ok(stored) = &loaded {
            self.saw(stored.as_ref());
        }
        self.life.step().await;
        loaded
    }

    async fn save(&self, key: &TokenKey, token: &Token) -> Result<()> {
        self.write(token, self.shared.memory.save(key, token)).await
    }

    async fn delete(&self, key: &TokenKey) -> Result<()> {
        self.enter().await?;
        let deleted = self.shared.memory.delete(key).await;
        if deleted.is_ok() {
            self.shared.deleted();
            self.saw(None);
        }
        self.leave(deleted).await
    }

    async fn lease(&self, key: &TokenKey, ttl: Duration) -> Result<Lease> {
        self.enter().await?;
        let lease = self.shared.memory.lease(key, ttl).await;
        if lease.is_ok() {
            // A take returns the stored token with the lease.
            self.saw(self.shared.memory.load(key).await?.as_ref());
        }
        self.life.step().await;
        lease
    }

    async fn lease_unless_changed(&self, key: &TokenKey, ttl: Duration) -> Result<LeaseWait> {
        self.enter().await?;
        if self.shared.faults.sees_changes {
            let seen = self.last_seen.lock().unwrap().clone();
            let stored = self.shared.memory.load(key).await?;
            let now = stored.as_ref().map(|t| t.access_token.secret().to_owned());
            // Not known (as a Redis store that has not read the key, or whose last
            // write's outcome is not known): the take answers with what is stored.
            if seen.is_none_or(|seen| seen != now) {
                self.saw(stored.as_ref());
                self.life.step().await;
                return Ok(LeaseWait::Changed(stored));
            }
        }
        let waited = self.shared.memory.lease_unless_changed(key, ttl).await;
        match &waited {
            Ok(LeaseWait::Changed(stored)) => self.saw(stored.as_ref()),
            Ok(LeaseWait::Held(_)) => self.saw(self.shared.memory.load(key).await?.as_ref()),
            Err(_) => {}
        }
        self.life.step().await;
        waited
    }

    fn leases_see_changes(&self) -> bool {
        self.shared.faults.sees_changes
    }

    async fn save_leased(&self, key: &TokenKey, token: &Token, lease: &Lease) -> Result<()> {
        self.write(token, self.shared.memory.save_leased(key, token, lease))
            .await
    }

    async fn delete_leased(&self, key: &TokenKey, lease: &Lease) -> Result<()> {
        self.enter().await?;
        let deleted = self.shared.memory.delete_leased(key, lease).await;
        if deleted.is_ok() {
            self.shared.deleted();
            self.saw(None);
        }
        self.leave(deleted).await
    }

    fn name(&self) -> &str {
        "sim-store"
    }
}
