//! [`TokenRegistry`]: one [`TokenManager`] per key (per service, per user, per
//! tenant), created on first use and evicted when idle.

use crate::{Clock, Result, SystemClock, TokenManager, TokenRef};
use dashmap::DashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

mod making;

/// How long a registry keeps a manager nobody has asked for: 30 min.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

type Factory<K> = dyn Fn(&K) -> Result<TokenManager> + Send + Sync;

/// Keyed token managers: a backend acting for many users, or a client of many
/// services. Lookups are O(1) on a sharded map; each key has its own manager and
/// so its own single-flight refresh.
///
/// ```
/// use std::time::Duration;
/// use tokenwarden::{source::from_fn, Token, TokenManager, TokenRegistry};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokenwarden::Result<()> {
/// let registry = TokenRegistry::builder(|user: &String| {
///     let user = user.clone();
///     TokenManager::builder(from_fn(format!("user-{user}"), move || {
///         let user = user.clone();
///         async move { Ok(Token::new(format!("token-of-{user}")).with_expires_in(Duration::from_secs(600))) }
///     }))
///     .build()
/// })
/// .idle_timeout(Duration::from_secs(600))
/// .build();
///
/// let token = registry.token(&"alice".to_string()).await?;
/// assert_eq!(token.access_token.secret(), "token-of-alice");
/// assert_eq!(registry.len(), 1);
/// # Ok(()) }
/// ```
pub struct TokenRegistry<K> {
    managers: DashMap<K, Arc<Entry>>,
    factory: Box<Factory<K>>,
    clock: Arc<dyn Clock>,
    idle_timeout_ms: u64,
    next_sweep: AtomicU64,
    per_key_metrics: bool,
}

/// A key's place in the map: its manager once the factory made it.
#[derive(Debug)]
struct Entry {
    manager: OnceLock<TokenManager>,
    /// Held while the factory makes the manager, by one caller of the key: the
    /// others wait here, not on the map.
    making: Mutex<()>,
    last_used: AtomicU64,
}

/// A manager the registry no longer holds is no longer counted as held (its
/// metrics' `tokenwarden.registry.managers`).
impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(manager) = self.manager.get() {
            manager.held_by_registry(false, false);
        }
    }
}

impl Entry {
    /// Records a use. Writes at most once a second, so that threads looking up the
    /// same hot key do not keep taking its cache line from each other.
    fn touch(&self, now: u64) {
        if now.saturating_sub(self.last_used.load(Relaxed)) >= 1_000 {
            self.last_used.store(now, Relaxed);
        }
    }
}

