//! The tower layer over a hyper client, against a local API that accepts only
//! current tokens.

use crate::common::*;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenwarden::http::AllowedOrigins;
use tokenwarden::tower::TokenLayer;
use tokenwarden::{source::from_fn, Token, TokenManager};
use tower_layer::Layer as _;
use tower_service::Service as _;

struct Api {
    valid: Mutex<HashSet<String>>,
    logins: AtomicUsize,
    seen: Mutex<Vec<Option<String>>>,
    /// `/cookie`: the Cookie headers and `x-request-id` of each request.
    cookies: Mutex<Vec<(Vec<String>, Option<String>)>>,
}

async fn api() -> (Arc<Api>, String) {
    let api = Arc::new(Api {
        valid: Mutex::default(),
        logins: AtomicUsize::new(0),
        seen: Mutex::default(),
        cookies: Mutex::default(),
    });
    let state = api.clone();
    let cookie_state = api.clone();
    let router = axum::Router::new().route(
        "/cookie",
        axum::routing::post(move |headers: HeaderMap| {
            let api = cookie_state.clone();
            async move {
                let text = |v: &http::HeaderValue| v.to_str().unwrap_or("?").to_owned();
                let cookies: Vec<String> = headers.get_all("cookie").iter().map(text).collect();
                let id = headers.get("x-request-id").map(text);
                api.cookies.lock().unwrap().push((cookies.clone(), id));
                let valid = cookies
                    .iter()
                    .flat_map(|c| c.split("; "))
                    .filter_map(|pair| pair.strip_prefix("session="))
                    .any(|token| api.valid.lock().unwrap().contains(token));
                if valid {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }
        }),
    );
    let router = router.route(
        "/echo",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let api = state.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                api.seen.lock().unwrap().push(auth.clone());
                let token = auth.and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned));
                match token {
                    Some(t) if api.valid.lock().unwrap().contains(&t) => (StatusCode::OK, body),
                    _ => (StatusCode::UNAUTHORIZED, String::new()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (api, base)
}

fn manager(api: &Arc<Api>) -> TokenManager {
    let api = api.clone();
    TokenManager::builder(from_fn("tower-api", move || {
        let n = api.logins.fetch_add(1, SeqCst) + 1;
        let token = format!("{MARKER}-tower-{n}");
        api.valid.lock().unwrap().insert(token.clone());
        async move { Ok(Token::new(token).with_expires_in(Duration::from_secs(600))) }
    }))
    .build()
    .unwrap()
}

fn post(uri: &str, body: &'static str) -> http::Request<Full<Bytes>> {
    http::Request::post(uri)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn a_hyper_client_gets_tokens_refreshes_and_replays() {
    let _h = harness();
    let (api, base) = api().await;
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut client = TokenLayer::new(manager(&api))
        .allowed_origins(AllowedOrigins::of(&base).unwrap())
        .layer(hyper);
    let response = client
        .call(post(&format!("{base}/echo"), "one"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    api.valid.lock().unwrap().clear(); // revoked
    let response = client
        .call(post(&format!("{base}/echo"), "two"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "refreshed and replayed");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "two", "the replay carried the body");
    assert_eq!(api.logins.load(SeqCst), 2);
    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "request, rejected request, replay");
    assert!(seen
        .iter()
        .all(|h| h.as_deref().is_some_and(|h| h.starts_with("Bearer "))));
}

#[tokio::test]
async fn other_origins_get_no_token() {
    let _h = harness();
    let (api, base) = api().await;
    let (_, other) = self::api().await;
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut client = TokenLayer::new(manager(&api))
        .allowed_origins(AllowedOrigins::of(&other).unwrap()) // not `base`
        .layer(hyper);
    let response = client
        .call(post(&format!("{base}/echo"), "x"))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        *api.seen.lock().unwrap(),
        vec![None],
        "sent without a token"
    );
    assert_eq!(api.logins.load(SeqCst), 0);
}

/// What a layer below the token layer reads from a request's extensions.
#[derive(Clone)]
struct RequestId(&'static str);

/// A layer below the token layer that puts the request's `RequestId` extension in
/// a header (as tracing or context propagation layers do with theirs).
#[derive(Clone)]
struct IdToHeader<S>(S);

impl<S, B> tower_service::Service<http::Request<B>> for IdToHeader<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> S::Future {
        if let Some(RequestId(id)) = request.extensions().get::<RequestId>().cloned() {
            request
                .headers_mut()
                .insert("x-request-id", http::HeaderValue::from_static(id));
        }
        self.0.call(request)
    }
}

/// A replay after a rejected token carries only the new token's cookie (the
/// caller's other cookies stay), and the request's extensions.
#[tokio::test]
async fn a_replay_carries_only_the_new_cookie_and_keeps_the_extensions() {
    let _h = harness();
    let (api, base) = api().await;
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut client = TokenLayer::new(manager(&api))
        .allowed_origins(AllowedOrigins::of(&base).unwrap())
        .placement(tokenwarden::http::TokenPlacement::Cookie("session".into()))
        .layer(IdToHeader(hyper));
    let request = || {
        let mut request = http::Request::post(format!("{base}/cookie"))
            .header("cookie", "theme=dark")
            .body(Full::new(Bytes::new()))
            .unwrap();
        request.extensions_mut().insert(RequestId("req-7"));
        request
    };
    assert_eq!(client.call(request()).await.unwrap().status(), 200);
    api.valid.lock().unwrap().clear(); // revoked
    assert_eq!(
        client.call(request()).await.unwrap().status(),
        200,
        "replayed"
    );
    let seen = api.cookies.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "request, rejected request, replay");
    let (replay_cookies, replay_id) = &seen[2];
    let pairs: Vec<&str> = replay_cookies.iter().flat_map(|c| c.split("; ")).collect();
    assert_eq!(
        pairs,
        ["theme=dark", &format!("session={MARKER}-tower-2")],
        "only the new token's cookie, and the caller's own"
    );
    assert_eq!(
        replay_id.as_deref(),
        Some("req-7"),
        "the extension survived the replay"
    );
}
