//! [`TokenManager`]: serves a valid token from its cache, refreshing it once per
//! expiry however many callers ask, and keeping it in a store if it has one.
//!
//! The hit path is one atomic pointer load (arc-swap, no shared write), one coarse
//! clock read and one comparison. Everything else (waiting, refreshing, backing
//! off) happens in [`flight`], which runs each refresh as one spawned task that all
//! waiting callers share.

mod background;
mod backoff;
mod builder;
mod cached;
mod chain;
mod current;
mod flight;
mod install;
mod observe;
mod reasons;
mod recheck;
mod stats;
mod unsaved;
mod writes;

pub use builder::{
    TokenManagerBuilder, DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX, DEFAULT_LEASE_TTL,
    DEFAULT_LIFETIME, DEFAULT_MIN_VALID, DEFAULT_REFRESH_AHEAD, DEFAULT_REFRESH_JITTER,
    DEFAULT_REFRESH_TIMEOUT, DEFAULT_STORE_RECHECK,
};
pub use current::{HeaderRef, TokenRef};
pub use stats::Stats;

use crate::events::{Dispatcher, TokenEvent, TokenEventKind};
use crate::{Clock, Result, Token, TokenInfo, TokenKey, TokenSource, TokenStore};
use arc_swap::{ArcSwap, Guard};
use cached::Cached;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Gets, caches, stores and refreshes the token of one [`TokenSource`].
///
/// Cheap to clone (clones share everything) and safe to share between tasks and
/// threads. Needs a Tokio runtime for its refreshes.
///
/// | token state | when | what [`token`](Self::token) does |
/// |---|---|---|
/// | fresh | before the stale window | returns the cached token: no lock, no allocation |
/// | stale | within `refresh_ahead` of expiry | returns the cached token, starts one background refresh |
/// | expiring | within `min_valid` of expiry | waits for the one refresh in flight |
/// | expired | past expiry, or rejected | waits for the refresh; error if it fails |
///
/// A refresh goes: store (a token another process saved) → refresh with the refresh
/// token → full fetch if the refresh token was rejected (`invalid_grant`) → a clear
/// error. While refreshes fail, a still-valid token keeps being served and further
/// attempts back off with jitter.
///
/// ```
/// use std::time::Duration;
/// use tokenwarden::{source::from_fn, Token, TokenManager};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokenwarden::Result<()> {
/// let manager = TokenManager::builder(from_fn("login", || async {
///     Ok(Token::new("abc").with_expires_in(Duration::from_secs(3600)))
/// }))
/// .build()?;
///
/// let token = manager.token().await?; // fetched
/// assert_eq!(token.access_token.secret(), "abc");
/// let header = manager.header().await?; // from the cache
/// assert_eq!(*header, "Bearer abc");
/// assert_eq!(manager.stats().fetches, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenManager {
    shared: Arc<Shared>,
}

/// Names and state only: a source's own `Debug` may show its credentials.
impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.shared.settings;
        let cached = self.shared.current.load();
        f.debug_struct("TokenManager")
            .field("source", &s.source_name)
            .field("store", &s.store_name)
            .field("key", &s.key)
            .field("fingerprint", &cached.token().map(Token::fingerprint))
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Settings fixed at build time.
#[derive(Debug)]
struct Settings {
    source: Arc<dyn TokenSource>,
    source_name: String,
    store: Option<Arc<dyn TokenStore>>,
    store_name: Option<String>,
    key: TokenKey,
    clock: Arc<dyn Clock>,
    /// Whether `clock` is the [`SystemClock`](crate::SystemClock), read directly on
    /// the hit path (no virtual call).
    system_clock: bool,
    events: Dispatcher,
    windows: Windows,
    default_lifetime: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    lease_ttl: Duration,
    refresh_timeout: Duration,
    /// How long a token from the store is served before the store is read again
    /// (`None`: never; always `None` without a store).
    store_recheck: Option<Duration>,
    background_refresh: bool,
    /// Whether its metrics carry its key and source (see [`crate::metrics`]).
    per_key_metrics: bool,
    /// Where the manager's tasks (refreshes, the background task) run when its
    /// caller is on no runtime: the blocking API's runtime, for its managers.
    runtime: Option<tokio::runtime::Handle>,
}

