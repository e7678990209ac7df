//! An `AuthClient` against a local API that accepts only current tokens: requests
//! carry the token, a revoked token is refreshed once and the request replayed.
//!
//! ```text
//! cargo run -p tokenwarden-reqwest --example api_client
//! ```

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenwarden::{source::from_fn, Token, TokenManager};
use tokenwarden_reqwest::AuthClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The API: a set of valid tokens, shared with the "login" below.
    let valid = Arc::new(Mutex::new(HashSet::<String>::new()));
    let api = {
        let valid = valid.clone();
        Router::new().route(
            "/v1/hello",
            get(move |headers: HeaderMap| {
                let valid = valid.clone();
                async move {
                    let token = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .map(str::to_owned);
                    match token {
                        Some(t) if valid.lock().unwrap().contains(&t) => (StatusCode::OK, "hello"),
                        _ => (StatusCode::UNAUTHORIZED, "who are you?"),
                    }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/v1/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, api).await });

    // The login: mints a token and tells the API about it.
    let logins = Arc::new(AtomicUsize::new(0));
    let source = {
        let (valid, logins) = (valid.clone(), logins.clone());
        from_fn("local-api", move || {
            let n = logins.fetch_add(1, Ordering::SeqCst) + 1;
            let token = format!("token-{n}");
            valid.lock().unwrap().insert(token.clone());
            async move { Ok(Token::new(token).with_expires_in(Duration::from_secs(600))) }
        })
    };
    let manager = TokenManager::builder(source).build()?;
    let client = AuthClient::builder()
        .base_url(&base)
        .token_manager(manager.clone())
        .build()?;

    for i in 1..=3 {
        let response = client.get("hello").send().await?;
        println!(
            "request {i}: {} {}",
            response.status(),
            response.text().await?
        );
    }
    println!("the API revokes every token...");
    valid.lock().unwrap().clear();
    let response = client.get("hello").send().await?;
    println!(
        "request 4: {} {} (401, refreshed once, replayed)",
        response.status(),
        response.text().await?
    );

    let stats = manager.stats();
    println!(
        "logins: {}, served from cache: {}",
        logins.load(Ordering::SeqCst),
        stats.hits
    );
    Ok(())
}
