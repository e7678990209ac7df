//! A memory store whose loads can be held at a gate, whose saves can be made to
//! fail, and whose leases can be turned off (a store of one's own without them),
//! for the coordination tests.

#![allow(dead_code)] // each test binary uses a part

use super::grant_server::Gate;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;
use tokenwarden::store::{Lease, MemoryStore, TokenStore};
use tokenwarden::{Error, Result, Token, TokenKey};

#[derive(Debug, Default)]
pub struct GatedStore {
    pub inner: MemoryStore,
    /// Loads wait here before they read.
    pub loads: Gate,
    /// How many loads have read.
    pub loaded: AtomicUsize,
    /// How many of the next saves fail.
    pub failing_saves: AtomicUsize,
    /// How many saves failed.
    pub failed_saves: AtomicUsize,
    /// No leases: the default of `TokenStore::lease`.
    pub without_leases: bool,
}

impl GatedStore {
    pub fn over(inner: MemoryStore) -> Self {
        Self {
            inner,
            ..Self::default()
        }
    }

    fn save_fails(&self) -> Result<()> {
        let failing = self
            .failing_saves
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            self.failed_saves.fetch_add(1, SeqCst);
            return Err(Error::store("gated", "the disk is full (a test's failure)"));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl TokenStore for GatedStore {
    async fn load(&self, key: &TokenKey) -> Result<Option<Token>> {
        self.loads.pass().await;
        let loaded = self.inner.load(key).await;
        self.loaded.fetch_add(1, SeqCst);
        loaded
    }

    async fn save(&self, key: &TokenKey, token: &Token) -> Result<()> {
        self.save_fails()?;
        self.inner.save(key, token).await
    }

    async fn delete(&self, key: &TokenKey) -> Result<()> {
        self.inner.delete(key).await
    }

    async fn lease(&self, key: &TokenKey, ttl: Duration) -> Result<Lease> {
        match self.without_leases {
            true => Ok(Lease::none()),
            false => self.inner.lease(key, ttl).await,
        }
    }

    async fn save_leased(&self, key: &TokenKey, token: &Token, lease: &Lease) -> Result<()> {
        self.save_fails()?;
        self.inner.save_leased(key, token, lease).await
    }

    async fn delete_leased(&self, key: &TokenKey, lease: &Lease) -> Result<()> {
        self.inner.delete_leased(key, lease).await
    }

    fn name(&self) -> &str {
        "gated"
    }
}
