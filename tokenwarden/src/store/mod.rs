//! Where tokens are kept between calls, processes and machines: the [`TokenStore`]
//! trait, [`Lease`] for electing one refresher among many, and [`MemoryStore`].

#[cfg(feature = "encryption")]
mod cipher;
#[cfg(feature = "file-store")]
mod file;
#[cfg(any(feature = "file-store", feature = "keyring"))]
mod fs;
#[cfg(feature = "keyring")]
mod keyring;
mod memory;

#[cfg(feature = "encryption")]
pub use cipher::{OpenError, TokenCipher};
#[cfg(feature = "file-store")]
pub use file::{FileKey, FileStore, FileStoreBuilder};
#[cfg(feature = "keyring")]
pub use keyring::KeyringStore;
pub use memory::MemoryStore;

use crate::{Result, Token, TokenKey};
use async_trait::async_trait;
use std::time::Duration;

/// Persistent or shared storage for tokens.
///
/// The manager reads the store before it asks its source for a token, saves every
/// new token before any caller sees it, and takes a [`lease`](Self::lease) around
/// each refresh so that, of many processes sharing the store, one refreshes and
/// the others read its result.
#[async_trait]
pub trait TokenStore: std::fmt::Debug + Send + Sync {
    /// The token stored under `key`, if any.
    async fn load(&self, key: &TokenKey) -> Result<Option<Token>>;

    /// Stores `token` under `key`, replacing what was there. Must be atomic: a
    /// reader (or a crash) sees the old token or the new one, whole.
    async fn save(&self, key: &TokenKey, token: &Token) -> Result<()>;

    /// Removes the token stored under `key`, if any.
    async fn delete(&self, key: &TokenKey) -> Result<()>;

    /// Makes this caller the one refresher of `key` among all that share the store,
    /// waiting while another holds the lease. The lease ends when the returned
    /// [`Lease`] is released or dropped, or after `ttl` if its holder died.
    ///
    /// Defaults to no coordination (an immediate, empty lease): right for stores
    /// that only one process uses.
    async fn lease(&self, key: &TokenKey, ttl: Duration) -> Result<Lease> {
        let _ = (key, ttl);
        Ok(Lease::none())
    }

    /// Whether a token is stored under `key`.
    async fn contains(&self, key: &TokenKey) -> Result<bool> {
        Ok(self.load(key).await?.is_some())
    }

    /// A short name for logs, errors and [`TokenInfo`](crate::TokenInfo), with the
    /// location where the store has one.
    fn name(&self) -> &str {
        "custom"
    }
}

/// What a store returns from [`TokenStore::lease`] to hold the lease.
#[async_trait]
pub trait LeaseGuard: std::fmt::Debug + Send + Sync {
    /// Gives the lease up. Dropping the guard without calling this must also give it
    /// up, or at least let it expire.
    async fn release(self: Box<Self>) -> Result<()>;
}

/// The right to refresh one key, held until released or dropped.
#[derive(Debug)]
#[must_use = "the lease ends when dropped"]
pub struct Lease {
    guard: Option<Box<dyn LeaseGuard>>,
}

impl Lease {
    /// An empty lease that coordinates nothing.
    pub fn none() -> Self {
        Self { guard: None }
    }

    /// A lease held by `guard`.
    pub fn new(guard: impl LeaseGuard + 'static) -> Self {
        Self {
            guard: Some(Box::new(guard)),
        }
    }

    /// Whether this lease coordinates anything.
    pub fn is_held(&self) -> bool {
        self.guard.is_some()
    }

    /// Gives the lease up now.
    pub async fn release(mut self) -> Result<()> {
        match self.guard.take() {
            Some(guard) => guard.release().await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl<S: TokenStore + ?Sized> TokenStore for std::sync::Arc<S> {
    async fn load(&self, key: &TokenKey) -> Result<Option<Token>> {
        (**self).load(key).await
    }

    async fn save(&self, key: &TokenKey, token: &Token) -> Result<()> {
        (**self).save(key, token).await
    }

    async fn delete(&self, key: &TokenKey) -> Result<()> {
        (**self).delete(key).await
    }

    async fn lease(&self, key: &TokenKey, ttl: Duration) -> Result<Lease> {
        (**self).lease(key, ttl).await
    }

    async fn contains(&self, key: &TokenKey) -> Result<bool> {
        (**self).contains(key).await
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}
