//! [`MemoryStore`]: tokens in this process's memory, shared by the managers that
//! hold the same store.

use super::{Lease, LeaseGuard, LeaseWait, TokenStore};
use crate::{Clock, Error, Result, SystemClock, Token, TokenKey};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// A token store in memory. Clones share the same tokens.
///
/// Its leases are real within the process, and behave as the Redis store's do:
/// they end after their TTL (on the store's clock's monotonic time) even if their
/// holder still runs, each carries a fencing generation, and a leased write made
/// after another holder took over is refused
/// ([`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost)). Managers that share
/// one `MemoryStore` (the same token used by several components) make one
/// refresh between them. Tokens are lost when the process ends.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    clock: Arc<dyn Clock>,
    /// Entries are never removed, so that fences never go back (only tokens are).
    keys: Mutex<HashMap<TokenKey, Entry>>,
    /// Wakes the instances waiting for a lease when one is released, or the
    /// stored token changes.
    released: Notify,
}

#[derive(Debug, Default)]
struct Entry {
    token: Option<Token>,
    /// Moves on with every write of `token`.
    version: u64,
    /// The generation of the newest lease taken on this key.
    fence: u64,
    /// The lease's holder: its generation and when (monotonic) the lease ends.
    held: Option<(u64, Duration)>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_clock(SystemClock)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose lease TTLs run on `clock` (a test's
    /// [`ManualClock`](crate::ManualClock), or a simulation's).
    pub fn with_clock(clock: impl Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock: Arc::new(clock),
                keys: Mutex::default(),
                released: Notify::new(),
            }),
        }
    }

    /// Removes every token.
    pub fn clear(&self) {
        self.keys()
            .values_mut()
            .for_each(|entry| entry.token = None);
    }

    /// How many tokens are stored.
    pub fn len(&self) -> usize {
        self.keys().values().filter(|e| e.token.is_some()).count()
    }

    /// Whether no token is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn keys(&self) -> MutexGuard<'_, HashMap<TokenKey, Entry>> {
        // A panic elsewhere cannot leave a half-written map: every change is one step.
        self.inner
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `write` on the entry of `key` if `lease` is its newest lease (or empty).
    fn fenced(&self, key: &TokenKey, lease: &Lease, write: impl FnOnce(&mut Entry)) -> Result<()> {
        let mut keys = self.keys();
        let entry = keys.entry(key.clone()).or_default();
        match lease.fence() {
            Some(fence) if fence != entry.fence => Err(Error::lease_lost(
                "memory",
                format!("the write under lease {fence} of `{key}` was refused: lease {} was taken since", entry.fence),
            )),
            _ => {
                write(entry);
                Ok(())
            }
        }
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn load(&self, key: &TokenKey) -> Result<Option<Token>> {
        Ok(self.keys().get(key).and_then(|e| e.token.clone()))
    }

    async fn save(&self, key: &TokenKey, token: &Token) -> Result<()> {
        self.write(self.keys().entry(key.clone()).or_default(), Some(token));
        Ok(())
    }

    async fn delete(&self, key: &TokenKey) -> Result<()> {
        if let Some(entry) = self.keys().get_mut(key) {
            self.write(entry, None);
        }
        Ok(())
    }

    async fn lease(&self, key: &TokenKey, ttl: Duration) -> Result<Lease> {
        match self.wait(key, ttl, false).await? {
            LeaseWait::Held(lease) => Ok(lease),
            LeaseWait::Changed(_) => unreachable!("only asked to end on a change"),
        }
    }

    async fn lease_unless_changed(&self, key: &TokenKey, ttl: Duration) -> Result<LeaseWait> {
        self.wait(key, ttl, true).await
    }

    async fn save_leased(&self, key: &TokenKey, token: &Token, lease: &Lease) -> Result<()> {
        self.fenced(key, lease, |entry| self.write(entry, Some(token)))
    }

    async fn delete_leased(&self, key: &TokenKey, lease: &Lease) -> Result<()> {
        self.fenced(key, lease, |entry| self.write(entry, None))
    }

    fn name(&self) -> &str {
        "memory"
    }
}

impl MemoryStore {
    /// Writes the entry's token, and wakes the waiters that end on a change.
    fn write(&self, entry: &mut Entry, token: Option<&Token>) {
        entry.token = token.cloned();
        entry.version += 1;
        self.inner.released.notify_waiters();
    }

    /// Waits for the lease of `key`; with `unless_changed`, ends early when the
    /// stored token changes meanwhile.
    async fn wait(&self, key: &TokenKey, ttl: Duration, unless_changed: bool) -> Result<LeaseWait> {
        let clock = &self.inner.clock;
        let give_up_at = clock.monotonic() + ttl;
        let mut seen = None;
        let mut contended = false;
        loop {
            let released = self.inner.released.notified();
            tokio::pin!(released);
            // Registered before looking, so that no release is missed.
            released.as_mut().enable();
            let now = clock.monotonic();
            let wait = {
                let mut keys = self.keys();
                let entry = keys.entry(key.clone()).or_default();
                match entry.held {
                    Some(_)
                        if unless_changed
                            && *seen.get_or_insert(entry.version) != entry.version =>
                    {
                        return Ok(LeaseWait::Changed(entry.token.clone()));
                    }
                    Some((_, until)) if until > now => {
                        contended = true;
                        until - now
                    }
                    _ => {
                        entry.fence += 1;
                        entry.held = Some((entry.fence, now + ttl));
                        return Ok(LeaseWait::Held(Lease::new(MemoryLease {
                            store: self.clone(),
                            key: key.clone(),
                            fence: entry.fence,
                            contended,
                        })));
                    }
                }
            };
            if now >= give_up_at {
                return Err(Error::store(
                    "memory",
                    format!("the lease of `{key}` stayed held for {ttl:?}"),
                ));
            }
            tokio::select! {
                biased;
                () = released => {}
                () = clock.sleep(wait.min(give_up_at - now)) => {}
            }
        }
    }
}

