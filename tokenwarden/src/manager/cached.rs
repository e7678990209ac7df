//! The cached token with its precomputed header and refresh windows, and the state
//! (fresh, stale, expiring, expired) it is in at a given time.

use super::Windows;
use crate::clock::unix_millis;
use crate::{Error, Result, Token};
use http::HeaderValue;
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// Where a cached token stands at a given time (DESIGN.md, refresh windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Served from the cache, nothing else to do.
    Fresh,
    /// Served from the cache; one background refresh should start.
    Stale,
    /// Still valid, but callers wait for the refresh.
    Expiring,
    /// Expired, invalidated, or no token at all.
    Expired,
}

/// One token as the manager serves it. Replaced whole on every change; only the
/// invalidation marks are mutable.
#[derive(Debug)]
pub(crate) struct Cached {
    pub(crate) token: Token,
    pub(crate) header: HeaderValue,
    /// The token's fingerprint, computed once (logs and spans use it per request).
    pub(crate) fingerprint: String,
    /// A DPoP-bound token's hash for its proofs (`ath`), computed once.
    #[cfg(feature = "dpop")]
    pub(crate) ath: Option<String>,
    /// Unix ms. Atomic so that `invalidate` can end the fresh state in place.
    stale_at: AtomicU64,
    expiring_at: u64,
    /// Unix ms: the end of its last moments, after which it is not handed out.
    usable_until: u64,
    invalidated: AtomicBool,
    /// Monotonic ms: when the store must be read again before this token is
    /// served once more (see [`recheck`](super::recheck)); `u64::MAX`: never.
    checked_until: AtomicU64,
    /// The same moment in Unix ms: a machine that was suspended (its monotonic
    /// clock stood still meanwhile) sees its wall clock past it.
    checked_until_wall: AtomicU64,
    /// 0 for the empty placeholder, then 1, 2... for each token the manager holds.
    pub(crate) generation: u64,
}

impl Cached {
    /// The placeholder held before the first token and after a logout, one for the
    /// whole process (it is never modified: only held tokens are invalidated).
    pub(crate) fn empty() -> Arc<Self> {
        static EMPTY: OnceLock<Arc<Cached>> = OnceLock::new();
        EMPTY
            .get_or_init(|| {
                Arc::new(Self {
                    token: Token::new(""),
                    header: HeaderValue::from_static(""),
                    fingerprint: String::new(),
                    #[cfg(feature = "dpop")]
                    ath: None,
                    stale_at: AtomicU64::new(0),
                    expiring_at: 0,
                    usable_until: 0,
                    invalidated: AtomicBool::new(false),
                    checked_until: AtomicU64::new(u64::MAX),
                    checked_until_wall: AtomicU64::new(u64::MAX),
                    generation: 0,
                })
            })
            .clone()
    }

    /// Prepares `token` (which must have `expires_at`) for serving at `now`.
    pub(crate) fn new(
        token: Token,
        now: SystemTime,
        windows: &Windows,
        generation: u64,
        source_name: &str,
    ) -> Result<Self> {
        let header = authorization_value(&token).ok_or_else(|| {
            Error::invalid_response(
                source_name,
                "the access token or token type contains characters that are not allowed in an HTTP header",
            )
        })?;
        let now_ms = unix_millis(now);
        let expires_at = token.expires_at.map_or(now_ms, unix_millis);
        // The whole lifetime, not what is left of it: a token loaded from a store
        // near its end keeps the margins of its kind instead of shrinking them.
        let issued_at = token.issued_at.map_or(now_ms, unix_millis).min(now_ms);
        let lifetime = expires_at.saturating_sub(issued_at);
        let min_valid = ms(windows.min_valid).min(lifetime / 10);
        let ahead = ms(windows.refresh_ahead).min(lifetime / 2).max(min_valid);
        // Jitter moves the start of the stale window later by up to `jitter * ahead`,
        // so processes sharing a store do not all refresh at the same instant.
        let jitter = (ahead as f64 * windows.jitter * fastrand::f64()) as u64;
        let expiring_at = expires_at - min_valid;
        // Not handed out in its last moments (a fifth of the expiring window, at
        // most 1 s), even when no new token can be had: it would expire on its
        // way to the API, the more so as the hit path's coarse clock may lag.
        let usable_until = expires_at - (min_valid / 5).min(1_000);
        // The hit path reads a coarse clock, a few milliseconds behind: it never
        // decides a token's last moments, which go to the slow path's precise clock.
        let stale_at = (expires_at - ahead + jitter)
            .min(expiring_at)
            .min(usable_until.saturating_sub(COARSE_MARGIN_MS));
        Ok(Self {
            fingerprint: token.fingerprint(),
            #[cfg(feature = "dpop")]
            ath: token
                .is_dpop()
                .then(|| crate::dpop::ath(&token.access_token)),
            token,
            header,
            stale_at: AtomicU64::new(stale_at),
            expiring_at,
            usable_until,
            invalidated: AtomicBool::new(false),
            checked_until: AtomicU64::new(u64::MAX),
            checked_until_wall: AtomicU64::new(u64::MAX),
            generation,
        })
    }

