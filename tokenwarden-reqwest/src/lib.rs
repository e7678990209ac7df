//! # tokenwarden-reqwest
//!
//! [`TokenMiddleware`] for [`reqwest_middleware`], and [`AuthClient`], a client
//! for one API whose requests carry a valid token from a
//! [`TokenManager`](tokenwarden::TokenManager):
//!
//! - the token goes only to allowed origins (by default the base URL's), over
//!   https or to loopback, marked sensitive;
//! - a 401 (or 403 `invalid_token`) invalidates the token that was sent, so many
//!   concurrent 401s cause one refresh, and the request is replayed once when its
//!   body can be cloned;
//! - each request has a tracing span with the token's fingerprint, never the token.
//!
//! With the feature `blocking`, [`blocking::AuthClient`] does the same for
//! `reqwest::blocking`, with a [`tokenwarden::blocking::TokenManager`].
//!
//! ```no_run
//! use std::time::Duration;
//! use tokenwarden::{source::from_fn, Token, TokenManager};
//! use tokenwarden_reqwest::AuthClient;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = TokenManager::builder(from_fn("api", || async {
//!     Ok(Token::new("token").with_expires_in(Duration::from_secs(3600)))
//! }))
//! .build()?;
//! let client = AuthClient::builder()
//!     .base_url("https://api.example.com/v1/")
//!     .token_manager(manager)
//!     .build()?;
//! let response = client.get("users").send().await?;
//! # Ok(()) }
//! ```

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
mod client;
mod keyed;
mod middleware;
mod redirect;

pub use client::{AuthClient, AuthClientBuilder, AuthRequestBuilder};
pub use keyed::KeyedAuthClient;
pub use middleware::{TokenMiddleware, DEFAULT_MAX_REPLAYS};
pub use redirect::same_origin_redirects;
pub use tokenwarden::http::{AllowedOrigins, TokenPlacement};
