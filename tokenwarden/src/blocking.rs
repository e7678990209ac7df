//! A blocking [`TokenManager`], in the style of `reqwest::blocking`: for code
//! without a Tokio runtime of its own (command-line tools, build scripts, data
//! jobs, `ureq` and `reqwest::blocking` users), from any thread.
//!
//! It wraps the async [`crate::TokenManager`] and has the same guarantees: one
//! refresh at a time however many threads ask, a token rejected by the API
//! refreshed once for all its callers, the store's lease across processes. Every
//! blocking manager of the process shares one runtime thread
//! (`tokenwarden-blocking`, started on first use) on which refreshes, background
//! refreshes, stores and sources run. A call that finds a fresh token (the hit
//! path) does not go there: it costs what the async one costs, plus a check
//! that no runtime is running on the calling thread (`cargo bench -p
//! tokenwarden --bench hit_path` prints both).
//!
//! Calling it from inside a Tokio runtime (an `async fn`, a task, `block_on`,
//! and `spawn_blocking` too, even with a token cached) returns an
//! [`ErrorKind::Config`](crate::ErrorKind::Config) error instead of blocking: a
//! thread of that runtime may be the one that drives a connection the refresh
//! needs, and waiting on it would never end. Use the async manager there
//! ([`as_async`](TokenManager::as_async)), or call from a thread of your own
//! (`std::thread::spawn`).
//!
//! ```
//! use tokenwarden::{blocking, source::StaticSource, Token};
//!
//! # fn main() -> tokenwarden::Result<()> {
//! let source = StaticSource::new("api", Token::new("access-token"));
//! let manager = blocking::TokenManager::builder(source).build_blocking()?;
//! let header = manager.header()?; // blocks only when a refresh is needed
//! assert_eq!(header.to_str().unwrap(), "Bearer access-token");
//! # Ok(()) }
//! ```

use crate::{Error, HeaderRef, Result, Stats, Token, TokenInfo, TokenKey, TokenManagerBuilder};
use crate::{TokenRef, TokenSource};
use std::future::Future;
use std::sync::OnceLock;

/// The runtime every blocking manager runs on: one worker thread, started on
/// first use and kept for the life of the process (dropping it would cut off
/// refreshes in flight of managers still in use).
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    let started = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tokenwarden-blocking")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    started.as_ref().map_err(|why| {
        Error::config(format!(
            "could not start the runtime thread of tokenwarden's blocking API: {why}"
        ))
    })
}

/// What a blocking call inside a runtime is told.
const IN_A_RUNTIME: &str = "tokenwarden's blocking API was called from inside a Tokio runtime \
     (an async task, `block_on` or `spawn_blocking`), where waiting could stall the runtime \
     that drives the refresh: there, use the async manager (`manager.as_async()`, and the \
     async clients), or call from a thread of your own (`std::thread::spawn`)";

/// An error unless the calling thread is outside every Tokio runtime (the
/// check every blocking call makes first; the integrations make it too).
#[doc(hidden)]
pub fn check_outside_runtime() -> Result<()> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::config(IN_A_RUNTIME));
    }
    Ok(())
}

/// Runs `future` to its end on the calling thread, in the shared runtime's
/// context (what it spawns, and its timers, go there); an error inside any
/// other runtime.
fn wait<F: Future>(future: F) -> Result<F::Output> {
    check_outside_runtime()?;
    Ok(runtime()?.block_on(future))
}

/// Runs `future` to its end on the blocking API's runtime, from a thread
/// outside every runtime: for what needs a runtime to be made, such as a
/// Redis store (its connection lives on the runtime it was made on).
///
/// ```
/// # fn main() -> tokenwarden::Result<()> {
/// let answer = tokenwarden::blocking::block_on(async { 6 * 7 })?;
/// assert_eq!(answer, 42);
/// # Ok(()) }
/// ```
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    wait(future)
}

/// A [`crate::TokenManager`] whose methods block; see the [module](self). Cheap
/// to clone: clones share the token, the refresh in flight and the store.
#[derive(Clone, Debug)]
pub struct TokenManager {
    inner: crate::TokenManager,
}

impl TokenManager {
    /// Starts building a manager for `source`: the async manager's builder, ended
    /// with [`build_blocking`](TokenManagerBuilder::build_blocking).
    pub fn builder(source: impl TokenSource + 'static) -> TokenManagerBuilder {
        crate::TokenManager::builder(source)
    }

    /// A valid token: the cached one, or a new one if it is expiring or gone
    /// (this thread waits for it). See [`crate::TokenManager::token`].
    pub fn token(&self) -> Result<TokenRef> {
        // The hit path first: no runtime needed (a background refresh it starts
        // goes to the shared runtime, the manager was built with its handle).
        check_outside_runtime()?;
        match self.inner.token_now() {
            Some(token) => Ok(token),
            None => wait(self.inner.token())?,
        }
    }

    /// The `Authorization` header value for a valid token. See
    /// [`crate::TokenManager::header`].
    pub fn header(&self) -> Result<HeaderRef> {
        check_outside_runtime()?;
        match self.inner.header_now() {
            Some(header) => Ok(header),
            None => wait(self.inner.header())?,
        }
    }

    /// Drops `token` if it is still the current one (after the API rejected
    /// it); returns whether it was. Many callers invalidating the same token
    /// cause one refresh. Never blocks.
    pub fn invalidate(&self, token: &Token) -> bool {
        self.inner.invalidate(token)
    }

    /// Gets a new token now. See [`crate::TokenManager::force_refresh`].
    pub fn force_refresh(&self) -> Result<TokenRef> {
        wait(self.inner.force_refresh())?
    }

    /// Uses `token` from now on. See [`crate::TokenManager::set_tokens`].
    pub fn set_tokens(&self, token: Token) -> Result<()> {
        wait(self.inner.set_tokens(token))?
    }

    /// What may be shown about the current token. See
    /// [`crate::TokenManager::info`].
    pub fn info(&self) -> Result<TokenInfo> {
        wait(self.inner.info())
    }

    /// Logs out. See [`crate::TokenManager::logout`].
    pub fn logout(&self) -> Result<()> {
        wait(self.inner.logout())?
    }

    /// Waits until the listeners have seen every event emitted before the
    /// call. See [`crate::TokenManager::listeners_idle`].
    pub fn listeners_idle(&self) -> Result<()> {
        wait(self.inner.listeners_idle())
    }

    /// Counters of what the manager has done. Never blocks.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// The key the token is cached and stored under.
    pub fn key(&self) -> &TokenKey {
        self.inner.key()
    }

    /// The async manager underneath, for code that has a runtime.
    pub fn as_async(&self) -> &crate::TokenManager {
        &self.inner
    }
}

impl TokenManagerBuilder {
    /// Builds a [`blocking::TokenManager`](TokenManager); its background refresh
    /// (if on) runs on the blocking API's runtime thread. The same checks as
    /// [`build`](Self::build).
    pub fn build_blocking(self) -> Result<TokenManager> {
        let runtime = runtime()?;
        Ok(TokenManager {
            inner: self.runtime(runtime.handle().clone()).build()?,
        })
    }
}