/// Builds a [`TokenRegistry`]. Made by [`TokenRegistry::builder`].
pub struct TokenRegistryBuilder<K> {
    factory: Box<Factory<K>>,
    clock: Option<Arc<dyn Clock>>,
    idle_timeout: Duration,
    per_key_metrics: bool,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> TokenRegistry<K> {
    /// Starts building a registry whose managers `factory` makes, one per key.
    /// The factory runs once per key (again after it failed), outside the map's
    /// locks: it may use the registry for other keys (a token exchanged from
    /// another key's token). Concurrent first callers of a key wait for its one
    /// run; keep it quick (build a manager; do not fetch a token in it). A factory
    /// that asks for the key it is making, directly or through other keys (`a`
    /// needs `b`, `b` needs `a`), gets an [`ErrorKind::Config`](crate::ErrorKind::Config)
    /// error instead of waiting on itself.
    pub fn builder(
        factory: impl Fn(&K) -> Result<TokenManager> + Send + Sync + 'static,
    ) -> TokenRegistryBuilder<K> {
        TokenRegistryBuilder {
            factory: Box::new(factory),
            clock: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            per_key_metrics: false,
        }
    }

    /// The manager for `key`, made by the factory on first use.
    pub fn get(&self, key: &K) -> Result<TokenManager> {
        let now = self.clock.now_millis();
        self.sweep_if_due(now);
        if let Some(entry) = self.managers.get(key) {
            if let Some(manager) = entry.manager.get() {
                entry.touch(now);
                return Ok(manager.clone());
            }
        }
        loop {
            // The key's entry, made empty under the map's lock; filled outside it.
            let entry = self
                .managers
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Entry {
                        manager: OnceLock::new(),
                        making: Mutex::new(()),
                        last_used: AtomicU64::new(now),
                    })
                })
                .clone();
            // Refused where waiting would close a cycle of factories (a key
            // that, through the factories, needs itself): it would never end.
            let _making = making::enter(&entry.making)?;
            if let Some(manager) = entry.manager.get() {
                entry.touch(now);
                return Ok(manager.clone());
            }
            // Removed meanwhile (a failed factory's caller, or `remove`): a manager
            // made for it would be one the registry does not hold. Start again.
            let current = self
                .managers
                .get(key)
                .is_some_and(|e| Arc::ptr_eq(&e, &entry));
            if !current {
                continue;
            }
            // Taken out of the map if the factory fails or panics, so that the
            // next caller tries again and no empty entry stays.
            let unmade = Unmade {
                managers: &self.managers,
                key,
                entry: &entry,
            };
            let manager = (self.factory)(key)?;
            manager.held_by_registry(true, self.per_key_metrics);
            std::mem::forget(unmade);
            let manager = entry.manager.get_or_init(|| manager).clone();
            entry.touch(now);
            return Ok(manager);
        }
    }

    /// A valid token for `key` (see [`TokenManager::token`]).
    pub async fn token(&self, key: &K) -> Result<TokenRef> {
        self.get(key)?.token().await
    }

    /// Removes the manager for `key`; returns whether there was one. Handles already
    /// given out keep working.
    pub fn remove(&self, key: &K) -> bool {
        self.managers.remove(key).is_some()
    }

    /// How many managers the registry holds.
    pub fn len(&self) -> usize {
        self.managers.len()
    }

    /// Whether the registry holds no manager.
    pub fn is_empty(&self) -> bool {
        self.managers.is_empty()
    }

    /// Removes the managers unused for longer than the idle timeout and returns how
    /// many. A manager whose handle is still held elsewhere (a client built on it)
    /// counts as used. Also runs by itself from [`get`](Self::get), every half idle
    /// timeout, on the calling thread (a pass over all entries).
    pub fn evict_idle(&self) -> usize {
        let now = self.clock.now_millis();
        let before = self.managers.len();
        // A manager whose handles are held outside (a client built on it) is in use.
        self.managers.retain(|_, entry| {
            let Some(manager) = entry.manager.get() else {
                return true; // being made
            };
            now.saturating_sub(entry.last_used.load(Relaxed)) <= self.idle_timeout_ms
                || manager.handles() > 1
        });
        before.saturating_sub(self.managers.len())
    }

    fn sweep_if_due(&self, now: u64) {
        let due = self.next_sweep.load(Relaxed);
        let next = now.saturating_add(self.idle_timeout_ms / 2);
        if now >= due
            && self
                .next_sweep
                .compare_exchange(due, next, Relaxed, Relaxed)
                .is_ok()
        {
            let evicted = self.evict_idle();
            if evicted > 0 {
                tracing::debug!(evicted, "evicted idle token managers");
            }
        }
    }
}

/// Removes a key's entry whose manager could not be made, when dropped.
struct Unmade<'a, K: Hash + Eq> {
    managers: &'a DashMap<K, Arc<Entry>>,
    key: &'a K,
    entry: &'a Arc<Entry>,
}

impl<K: Hash + Eq> Drop for Unmade<'_, K> {
    fn drop(&mut self) {
        self.managers
            .remove_if(self.key, |_, held| Arc::ptr_eq(held, self.entry));
    }
}

impl<K> TokenRegistryBuilder<K> {
    /// The clock for idle times. Defaults to [`SystemClock`]; the managers have
    /// their own clocks, set in the factory.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// How long an unused manager is kept. Defaults to [`DEFAULT_IDLE_TIMEOUT`].
    pub fn idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Whether the managers' metrics (feature `metrics`, see [`crate::metrics`])
    /// keep their key (`tokenwarden.key`, `tokenwarden.source`). Defaults to
    /// `false`: a registry may hold a million keys, and its managers' metrics are
    /// added up instead, one series per metric. Turn it on for a registry of a
    /// few keys you want to tell apart; the managers then keep the labels their
    /// builder gave them (per key unless it said
    /// [`per_key_metrics(false)`](crate::TokenManagerBuilder::per_key_metrics)).
    pub fn per_key_metrics(mut self, enabled: bool) -> Self {
        self.per_key_metrics = enabled;
        self
    }

    /// Builds the registry.
    pub fn build(self) -> TokenRegistry<K>
    where
        K: Hash + Eq,
    {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let idle_timeout_ms = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let next_sweep = AtomicU64::new(clock.now_millis().saturating_add(idle_timeout_ms / 2));
        TokenRegistry {
            managers: DashMap::new(),
            factory: self.factory,
            clock,
            idle_timeout_ms,
            next_sweep,
            per_key_metrics: self.per_key_metrics,
        }
    }
}

impl<K: Hash + Eq> std::fmt::Debug for TokenRegistry<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRegistry")
            .field("len", &self.managers.len())
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .finish_non_exhaustive()
    }
}

impl<K> std::fmt::Debug for TokenRegistryBuilder<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRegistryBuilder")
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}