    /// Whether `now` (Unix ms) is before the stale window: the hit path's one check.
    #[inline]
    pub(crate) fn is_fresh(&self, now: u64) -> bool {
        now < self.stale_at.load(Relaxed)
    }

    pub(crate) fn state(&self, now: u64) -> State {
        // Acquire pairs with `invalidate`: whoever sees the stale mark cleared also
        // sees the token marked invalid, and never serves it as merely stale.
        let stale_at = self.stale_at.load(Acquire);
        if self.generation == 0 || self.invalidated.load(Relaxed) || now >= self.usable_until {
            State::Expired
        } else if now >= self.expiring_at {
            State::Expiring
        } else if now >= stale_at {
            State::Stale
        } else {
            State::Fresh
        }
    }

    /// Whether the store must be read again before this token is served, at
    /// `monotonic` (ms on the manager's monotonic clock) and `wall` (Unix ms).
    #[inline]
    pub(crate) fn check_due(&self, monotonic: u64, wall: u64) -> bool {
        monotonic >= self.checked_until.load(Relaxed)
            || wall >= self.checked_until_wall.load(Relaxed)
    }

    /// Sets when the store must next be read (monotonic ms, and Unix ms).
    pub(crate) fn check_again_at(&self, monotonic: u64, wall: u64) {
        self.checked_until.store(monotonic, Relaxed);
        self.checked_until_wall.store(wall, Relaxed);
    }

    /// The start of the stale window (Unix ms), when a background refresh is due.
    pub(crate) fn stale_at(&self) -> u64 {
        self.stale_at.load(Relaxed)
    }

    /// Whether this is a real token the server has not rejected (it may be expired).
    pub(crate) fn is_held(&self) -> bool {
        self.generation != 0 && !self.invalidated.load(Relaxed)
    }

    /// Marks the token as rejected by the server: no caller gets it again.
    pub(crate) fn invalidate(&self) {
        self.invalidated.store(true, Relaxed);
        self.stale_at.store(0, Release);
    }

    /// The token if there is one (even expired or invalidated), e.g. to refresh it.
    pub(crate) fn token(&self) -> Option<&Token> {
        (self.generation != 0).then_some(&self.token)
    }
}

