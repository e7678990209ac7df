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
}

async fn api() -> (Arc<Api>, String) {
    let api = Arc::new(Api {
        valid: Mutex::default(),
        logins: AtomicUsize::new(0),
        seen: Mutex::default(),
    });
    let state = api.clone();
    let router = axum::Router::new().route(
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
