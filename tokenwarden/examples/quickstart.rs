//! The library alone: tokens fetched, served from the cache, refreshed
//! across several expiries of a short-lived source, with the listener's events.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::source::from_fn;
use tokenwarden::{Clock, SystemClock, Token, TokenEvent, TokenManager};

/// Each token lives 4 seconds, so the demo sees several expiries.
const LIFETIME: Duration = Duration::from_secs(4);
const WORKERS: usize = 8;
const CALLS_PER_WORKER: usize = 1_200;

#[tokio::main]
async fn main() -> tokenwarden::Result<()> {
    // A login and a refresh that count their calls. In real code these are an
    // OAuth2 source or your API's login and refresh endpoints.
    let issued = Arc::new(AtomicUsize::new(0));
    let next = move || issued.fetch_add(1, Ordering::SeqCst) + 1;
    let login = next.clone();
    let source = from_fn("demo-api", move || {
        let n = login();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await; // the token endpoint
            Ok(Token::new(format!("demo-token-{n}"))
                .with_refresh_token(format!("demo-refresh-{n}"))
                .with_expires_in(LIFETIME))
        }
    })
    .with_refresh(move |_current: Token| {
        let n = next();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Token::new(format!("demo-token-{n}")).with_expires_in(LIFETIME))
        }
    });

    let started = SystemClock.now();
    let elapsed = move || {
        SystemClock
            .now()
            .duration_since(started)
            .unwrap_or_default()
            .as_secs_f64()
    };
    let manager = TokenManager::builder(source)
        .listener(move |event: &TokenEvent| {
            let info = event.info();
            println!(
                "{:>6.2}s  {:<9}  fingerprint={}  expires in {:.1}s",
                elapsed(),
                format!("{:?}", event.kind()),
                info.fingerprint.as_deref().unwrap_or("-"),
                info.expires_in.unwrap_or_default().as_secs_f64(),
            );
        })
        .build()?;

    println!(
        "tokenwarden quickstart: {WORKERS} workers each ask for the token {CALLS_PER_WORKER} times, every 10 ms."
    );
    println!(
        "Tokens live {}s. Each is refreshed once, in the background, at about half its life",
        LIFETIME.as_secs()
    );
    println!(
        "(the refresh window is capped at half the lifetime), so no worker waits for a refresh."
    );
    println!("Fingerprints are 8 hex digits of a SHA-256 of the token, never the token.\n");

    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move {
                for _ in 0..CALLS_PER_WORKER {
                    let header = manager.header().await?; // "Bearer demo-token-N"
                    assert!(header.is_sensitive());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok::<_, tokenwarden::Error>(())
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker panicked")?;
    }

    let stats = manager.stats();
    let info = manager.info().await;
    println!(
        "\n{} token calls in {:.1}s:",
        WORKERS * CALLS_PER_WORKER,
        elapsed()
    );
    println!(
        "  {} served from the cache, {} waited (for the first login only)",
        stats.hits, stats.waits
    );
    println!(
        "  {} token request(s) to the endpoint: {} login, {} refreshes, {} failures",
        stats.fetches + stats.refreshes,
        stats.fetches,
        stats.refreshes,
        stats.failures
    );
    println!(
        "  info(): authenticated={} expires_in={:.1}s has_refresh_token={} fingerprint={} (never a secret)",
        info.authenticated,
        info.expires_in.unwrap_or_default().as_secs_f64(),
        info.has_refresh_token,
        info.fingerprint.as_deref().unwrap_or("-")
    );
    Ok(())
}
