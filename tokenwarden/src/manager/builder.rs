//! [`TokenManagerBuilder`] and the documented defaults of every setting.

use super::{background, Shared, TokenManager, Windows};
use crate::events::Dispatcher;
use crate::{Clock, Error, Result, SystemClock, TokenKey, TokenListener, TokenSource, TokenStore};
use std::sync::Arc;
use std::time::Duration;

/// How long before expiry a token becomes stale and one background refresh starts:
/// 5 min (at most half the token's lifetime).
pub const DEFAULT_REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);
/// How long before expiry callers stop being served the cached token and wait for
/// the refresh: 30 s (at most a tenth of the token's lifetime).
pub const DEFAULT_MIN_VALID: Duration = Duration::from_secs(30);
/// The share of the stale window by which its start is moved later at random: 0.2
/// (a fifth).
pub const DEFAULT_REFRESH_JITTER: f64 = 0.2;
/// The lifetime given to a token that came without `expires_in` or a JWT `exp`:
/// 1 hour.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// The first wait after a failed refresh: 1 s; it doubles with each failure.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// The longest wait between failed refreshes: 30 s.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a store lease lasts: 30 s, and never less than the refresh timeout, so
/// that a live holder is done before its lease ends.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
/// The longest one attempt to get a token (store, lease, source, save) may take
/// before it counts as failed: 30 s. The OAuth2 sources send a request only when it
/// can end (within its own timeout, [`DEFAULT_REQUEST_TIMEOUT`], 10 s) before this
/// and the lease do, so this leaves room for a retry.
///
/// [`DEFAULT_REQUEST_TIMEOUT`]: crate::source::oauth2::DEFAULT_REQUEST_TIMEOUT
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a token read from (or written to) a store is served before the store
/// is read again to see that it is still there: 5 s. A [`logout`] anywhere that
/// shares the store waits this long after deleting the token, so that no
/// instance serves it once the logout has returned.
///
/// [`logout`]: crate::TokenManager::logout
pub const DEFAULT_STORE_RECHECK: Duration = Duration::from_secs(5);

/// Builds a [`TokenManager`]. Made by [`TokenManager::builder`].
pub struct TokenManagerBuilder {
    source: Arc<dyn TokenSource>,
    store: Option<Arc<dyn TokenStore>>,
    key: Option<TokenKey>,
    clock: Option<Arc<dyn Clock>>,
    listeners: Vec<Arc<dyn TokenListener>>,
    refresh_ahead: Option<Duration>,
    min_valid: Option<Duration>,
    jitter: Option<f64>,
    default_lifetime: Option<Duration>,
    backoff: Option<(Duration, Duration)>,
    lease_ttl: Option<Duration>,
    refresh_timeout: Option<Duration>,
    store_recheck: Option<Option<Duration>>,
    background_refresh: bool,
    per_key_metrics: bool,
    runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for TokenManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManagerBuilder")
            .field("source", &self.source.name())
            .field("store", &self.store.as_ref().map(|s| s.name()))
            .field("key", &self.key)
            .field("listeners", &self.listeners.len())
            .field("background_refresh", &self.background_refresh)
            .finish_non_exhaustive()
    }
}

impl TokenManagerBuilder {
    pub(super) fn new(source: Arc<dyn TokenSource>) -> Self {
        Self {
            source,
            store: None,
            key: None,
            clock: None,
            listeners: Vec::new(),
            refresh_ahead: None,
            min_valid: None,
            jitter: None,
            default_lifetime: None,
            backoff: None,
            lease_ttl: None,
            refresh_timeout: None,
            store_recheck: None,
            background_refresh: false,
            per_key_metrics: true,
            runtime: None,
        }
    }

    /// Keeps tokens in `store` too, and coordinates refreshes through its leases.
    /// Defaults to no store: tokens live in this manager only.
    pub fn store(mut self, store: impl TokenStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The key the token is cached and stored under. Defaults to the source's
    /// [`key`](TokenSource::key).
    pub fn key(mut self, key: TokenKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The clock for every time decision. Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Adds a listener told about every new token and logout. Defaults to none.
    pub fn listener(mut self, listener: impl TokenListener) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// How long before expiry a token turns stale and one background refresh starts;
    /// capped at half the token's lifetime. Defaults to [`DEFAULT_REFRESH_AHEAD`]
    /// (5 min), or to [`min_valid`](Self::min_valid) where that alone was set
    /// and is longer.
    ///
    /// `Duration::ZERO` turns the stale window off: nothing is refreshed ahead of
    /// time, and callers wait for the refresh once the token is expiring. That is
    /// right for a process that ends right after its call (a CLI), where a refresh
    /// started in the background could be cut off after the server rotated the
    /// refresh token, and before the new one was saved.
    pub fn refresh_ahead(mut self, refresh_ahead: Duration) -> Self {
        self.refresh_ahead = Some(refresh_ahead);
        self
    }

    /// How long before expiry callers wait for the refresh instead of getting the
    /// cached token; capped at a tenth of the token's lifetime. Defaults to
    /// [`DEFAULT_MIN_VALID`] (30 s), or to a tenth of
    /// [`refresh_ahead`](Self::refresh_ahead) where that alone was set and is
    /// shorter than 5 min (so `.refresh_ahead(Duration::from_secs(1))` alone
    /// makes callers wait only in the last 100 ms). If the refresh fails, callers still get the cached
    /// token while it is valid, except in its last fifth of this window (at most
    /// 1 s), when it would expire on its way to the API.
    pub fn min_valid(mut self, min_valid: Duration) -> Self {
        self.min_valid = Some(min_valid);
        self
    }

    /// The share (0.0 to 1.0) of the stale window by which its start is delayed at
    /// random. Defaults to [`DEFAULT_REFRESH_JITTER`].
    pub fn refresh_jitter(mut self, jitter: f64) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// The lifetime of a token that came without an expiry and is not a JWT with
    /// `exp`. Such a token is never taken as valid forever. Defaults to
    /// [`DEFAULT_LIFETIME`].
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = Some(lifetime);
        self
    }

    /// The wait after the first failed refresh, doubling up to `max`. Defaults to
    /// [`DEFAULT_BACKOFF_INITIAL`] and [`DEFAULT_BACKOFF_MAX`].
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Some((initial, max));
        self
    }