/// The runtime the manager's tasks go to: the caller's, else the one the
/// manager was built for (the blocking API's), if any.
fn runtime(shared: &Shared) -> Option<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current()
        .ok()
        .or_else(|| shared.settings.runtime.clone())
}

/// The refresh windows (DESIGN.md), before they are scaled to a token's lifetime.
#[derive(Debug, Clone)]
pub(crate) struct Windows {
    pub(crate) refresh_ahead: Duration,
    pub(crate) min_valid: Duration,
    pub(crate) jitter: f64,
}

/// The share of the lease TTL kept, at its end, for storing a token request's
/// answer: a fifth (6 s of the default 30 s).
const SAVE_MARGIN_DIVISOR: u32 = 5;

#[derive(Debug)]
struct Shared {
    settings: Settings,
    current: ArcSwap<Cached>,
    /// The refresh in flight, if any; see [`flight`].
    flight: Mutex<Option<flight::InFlight>>,
    /// Whether `flight` holds a refresh, readable without the lock.
    in_flight: AtomicBool,
    backoff: backoff::Backoff,
    counters: stats::Counters,
    /// Wakes the background task: new token, invalidation, or the manager dropped.
    wake: Arc<Notify>,
    background_started: AtomicBool,
    /// Bumped by `set_tokens` and `logout`: a flight that started before drops its result.
    epoch: AtomicU64,
    /// Held while a token is written to the store and the cache (by a flight,
    /// `set_tokens` or `logout`), so that the epoch check and the write are one step.
    writes: tokio::sync::Mutex<()>,
    /// Held (write) by `set_tokens` and `logout` from start to end, and (read) by
    /// each flight: a flight starts only between them, never halfway through one.
    changing: tokio::sync::RwLock<()>,
    /// Whether the flight in progress has sent its request (see `flight::cancel`).
    sending: std::sync::atomic::AtomicU8,
    /// The last generation given to a token.
    generations: AtomicU64,
    /// Set by `logout`, cleared by `set_tokens` or the next caller: keeps the
    /// background task from logging in again on its own.
    logged_out: AtomicBool,
    /// When a caller last looked in the store while backing off (Unix ms).
    store_checked_at: AtomicU64,
    /// A token served but not saved yet; see [`unsaved`].
    unsaved: Mutex<Option<unsaved::Unsaved>>,
    /// `set_tokens` and `logout` calls under way (see `writes::Pending`): a flight
    /// waits for them before it starts its work.
    changes: std::sync::atomic::AtomicUsize,
    /// Told when one of them ends.
    changed: Notify,
    /// Why the flight in progress (or the last one) runs; see [`reasons`].
    reason: std::sync::atomic::AtomicU8,
    /// How the last flight ended.
    last_refresh: Mutex<Option<crate::LastRefresh>>,
    /// Its metric labels (feature `metrics`).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    observed: observe::Observed,
    /// The nonces resource servers gave for DPoP proofs.
    #[cfg(feature = "dpop")]
    dpop_nonces: crate::dpop::DpopNonces,
}

impl Shared {
    fn new(settings: Settings) -> Self {
        let observed = observe::Observed::new(
            settings.per_key_metrics,
            settings.key.as_str(),
            &settings.source_name,
        );
        Self {
            observed,
            #[cfg(feature = "dpop")]
            dpop_nonces: crate::dpop::DpopNonces::default(),
            settings,
            current: ArcSwap::new(Cached::empty()),
            flight: Mutex::new(None),
            in_flight: AtomicBool::new(false),
            store_checked_at: AtomicU64::new(0),
            backoff: backoff::Backoff::default(),
            counters: stats::Counters::new(),
            wake: Arc::new(Notify::new()),
            background_started: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            writes: tokio::sync::Mutex::new(()),
            changing: tokio::sync::RwLock::new(()),
            sending: std::sync::atomic::AtomicU8::new(0),
            logged_out: AtomicBool::new(false),
            generations: AtomicU64::new(0),
            unsaved: Mutex::new(None),
            changes: std::sync::atomic::AtomicUsize::new(0),
            changed: Notify::new(),
            reason: std::sync::atomic::AtomicU8::new(0),
            last_refresh: Mutex::new(None),
        }
    }

    fn info(&self, token: Option<&Token>) -> TokenInfo {
        let s = &self.settings;
        TokenInfo::describe(
            token,
            s.clock.now(),
            &s.source_name,
            s.store_name.as_deref(),
            s.key.as_str(),
        )
    }

