//! Issue 13, item 5: a replay after a 401 carries only the new token, for every
//! placement (`Authorization: Bearer`, a custom header, a cookie next to the
//! caller's own), through the middleware, `AuthClient` and the blocking
//! `AuthClient`.
//!
//! Each test gets the first token, has the API revoke it, and sends one request
//! with the caller's cookie `theme=dark`: the API sees the request with the
//! rejected token, answers 401, and then the replay, whose headers must carry
//! the new token exactly once, nothing of the rejected one, and the caller's
//! cookie. What the API saw is compared with the tokens redacted to
//! `<token n>` (the `n`th login's), so a failure shows no secret.

use crate::clients::*;
use reqwest::header::COOKIE;
use std::sync::atomic::Ordering::SeqCst;
use tokenwarden_reqwest::{AllowedOrigins, AuthClient, TokenMiddleware, TokenPlacement};

/// Where the token goes, and the API's route that looks for it there.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// `Authorization: Bearer <token>`, on `/data`.
    Bearer,
    /// `X-Api-Key: <token>`, on `/api-key`.
    ApiKey,
    /// The cookie `session=<token>`, on `/cookie`.
    Cookie,
}

impl Place {
    fn placement(self) -> TokenPlacement {
        match self {
            Place::Bearer => TokenPlacement::Authorization,
            Place::ApiKey => {
                TokenPlacement::Header(reqwest::header::HeaderName::from_static("x-api-key"))
            }
            Place::Cookie => TokenPlacement::Cookie("session".into()),
        }
    }

    fn path(self) -> &'static str {
        match self {
            Place::Bearer => "data",
            Place::ApiKey => "api-key",
            Place::Cookie => "cookie",
        }
    }

    /// The token-carrying headers and cookie pairs (see [`carried`]) of a
    /// request with the `n`th token and the caller's `theme=dark`.
    fn with_token(self, n: u32) -> Vec<(String, String)> {
        let token = format!("<token {n}>");
        let pairs: [(&str, String); 2] = match self {
            Place::Bearer => [
                ("authorization", format!("Bearer {token}")),
                ("cookie", "theme=dark".into()),
            ],
            Place::ApiKey => [("cookie", "theme=dark".into()), ("x-api-key", token)],
            Place::Cookie => [
                ("cookie", "theme=dark".into()),
                ("cookie", format!("session={token}")),
            ],
        };
        pairs
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect()
    }
}

/// `text` with each token `MARKER-svc-<n>` replaced by `<token n>`.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARKER) {
        out.push_str(&rest[..at]);
        let tail = &rest[at + MARKER.len()..];
        let tail = tail.strip_prefix("-svc-").unwrap_or(tail);
        let digits = tail.len() - tail.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        out.push_str(&format!("<token {}>", &tail[..digits]));
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

/// Of one request's headers (redacted): `Authorization`, `X-Api-Key`, each
/// cookie pair of the `Cookie` headers (as `("cookie", "name=value")`), and any
/// other header holding a token, sorted by name (cookies in the order sent).
fn carried(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut carried: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let value = redact(value);
        if name == "cookie" {
            carried.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| (name.clone(), pair.to_owned())),
            );
        } else if name == "authorization" || name == "x-api-key" || value.contains("<token") {
            carried.push((name.clone(), value));
        }
    }
    carried.sort_by(|a, b| a.0.cmp(&b.0)); // stable: the cookies keep their order
    carried
}

/// What the API saw of the request and its replay, and what the caller got.
fn assert_only_the_new_token_was_replayed(api: &Api, place: Place, status: reqwest::StatusCode) {
    assert_eq!(status, 200, "{place:?}: the caller got the replay's answer");
    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        2,
        "{place:?}: the rejected request and one replay"
    );
    assert_eq!(
        carried(&seen[0]),
        place.with_token(1),
        "{place:?}: the first request carried the first token, once"
    );
    assert_eq!(
        carried(&seen[1]),
        place.with_token(2),
        "{place:?}: the replay carries the new token once, and the caller's cookie"
    );
    let replay: Vec<(String, String)> = seen[1]
        .iter()
        .map(|(name, value)| (name.clone(), redact(value)))
        .collect();
    assert!(
        !replay.iter().any(|(_, value)| value.contains("<token 1>")),
        "{place:?}: no trace of the rejected token in the replay: {replay:?}"
    );
    assert_eq!(api.unauthorized.load(SeqCst), 1, "{place:?}: one 401");
    assert_eq!(api.logins.load(SeqCst), 2, "{place:?}: one refresh");
}

/// Through `reqwest_middleware` with [`TokenMiddleware`].
async fn through_the_middleware(place: Place) {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let manager = manager(&servers.api);
    manager.header().await.unwrap(); // the first token, which the API then rejects
    servers.api.revoke_all();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            TokenMiddleware::new(manager, AllowedOrigins::of(&servers.base).unwrap())
                .placement(place.placement()),
        )
        .build();
    let response = client
        .get(format!("{}{}", servers.base, place.path()))
        .header(COOKIE, "theme=dark")
        .send()
        .await
        .unwrap();
    assert_only_the_new_token_was_replayed(&servers.api, place, response.status());
    assert_eq!(response.text().await.unwrap(), "data");
}

