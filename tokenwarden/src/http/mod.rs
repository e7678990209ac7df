//! What every HTTP integration shares (the reqwest middleware, the tower layer):
//! which origins may receive the token, how it is attached (with a DPoP proof for
//! a DPoP-bound token), and which responses mean "this token was rejected".

use crate::{Error, HeaderRef, Result};
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, COOKIE, WWW_AUTHENTICATE};
use http::HeaderMap;
use url::Url;

#[cfg(feature = "dpop")]
mod dpop;
mod span;
#[cfg(feature = "dpop")]
#[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
pub use dpop::{authorize, wants_nonce};
pub use span::{loggable_url, record_outcome, request_span};

/// The origins (scheme, host, port) a token may be sent to. A request to any other
/// origin goes out without it; so does a request over plain http to a host that is
/// not loopback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    /// Scheme, host and port of each origin, compared without allocating.
    origins: Vec<(String, String, u16)>,
}

impl AllowedOrigins {
    /// Only the origin of `url` (e.g. the API's base URL).
    pub fn of(url: &str) -> Result<Self> {
        Self::default().with(url)
    }

    /// Adds the origin of `url`.
    pub fn with(mut self, url: &str) -> Result<Self> {
        let parsed =
            Url::parse(url).map_err(|e| Error::config(format!("the URL is not valid: {e}")))?;
        // Shown without a password it may hold.
        let url = &{
            let mut shown = parsed.clone();
            let _ = shown.set_password(None);
            shown.to_string()
        };
        match (parsed.host_str(), parsed.port_or_known_default()) {
            (Some(_), Some(_)) if parsed.scheme() == "http" && !is_loopback(&parsed) => {
                Err(Error::config(format!(
                    "`{url}` is plain http to a host that is not loopback: the token would \
                     cross the network in clear; use https (http is allowed for 127.0.0.1, \
                     [::1] and localhost only)"
                )))
            }
            (Some(host), Some(port)) if matches!(parsed.scheme(), "http" | "https") => {
                self.origins
                    .push((parsed.scheme().to_owned(), host.to_ascii_lowercase(), port));
                Ok(self)
            }
            _ => Err(Error::config(format!(
                "`{url}` has no http(s) origin (scheme, host and port)"
            ))),
        }
    }

    /// Whether a request to `url` may carry the token.
    pub fn allows(&self, url: &Url) -> bool {
        let secure = url.scheme() == "https" || is_loopback(url);
        secure
            && self.origins.iter().any(|(scheme, host, port)| {
                url.scheme() == scheme
                    && url.host_str().is_some_and(|h| h.eq_ignore_ascii_case(host))
                    && url.port_or_known_default() == Some(*port)
            })
    }
}

/// Whether `url`'s host is a loopback address or `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Where the token goes in a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenPlacement {
    /// `Authorization: <type> <token>`, the default.
    #[default]
    Authorization,
    /// The bare token in another header (e.g. `X-Api-Token`).
    Header(HeaderName),
    /// The bare token as a cookie with this name (APIs that take the session
    /// cookie, like the one of the automatic-refresh seed document).
    Cookie(String),
}

impl TokenPlacement {
    /// Puts the token of `header` into `headers`, marked sensitive, replacing what
    /// was there, and removes a `DPoP` header (a caller's, or an earlier
    /// attempt's): a DPoP-bound token's proof is [`authorize`]'s to add.
    pub fn apply(&self, headers: &mut HeaderMap, header: &HeaderRef) -> Result<()> {
        headers.remove(crate::dpop::DPOP);
        let bare = || {
            let mut value =
                HeaderValue::try_from(header.token().access_token.secret()).map_err(|_| {
                    Error::invalid_response("", "the access token cannot be sent in a header")
                })?;
            value.set_sensitive(true);
            Ok::<_, Error>(value)
        };
        match self {
            TokenPlacement::Authorization => {
                headers.insert(AUTHORIZATION, (**header).clone());
            }
            TokenPlacement::Header(name) => {
                headers.insert(name.clone(), bare()?);
            }
            TokenPlacement::Cookie(name) => {
                // A replay's headers hold the rejected token's cookie: it goes,
                // with any other cookie of that name; the caller's others stay.
                remove_cookie(headers, name);
                let cookie = format!("{name}={}", header.token().access_token.secret());
                let mut value = HeaderValue::try_from(cookie).map_err(|_| {
                    Error::invalid_response("", "the access token cannot be sent in a cookie")
                })?;
                value.set_sensitive(true);
                headers.append(COOKIE, value);
            }
        }
        Ok(())
    }
}