#[derive(Debug)]
struct MemoryLease {
    store: MemoryStore,
    key: TokenKey,
    fence: u64,
    /// Granted after another holder's lease ended.
    contended: bool,
}

impl MemoryLease {
    /// Ends the lease if this guard still holds it; whether it did.
    fn end(&self) -> bool {
        let now = self.store.inner.clock.monotonic();
        let held = {
            let mut keys = self.store.keys();
            let entry = keys.get_mut(&self.key);
            match entry {
                Some(entry) if entry.held.is_some_and(|(fence, _)| fence == self.fence) => {
                    let (_, until) = entry.held.take().unwrap_or_default();
                    until > now
                }
                _ => false,
            }
        };
        self.store.inner.released.notify_waiters();
        held
    }
}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        self.end();
    }
}

#[async_trait]
impl LeaseGuard for MemoryLease {
    async fn release(self: Box<Self>) -> Result<()> {
        if self.end() {
            Ok(())
        } else {
            Err(Error::lease_lost(
                "memory",
                format!(
                    "lease {} of `{}` had ended before it was released",
                    self.fence, self.key
                ),
            ))
        }
    }

    fn fence(&self) -> u64 {
        self.fence
    }

    fn contended(&self) -> bool {
        self.contended
    }

    fn held_for(&self) -> Option<Duration> {
        let now = self.store.inner.clock.monotonic();
        let keys = self.store.keys();
        let until = keys
            .get(&self.key)
            .and_then(|e| e.held)
            .filter(|(fence, _)| *fence == self.fence)
            .map_or(Duration::ZERO, |(_, until)| until);
        Some(until.saturating_sub(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn save_load_delete() {
        let store = MemoryStore::new();
        let key = TokenKey::new("k");
        assert!(store.load(&key).await.unwrap().is_none());
        store.save(&key, &Token::new("a")).await.unwrap();
        assert!(store.contains(&key).await.unwrap());
        assert_eq!(
            store
                .load(&key)
                .await
                .unwrap()
                .unwrap()
                .access_token
                .secret(),
            "a"
        );
        store.delete(&key).await.unwrap();
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn a_save_ends_a_wait_that_any_new_token_ends() {
        let store = MemoryStore::new();
        let key = TokenKey::new("k");
        let ttl = Duration::from_secs(5);
        let held = store.lease(&key, ttl).await.unwrap();
        let watching = tokio::spawn({
            let (store, key) = (store.clone(), key.clone());
            async move { store.lease_unless_changed(&key, ttl).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !watching.is_finished(),
            "the lease is held, nothing changed"
        );
        store
            .save_leased(&key, &Token::new("new"), &held)
            .await
            .unwrap();
        match watching.await.unwrap().unwrap() {
            LeaseWait::Changed(Some(token)) => assert_eq!(token.access_token.secret(), "new"),
            other => panic!("{other:?}"),
        }
        // Once the lease is free, it is taken as usual.
        held.release().await.unwrap();
        let free = store.lease_unless_changed(&key, ttl).await.unwrap();
        assert!(matches!(free, LeaseWait::Held(lease) if lease.is_held()));
    }

    #[tokio::test]
    async fn a_lease_excludes_the_next_until_released() {
        let store = MemoryStore::new();
        let key = TokenKey::new("k");
        let first = store.lease(&key, Duration::from_secs(5)).await.unwrap();
        assert!(first.is_held());
        let second = store.lease(&key, Duration::from_secs(5));
        tokio::pin!(second);
        assert!(futures_util::poll!(second.as_mut()).is_pending());
        first.release().await.unwrap();
        assert!(second.await.unwrap().is_held());
    }

    #[cfg(feature = "test-util")]
    #[tokio::test]
    async fn a_late_write_under_an_expired_lease_is_refused() {
        let clock = crate::ManualClock::default();
        let store = MemoryStore::with_clock(clock.clone());
        let key = TokenKey::new("k");
        let ttl = Duration::from_secs(5);
        let stalled = store.lease(&key, ttl).await.unwrap();
        assert_eq!(stalled.held_for(), Some(ttl));
        clock.advance(Duration::from_secs(6));
        assert_eq!(stalled.held_for(), Some(Duration::ZERO));
        let next = store.lease(&key, ttl).await.unwrap();
        assert!(next.fence() > stalled.fence());
        store
            .save_leased(&key, &Token::new("new"), &next)
            .await
            .unwrap();
        let refused = store
            .save_leased(&key, &Token::new("old"), &stalled)
            .await
            .unwrap_err();
        assert!(refused.is_lease_lost(), "{refused}");
        assert!(store
            .delete_leased(&key, &stalled)
            .await
            .unwrap_err()
            .is_lease_lost());
        let kept = store.load(&key).await.unwrap().unwrap();
        assert_eq!(kept.access_token.secret(), "new");
        assert!(stalled.release().await.unwrap_err().is_lease_lost());
        next.release().await.unwrap();
    }
}
