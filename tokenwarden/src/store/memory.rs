//! [`MemoryStore`]: tokens in this process's memory, shared by the managers that
//! hold the same store.

use super::{Lease, LeaseGuard, TokenStore};
use crate::{Result, Token, TokenKey};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;

/// A token store in memory. Clones share the same tokens.
///
/// Its leases are real within the process: managers that share one `MemoryStore`
/// (the same token used by several components) make one refresh between them.
/// Tokens are lost when the process ends.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tokens: Mutex<HashMap<TokenKey, Token>>,
    leases: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes every token.
    pub fn clear(&self) {
        self.tokens().clear();
    }

    /// How many tokens are stored.
    pub fn len(&self) -> usize {
        self.tokens().len()
    }

    /// Whether no token is stored.
    pub fn is_empty(&self) -> bool {
        self.tokens().is_empty()
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Token>> {
        // A panic elsewhere cannot leave a half-written map: inserts are single calls.
        self.inner
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn load(&self, key: &TokenKey) -> Result<Option<Token>> {
        Ok(self.tokens().get(key).cloned())
    }

    async fn save(&self, key: &TokenKey, token: &Token) -> Result<()> {
        self.tokens().insert(key.clone(), token.clone());
        Ok(())
    }

    async fn delete(&self, key: &TokenKey) -> Result<()> {
        self.tokens().remove(key);
        Ok(())
    }

    async fn lease(&self, key: &TokenKey, _ttl: Duration) -> Result<Lease> {
        let lock = {
            let mut leases = self
                .inner
                .leases
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            leases.retain(|_, lock| Arc::strong_count(lock) > 1 || lock.try_lock().is_err());
            leases.entry(key.clone()).or_default().clone()
        };
        Ok(Lease::new(MemoryLease {
            _held: lock.lock_owned().await,
        }))
    }

    fn name(&self) -> &str {
        "memory"
    }
}

#[derive(Debug)]
struct MemoryLease {
    _held: OwnedMutexGuard<()>,
}

#[async_trait]
impl LeaseGuard for MemoryLease {
    async fn release(self: Box<Self>) -> Result<()> {
        Ok(())
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
}
