//! The hit path: the future [`token`](super::TokenManager::token) and
//! [`header`](super::TokenManager::header) return, and the handles they give.
//!
//! A hand-written future rather than an `async fn` so that its first poll (the
//! fresh-token check) inlines into the caller: an `async fn` adds a layer of calls
//! and moves of the `Result` that cost as much as the check itself.

use super::cached::{Cached, State};
use super::{flight, recheck, Shared};
use crate::{Clock as _, Result, SystemClock, Token};
use arc_swap::Guard;
use futures_util::future::BoxFuture;
use http::HeaderValue;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// What a caller gets from the cache: a token handle or a header handle.
pub(super) trait FromCached {
    fn from_cached(cached: Guard<Arc<Cached>>) -> Self;
}

/// Serves the cached token if it is fresh or stale (starting the background
/// refresh), else waits in [`flight::slow_path`].
pub(super) struct Current<'a, T> {
    shared: &'a Arc<Shared>,
    slow: Option<BoxFuture<'a, Result<Guard<Arc<Cached>>>>>,
    output: std::marker::PhantomData<fn() -> T>,
}

impl<'a, T> Current<'a, T> {
    #[inline]
    pub(super) fn new(shared: &'a Arc<Shared>) -> Self {
        Self {
            shared,
            slow: None,
            output: std::marker::PhantomData,
        }
    }
}

/// The cached token if it can be served now, else the guard for the slow path.
#[inline]
fn serve(shared: &Arc<Shared>) -> Result<Guard<Arc<Cached>>, Guard<Arc<Cached>>> {
    let cached = shared.current.load();
    let settings = &shared.settings;
    let now = if settings.system_clock {
        SystemClock.now_millis()
    } else {
        settings.clock.now_millis()
    };
    // A copy of a shared store's token is served for a while only, then the
    // store is read again (the slow path does that).
    let due = recheck::due(shared, &cached, now);
    if cached.is_fresh(now) && !due {
        shared.counters.hit();
        return Ok(cached);
    }
    // Past the fresh window the coarse reading may be a tick behind a token's
    // end: the precise clock decides.
    let now = crate::clock::unix_millis(settings.clock.now());
    match cached.state(now) {
        State::Stale if !due => flight::refresh_in_background(shared, now),
        // Still valid while a failed refresh backs off: served without waiting.
        State::Expiring if !due && shared.backoff.is_waiting(now) => {}
        _ => return Err(cached),
    }
    shared.counters.hit();
    Ok(cached)
}

/// The cached token if the hit path serves it (fresh, or stale with a
/// background refresh started), without waiting for anything: `None` otherwise.
#[cfg(feature = "blocking")]
pub(super) fn served<T: FromCached>(shared: &Arc<Shared>) -> Option<T> {
    serve(shared).ok().map(T::from_cached)
}

impl<T: FromCached> Future for Current<'_, T> {
    type Output = Result<T>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let slow = match &mut this.slow {
            Some(slow) => slow,
            None => match serve(this.shared) {
                Ok(cached) => return Poll::Ready(Ok(T::from_cached(cached))),
                Err(cached) => this.slow.insert(flight::slow_path(this.shared, cached)),
            },
        };
        slow.as_mut()
            .poll(cx)
            .map(|result| result.map(T::from_cached))
    }
}

/// A valid token held by the manager: dereferences to [`Token`].
///
/// Getting one costs no allocation and no shared write. It keeps this token alive
/// while held, so keep it for the length of a request, not longer.
pub struct TokenRef(Guard<Arc<Cached>>);

impl FromCached for TokenRef {
    #[inline]
    fn from_cached(cached: Guard<Arc<Cached>>) -> Self {
        TokenRef(cached)
    }
}

impl TokenRef {
    /// The precomputed, sensitive `Authorization` header value for this token.
    pub fn header(&self) -> &HeaderValue {
        &self.0.header
    }

    /// A copy of the token to keep.
    pub fn to_token(&self) -> Token {
        self.0.token.clone()
    }
}

impl Deref for TokenRef {
    type Target = Token;

    fn deref(&self) -> &Token {
        &self.0.token
    }
}

impl std::fmt::Debug for TokenRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0.token, f)
    }
}

/// The sensitive `Authorization` header value of a valid token: dereferences to
/// [`HeaderValue`]. Same cost and lifetime notes as [`TokenRef`].
pub struct HeaderRef(Guard<Arc<Cached>>);

impl FromCached for HeaderRef {
    #[inline]
    fn from_cached(cached: Guard<Arc<Cached>>) -> Self {
        HeaderRef(cached)
    }
}

impl HeaderRef {
    /// The token this header carries.
    pub fn token(&self) -> &Token {
        &self.0.token
    }

    /// The token's [fingerprint](Token::fingerprint), computed once per token.
    pub fn fingerprint(&self) -> &str {
        &self.0.fingerprint
    }

    /// For a DPoP-bound token ([`Token::is_dpop`]), a fresh proof for one
    /// request (the `DPoP` header's value, marked sensitive), with the
    /// token's hash computed once per token: `htm` the method, `htu` the
    /// target URI ([`dpop::htu`](crate::dpop::htu)), `nonce` the server's if
    /// it asked for one, `now` the time it is signed. `None` for any other
    /// token. A DPoP-bound token without its key is an error: its source
    /// must set [`Token::dpop_key`].
    #[cfg(feature = "dpop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
    pub fn dpop_proof(
        &self,
        htm: &str,
        htu: &str,
        nonce: Option<&str>,
        now: std::time::SystemTime,
    ) -> Result<Option<HeaderValue>> {
        let Some(ath) = &self.0.ath else {
            return Ok(None);
        };
        let key = self.0.token.dpop_key.as_ref().ok_or_else(|| {
            crate::Error::config(
                "a DPoP-bound token without its key: its source must set `Token::dpop_key`",
            )
        })?;
        let proof = key.proof(htm, htu, Some(ath), nonce, now)?;
        let mut value = HeaderValue::try_from(proof)
            .map_err(|_| crate::Error::config("a DPoP proof that is not a header value"))?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

impl Deref for HeaderRef {
    type Target = HeaderValue;

    fn deref(&self) -> &HeaderValue {
        &self.0.header
    }
}

impl std::fmt::Debug for HeaderRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A sensitive HeaderValue prints as `Sensitive`.
        std::fmt::Debug::fmt(&self.0.header, f)
    }
}