    /// How long a store lease lasts: how long a holder that died or stalled keeps
    /// the other instances from refreshing. Must not be shorter than the
    /// [refresh timeout](Self::refresh_timeout): leases are not renewed, so a live
    /// holder must be done before its lease ends (one that stalls longer has its
    /// late save refused). Defaults to [`DEFAULT_LEASE_TTL`] (30 s), or to the
    /// refresh timeout if that is set longer.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }

    /// The longest one attempt to get a token may take (reading the store, taking
    /// the lease, calling the source, saving). A hung endpoint or store then counts
    /// as a transient failure, with backoff, instead of holding every caller.
    /// Measured on the clock's monotonic time. Defaults to
    /// [`DEFAULT_REFRESH_TIMEOUT`] (30 s), or to the [lease TTL](Self::lease_ttl) if
    /// that is set shorter.
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = Some(timeout);
        self
    }

    /// How long a token from the store is served before the store is read again
    /// (one read per interval, by the first caller after it; the callers of that
    /// moment wait for it), so that a logout, a new sign-in or `set_tokens` made
    /// by another instance sharing the store takes effect here within this time.
    /// Defaults to [`DEFAULT_STORE_RECHECK`] (5 s) when the manager has a store.
    ///
    /// [`logout`](TokenManager::logout) waits as long after deleting the stored
    /// token, so that once it returns no instance that shares the store (and uses
    /// the same interval, or a shorter one) serves a token issued before it.
    /// Measured on the clock's monotonic time. An instance that cannot read the
    /// store keeps serving its token (the store's outage is not an API outage),
    /// and tries again a second later.
    ///
    /// `None` turns the re-reads off: copies elsewhere are then served until
    /// they next read the store (their stale window at the latest), and `logout`
    /// does not wait. Right for a store no other instance shares.
    pub fn store_recheck(mut self, every: impl Into<Option<Duration>>) -> Self {
        self.store_recheck = Some(every.into());
        self
    }

    /// Whether a background task keeps the token fresh even when nobody asks for it
    /// (fetching the first one at once, refreshing at the start of each stale
    /// window, retrying after failures). The task ends when the last handle to the
    /// manager is dropped. Defaults to `false`: refreshes start from calls.
    pub fn background_refresh(mut self, enabled: bool) -> Self {
        self.background_refresh = enabled;
        self
    }

    /// Whether this manager's metrics (feature `metrics`, see [`crate::metrics`])
    /// carry its key and source as labels (`tokenwarden.key`,
    /// `tokenwarden.source`). Defaults to `true`; `false` adds them up with every
    /// other manager's that has none. A [`TokenRegistry`](crate::TokenRegistry)
    /// sets it to `false` for the managers it holds, unless asked otherwise.
    /// Without the feature it does nothing.
    pub fn per_key_metrics(mut self, enabled: bool) -> Self {
        self.per_key_metrics = enabled;
        self
    }

    /// Runs the manager's tasks on `runtime` when its caller has none (the
    /// blocking API's managers).
    #[cfg(feature = "blocking")]
    pub(crate) fn runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Builds the manager. Fails with an [`ErrorKind::Config`](crate::ErrorKind::Config) error on windows that cannot work.
    pub fn build(self) -> Result<TokenManager> {
        let (refresh_ahead, min_valid) = windows(self.refresh_ahead, self.min_valid);
        let windows = Windows {
            refresh_ahead,
            min_valid,
            jitter: self.jitter.unwrap_or(DEFAULT_REFRESH_JITTER),
        };
        if !(0.0..=1.0).contains(&windows.jitter) {
            return Err(Error::config(format!(
                "refresh_jitter must be between 0.0 and 1.0, got {}",
                windows.jitter
            )));
        }
        if !windows.refresh_ahead.is_zero() && windows.min_valid > windows.refresh_ahead {
            // Only both set can contradict: an unset one follows the other.
            return Err(Error::config(format!(
                "min_valid ({:?}) must not be longer than refresh_ahead ({:?}); set one of them only, and the other follows it",
                windows.min_valid, windows.refresh_ahead
            )));
        }
        let default_lifetime = self.default_lifetime.unwrap_or(DEFAULT_LIFETIME);
        if default_lifetime.is_zero() {
            return Err(Error::config("default_lifetime must be longer than zero"));
        }
        let (backoff_initial, backoff_max) = self
            .backoff
            .unwrap_or((DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX));
        if backoff_initial.is_zero() || backoff_max < backoff_initial {
            return Err(Error::config(
                "backoff needs initial > 0 and max >= initial",
            ));
        }
        let (refresh_timeout, lease_ttl) = lease_timing(self.refresh_timeout, self.lease_ttl)?;
        let key = self.key.unwrap_or_else(|| self.source.key());
        let store_recheck = match &self.store {
            Some(_) => self.store_recheck.unwrap_or(Some(DEFAULT_STORE_RECHECK)),
            None => None,
        };
        let system_clock = self.clock.is_none();
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        // Timed, counted store operations (feature `metrics`).
        #[cfg(feature = "metrics")]
        let store = self.store.map(|store| {
            Arc::new(crate::metrics::Metered::new(store, clock.clone())) as Arc<dyn TokenStore>
        });
        #[cfg(not(feature = "metrics"))]
        let store = self.store;
        let shared = Arc::new(Shared::new(super::Settings {
            source_name: self.source.name().to_owned(),
            source: self.source,
            store_name: store.as_ref().map(|s| s.name().to_owned()),
            store,
            key,
            system_clock,
            clock,
            events: Dispatcher::new(self.listeners),
            windows,
            default_lifetime,
            backoff_initial,
            backoff_max,
            lease_ttl,
            refresh_timeout,
            store_recheck,
            background_refresh: self.background_refresh,
            per_key_metrics: self.per_key_metrics,
            runtime: self.runtime,
        }));
        super::observe::watch(&shared);
        if shared.settings.background_refresh && super::runtime(&shared).is_some() {
            background::ensure_started(&shared);
        }
        Ok(TokenManager { shared })
    }
}

