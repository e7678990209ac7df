//! A hyper client wrapped in `TokenLayer`, against a local API that accepts only
//! current tokens: the token is attached, a revoked one refreshed, the request
//! replayed.
//!
//! ```text
//! cargo run -p tokenwarden --features tower --example tower_hyper
//! ```

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenwarden::http::AllowedOrigins;
use tokenwarden::tower::TokenLayer;
use tokenwarden::{source::from_fn, Token, TokenManager};
use tower_layer::Layer as _;
use tower_service::Service as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let valid = Arc::new(Mutex::new(HashSet::<String>::new()));
    let router = {
        let valid = valid.clone();
        axum::Router::new().route(
            "/hello",
            axum::routing::get(move |headers: HeaderMap| {
                let valid = valid.clone();
                async move {
                    let token = headers.get("authorization").and_then(|v| v.to_str().ok());
                    let token = token
                        .and_then(|t| t.strip_prefix("Bearer "))
                        .unwrap_or_default();
                    if valid.lock().unwrap().contains(token) {
                        (StatusCode::OK, "hello")
                    } else {
                        (StatusCode::UNAUTHORIZED, "")
                    }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });

    let logins = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let manager = {
        let (valid, logins) = (valid.clone(), logins.clone());
        TokenManager::builder(from_fn("local-api", move || {
            let n = logins.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let token = format!("token-{n}");
            valid.lock().unwrap().insert(token.clone());
            async move { Ok(Token::new(token).with_expires_in(Duration::from_secs(600))) }
        }))
        .build()?
    };
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut client = TokenLayer::new(manager)
        .allowed_origins(AllowedOrigins::of(&base)?)
        .layer(hyper);

    let get =
        |base: &str| http::Request::get(format!("{base}/hello")).body(Full::new(Bytes::new()));
    for i in 1..=2 {
        let response = client.call(get(&base)?).await?;
        let status = response.status();
        println!(
            "request {i}: {status} {:?}",
            response.into_body().collect().await?.to_bytes()
        );
    }
    println!("the API revokes every token...");
    valid.lock().unwrap().clear();
    let response = client.call(get(&base)?).await?;
    let status = response.status();
    println!(
        "request 3: {status} {:?} (401, refreshed, replayed)",
        response.into_body().collect().await?.to_bytes()
    );
    println!(
        "logins: {}",
        logins.load(std::sync::atomic::Ordering::SeqCst)
    );
    Ok(())
}
