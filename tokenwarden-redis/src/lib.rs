//! # tokenwarden-redis
//!
//! [`RedisStore`]: a [`TokenStore`](tokenwarden::TokenStore) in Redis, for a fleet
//! of instances sharing tokens, with a lease so that of N instances sharing a key
//! one refreshes per expiry and the others read its token.
//!
//! - Tokens live under `<prefix>:<key>` with a TTL that ends with the token.
//! - [`lease`](tokenwarden::TokenStore::lease) is `SET <prefix>:<key>:lease <owner> NX PX <ttl>`,
//!   renewed while held, released by compare-and-delete; waiters poll briefly. The
//!   manager re-reads the store after taking the lease and uses a token another
//!   instance stored meanwhile, so a rotating refresh token is never spent twice.
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
pub use store::{RedisStore, RedisStoreBuilder, DEFAULT_COMMAND_TIMEOUT};