/// The refresh timeout and the lease TTL: the one not set follows the one set, so
/// that the lease outlives every attempt; both set the other way round is an error.
fn lease_timing(
    refresh_timeout: Option<Duration>,
    lease_ttl: Option<Duration>,
) -> Result<(Duration, Duration)> {
    let (timeout, ttl) = match (refresh_timeout, lease_ttl) {
        (Some(timeout), Some(ttl)) => (timeout, ttl),
        (Some(timeout), None) => (timeout, timeout.max(DEFAULT_LEASE_TTL)),
        (None, Some(ttl)) => (DEFAULT_REFRESH_TIMEOUT.min(ttl), ttl),
        (None, None) => (DEFAULT_REFRESH_TIMEOUT, DEFAULT_LEASE_TTL),
    };
    if timeout.is_zero() || ttl.is_zero() {
        return Err(Error::config(
            "refresh_timeout and lease_ttl must be longer than zero",
        ));
    }
    if ttl < timeout {
        return Err(Error::config(format!(
            "lease_ttl ({ttl:?}) must not be shorter than refresh_timeout ({timeout:?}): \
             leases are not renewed, so a refresh must end before its lease does"
        )));
    }
    Ok((timeout, ttl))
}

/// The windows: a window the user did not set follows the one they did. Unset,
/// `min_valid` is a tenth of a `refresh_ahead` that was set (the defaults'
/// ratio), at most [`DEFAULT_MIN_VALID`] (and that default where the stale
/// window is off); unset, `refresh_ahead` is at least a `min_valid` that was set.
fn windows(refresh_ahead: Option<Duration>, min_valid: Option<Duration>) -> (Duration, Duration) {
    match (refresh_ahead, min_valid) {
        (Some(ahead), None) if !ahead.is_zero() => (ahead, DEFAULT_MIN_VALID.min(ahead / 10)),
        (None, Some(valid)) => (DEFAULT_REFRESH_AHEAD.max(valid), valid),
        (ahead, valid) => (
            ahead.unwrap_or(DEFAULT_REFRESH_AHEAD),
            valid.unwrap_or(DEFAULT_MIN_VALID),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_and_the_refresh_timeout_follow_each_other() {
        let s = Duration::from_secs;
        assert_eq!(lease_timing(None, None).unwrap(), (s(30), s(30)));
        assert_eq!(lease_timing(Some(s(600)), None).unwrap(), (s(600), s(600)));
        assert_eq!(lease_timing(Some(s(5)), None).unwrap(), (s(5), s(30)));
        assert_eq!(lease_timing(None, Some(s(2))).unwrap(), (s(2), s(2)));
        assert_eq!(lease_timing(None, Some(s(90))).unwrap(), (s(30), s(90)));
        let contradiction = lease_timing(Some(s(60)), Some(s(30))).unwrap_err();
        assert!(
            contradiction.to_string().contains("lease_ttl"),
            "{contradiction}"
        );
    }
}
