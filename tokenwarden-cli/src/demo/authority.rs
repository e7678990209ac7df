//! The demo's authorization server state: the one client it knows, the tokens it
//! issued with their expiries (on its own clock), and what it counted.
//!
//! Tokens are opaque random strings; the API checks them here, as a resource
//! server would with token introspection.

use super::opaque::{base64, opaque};
use axum::http::HeaderValue;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokenwarden::{Clock, SystemClock};

/// The client id the demo registers.
pub const CLIENT_ID: &str = "tokenwarden-demo";

/// The authorization server: its client, its tokens, its counters. Shared by the
/// token endpoint, the API and the demo's revocation timer.
pub struct Authority {
    secret: String,
    /// The `Authorization` value of the client's `client_secret_basic`.
    basic: String,
    lifetime: Duration,
    issued: Mutex<Issued>,
    /// What the servers counted.
    pub counts: Counts,
}

/// Counters of the two servers, read by the progress line and the summary.
#[derive(Debug, Default)]
pub struct Counts {
    /// `client_credentials` grants served (logins).
    pub logins: AtomicU64,
    /// `refresh_token` grants served.
    pub refreshes: AtomicU64,
    /// 401s the API answered.
    pub unauthorized: AtomicU64,
    /// Live access tokens revoked.
    pub revoked: AtomicU64,
}

/// The live tokens.
#[derive(Default)]
struct Issued {
    /// Access token → its expiry in Unix milliseconds.
    access: HashMap<String, u64>,
    /// Refresh tokens not used yet (each is used once: they rotate).
    refresh: HashSet<String>,
    /// The access token issued last.
    latest: Option<String>,
}

/// A token response's contents.
pub struct Issue {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// Secrets stay out: the lifetime and the counters only.
impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("lifetime", &self.lifetime)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// A server whose tokens live `lifetime` (whole seconds), with a new client secret.
    pub fn new(lifetime: Duration) -> Self {
        let secret = opaque();
        let basic = format!("Basic {}", base64(&format!("{CLIENT_ID}:{secret}")));
        Self {
            secret,
            basic,
            lifetime,
            issued: Mutex::default(),
            counts: Counts::default(),
        }
    }

    /// The client secret (for the demo's own client only; never printed).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// How long its tokens live.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Whether `authorization` is the client's `client_secret_basic`.
    pub fn is_client(&self, authorization: Option<&HeaderValue>) -> bool {
        authorization.is_some_and(|value| value.as_bytes() == self.basic.as_bytes())
    }

    /// A new token by the client credentials grant.
    pub fn login(&self) -> Issue {
        self.counts.logins.fetch_add(1, Relaxed);
        self.issue(&mut self.issued())
    }

    /// A new token for a live refresh token, which is used up (rotation); `None`
    /// for an unknown or used one.
    pub fn refresh(&self, refresh_token: &str) -> Option<Issue> {
        let mut issued = self.issued();
        if !issued.refresh.remove(refresh_token) {
            return None;
        }
        self.counts.refreshes.fetch_add(1, Relaxed);
        Some(self.issue(&mut issued))
    }

    /// Whether `access_token` was issued here, is not revoked and has not expired.
    pub fn accepts(&self, access_token: &str) -> bool {
        let now = SystemClock.now_millis();
        self.issued()
            .access
            .get(access_token)
            .is_some_and(|&expires| now < expires)
    }

    /// Revokes the access token issued last, as an administrator (or a key
    /// rotation) would; its refresh token stays valid. Whether one was live.
    pub fn revoke_latest(&self) -> bool {
        let mut issued = self.issued();
        let Some(latest) = issued.latest.take() else {
            return false;
        };
        let revoked = issued.access.remove(&latest).is_some();
        if revoked {
            self.counts.revoked.fetch_add(1, Relaxed);
        }
        revoked
    }

    fn issue(&self, issued: &mut Issued) -> Issue {
        let now = SystemClock.now_millis();
        issued.access.retain(|_, &mut expires| now < expires);
        let lifetime_ms = u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX);
        let access_token = opaque();
        let refresh_token = opaque();
        issued
            .access
            .insert(access_token.clone(), now.saturating_add(lifetime_ms));
        issued.refresh.insert(refresh_token.clone());
        issued.latest = Some(access_token.clone());
        Issue {
            access_token,
            refresh_token,
            expires_in: self.lifetime.as_secs(),
        }
    }

    fn issued(&self) -> MutexGuard<'_, Issued> {
        self.issued.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_revocable() {
        let authority = Authority::new(Duration::from_secs(60));
        let (a, b) = (authority.login(), authority.login());
        assert_ne!(a.access_token, b.access_token);
        assert_eq!(a.access_token.len(), 64);
        assert!(authority.accepts(&a.access_token) && authority.accepts(&b.access_token));
        assert!(authority.revoke_latest());
        assert!(!authority.accepts(&b.access_token));
        let c = authority
            .refresh(&b.refresh_token)
            .expect("live refresh token");
        assert!(authority.accepts(&c.access_token));
        assert!(authority.refresh(&b.refresh_token).is_none(), "rotated");
    }
}