    fn emit(&self, kind: TokenEventKind, token: Option<&Token>) {
        if !self.settings.events.is_empty() {
            let by_source = matches!(kind, TokenEventKind::Fetched | TokenEventKind::Refreshed);
            let reason = by_source.then(|| reasons::current(self));
            let token = token.cloned().map(Arc::new);
            let event = TokenEvent::new(kind, self.info(token.as_deref()), token, reason);
            self.settings.events.emit(event);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Lets the background task see that the manager is gone and end.
        self.wake.notify_one();
        observe::retire(self);
    }
}

impl TokenManager {
    /// Starts building a manager for `source` (any [`TokenSource`], including an
    /// `Arc<dyn TokenSource>`).
    pub fn builder(source: impl TokenSource + 'static) -> TokenManagerBuilder {
        TokenManagerBuilder::new(Arc::new(source))
    }

    /// A valid token: the cached one, or a new one if it is expiring or gone.
    ///
    /// On the hit path (a fresh cached token) this takes no lock, allocates
    /// nothing and writes only this thread's own hit counter (threads beyond the
    /// counter's stripes share one). The returned handle borrows nothing;
    /// keep it briefly (it pins this token in memory) and use
    /// [`TokenRef::to_token`] to keep a copy.
    #[inline]
    pub fn token(&self) -> impl Future<Output = Result<TokenRef>> + Send + '_ {
        current::Current::new(&self.shared)
    }

