//! A ureq agent against a local API that accepts only current tokens: requests
//! carry the token, a revoked token is refreshed once and the request replayed.
//! No runtime in `main`: the blocking manager brings its own thread.
//!
//! ```text
//! cargo run -p tokenwarden-ureq --example ureq_client
//! ```

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenwarden::{blocking::TokenManager, http::AllowedOrigins, source::from_fn, Token};
use tokenwarden_ureq::{with_replay, TokenMiddleware};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The API, on a thread of its own: a set of valid tokens, shared with the
    // "login" below.
    let valid = Arc::new(Mutex::new(HashSet::<String>::new()));
    let base = serve_api(valid.clone())?;

    // The login: mints a token and tells the API about it.
    let logins = Arc::new(AtomicUsize::new(0));
    let source = {
        let (valid, logins) = (valid.clone(), logins.clone());
        from_fn("local-api", move || {
            let n = logins.fetch_add(1, Ordering::SeqCst) + 1;
            let token = format!("token-{n}");
            valid.lock().unwrap().insert(token.clone());
            async move { Ok(Token::new(token).with_expires_in(Duration::from_secs(3600))) }
        })
    };
    let manager = TokenManager::builder(source).build_blocking()?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .middleware(TokenMiddleware::new(manager, AllowedOrigins::of(&base)?))
        .build()
        .into();

    let hello = format!("{base}hello");
    let said = with_replay(|| agent.get(&hello).call())?
        .body_mut()
        .read_to_string()?;
    println!(
        "first call: {said} (logins: {})",
        logins.load(Ordering::SeqCst)
    );

    valid.lock().unwrap().clear(); // the API revokes every token
    let said = with_replay(|| agent.get(&hello).call())?
        .body_mut()
        .read_to_string()?;
    println!(
        "after a revocation: {said} (logins: {}: one refresh, one replay)",
        logins.load(Ordering::SeqCst)
    );
    Ok(())
}

/// Starts the API on 127.0.0.1 on a runtime thread of its own; its base URL.
fn serve_api(valid: Arc<Mutex<HashSet<String>>>) -> std::io::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let base = format!("http://{}/v1/", listener.local_addr()?);
    let api = Router::new().route(
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
    );
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime for the API");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("the listener");
            axum::serve(listener, api).await
        })
    });
    Ok(base)
}