/// Removes every cookie named `name` from the `Cookie` headers of `headers`
/// (RFC 6265 §5.4: `name=value` pairs joined by `; `), keeping the others and
/// their order; a header left empty goes.
pub(crate) fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let named = |pair: &[u8]| {
        let pair = pair.trim_ascii();
        pair.strip_prefix(name.as_bytes())
            .is_some_and(|rest| rest.trim_ascii_start().starts_with(b"="))
    };
    let values: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
    if !values
        .iter()
        .any(|v| v.as_bytes().split(|&b| b == b';').any(named))
    {
        return;
    }
    headers.remove(COOKIE);
    for value in values {
        let kept: Vec<&[u8]> = value
            .as_bytes()
            .split(|&b| b == b';')
            .filter(|pair| !named(pair) && !pair.trim_ascii().is_empty())
            .map(<[u8]>::trim_ascii)
            .collect();
        if kept.is_empty() {
            continue;
        }
        if let Ok(mut rebuilt) = HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
            rebuilt.set_sensitive(value.is_sensitive());
            headers.append(COOKIE, rebuilt);
        }
    }
}

/// Whether a response says the token was rejected: 401, or 403 with a
/// `WWW-Authenticate: Bearer error="invalid_token"` challenge (RFC 6750 §3.1), or a
/// gRPC `grpc-status: 16` (UNAUTHENTICATED). A DPoP challenge that refuses the
/// proof, not the token (`invalid_dpop_proof`, `use_dpop_nonce`: RFC 9449 §7.1,
/// §9), is not a rejection: a new token would be refused alike, and a refresh per
/// request is what a hostile server or a skewed clock would make of it.
pub fn rejects_token(status: http::StatusCode, headers: &HeaderMap) -> bool {
    let challenges =
        || (headers.get_all(WWW_AUTHENTICATE).iter()).filter_map(|value| value.to_str().ok());
    let proof_refused = challenges().any(|value| {
        challenge_error(value, "dpop", "invalid_dpop_proof")
            || challenge_error(value, "dpop", "use_dpop_nonce")
    });
    if proof_refused {
        return false;
    }
    if status == http::StatusCode::UNAUTHORIZED
        || headers.get("grpc-status").is_some_and(|s| s == "16")
    {
        return true;
    }
    status == http::StatusCode::FORBIDDEN && challenges().any(bearer_invalid_token)
}

/// Whether a `WWW-Authenticate` value holds a Bearer challenge whose `error` is
/// `invalid_token`. A value that does not parse (RFC 9110 §11.6.1) stops the
/// search at that point: a malformed header never counts as a rejection.
pub(crate) fn bearer_invalid_token(value: &str) -> bool {
    challenge_error(value, "bearer", "invalid_token")
}

