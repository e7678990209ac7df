//! Entry points for the fuzz targets in `fuzz/`. Compiled only with
//! `--cfg fuzzing`, which `cargo fuzz` sets; not part of the API.
//!
//! Each function runs one parser the way the library runs it on untrusted input
//! and checks what must hold whatever the input: no panic, and no secret that
//! the input held once (in its own field) in an error message or a `Debug` string.

#![allow(missing_docs)]

use crate::Token;

/// What a target was given, as a secret may show up in it: header bytes, and
/// a body that is JSON (its strings compared after decoding their escapes, keys
/// included) or raw bytes.
#[derive(Debug)]
pub struct Input<'a> {
    head: &'a [u8],
    body: &'a [u8],
    json: Option<serde_json::Value>,
}

impl<'a> Input<'a> {
    pub fn new(head: &'a [u8], body: &'a [u8]) -> Self {
        Self {
            head,
            body,
            json: serde_json::from_slice(body).ok(),
        }
    }

    /// How many times `secret` shows up in the input.
    fn mentions(&self, secret: &str) -> usize {
        occurrences(self.head, secret.as_bytes())
            + match &self.json {
                Some(json) => json_mentions(json, secret),
                None => occurrences(self.body, secret.as_bytes()),
            }
    }
}

fn json_mentions(value: &serde_json::Value, secret: &str) -> usize {
    use serde_json::Value;
    match value {
        Value::String(text) => text.matches(secret).count(),
        Value::Number(number) => number.to_string().matches(secret).count(),
        Value::Array(items) => items.iter().map(|v| json_mentions(v, secret)).sum(),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| k.matches(secret).count() + json_mentions(v, secret))
            .sum(),
        Value::Bool(_) | Value::Null => 0,
    }
}

/// Panics if `secret`, which the input holds in one place only, shows in `text`.
///
/// Only secrets of 16 or more characters without whitespace are checked, so
/// that a secret cannot be a word of the library's own messages; a secret that
/// the input repeats elsewhere (an `expires_in` or a field name equal to the
/// token, say) may be shown from that other place, and is not checked.
pub fn assert_not_leaked(secret: &str, input: &Input<'_>, text: &str) {
    let checked = secret.len() >= 16
        && !secret.chars().any(char::is_whitespace)
        && input.mentions(secret) == 1;
    assert!(
        !(checked && text.contains(secret)),
        "a secret leaked into: {text}"
    );
}

fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    haystack
        .windows(needle.len())
        .filter(|window| *window == needle)
        .count()
}

/// Checks a token read from `input`: its `Debug` shows no secret, and reading
/// its JWT expiry does not panic.
fn check_token(token: &Token, input: &Input<'_>) {
    let debug = format!("{token:?}");
    assert_not_leaked(token.access_token.secret(), input, &debug);
    if let Some(refresh) = &token.refresh_token {
        assert_not_leaked(refresh.secret(), input, &debug);
    }
    let _ = token.jwt_expiry();
    let _ = token.fingerprint();
}

/// The JSON string values of `body`'s top-level `access_token` and `refresh_token`.
fn secrets_in(body: &[u8]) -> Vec<String> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) else {
        return Vec::new();
    };
    ["access_token", "refresh_token"]
        .iter()
        .filter_map(|name| fields.get(*name)?.as_str().map(str::to_owned))
        .collect()
}

#[cfg(feature = "oauth2")]
mod oauth2_targets {
    use super::*;
    use crate::source::login::{Field, LoginSource};
    use crate::source::oauth2::fuzz::*;
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    use std::sync::OnceLock;
    use std::time::{Duration, SystemTime};

