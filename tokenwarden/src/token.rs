//! [`Token`], what a source returns and a store keeps, and [`TokenInfo`], what may be
//! shown about a token to anyone (it holds no secret).

use crate::clock::{from_unix_millis, unix_millis};
use crate::secret::{AccessToken, IdToken, RefreshToken};
use crate::{Error, Result};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};

/// The token type sent when a source does not name one: `Bearer`.
pub const DEFAULT_TOKEN_TYPE: &str = "Bearer";

/// An access token with everything that came with it.
///
/// Secrets are held in redacting, zeroizing newtypes, so `{:?}` of a `Token` is safe
/// to log. Serializing it (which stores do) writes the secrets in clear.
#[derive(Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Token {
    /// The credential sent to the API.
    pub access_token: AccessToken,
    /// The scheme for the `Authorization` header, `Bearer` unless the server said otherwise.
    #[serde(default = "default_token_type")]
    pub token_type: String,
    /// When the access token stops being valid. A manager never keeps a token
    /// without one: it reads the JWT `exp` claim or applies its default lifetime.
    #[serde(default, with = "millis_opt", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<SystemTime>,
    /// When the manager received the token. With `expires_at` it gives the
    /// token's whole lifetime, which the refresh windows scale with, also for a
    /// token loaded from a store late in its life. The manager sets it.
    #[serde(default, with = "millis_opt", skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<SystemTime>,
    /// The refresh token, if the server issued one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<RefreshToken>,
    /// The granted scope, space-separated, if the server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The OpenID Connect ID token, if one came with the access token. From the
    /// OAuth2 sources of a client with an issuer it is validated before the token
    /// is stored (signature against the issuer's keys, `iss`, `aud`, `azp`,
    /// `exp`, `iat`, and the browser sign-in's `nonce`): a new sign-in with one
    /// that does not validate is refused, and a refresh keeps its token without
    /// it. From other sources (a client given endpoints only, your own source,
    /// [`from_env`](Self::from_env)) it is as given: validate it before you take an
    /// identity from it. tokenwarden derives nothing (no key, no identity) from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<IdToken>,
    /// The other fields of the token response.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The DPoP key the token is bound to (RFC 9449), if it is a DPoP-bound
    /// token (`token_type` `DPoP`) or its grant made one: kept with the token in
    /// every store, and used to sign a proof for every request that carries it
    /// (see [`dpop`](crate::dpop)). A refresh keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_key: Option<crate::dpop::DpopKey>,
    /// A lifetime relative to when the manager receives the token, set by
    /// [`Token::with_expires_in`] and turned into `expires_at` by the manager's clock.
    #[serde(skip)]
    pub(crate) lifetime: Option<Duration>,
}

fn default_token_type() -> String {
    DEFAULT_TOKEN_TYPE.to_owned()
}

impl Token {
    /// A bearer token with no expiry yet (see [`Token::expires_at`]).
    pub fn new(access_token: impl Into<AccessToken>) -> Self {
        Self {
            access_token: access_token.into(),
            token_type: default_token_type(),
            expires_at: None,
            refresh_token: None,
            scope: None,
            id_token: None,
            extra: serde_json::Map::new(),
            dpop_key: None,
            lifetime: None,
            issued_at: None,
        }
    }

    /// Reads `ACCESS_TOKEN` and `REFRESH_TOKEN` from the environment, as tools of
    /// this kind commonly do. At least one must be set; a token with only a refresh
    /// token has an empty access token that is already expired, so the manager
    /// refreshes it on first use.
    pub fn from_env() -> Result<Self> {
        Self::from_env_vars("ACCESS_TOKEN", "REFRESH_TOKEN")
    }

    /// Like [`Token::from_env`], with other variable names.
    pub fn from_env_vars(access_var: &str, refresh_var: &str) -> Result<Self> {
        let read = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        match (read(access_var), read(refresh_var)) {
            (None, None) => Err(Error::config(format!(
                "neither `{access_var}` nor `{refresh_var}` is set in the environment; \
                 export at least one of them"
            ))),
            (access, refresh) => {
                let mut token = Token::new(access.unwrap_or_default());
                if token.access_token.is_empty() {
                    token.expires_at = Some(SystemTime::UNIX_EPOCH);
                }
                token.refresh_token = refresh.map(RefreshToken::new);
                Ok(token)
            }
        }
    }

    /// Sets when the token expires.
    pub fn with_expires_at(mut self, expires_at: SystemTime) -> Self {
        self.expires_at = Some(expires_at);
        self.lifetime = None;
        self
    }

    /// Sets how long the token lives from the moment the manager receives it (the
    /// OAuth2 `expires_in`). The manager turns it into `expires_at` with its clock.
    pub fn with_expires_in(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self.expires_at = None;
        self
    }