/// Whether a `WWW-Authenticate` value holds a challenge of `scheme` (any case)
/// whose `error` is `error`. A value that does not parse stops the search at
/// that point.
pub(crate) fn challenge_error(value: &str, scheme: &str, error: &str) -> bool {
    http_auth::parser::ChallengeParser::new(value)
        .map_while(std::result::Result::ok)
        .any(|challenge| {
            challenge.scheme.eq_ignore_ascii_case(scheme)
                && challenge.params.iter().any(|(name, value)| {
                    name.eq_ignore_ascii_case("error") && value.to_unescaped() == error
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_of_the_tokens_name_is_replaced_the_others_kept() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; session=old; b=2"));
        headers.append(COOKIE, HeaderValue::from_static("session=older"));
        headers.append(COOKIE, HeaderValue::from_static("sessionx=3"));
        remove_cookie(&mut headers, "session");
        let left: Vec<_> = headers.get_all(COOKIE).iter().collect();
        assert_eq!(left, ["a=1; b=2", "sessionx=3"]);
        remove_cookie(&mut headers, "absent");
        assert_eq!(headers.get_all(COOKIE).iter().count(), 2);
    }

    #[test]
    fn only_allowed_secure_origins() {
        let allowed = AllowedOrigins::of("https://api.example.com/v1/")
            .unwrap()
            .with("http://127.0.0.1:8080")
            .unwrap();
        let ok = |u: &str| allowed.allows(&Url::parse(u).unwrap());
        assert!(ok("https://api.example.com/other/path?q=1"));
        assert!(ok("http://127.0.0.1:8080/x"));
        assert!(!ok("https://api.example.com:8443/"), "another port");
        assert!(!ok("http://api.example.com/"), "plain http");
        assert!(!ok("https://evil.example.com/"));
        assert!(!ok("http://127.0.0.1:9090/"));
        assert!(AllowedOrigins::of("not a url").is_err());
        let error = AllowedOrigins::of("http://api.example.com").unwrap_err();
        assert!(error.to_string().contains("use https"), "{error}");
        assert!(AllowedOrigins::of("http://localhost:3000").is_ok());
        assert!(AllowedOrigins::of("http://[::1]:3000").is_ok());
    }

    #[tokio::test]
    async fn each_placement_puts_the_token_where_asked() {
        use crate::{source::StaticSource, Token, TokenManager};
        let manager = TokenManager::builder(StaticSource::new("s", Token::new("abc")))
            .build()
            .unwrap();
        let header = manager.header().await.unwrap();
        let placed = |placement: TokenPlacement| {
            let mut headers = HeaderMap::new();
            placement.apply(&mut headers, &header).unwrap();
            headers
        };
        let authorization = placed(TokenPlacement::Authorization);
        assert_eq!(authorization[AUTHORIZATION], "Bearer abc");
        assert!(authorization[AUTHORIZATION].is_sensitive());
        let custom = placed(TokenPlacement::Header(HeaderName::from_static(
            "x-api-token",
        )));
        assert_eq!(custom["x-api-token"], "abc");
        assert!(custom["x-api-token"].is_sensitive());
        let cookie = placed(TokenPlacement::Cookie("session".into()));
        assert_eq!(cookie[COOKIE], "session=abc");
        assert!(cookie[COOKIE].is_sensitive());
    }

    #[test]
    fn bearer_challenges_are_parsed_not_searched() {
        assert!(bearer_invalid_token(
            r#"Basic realm="x", Bearer realm="api", error="invalid_token", error_description="expired""#
        ));
        assert!(bearer_invalid_token(r#"bearer ERROR = "invalid_token""#));
        assert!(bearer_invalid_token(r#"Bearer error=invalid_token"#));
        assert!(
            bearer_invalid_token(r#"Bearer error="inva\lid_token""#),
            "a quoted-pair"
        );
        assert!(!bearer_invalid_token(
            r#"Bearer error="insufficient_scope""#
        ));
        assert!(!bearer_invalid_token(r#"Basic realm="invalid_token""#));
        assert!(!bearer_invalid_token(r#"Basic error="invalid_token""#));
        assert!(!bearer_invalid_token(
            r#"Bearer error_description="invalid_token""#
        ));
        assert!(
            !bearer_invalid_token(r#"Bearer error="invalid_token"#),
            "unterminated"
        );
        assert!(!bearer_invalid_token(""));
    }

    #[test]
    fn rejected_token_responses() {
        let mut headers = HeaderMap::new();
        assert!(rejects_token(http::StatusCode::UNAUTHORIZED, &headers));
        assert!(!rejects_token(http::StatusCode::FORBIDDEN, &headers));
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="invalid_token""#),
        );
        assert!(rejects_token(http::StatusCode::FORBIDDEN, &headers));
        let mut grpc = HeaderMap::new();
        grpc.insert("grpc-status", HeaderValue::from_static("16"));
        assert!(rejects_token(http::StatusCode::OK, &grpc));
        // A refused DPoP proof (or a nonce asked for, valid or not) is not
        // the token's rejection.
        for challenge in [
            r#"DPoP error="invalid_dpop_proof", algs="ES256""#,
            r#"DPoP error="use_dpop_nonce""#,
        ] {
            let mut proof = HeaderMap::new();
            proof.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            assert!(
                !rejects_token(http::StatusCode::UNAUTHORIZED, &proof),
                "{challenge}"
            );
        }
        let mut token = HeaderMap::new();
        token.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"DPoP error="invalid_token""#),
        );
        assert!(rejects_token(http::StatusCode::UNAUTHORIZED, &token));
    }
}
