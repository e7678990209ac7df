//! Where tokens are kept between calls, processes and machines: the [`TokenStore`]
//! trait, [`Lease`] for electing one refresher among many, and the stores.
//!
//! | store | where | leases | feature |
//! |---|---|---|---|
//! | [`MemoryStore`] | this process | in-process, with a TTL, fenced | (always) |
//! | `FileStore` | encrypted files, platform data dir | OS file locks | `file-store` |
//! | `KeyringStore` | the OS credential store | OS file locks | `keyring` |
//! | `RedisStore` (crate `tokenwarden-redis`) | Redis, optionally sealed | `SET NX PX`, fenced; waiters woken by pub/sub | — |
//!
//! `TokenCipher` (feature `encryption`) seals tokens for any store of your own.
//!
//! ## Store, or listener?
//!
//! A store is what a "storage handler" with `store` and `fetch` methods is in
//! other libraries: the manager saves every new token to it *before* any caller
//! sees it (so a rotated refresh token is never lost to a crash), loads it at
//! start and before each refresh (so processes share it), and deletes it on
//! logout. A [`TokenListener`](crate::TokenListener) is told about each new token
//! *after* it was stored, off the refresh path: use it for copies and side effects
//! (another system's table, an audit log, a message), as the `persist_listener`
//! example does with PostgreSQL.
//!
//! A store of your own needs `load`, `save` and `delete`:
//!
//! ```
//! use tokenwarden::{Result, Token, TokenKey, TokenStore};
//! use std::collections::HashMap;
//! use std::sync::Mutex;
//!
//! #[derive(Debug, Default)]
//! struct MyStore(Mutex<HashMap<String, Vec<u8>>>);
//!
//! #[async_trait::async_trait]
//! impl TokenStore for MyStore {
//!     async fn load(&self, key: &TokenKey) -> Result<Option<Token>> {
//!         let map = self.0.lock().unwrap();
//!         Ok(map.get(key.as_str()).and_then(|json| serde_json::from_slice(json).ok()))
//!     }
//!     async fn save(&self, key: &TokenKey, token: &Token) -> Result<()> {
//!         let json = serde_json::to_vec(token).expect("a token encodes");
//!         self.0.lock().unwrap().insert(key.as_str().to_owned(), json);
//!         Ok(())
//!     }
//!     async fn delete(&self, key: &TokenKey) -> Result<()> {
//!         self.0.lock().unwrap().remove(key.as_str());
//!         Ok(())
//!     }
//! }
//! ```

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
///
/// ## The lease protocol
///
/// Every write the manager makes (a refreshed token, [`set_tokens`], [`logout`])
/// is made under a lease, with [`save_leased`](Self::save_leased) or
/// [`delete_leased`](Self::delete_leased). A store whose lease can end while its
/// holder still runs (a lease with a TTL, as in Redis) gives each lease a
/// **fencing generation**, larger than every earlier one of the key, and makes a
/// leased write a compare-and-set against it: a holder that stalled past its lease
/// while another instance took over has its late write refused with
/// [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost), so the store never goes
/// back to an older token. A store whose lease lasts as long as its holder (an OS
/// file lock, an in-process lock) needs no fence: the defaults of the leased
/// methods are the plain ones. See `docs/design/001-fenced-leases.md`.
///
/// [`set_tokens`]: crate::TokenManager::set_tokens
/// [`logout`]: crate::TokenManager::logout
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
    /// [`Lease`] is released or dropped, or after `ttl` if its holder died or
    /// stalled. A store that cannot grant it within `ttl` returns an error; the
    /// manager then spends no refresh token.
    ///
    /// Defaults to no coordination (an immediate, empty lease): right for stores
    /// that only one process uses.
    async fn lease(&self, key: &TokenKey, ttl: Duration) -> Result<Lease> {
        let _ = (key, ttl);
        Ok(Lease::none())
    }

    /// Like [`lease`](Self::lease), but also ends, without the lease, as soon as
    /// the token stored under `key` changes while this caller waits (the holder
    /// stored the token it refreshed, or a logout deleted it), with what the store
    /// holds then. The manager calls it when any new token will do: every waiter
    /// of an expiry then takes the holder's token at once, instead of the lease in
    /// turn.
    ///
    /// Defaults to [`lease`](Self::lease).
    async fn lease_unless_changed(&self, key: &TokenKey, ttl: Duration) -> Result<LeaseWait> {
        self.lease(key, ttl).await.map(LeaseWait::Held)
    }

    /// Whether [`lease_unless_changed`](Self::lease_unless_changed) also ends at
    /// once, without the lease, when the stored token is not the one this store
    /// last read or wrote under `key` (another instance refreshed it), or when
    /// this store does not know what it last saw there (it then answers with what
    /// is stored, as a read would). A due
    /// refresh then calls it without reading the store first: one round trip
    /// where a read and a lease would be two, and the lease's winner starts its
    /// refresh sooner when a fleet reaches an expiry together.
    ///
    /// Defaults to `false`: the manager reads the store first.
    fn leases_see_changes(&self) -> bool {
        false
    }

    /// Stores `token` under `key` if `lease` is still the newest lease of `key`,
    /// as one atomic step; otherwise refuses with
    /// [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost) and leaves the
    /// stored token as it is.
    ///
    /// Defaults to [`save`](Self::save): right where a lease cannot end while its
    /// holder runs, or where there are no leases.
    async fn save_leased(&self, key: &TokenKey, token: &Token, lease: &Lease) -> Result<()> {
        let _ = lease;
        self.save(key, token).await
    }

    /// Removes the token stored under `key` if `lease` is still the newest lease
    /// of `key`; otherwise refuses as [`save_leased`](Self::save_leased) does.
    ///
    /// Defaults to [`delete`](Self::delete).
    async fn delete_leased(&self, key: &TokenKey, lease: &Lease) -> Result<()> {
        let _ = lease;
        self.delete(key).await
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

/// How [`TokenStore::lease_unless_changed`] ended.
#[derive(Debug)]
pub enum LeaseWait {
    /// This caller holds the lease.
    Held(Lease),
    /// The stored token changed while this caller waited; what the store holds
    /// now (`None`: deleted). No lease is held.
    Changed(Option<Token>),
}

/// What a store returns from [`TokenStore::lease`] to hold the lease.
#[async_trait]
pub trait LeaseGuard: std::fmt::Debug + Send + Sync {
    /// Gives the lease up. Returns an [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost)
    /// error if the lease had already ended (expired, or taken by another).
    /// Dropping the guard without calling this must also give it up, or at least
    /// let it expire.
    async fn release(self: Box<Self>) -> Result<()>;

    /// The lease's fencing generation: larger than that of every lease of the
    /// same key taken before it. Defaults to 0, for leases that need no fence.
    fn fence(&self) -> u64 {
        0
    }

    /// How much longer the lease is surely held, measured on this process's
    /// monotonic clock from before the lease was asked for (so never longer than
    /// the store's own view); zero once it ended. `None` for a lease held as long
    /// as its holder runs (an OS or in-process lock). Defaults to `None`.
    fn held_for(&self) -> Option<Duration> {
        None
    }

    /// Who holds the lease: a value unique among the leases of its key (a random
    /// owner), for a store whose fenced writes check the holder as well as the
    /// fence, because a fence can repeat (a replica promoted without the last
    /// lease taken on its primary). Defaults to `None`.
    fn holder(&self) -> Option<&str> {
        None
    }

    /// Whether another holder had the lease when it was asked for, so that it
    /// was granted only once that one released it or its lease expired (a
    /// takeover, counted apart in metrics). Defaults to `false`.
    fn contended(&self) -> bool {
        false
    }
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

    /// The lease's fencing generation ([`LeaseGuard::fence`]); `None` for an empty lease.
    pub fn fence(&self) -> Option<u64> {
        self.guard.as_ref().map(|g| g.fence())
    }

    /// How much longer the lease is surely held ([`LeaseGuard::held_for`]);
    /// `None` when it cannot end while held (or is empty).
    pub fn held_for(&self) -> Option<Duration> {
        self.guard.as_ref().and_then(|g| g.held_for())
    }

    /// Who holds the lease ([`LeaseGuard::holder`]); `None` where the store
    /// does not say (or the lease is empty).
    pub fn holder(&self) -> Option<&str> {
        self.guard.as_ref().and_then(|g| g.holder())
    }

    /// Whether it was granted only after another holder's lease ended
    /// ([`LeaseGuard::contended`]); `false` for an empty lease.
    pub fn contended(&self) -> bool {
        self.guard.as_ref().is_some_and(|g| g.contended())
    }

    /// Gives the lease up now; an error if it had already ended.
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

    async fn lease_unless_changed(&self, key: &TokenKey, ttl: Duration) -> Result<LeaseWait> {
        (**self).lease_unless_changed(key, ttl).await
    }

    fn leases_see_changes(&self) -> bool {
        (**self).leases_see_changes()
    }

    async fn save_leased(&self, key: &TokenKey, token: &Token, lease: &Lease) -> Result<()> {
        (**self).save_leased(key, token, lease).await
    }

    async fn delete_leased(&self, key: &TokenKey, lease: &Lease) -> Result<()> {
        (**self).delete_leased(key, lease).await
    }

    async fn contains(&self, key: &TokenKey) -> Result<bool> {
        (**self).contains(key).await
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}