    /// An answer from a status, header lines and a body, as `send` builds one.
    fn answer(status: u16, headers: &[(&[u8], &[u8])], body: &[u8]) -> Answer {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                map.append(name, value);
            }
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let retry_after = map
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        Answer {
            sent: Vec::new(),
            status,
            headers: map,
            retry_after,
            body: body.to_vec(),
        }
    }

    fn login_sources() -> &'static [LoginSource; 2] {
        static SOURCES: OnceLock<[LoginSource; 2]> = OnceLock::new();
        SOURCES.get_or_init(|| {
            let source = |access: Field, refresh: Field, expires: Field| {
                LoginSource::builder("fuzz-login")
                    .login_url("https://login.example/api/login")
                    .credentials_json(serde_json::json!({"user": "u", "password": "p"}))
                    .access_token(access)
                    .refresh_token(refresh)
                    .expires_in(expires)
                    .build()
                    .expect("a valid login source")
            };
            [
                source(
                    Field::json("access_token"),
                    Field::json("refresh_token"),
                    Field::json("expires_in"),
                ),
                source(
                    Field::cookie("session"),
                    Field::cookie("refresh"),
                    Field::json("data.ttl"),
                ),
            ]
        })
    }

    /// A token endpoint's answer, read as each source reads one: the OAuth2
    /// token response (with `Retry-After`), the device authorization response,
    /// and the login source's JSON fields and `Set-Cookie` headers.
    pub fn token_response(status: u16, headers: &[(&[u8], &[u8])], head: &[u8], body: &[u8]) {
        let answer = answer(status, headers, body);
        let input = Input::new(head, body);
        let input = &input;
        let secrets = secrets_in(body);
        let check_error = |error: crate::Error| {
            let text = format!("{error} {error:?}");
            for secret in &secrets {
                assert_not_leaked(secret, input, &text);
            }
        };
        match token_from("fuzz", &answer) {
            Ok(token) => {
                assert!(!token.access_token.secret().is_empty());
                check_token(&token, input);
            }
            Err(error) => check_error(error),
        }
        if let Err(error) = read_authorization("fuzz", &answer) {
            check_error(error);
        }
        for source in login_sources() {
            match source.read_token(&answer.headers, &answer.body) {
                Ok(token) => check_token(&token, input),
                Err(error) => check_error(error),
            }
        }
    }

    /// An error body (RFC 6749 §5.2) with any status.
    pub fn oauth_error_body(status: u16, body: &[u8]) {
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
            if let Some(error) = oauth_error(&json) {
                let _ = format!("{error} {error:?}");
            }
        }
        let answer = answer(status, &[], body);
        let error = status_error("fuzz", &answer);
        let text = error.to_string();
        // The excerpt is bounded whatever the body's size.
        assert!(
            text.len() < 1024,
            "an unbounded error message: {} bytes",
            text.len()
        );
    }

    /// A discovery document for `issuer`: parsed, then checked (issuer match,
    /// secure endpoints).
    pub fn discovery(issuer: &str, body: &[u8]) {
        let Ok(parsed) = url::Url::parse(issuer) else {
            return;
        };
        let Ok(metadata) = serde_json::from_slice::<crate::source::oauth2::ProviderMetadata>(body)
        else {
            return;
        };
        if check("fuzz", issuer, &metadata).is_ok() {
            // Mix-up protection: the document names the very issuer asked for.
            assert_eq!(
                metadata.issuer, issuer,
                "a document for another issuer passed the check"
            );
            for endpoint in metadata.endpoints() {
                assert!(
                    endpoint.scheme() == "https"
                        || (endpoint.scheme() == "http"
                            && loopback_by_address(endpoint)
                            && loopback_by_address(&parsed)),
                    "an insecure endpoint passed the check: {endpoint}"
                );
            }
        }
    }

    /// A request reaching a browser sign-in's loopback listener, for a login
    /// at an issuer that advertises RFC 9207 and one that does not. Taken only
    /// with this login's state on the callback path; a code only with the
    /// right `iss` (or none where it is not required); every error printable.
    pub fn loopback_answer(request: &[u8]) {
        let line = String::from_utf8_lossy(request);
        let line = line.lines().next().unwrap_or_default();
        let decoded = |key: &str| {
            let target = line.split_whitespace().nth(1).unwrap_or_default();
            url::Url::parse(&format!("http://127.0.0.1{target}"))
                .ok()
                .and_then(|url| {
                    url.query_pairs()
                        .filter(|(k, _)| k == key)
                        .map(|(_, v)| v.into_owned())
                        .next()
                })
        };
        for required in [true, false] {
            let Some(outcome) = crate::source::oauth2::fuzz::loopback_answer(request, required)
            else {
                continue;
            };
            // The path as a URL parser (and a browser) reads it: `\callback` is
            // `/callback` there.
            let target = line.split_whitespace().nth(1).unwrap_or_default();
            let path = url::Url::parse(&format!("http://127.0.0.1{target}"))
                .map(|url| url.path().to_owned())
                .unwrap_or_default();
            assert_eq!(path, "/callback", "another path taken: {line}");
            assert_eq!(decoded("state").as_deref(), Some(STATE));
            match outcome {
                Ok(code) => {
                    assert_eq!(decoded("code").as_deref(), Some(code.as_str()));
                    match decoded("iss") {
                        Some(iss) => assert_eq!(iss, ISSUER, "a code from another issuer"),
                        None => assert!(!required, "a code without `iss`, which is required"),
                    }
                }
                Err(error) => {
                    let shown = format!("{error} {error:?}");
                    assert!(
                        !error.to_string().chars().any(char::is_control),
                        "a control character in: {shown}"
                    );
                }
            }
        }
    }

    /// Loopback, decided apart from the library's own check: the host as
    /// written in the normalised URL, parsed as an IP address.
    fn loopback_by_address(url: &url::Url) -> bool {
        let host = url.host_str().unwrap_or_default();
        host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

#[cfg(feature = "oauth2")]
pub use oauth2_targets::*;

/// The sealed-token decoder: `data` opened as a sealed file with a fixed key
/// (it almost never decrypts), then `data` sealed as the plaintext and opened,
/// which reaches the JSON decoder behind the AEAD.
#[cfg(feature = "encryption")]
pub fn sealed_token(data: &[u8]) {
    use crate::store::TokenCipher;
    let cipher = TokenCipher::new([7; 32]);
    let input = &Input::new(&[], data);
    if let Ok(token) = cipher.open("fuzz", data) {
        check_token(&token, input);
    }
    let sealed = cipher.seal_bytes("fuzz", data).expect("sealing in memory");
    match cipher.open("fuzz", &sealed) {
        Ok(token) => {
            check_token(&token, input);
            let again = cipher.seal("fuzz", &token).expect("sealing in memory");
            let back = cipher
                .open("fuzz", &again)
                .expect("a token sealed here opens");
            assert_eq!(back.access_token.secret(), token.access_token.secret());
            assert_eq!(back.expires_at, token.expires_at);
        }
        Err(error) => assert_eq!(error, crate::store::OpenError::NotAToken),
    }
    assert!(
        cipher.open("other", &sealed).is_err(),
        "opened under another entry"
    );
}

/// A `WWW-Authenticate` value: whether it holds a Bearer `invalid_token` challenge.
pub fn www_authenticate(value: &str) {
    if crate::http::bearer_invalid_token(value) {
        // A quoted value may escape any character (`"inva\lid_token"`): the
        // words are there once the backslashes are gone.
        let plain = value.to_ascii_lowercase().replace('\\', "");
        assert!(plain.contains("bearer") && plain.contains("invalid_token"));
    }
}

/// `Cookie` header values (one per line) a caller set before the token's cookie
/// `session` is put in (a replay's headers hold the rejected one): afterwards no
/// `session` cookie is left, and every other cookie is, in its order.
pub fn cookie_placement(data: &[u8]) {
    use http::header::{HeaderMap, HeaderValue, COOKIE};
    let pairs = |headers: &HeaderMap| -> Vec<Vec<u8>> {
        let values = headers.get_all(COOKIE).iter();
        let split = values.flat_map(|v| v.as_bytes().split(|&b| b == b';').map(<[u8]>::to_vec));
        split
            .map(|p| p.trim_ascii().to_vec())
            .filter(|p| !p.is_empty())
            .collect()
    };
    let named = |pair: &[u8]| {
        pair.strip_prefix(b"session".as_slice())
            .is_some_and(|rest| rest.trim_ascii_start().starts_with(b"="))
    };
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, value);
        }
    }
    let others: Vec<_> = pairs(&headers).into_iter().filter(|p| !named(p)).collect();
    crate::http::remove_cookie(&mut headers, "session");
    assert_eq!(pairs(&headers), others, "only the token's cookie goes");
}