    /// When the refresh token stops being usable, if the server said: the
    /// `refresh_expires_in` (Keycloak) or `refresh_token_expires_in` (Microsoft,
    /// GitHub) field, in seconds from [`issued_at`](Self::issued_at). Zero means
    /// "no limit" (Keycloak's offline tokens), as does a missing field.
    pub fn refresh_expires_at(&self) -> Option<SystemTime> {
        // A number, or a numeric string (as Entra writes its numbers).
        let seconds = ["refresh_expires_in", "refresh_token_expires_in"]
            .iter()
            .find_map(|field| match self.extra.get(*field)? {
                serde_json::Value::String(text) => text.trim().parse::<u64>().ok(),
                number => number.as_u64(),
            })
            .filter(|&s| s > 0)?;
        Some(self.issued_at? + Duration::from_secs(seconds))
    }

    /// Sets the refresh token.
    pub fn with_refresh_token(mut self, refresh_token: impl Into<RefreshToken>) -> Self {
        self.refresh_token = Some(refresh_token.into());
        self
    }

    /// Sets the token type (the `Authorization` scheme).
    pub fn with_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.token_type = token_type.into();
        self
    }

    /// Sets the granted scope.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Sets the ID token.
    pub fn with_id_token(mut self, id_token: impl Into<IdToken>) -> Self {
        self.id_token = Some(id_token.into());
        self
    }

    /// Sets the DPoP key the token is bound to.
    pub fn with_dpop_key(mut self, key: crate::dpop::DpopKey) -> Self {
        self.dpop_key = Some(key);
        self
    }

    /// Whether the token is DPoP-bound: its type is `DPoP` (any case). Every
    /// request that carries it needs a proof signed with its
    /// [`dpop_key`](Self::dpop_key).
    pub fn is_dpop(&self) -> bool {
        self.token_type
            .eq_ignore_ascii_case(crate::dpop::TOKEN_TYPE)
    }

    /// Adds a field of the token response that has no field of its own.
    pub fn with_extra(mut self, name: impl Into<String>, value: serde_json::Value) -> Self {
        self.extra.insert(name.into(), value);
        self
    }

    /// The time left until expiry at `now`: `None` without an expiry, zero once expired.
    pub fn expires_in(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at
            .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// The lifetime the server gave (`expires_in`), as a source returned the
    /// token; a manager turns it into [`expires_at`](Self::expires_at) when it
    /// takes the token, and clears it.
    pub fn lifetime(&self) -> Option<Duration> {
        self.lifetime
    }

    /// Whether the token has expired at `now` (a token without expiry has not).
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// A short, stable, non-reversible identifier of the access token (8 hex digits
    /// of its SHA-256), safe for logs and for telling tokens apart.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.access_token.secret())
    }

    /// The `exp` claim if the access token is a JWT. The signature is not verified:
    /// this is only read to learn the lifetime when the server did not send one.
    pub fn jwt_expiry(&self) -> Option<SystemTime> {
        let claims = unverified_claims(self.access_token.secret())?;
        let exp = claims.get("exp")?.as_f64()?;
        (exp.is_finite() && exp > 0.0 && exp < 1e11)
            .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(exp))
    }
}

/// The claims of a JWT, read without verifying its signature: only for what is
/// known to be trusted already, or what needs no trust (a lifetime).
pub(crate) fn unverified_claims(jwt: &str) -> Option<serde_json::Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// 8 hex digits of the SHA-256 of `secret`.
pub(crate) fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &self.access_token)
            .field("fingerprint", &self.fingerprint())
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field("refresh_token", &self.refresh_token)
            .field("scope", &self.scope)
            .field("id_token", &self.id_token)
            .field("dpop_key", &self.dpop_key)
            // Values of unknown fields may be secrets too: only their names are shown.
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What may be shown about a manager's token: state, timing and provenance, never a
/// secret. Returned by [`TokenManager::info`](crate::TokenManager::info) and carried
/// by every [`TokenEvent`](crate::TokenEvent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TokenInfo {
    /// Whether a token that has not expired is held.
    pub authenticated: bool,
    /// When the token expires.
    #[serde(with = "millis_opt")]
    pub expires_at: Option<SystemTime>,
    /// Time left until expiry when this was taken (zero once expired).
    pub expires_in: Option<Duration>,
    /// Whether a refresh token is held.
    pub has_refresh_token: bool,
    /// When the refresh token stops being usable, if the server said
    /// ([`Token::refresh_expires_at`]): after that, a person signs in again.
    #[serde(with = "millis_opt")]
    pub refresh_expires_at: Option<SystemTime>,
    /// The granted scope.
    pub scope: Option<String>,
    /// The token type (`Bearer`...).
    pub token_type: Option<String>,
    /// The access token's [fingerprint](Token::fingerprint).
    pub fingerprint: Option<String>,
    /// The token source's name.
    pub source: String,
    /// The store's name, if the manager has one.
    pub store: Option<String>,
    /// The key the token is cached and stored under.
    pub key: String,
    /// Whether the token could not be saved to the store yet: it is served (the
    /// refresh token it replaced is spent), and the save is retried with backoff
    /// until it lands or a newer token replaces it.
    pub unsaved: bool,
    /// When the next refresh is planned: the start of the token's stale window,
    /// when it is refreshed ahead of its expiry (by the background task, or the
    /// first call after it). For a token read from the store (nothing cached
    /// yet), the earliest moment, before the jitter. Set by
    /// [`TokenManager::info`](crate::TokenManager::info); `None` without a token
    /// with an expiry.
    #[serde(with = "millis_opt")]
    pub refresh_at: Option<SystemTime>,
    /// While the manager backs off after a failed attempt: when the next attempt
    /// may start. Set by [`TokenManager::info`](crate::TokenManager::info).
    #[serde(with = "millis_opt")]
    pub retry_at: Option<SystemTime>,
}

