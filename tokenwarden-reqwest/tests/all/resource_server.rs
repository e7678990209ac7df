//! A local API on 127.0.0.1 (axum): `/data` and `/echo` need a current bearer
//! token; `/redirect` sends the caller to a second origin, which records what
//! arrives, and `/redirect-to-reject` to one that answers 401 to everybody;
//! `/round-trip` goes there and back (`/back` redirects to `/data`). `/api-key`
//! and `/cookie` are `/data` with the token in `X-Api-Key` or in the `session`
//! cookie. Tokens come from a counting login that registers each new token.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::Router;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenwarden::{source::from_fn, Token, TokenManager};

#[allow(unused_imports)] // the ureq tests read no logs
pub use crate::leaks::{captured as captured_logs, MARKER};

#[derive(Default)]
pub struct Api {
    valid: Mutex<HashSet<String>>,
    pub requests: Mutex<HashMap<String, usize>>,
    pub unauthorized: AtomicUsize,
    /// Every request to a guarded route (`/data`, `/echo`, `/api-key`,
    /// `/cookie`), in order: all its headers, as `(name, value)` in the order
    /// they arrived.
    pub seen: Mutex<Vec<Vec<(String, String)>>>,
    /// What the second origin received: the Authorization header of each request.
    pub captured: Mutex<Vec<Option<String>>>,
    pub logins: AtomicUsize,
}

impl Api {
    pub fn revoke_all(&self) {
        self.valid.lock().unwrap().clear();
    }
}

pub struct Servers {
    pub api: Arc<Api>,
    pub base: String,
    pub other: String,
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

/// The bare token in `X-Api-Key` (its first value).
fn api_key(headers: &HeaderMap) -> Option<String> {
    Some(headers.get("x-api-key")?.to_str().ok()?.to_owned())
}

/// The value of the first `session` cookie of the `Cookie` headers.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("session="))
        .map(str::to_owned)
}

/// Records the request, and answers with `body` if `token` (where the route
/// looks for it) is valid, else 401.
async fn guarded(api: &Api, headers: &HeaderMap, token: Option<String>, body: String) -> Response {
    api.seen.lock().unwrap().push(
        headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
    );
    if let Some(token) = &token {
        *api.requests
            .lock()
            .unwrap()
            .entry(token.clone())
            .or_default() += 1;
    }
    match token {
        Some(token) if api.valid.lock().unwrap().contains(&token) => {
            (StatusCode::OK, body).into_response()
        }
        _ => {
            api.unauthorized.fetch_add(1, SeqCst);
            (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", r#"Bearer error="invalid_token""#)],
            )
                .into_response()
        }
    }
}

/// Starts the API and the second origin.
pub async fn start() -> Servers {
    let api = Arc::new(Api::default());
    // Where `/back` on the second origin sends the caller: the API, once it runs.
    let back_to_base: Arc<std::sync::OnceLock<String>> = Arc::default();
    let back = back_to_base.clone();
    let other = serve(
        Router::new()
            .route(
                "/back",
                any(move || {
                    let back = back.clone();
                    async move { Redirect::temporary(&format!("{}data", back.get().unwrap())) }
                }),
            )
            .route(
                "/reject",
                any(|| async {
                    (
                        StatusCode::UNAUTHORIZED,
                        [("www-authenticate", r#"Bearer error="invalid_token""#)],
                    )
                }),
            )
            .route(
                "/capture",
                any(
                    |State(api): State<Arc<Api>>, headers: HeaderMap| async move {
                        let auth = headers
                            .get("authorization")
                            .or_else(|| headers.get("x-api-token"))
                            .map(|v| v.to_str().unwrap_or("?").to_owned());
                        api.captured.lock().unwrap().push(auth);
                        "captured"
                    },
                ),
            )
            .with_state(api.clone()),
    )
    .await;
    let to_other = format!("{other}/capture");
    let to_back = format!("{other}/back");
    let to_reject = format!("{other}/reject");
    let base = serve(
        Router::new()
            .route(
                "/data",
                get(
                    |State(api): State<Arc<Api>>, headers: HeaderMap| async move {
                        guarded(&api, &headers, bearer(&headers), "data".into()).await
                    },
                ),
            )
            .route(
                "/api-key",
                get(
                    |State(api): State<Arc<Api>>, headers: HeaderMap| async move {
                        guarded(&api, &headers, api_key(&headers), "data".into()).await
                    },
                ),
            )
            .route(
                "/cookie",
                get(
                    |State(api): State<Arc<Api>>, headers: HeaderMap| async move {
                        guarded(&api, &headers, session_cookie(&headers), "data".into()).await
                    },
                ),
            )
            .route(
                "/echo",
                post(
                    |State(api): State<Arc<Api>>, headers: HeaderMap, body: String| async move {
                        guarded(&api, &headers, bearer(&headers), body).await
                    },
                ),
            )
            .route(
                "/always-401",
                get(|State(api): State<Arc<Api>>| async move {
                    api.unauthorized.fetch_add(1, SeqCst);
                    StatusCode::UNAUTHORIZED
                }),
            )
            .route(
                "/redirect",
                get(move || async move { Redirect::temporary(&to_other) }),
            )
            .route(
                "/redirect-to-reject",
                get(move || async move { Redirect::temporary(&to_reject) }),
            )
            .route(
                "/round-trip",
                get(move || async move { Redirect::temporary(&to_back) }),
            )
            .with_state(api.clone()),
    )
    .await;
    let _ = back_to_base.set(format!("{base}/"));
    Servers {
        api,
        base: format!("{base}/"),
        other,
    }
}

/// A manager whose login registers a new valid token at the API each time.
pub fn manager(api: &Arc<Api>) -> TokenManager {
    user_manager(api, "svc")
}

/// The same, with its own clock.
pub fn manager_with_clock(api: &Arc<Api>, clock: tokenwarden::ManualClock) -> TokenManager {
    TokenManager::builder(login(api, "svc"))
        .clock(clock)
        .build()
        .unwrap()
}

/// The same, for `user`: tokens are `TOPSECRET-<user>-<n>`.
pub fn user_manager(api: &Arc<Api>, user: &str) -> TokenManager {
    TokenManager::builder(login(api, user)).build().unwrap()
}

/// A blocking manager whose login registers a new valid token at the API each
/// time (build it outside a runtime).
pub fn blocking_manager(api: &Arc<Api>) -> tokenwarden::blocking::TokenManager {
    TokenManager::builder(login(api, "svc"))
        .build_blocking()
        .unwrap()
}

/// The login of `user`: registers a new token at the API each time.
fn login(api: &Arc<Api>, user: &str) -> tokenwarden::source::FnSource {
    let (api, user) = (api.clone(), user.to_owned());
    from_fn(format!("local-api-{user}"), move || {
        let (api, user) = (api.clone(), user.clone());
        async move {
            let n = api.logins.fetch_add(1, SeqCst) + 1;
            let token = format!("{MARKER}-{user}-{n}");
            api.valid.lock().unwrap().insert(token.clone());
            Ok(Token::new(token).with_expires_in(Duration::from_secs(3600)))
        }
    })
}