/// A private key file: which algorithm it is for, and a signer from it. Never a
/// panic, and never a line of the file in an error.
#[cfg(feature = "oauth2")]
pub fn private_key_pem(pem: &[u8]) {
    crate::source::oauth2::fuzz::private_key_pem(pem);
}

/// A server's answer as DPoP reads it: a status line (`401`), then header
/// lines (`Name: value`). A nonce challenge is one only with a 401, a valid
/// nonce and a DPoP challenge naming `use_dpop_nonce`; a nonce is remembered
/// exactly when it is valid, and given back unchanged. The whole input, read
/// as a stored DPoP key, is an error or a key, never a panic.
pub fn dpop_answer(data: &[u8]) {
    use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
    let _ = serde_json::from_slice::<crate::dpop::DpopKey>(data);
    let mut lines = data.split(|&b| b == b'\n');
    let status = lines
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|l| l.trim().parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::UNAUTHORIZED);
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let nonce = crate::dpop::nonce_in(&headers);
    if let Some(nonce) = nonce {
        assert!(!nonce.is_empty() && nonce.len() <= 1024);
        assert!(nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\'));
    }
    if crate::dpop::asks_for_nonce(status, &headers) {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(nonce.is_some());
        let challenges = headers.get_all(http::header::WWW_AUTHENTICATE).iter();
        assert!(challenges.filter_map(|v| v.to_str().ok()).any(|v| {
            let plain = v.to_ascii_lowercase().replace('\\', "");
            plain.contains("dpop") && plain.contains("use_dpop_nonce")
        }));
    }
    #[cfg(feature = "dpop")]
    {
        let nonces = crate::dpop::DpopNonces::default();
        assert_eq!(
            nonces.remember("https://rs.example", &headers),
            nonce.is_some()
        );
        assert_eq!(nonces.get("https://rs.example").as_deref(), nonce);
    }
}
