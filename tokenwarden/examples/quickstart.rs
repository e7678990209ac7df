//! The README's first command: tokens fetched, served from the cache, refreshed
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

#[tokio::main]
async fn main() -> tokenwarden::Result<()> {
    // A login that counts its calls. In real code this is an OAuth2 source or your
    // API's login endpoint.
    let logins = Arc::new(AtomicUsize::new(0));
    let source = {
        let logins = logins.clone();
        from_fn("demo-api", move || {
            let n = logins.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await; // the token endpoint
                Ok(Token::new(format!("demo-token-{n}"))
                    .with_refresh_token(format!("demo-refresh-{n}"))
                    .with_expires_in(LIFETIME))
            }
        })
        .with_refresh(move |_current: Token| async move {
            Ok(Token::new(format!("demo-token-r{}", fastrand::u32(..))).with_expires_in(LIFETIME))
        })
    };

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
                "{:>6.2}s  event {:<9} token {}  expires in {:.1}s",
                elapsed(),
                format!("{:?}", event.kind()),
                info.fingerprint.as_deref().unwrap_or("-"),
                info.expires_in.unwrap_or_default().as_secs_f64(),
            );
        })
        .build()?;

    println!("tokenwarden quickstart: 8 workers asking for a token every 10 ms for 12 s,");
    println!(
        "tokens live {}s; watch one refresh per expiry, in the background.\n",
        LIFETIME.as_secs()
    );
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move {
                let mut calls = 0u64;
                for _ in 0..1_200 {
                    let header = manager.header().await?;
                    assert!(header.is_sensitive());
                    calls += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok::<_, tokenwarden::Error>(calls)
            })
        })
        .collect();
    let mut calls = 0;
    for worker in workers {
        calls += worker.await.expect("worker panicked")?;
    }

    let stats = manager.stats();
    let info = manager.info().await;
    println!("\n{calls} token() calls in {:.1}s", elapsed());
    println!(
        "  served from cache: {}   waited for a refresh: {}",
        stats.hits, stats.waits
    );
    println!(
        "  token requests: {} login(s), {} refresh(es), {} failure(s)",
        stats.fetches, stats.refreshes, stats.failures
    );
    println!(
        "  now: authenticated={} expires_in={:.1}s has_refresh_token={} (info never holds a secret: {:?})",
        info.authenticated,
        info.expires_in.unwrap_or_default().as_secs_f64(),
        info.has_refresh_token,
        info.fingerprint
    );
    Ok(())
}
