//! # tokenwarden-redis
//!
//! [`RedisStore`]: a [`TokenStore`](tokenwarden::TokenStore) in Redis, for a fleet
//! of instances sharing tokens, with a lease so that of N instances sharing a key
//! one refreshes per expiry and the others read its token.
//!
//! - Tokens live under `<prefix>:{<key>}` for as long as their refresh token can be
//!   used (the server's `refresh_expires_in`, else
//!   [`refresh_retention`](RedisStoreBuilder::refresh_retention), 30 days by
//!   default); the access token's own expiry still decides whether it is served.
//! - [`lease`](tokenwarden::TokenStore::lease) is `SET <prefix>:{<key>}:lease <owner> NX PX <ttl>`
//!   and an `INCR` of `<prefix>:{<key>}:fence` in one script: each lease carries a
//!   fencing generation. Saves and deletes under a lease are compare-and-set
//!   scripts against it, so a holder that stalled past its lease while another
//!   instance took over cannot overwrite the newer token (its save is refused
//!   with [`ErrorKind::LeaseLost`](tokenwarden::ErrorKind::LeaseLost), and its
//!   manager adopts what is stored). The lease is released by compare-and-delete;
//!   waiters poll briefly. All keys of one token share a `{hash tag}`.
//! - The manager re-reads the store after taking the lease and uses a token another
//!   instance stored meanwhile, so a rotating refresh token is never spent twice
//!   by instances that keep to their leases (the one case left, a holder paused
//!   after sending its refresh and before storing the answer for longer than the
//!   lease, is in `docs/design/001-fenced-leases.md`).
//! - The connection is a [`redis::aio::ConnectionManager`] made from the URL (it
//!   reconnects by itself), or one you give, manager or multiplexed
//!   ([`RedisStore::with_connection`]); every command has a timeout, and while Redis
//!   is away the manager keeps serving from its own cache and single-flight.
//!
//! ```no_run
//! use tokenwarden::{source::from_fn, Token, TokenManager};
//! use tokenwarden_redis::RedisStore;
//!
//! # async fn run() -> tokenwarden::Result<()> {
//! let store = RedisStore::builder("redis://127.0.0.1:6379/0").prefix("billing").build().await?;
//! let manager = TokenManager::builder(from_fn("api", || async { Ok(Token::new("t")) }))
//!     .store(store)
//!     .build()?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod connection;
mod lease;
mod store;

pub use connection::RedisConnection;
pub use store::{
    RedisStore, RedisStoreBuilder, DEFAULT_COMMAND_TIMEOUT, DEFAULT_REFRESH_RETENTION,
};