    /// The `Authorization` header value (`<type> <token>`) for a valid token,
    /// precomputed and marked sensitive. Same path and costs as [`token`](Self::token).
    #[inline]
    pub fn header(&self) -> impl Future<Output = Result<HeaderRef>> + Send + '_ {
        current::Current::new(&self.shared)
    }

    /// The token, if the hit path serves it now (no waiting): the blocking API's
    /// first step.
    #[cfg(feature = "blocking")]
    pub(crate) fn token_now(&self) -> Option<TokenRef> {
        current::served(&self.shared)
    }

    /// The header, if the hit path serves it now (no waiting).
    #[cfg(feature = "blocking")]
    pub(crate) fn header_now(&self) -> Option<HeaderRef> {
        current::served(&self.shared)
    }

    /// Drops `token` if it is still the current one, typically after the API
    /// answered 401 with it; the next [`token`](Self::token) call refreshes.
    /// Returns whether it was dropped. Many callers invalidating the same token
    /// cause one refresh, not one each.
    pub fn invalidate(&self, token: &Token) -> bool {
        let cached = self.shared.current.load();
        let current = cached.is_held() && cached.token.access_token.ct_eq(&token.access_token);
        if current {
            cached.invalidate();
            tracing::debug!(fingerprint = %token.fingerprint(), source = %self.shared.settings.source_name, "token invalidated");
            self.shared.wake.notify_one();
        }
        current
    }

    /// Gets a new token now, whatever the state of the cached one (a refresh if a
    /// refresh token is held, else a fetch). Joins a refresh already in flight.
    /// With a shared store it takes the store's lease and looks in the store
    /// first: a token newer than the one this manager held (another instance
    /// refreshed) counts as the forced refresh.
    pub async fn force_refresh(&self) -> Result<TokenRef> {
        flight::forced(&self.shared)
            .await
            .map(|c| current::FromCached::from_cached(Guard::from_inner(c)))
    }

    /// Uses `token` from now on: tokens given by hand or from the environment
    /// ([`Token::from_env`]). It is stored first, under the store's lease, if the
    /// manager has a store. A token that is already expired is accepted if it has
    /// a refresh token: the next call refreshes it. A refresh in flight that has not
    /// sent its request yet is stopped before it does, so it spends neither the
    /// old refresh token nor this one.
    pub async fn set_tokens(&self, token: Token) -> Result<()> {
        writes::set(&self.shared, token).await
    }

    /// What may be shown about the current token (from the store if nothing is
    /// cached yet); never a secret. Does not fetch.
    pub async fn info(&self) -> TokenInfo {
        let s = &self.shared.settings;
        let now = s.clock.now();
        let retry_at = (self.shared.backoff.retry_at())
            .filter(|_| {
                self.shared
                    .backoff
                    .is_waiting(crate::clock::unix_millis(now))
            })
            .map(crate::clock::from_unix_millis);
        let cached = self.shared.current.load_full();
        if let Some(token) = cached.token() {
            let mut info = self.shared.info(Some(token));
            info.authenticated &= cached.is_held(); // not once the server rejected it
            info.unsaved = unsaved::is_unsaved(&self.shared);
            info.refresh_at = (token.expires_at.is_some())
                .then(|| crate::clock::from_unix_millis(cached.stale_at()));
            info.retry_at = retry_at;
            return info;
        }
        let stored = match &s.store {
            Some(store) => store.load(&s.key).await.ok().flatten(),
            None => None,
        };
        let mut info = self.shared.info(stored.as_ref());
        // Where its stale window would start here, without the jitter.
        let windows = Windows {
            jitter: 0.0,
            ..s.windows.clone()
        };
        info.refresh_at = stored
            .filter(|t| t.expires_at.is_some())
            .and_then(|t| Cached::new(t, now, &windows, 1, &s.source_name).ok())
            .map(|c| crate::clock::from_unix_millis(c.stale_at()));
        info.retry_at = retry_at;
        info
    }

    /// Logs out: removes the token from the cache and, under the store's lease, from
    /// the store, then revokes it where the source can. Everything is cleared even
    /// if revocation fails; the first error is returned.
    ///
    /// Once this returns, no manager that shares the store serves a token issued
    /// before the call: this one has dropped its copy, and every other one's copy
    /// has lapsed (a copy is served for
    /// [`store_recheck`](TokenManagerBuilder::store_recheck), 5 s by default,
    /// before the store is read again, and the logout waits that long after its
    /// delete). A refresh in flight anywhere cannot store such a token again (its
    /// save is fenced out by the lease the logout takes), and the next
    /// [`token`](Self::token) logs in again. If the store's lease cannot be had,
    /// the stored token is deleted without it and the lease's error is returned:
    /// a refresh in flight elsewhere may then store its token once more. The
    /// logout runs to its end even if the caller stops waiting for it.
    pub async fn logout(&self) -> Result<()> {
        writes::logout(&self.shared).await
    }

    /// Waits until the listeners have returned from every event this manager
    /// emitted before the call: for a test that checks what a listener saw
    /// (after a `logout`, its `Cleared`), or a shutdown that must not cut a
    /// listener off. Returns at once without listeners. Events that a runtime
    /// shutting down dropped count as done. A listener that never returns keeps
    /// this waiting: bound it with `tokio::time::timeout` where that matters.
    ///
    /// ```
    /// # async fn run(manager: tokenwarden::TokenManager) -> tokenwarden::Result<()> {
    /// manager.logout().await?;
    /// manager.listeners_idle().await; // every listener has seen `Cleared`
    /// # Ok(()) }
    /// ```
    pub async fn listeners_idle(&self) {
        self.shared.settings.events.idle().await;
    }

    /// The last attempt to get a token: when it ended, why it was made, and how
    /// it ended (`None` before the first). The CLI's `status` shows it.
    pub fn last_refresh(&self) -> Option<crate::LastRefresh> {
        *self
            .shared
            .last_refresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counters of what the manager has done.
    pub fn stats(&self) -> Stats {
        let mut stats = self.shared.counters.snapshot();
        stats.unsaved = unsaved::is_unsaved(&self.shared);
        stats
    }

    /// The key the token is cached and stored under.
    pub fn key(&self) -> &TokenKey {
        &self.shared.settings.key
    }

    /// The source's name.
    pub fn source_name(&self) -> &str {
        &self.shared.settings.source_name
    }

    /// The clock the manager reads (the system's unless its builder was given
    /// another): adapters date their DPoP proofs with it.
    pub fn clock(&self) -> &dyn crate::Clock {
        &*self.shared.settings.clock
    }

    /// The nonces the resource servers of this manager's tokens asked DPoP
    /// proofs to carry, shared by every adapter that uses the manager.
    #[cfg(feature = "dpop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
    pub fn dpop_nonces(&self) -> &crate::dpop::DpopNonces {
        &self.shared.dpop_nonces
    }

    /// A registry holds this manager, or let it go (for its metrics).
    pub(crate) fn held_by_registry(&self, held: bool, per_key_metrics: bool) {
        observe::held_by_registry(&self.shared, held, per_key_metrics);
    }

    /// How many handles to this manager exist (clones, and refreshes in flight).
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.shared)
    }
}
