//! # tokenwarden
//!
//! Gets, caches, stores and refreshes access tokens for HTTP API clients, so that
//! every request carries a valid token, the token endpoint sees one refresh per
//! expiry however many tasks share the token, and no token leaks.
//!
//! ## Quick start
//!
//! ```
//! use std::time::Duration;
//! use tokenwarden::{source::from_fn, Token, TokenManager, TracingListener};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> tokenwarden::Result<()> {
//! let manager = TokenManager::builder(from_fn("my-api", || async {
//!     // Log in to your API here.
//!     Ok(Token::new("secret-token").with_expires_in(Duration::from_secs(3600)))
//! }))
//! .listener(TracingListener)
//! .build()?;
//!
//! let header = manager.header().await?; // "Bearer secret-token", marked sensitive
//! assert!(header.is_sensitive());
//! println!("{:?}", manager.info().await); // no secret in there
//! # Ok(()) }
//! ```
//!
//! ## Pieces
//!
//! - [`TokenManager`]: the cache, the refresh windows, single-flight refreshes,
//!   backoff, the recovery chain (cached → stored → refresh → login → error).
//! - [`TokenSource`]: where tokens come from; [`source::StaticSource`] for given
//!   tokens, [`source::from_fn`] for your own login code.
//! - [`TokenStore`]: where tokens are kept and how processes elect one refresher;
//!   [`store::MemoryStore`] built in.
//! - [`TokenListener`]: told about every new token ([`TracingListener`] built in).
//! - [`TokenRegistry`]: one manager per key, for many services or many users.
//! - [`Clock`]: all time goes through it; `ManualClock` (feature `test-util`) for tests.
//!
//! ## Feature flags
//!
//! - `oauth2`: OAuth2 and OpenID Connect sources ([`source::oauth2`]): client
//!   credentials (with a secret or `private_key_jwt`), refresh token, the device
//!   authorization grant, authorization code with PKCE (a browser sign-in on a
//!   loopback redirect), resource owner password, JWT bearer assertions and token
//!   exchange; discovery (RFC 8414, OpenID), ID tokens, and revocation. Includes
//!   `dpop`.
//! - `dpop`: DPoP-bound tokens ([`dpop`], RFC 9449): keys kept with their tokens,
//!   a proof with every request of every adapter, servers' nonces answered.
//! - `tower`: [`tower::TokenLayer`], tokens for hyper clients and tonic channels.
//! - `encryption`: [`store::TokenCipher`], tokens sealed with XChaCha20-Poly1305 for
//!   any store (the Redis store uses it).
//! - `file-store`: [`store::FileStore`], tokens encrypted on disk with file-lock
//!   leases (implies `encryption`).
//! - `keyring`: [`store::KeyringStore`], tokens in the OS credential store, and the
//!   file store's key kept there ([`store::FileKey::Keyring`]).
//! - `blocking`: [`blocking::TokenManager`], the same manager for code without a
//!   runtime (command-line tools, `ureq` and `reqwest::blocking` users), on one
//!   shared runtime thread.
//! - `test-util`: [`ManualClock`], a clock tests move by hand.
//!
//! ## Security
//!
//! Secrets live in [`AccessToken`], [`RefreshToken`], [`ClientSecret`] and
//! [`IdToken`]: their `Debug` and `Display` print `[redacted]`, they are zeroized on
//! drop and compared in constant time. Logs carry token fingerprints (8 hex digits of
//! a SHA-256), never tokens. The `Authorization` value is marked sensitive; it is an
//! `http::HeaderValue`, which is not zeroized when dropped. `TokenManager`'s `Debug`
//! shows names and state only, never the source's own fields.
//!
//! ## Durability and coordination
//!
//! A new token is saved to the store before any caller sees it, so a rotated
//! refresh token is never lost to a crash. If the save fails, the token is still
//! served from memory (the refresh token was already spent at the server, so
//! dropping the new one would lose both), [`TokenInfo::unsaved`] says so, and the
//! save is retried with backoff until it lands or a newer token replaces it.
//!
//! Managers sharing a store coordinate through its leases (see [`TokenStore`]):
//!
//! - every write (a refreshed token, [`TokenManager::set_tokens`],
//!   [`TokenManager::logout`]) is made under a lease; where a lease can end while
//!   its holder runs (Redis, [`store::MemoryStore`]) it carries a **fencing
//!   generation** and the write is a compare-and-set against it, so a holder that
//!   stalled past its lease cannot store over a newer token
//!   ([`ErrorKind::LeaseLost`]; it adopts the stored token);
//! - no refresh token is spent without the lease; whoever takes it reads the store
//!   first, and the stored token's refresh token is the one sent (the store is the
//!   fleet's truth; an empty store means a new login);
//! - the lease TTL is never shorter than the refresh timeout, and a request is
//!   sent only if it can end within the lease ([`source::time_left`]); a refresh
//!   is retried only when it surely was not processed;
//! - `invalid_grant` reads the store before logging in again;
//! - a copy of the stored token is served for
//!   [`store_recheck`](TokenManagerBuilder::store_recheck) (5 s) before the store
//!   is read again, and [`TokenManager::logout`] waits that long after its delete:
//!   once it returns, no instance sharing the store serves a token from before it
//!   (`docs/design/002-copies-that-lapse.md`);
//! - all timeouts and waits run on the clock's monotonic time.
//!
//! The one risk left: an instance that sent a refresh and then could not store the
//! answer within its lease (it paused, died or lost the connection) leaves the
//! spent refresh token as the newest one known. The protocol and this risk are in
//! `docs/design/001-fenced-leases.md`; a deterministic simulation checks them.

// On docs.rs (and `RUSTDOCFLAGS="--cfg docsrs" cargo +nightly doc`), items
// behind a feature say which one.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

#[cfg(feature = "blocking")]
pub mod blocking;
pub mod clock;
pub mod dpop;
mod error;
mod events;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
mod key;
mod manager;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod refresh;
mod registry;
mod secret;
pub mod source;
pub mod store;
mod token;
#[cfg(feature = "tower")]
pub mod tower;

#[cfg(feature = "test-util")]
pub use clock::ManualClock;
pub use clock::{Clock, SystemClock};
pub use error::{Cause, Error, ErrorKind, OAuthError, Result};
pub use events::{TokenEvent, TokenEventKind, TokenListener, TracingListener};
pub use key::TokenKey;
pub use manager::{
    HeaderRef, Stats, TokenManager, TokenManagerBuilder, TokenRef, DEFAULT_BACKOFF_INITIAL,
    DEFAULT_BACKOFF_MAX, DEFAULT_LEASE_TTL, DEFAULT_LIFETIME, DEFAULT_MIN_VALID,
    DEFAULT_REFRESH_AHEAD, DEFAULT_REFRESH_JITTER, DEFAULT_REFRESH_TIMEOUT, DEFAULT_STORE_RECHECK,
};
pub use refresh::{LastRefresh, RefreshOutcome, RefreshReason};
pub use registry::{TokenRegistry, TokenRegistryBuilder, DEFAULT_IDLE_TIMEOUT};
pub use secret::{AccessToken, ClientSecret, IdToken, RefreshToken, REDACTED};
pub use source::TokenSource;
pub use store::TokenStore;
pub use token::{Token, TokenInfo, DEFAULT_TOKEN_TYPE};

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