/// Through [`AuthClient`].
async fn through_the_auth_client(place: Place) {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let manager = manager(&servers.api);
    manager.header().await.unwrap();
    servers.api.revoke_all();
    let client = AuthClient::builder()
        .base_url(&servers.base)
        .token_manager(manager)
        .placement(place.placement())
        .build()
        .unwrap();
    let response = client
        .get(place.path())
        .header(COOKIE, "theme=dark")
        .send()
        .await
        .unwrap();
    assert_only_the_new_token_was_replayed(&servers.api, place, response.status());
    assert_eq!(response.text().await.unwrap(), "data");
}

/// Through the blocking [`AuthClient`](tokenwarden_reqwest::blocking::AuthClient),
/// with the API on a runtime of its own.
#[cfg(feature = "blocking")]
fn through_the_blocking_client(place: Place) {
    let _h = crate::leaks::harness();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let servers = runtime.block_on(start());
    let manager = blocking_manager(&servers.api);
    manager.header().unwrap();
    servers.api.revoke_all();
    let client = tokenwarden_reqwest::blocking::AuthClient::builder()
        .base_url(&servers.base)
        .token_manager(manager)
        .placement(place.placement())
        .build()
        .unwrap();
    let response = client
        .get(place.path())
        .header(COOKIE, "theme=dark")
        .send()
        .unwrap();
    assert_only_the_new_token_was_replayed(&servers.api, place, response.status());
    assert_eq!(response.text().unwrap(), "data");
}

#[tokio::test]
async fn middleware_replay_carries_only_the_new_bearer_token() {
    through_the_middleware(Place::Bearer).await;
}

#[tokio::test]
async fn middleware_replay_carries_only_the_new_custom_header() {
    through_the_middleware(Place::ApiKey).await;
}

#[tokio::test]
async fn middleware_replay_carries_only_the_new_cookie_and_the_callers_own() {
    through_the_middleware(Place::Cookie).await;
}

#[tokio::test]
async fn auth_client_replay_carries_only_the_new_bearer_token() {
    through_the_auth_client(Place::Bearer).await;
}

#[tokio::test]
async fn auth_client_replay_carries_only_the_new_custom_header() {
    through_the_auth_client(Place::ApiKey).await;
}

#[tokio::test]
async fn auth_client_replay_carries_only_the_new_cookie_and_the_callers_own() {
    through_the_auth_client(Place::Cookie).await;
}

#[cfg(feature = "blocking")]
#[test]
fn blocking_replay_carries_only_the_new_bearer_token() {
    through_the_blocking_client(Place::Bearer);
}

#[cfg(feature = "blocking")]
#[test]
fn blocking_replay_carries_only_the_new_custom_header() {
    through_the_blocking_client(Place::ApiKey);
}

#[cfg(feature = "blocking")]
#[test]
fn blocking_replay_carries_only_the_new_cookie_and_the_callers_own() {
    through_the_blocking_client(Place::Cookie);
}

/// The redaction the assertions rely on.
#[test]
fn tokens_are_redacted_to_their_login_number() {
    let token = |n: u32| format!("{MARKER}-svc-{n}");
    assert_eq!(
        redact(&format!("theme=dark; session={}", token(12))),
        "theme=dark; session=<token 12>"
    );
    assert_eq!(
        redact(&format!("Bearer {}{}", token(1), token(2))),
        "Bearer <token 1><token 2>"
    );
    assert!(!redact(&format!("x {MARKER}-other")).contains(MARKER));
}

/// The check itself: given what the API would see if a replay kept the rejected
/// token next to the new one (a second header value, a second `session`
/// cookie, the token in another header), it fails; given a clean replay, it
/// passes.
#[test]
fn the_check_fails_on_a_replay_that_keeps_the_rejected_token() {
    let _h = crate::leaks::harness();
    let token = |n: u32| format!("{MARKER}-svc-{n}");
    let header = |name: &str, value: String| (name.to_owned(), value);
    let theme = || header("cookie", "theme=dark".into());
    let check = |place: Place, replay: Vec<(String, String)>| {
        let api = Api::default();
        api.unauthorized.store(1, SeqCst);
        api.logins.store(2, SeqCst);
        let first = match place {
            Place::Bearer => header("authorization", format!("Bearer {}", token(1))),
            Place::ApiKey => header("x-api-key", token(1)),
            Place::Cookie => header("cookie", format!("session={}", token(1))),
        };
        *api.seen.lock().unwrap() = vec![vec![theme(), first], replay];
        std::panic::catch_unwind(|| {
            assert_only_the_new_token_was_replayed(&api, place, reqwest::StatusCode::OK)
        })
        .is_ok()
    };
    let bearer = |n| header("authorization", format!("Bearer {}", token(n)));
    let key = |n| header("x-api-key", token(n));
    assert!(check(Place::Bearer, vec![bearer(2), theme()]));
    assert!(!check(Place::Bearer, vec![bearer(1), bearer(2), theme()]));
    assert!(!check(Place::Bearer, vec![bearer(2), theme(), key(1)]));
    assert!(check(Place::ApiKey, vec![key(2), theme()]));
    assert!(!check(Place::ApiKey, vec![key(2), key(1), theme()]));
    assert!(!check(Place::ApiKey, vec![key(2), theme(), bearer(1)]));
    let session = |n| format!("session={}", token(n));
    assert!(check(
        Place::Cookie,
        vec![theme(), header("cookie", session(2))]
    ));
    assert!(check(
        Place::Cookie,
        vec![header("cookie", format!("theme=dark; {}", session(2)))]
    ));
    assert!(!check(
        Place::Cookie,
        vec![
            header("cookie", format!("theme=dark; {}", session(1))),
            header("cookie", session(2)),
        ]
    ));
    assert!(!check(Place::Cookie, vec![header("cookie", session(2))],));
}