/// How long before a token stops being usable the hit path's coarse clock stops
/// deciding (`CLOCK_REALTIME_COARSE` is one kernel tick, up to 10 ms, behind).
const COARSE_MARGIN_MS: u64 = 20;

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `<type> <token>`, marked sensitive so that HTTP libraries never log it.
fn authorization_value(token: &Token) -> Option<HeaderValue> {
    let scheme = if token.token_type.eq_ignore_ascii_case("bearer") || token.token_type.is_empty() {
        "Bearer"
    } else if token.is_dpop() {
        crate::dpop::TOKEN_TYPE
    } else {
        token.token_type.as_str()
    };
    let mut value =
        HeaderValue::try_from(format!("{scheme} {}", token.access_token.secret())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn windows(jitter: f64) -> Windows {
        Windows {
            refresh_ahead: Duration::from_secs(300),
            min_valid: Duration::from_secs(30),
            jitter,
        }
    }

    #[test]
    fn long_token_uses_the_configured_windows() {
        let token = Token::new("a").with_expires_at(at(1_000 + 3_600));
        let cached = Cached::new(token, at(1_000), &windows(0.0), 1, "t").unwrap();
        let s = |secs: u64| secs * 1000;
        assert_eq!(cached.state(s(1_000)), State::Fresh);
        assert_eq!(cached.state(s(4_600 - 300) - 1), State::Fresh);
        assert_eq!(cached.state(s(4_600 - 300)), State::Stale);
        assert_eq!(cached.state(s(4_600 - 30)), State::Expiring);
        assert_eq!(cached.state(s(4_600)), State::Expired);
    }

    #[test]
    fn short_token_windows_scale_with_its_lifetime() {
        let token = Token::new("a").with_expires_at(at(5));
        let cached = Cached::new(token, at(0), &windows(0.0), 1, "t").unwrap();
        assert_eq!(cached.state(2_499), State::Fresh);
        assert_eq!(cached.state(2_500), State::Stale);
        assert_eq!(cached.state(4_499), State::Stale);
        assert_eq!(cached.state(4_500), State::Expiring);
    }

    #[test]
    fn a_token_loaded_late_keeps_the_windows_of_its_whole_lifetime() {
        // A 5 s token loaded with 0.4 s left: its expiring window is still 0.5 s
        // (10% of 5 s), so it is already expiring, not served for 0.36 s more.
        let now = at(1_000);
        let token = Token {
            issued_at: Some(now - Duration::from_millis(4_600)),
            ..Token::new("a").with_expires_at(now + Duration::from_millis(400))
        };
        let cached = Cached::new(token, now, &windows(0.0), 1, "s").unwrap();
        assert_eq!(cached.expiring_at, unix_millis(now) + 400 - 500);
        assert_eq!(cached.state(unix_millis(now)), State::Expiring);
        // Without `issued_at` (a store written by an older version), what is left counts.
        let old = Token::new("a").with_expires_at(now + Duration::from_millis(400));
        let cached = Cached::new(old, now, &windows(0.0), 1, "s").unwrap();
        assert_eq!(cached.expiring_at, unix_millis(now) + 400 - 40);
    }

    #[test]
    fn a_token_is_not_handed_out_in_its_last_moments() {
        let now = at(1_000);
        let ends = unix_millis(now) + 5_000;
        // A 5 s token: an expiring window of 500 ms, of which the last 100 ms count as expired.
        let short = Token::new("a").with_expires_at(now + Duration::from_secs(5));
        let cached = Cached::new(short, now, &windows(0.0), 1, "s").unwrap();
        assert_eq!(cached.state(ends - 101), State::Expiring);
        assert_eq!(cached.state(ends - 100), State::Expired);
        // An hour's token: its last second (a fifth of 30 s, capped at 1 s).
        let long = Token::new("a").with_expires_at(now + Duration::from_secs(3_600));
        let cached = Cached::new(long, now, &windows(0.0), 1, "s").unwrap();
        let ends = unix_millis(now) + 3_600_000;
        assert_eq!(cached.state(ends - 1_001), State::Expiring);
        assert_eq!(cached.state(ends - 1_000), State::Expired);
    }

    #[test]
    fn the_coarse_clock_never_decides_a_tokens_last_moments() {
        // No windows at all (a CLI's settings): the hit path, which reads a clock
        // up to a tick behind, stops 20 ms before the end; the precise clock
        // decides those 20 ms, and the token is served until its very end.
        let no_windows = Windows {
            refresh_ahead: Duration::ZERO,
            min_valid: Duration::ZERO,
            jitter: 0.0,
        };
        let now = at(1_000);
        let ends = unix_millis(now) + 5_000;
        let token = Token::new("a").with_expires_at(now + Duration::from_secs(5));
        let cached = Cached::new(token, now, &no_windows, 1, "s").unwrap();
        assert!(cached.is_fresh(ends - 21));
        assert!(!cached.is_fresh(ends - 20));
        assert_eq!(cached.state(ends - 1), State::Stale);
        assert_eq!(cached.state(ends), State::Expired);
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        for _ in 0..200 {
            let token = Token::new("a").with_expires_at(at(3_600));
            let cached = Cached::new(token, at(0), &windows(0.2), 1, "t").unwrap();
            let stale = cached.stale_at();
            assert!((3_300_000..=3_360_000).contains(&stale), "{stale}");
        }
    }

    #[test]
    fn header_is_sensitive_and_normalises_the_scheme() {
        let token = Token::new("abc")
            .with_token_type("bearer")
            .with_expires_at(at(10));
        let cached = Cached::new(token, at(0), &windows(0.0), 1, "t").unwrap();
        assert_eq!(cached.header, "Bearer abc");
        assert!(cached.header.is_sensitive());
        let bad = Token::new("a\nb").with_expires_at(at(10));
        assert!(Cached::new(bad, at(0), &windows(0.0), 1, "t").is_err());
    }

    #[test]
    fn invalidated_and_empty_are_expired() {
        assert_eq!(Cached::empty().state(0), State::Expired);
        let cached = Cached::new(
            Token::new("a").with_expires_at(at(100)),
            at(0),
            &windows(0.0),
            1,
            "t",
        )
        .unwrap();
        cached.invalidate();
        assert!(!cached.is_fresh(0));
        assert_eq!(cached.state(0), State::Expired);
    }
}