impl TokenInfo {
    pub(crate) fn describe(
        token: Option<&Token>,
        now: SystemTime,
        source: &str,
        store: Option<&str>,
        key: &str,
    ) -> Self {
        Self {
            authenticated: token.is_some_and(|t| !t.is_expired_at(now)),
            expires_at: token.and_then(|t| t.expires_at),
            expires_in: token.and_then(|t| t.expires_in(now)),
            has_refresh_token: token.is_some_and(|t| t.refresh_token.is_some()),
            refresh_expires_at: token
                .filter(|t| t.refresh_token.is_some())
                .and_then(Token::refresh_expires_at),
            scope: token.and_then(|t| t.scope.clone()),
            token_type: token.map(|t| t.token_type.clone()),
            fingerprint: token.map(Token::fingerprint),
            source: source.to_owned(),
            store: store.map(str::to_owned),
            key: key.to_owned(),
            unsaved: false,
            refresh_at: None,
            retry_at: None,
        }
    }
}

/// `Option<SystemTime>` as milliseconds since the Unix epoch.
mod millis_opt {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&unix_millis(*t)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(from_unix_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_tokens_end_is_read_from_numbers_and_numeric_strings() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        for (field, value, after) in [
            ("refresh_expires_in", serde_json::json!(1800), Some(1800)),
            (
                "refresh_token_expires_in",
                serde_json::json!("3600"),
                Some(3600),
            ),
            ("refresh_expires_in", serde_json::json!(0), None),
            ("refresh_expires_in", serde_json::json!("soon"), None),
        ] {
            let mut token = Token::new("t").with_refresh_token("r");
            token.issued_at = Some(issued);
            token.extra.insert(field.into(), value);
            let end = after.map(|s| issued + Duration::from_secs(s));
            assert_eq!(token.refresh_expires_at(), end, "{field}");
            let info = TokenInfo::describe(Some(&token), issued, "s", None, "k");
            assert_eq!(info.refresh_expires_at, end);
        }
    }

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"none"}"#), b64(claims))
    }

    #[test]
    fn reads_exp_from_a_jwt_without_verifying() {
        let token = Token::new(jwt(r#"{"sub":"x","exp":2000000000}"#));
        assert_eq!(
            token.jwt_expiry(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
        assert_eq!(Token::new("opaque-token").jwt_expiry(), None);
        assert_eq!(Token::new(jwt(r#"{"exp":"soon"}"#)).jwt_expiry(), None);
        assert_eq!(Token::new("a.!!!.c").jwt_expiry(), None);
    }

    #[test]
    fn debug_shows_no_secret_and_no_extra_values() {
        let token = Token::new("TOPSECRET-access")
            .with_refresh_token("TOPSECRET-refresh")
            .with_id_token("TOPSECRET-id")
            .with_extra("session", serde_json::json!("TOPSECRET-extra"));
        let debug = format!("{token:?}");
        assert!(!debug.contains("TOPSECRET"), "{debug}");
        assert!(debug.contains("session"), "{debug}");
    }

    #[test]
    fn serde_round_trip() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_900_000_000_250);
        let token = Token::new("a")
            .with_refresh_token("r")
            .with_expires_at(at)
            .with_scope("s");
        let json = serde_json::to_string(&token).unwrap();
        let back: Token = serde_json::from_str(&json).unwrap();
        assert_eq!(back.expires_at, Some(at));
        assert_eq!(back.refresh_token.unwrap().secret(), "r");
        assert_eq!(back.token_type, "Bearer");
        let minimal: Token = serde_json::from_str(r#"{"access_token":"x"}"#).unwrap();
        assert_eq!(minimal.token_type, "Bearer");
    }

    #[test]
    fn fingerprint_is_short_stable_and_distinct() {
        let a = Token::new("one").fingerprint();
        assert_eq!(a.len(), 8);
        assert_eq!(a, Token::new("one").fingerprint());
        assert_ne!(a, Token::new("two").fingerprint());
    }
}
