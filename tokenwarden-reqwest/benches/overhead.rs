//! `overhead`: requests per second through `AuthClient` against the same reqwest
//! client with a static `Authorization` header, to a local keep-alive server, in
//! one run. Target: a ratio of at least 0.97.
//!
//! Rounds alternate between the two clients so that drift in the machine's speed
//! hits both alike; the figure is the median round.
//!
//! Run with `cargo bench -p tokenwarden-reqwest --bench overhead`.

// Timing code reads the system clock; the library itself never does.
#![allow(clippy::disallowed_methods)]

#[path = "support/rounds.rs"]
mod rounds;

use rounds::{median, pair, round, CONCURRENCY, REQUESTS_PER_ROUND};

use axum::routing::get;
use axum::Router;
use std::time::{Duration, Instant};
use tokenwarden::{source::from_fn, Token, TokenManager};
use tokenwarden_reqwest::AuthClient;

const ROUNDS: usize = 41;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let app = Router::new().route("/ping", get(|| async { "pong" }));
        axum::serve(listener, app).await.unwrap()
    });

    let manager = TokenManager::builder(from_fn("bench", || async {
        Ok(Token::new("bench-token-0123456789").with_expires_in(Duration::from_secs(3600)))
    }))
    .build()
    .unwrap();
    let ours = AuthClient::builder()
        .base_url(&base)
        .token_manager(manager)
        .build()
        .unwrap();
    let plain = reqwest::Client::new();
    let url = format!("{base}ping");

    let run_ours = || {
        let ours = ours.clone();
        async move {
            ours.get("ping")
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
        }
    };
    let run_plain = || {
        let (plain, url) = (plain.clone(), url.clone());
        async move {
            let request = plain
                .get(url)
                .header("authorization", "Bearer bench-token-0123456789");
            request.send().await.unwrap().bytes().await.unwrap();
        }
    };

    // The same middleware client with no middleware: what reqwest-middleware costs.
    let bare = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();
    let run_bare = || {
        let (bare, url) = (bare.clone(), url.clone());
        async move {
            let request = bare
                .get(url)
                .header("authorization", "Bearer bench-token-0123456789");
            request.send().await.unwrap().bytes().await.unwrap();
        }
    };

    // Warm up all (connections, the first token).
    round(&run_ours).await;
    round(&run_plain).await;
    round(&run_bare).await;
    // Paired rounds, in alternating order: each pair's ratio cancels the drift of
    // a shared 2-core machine; the figure is the median pair.
    let (mut ours_rps, mut plain_rps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut bare_ratios = Vec::new();
    for i in 0..ROUNDS {
        let (ours, plain) = pair(i, &run_ours, &run_plain).await;
        ours_rps.push(ours);
        plain_rps.push(plain);
        ratios.push(ours / plain);
        bare_ratios.push(round(&run_bare).await / plain);
    }
    let ratio = median(&mut ratios);

    // The middleware's own CPU cost, with the network taken out.
    let manager = TokenManager::builder(from_fn("bench", || async {
        Ok(Token::new("bench-token-0123456789").with_expires_in(Duration::from_secs(3600)))
    }))
    .build()
    .unwrap();
    let origins = tokenwarden_reqwest::AllowedOrigins::of(&base).unwrap();
    let canned = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(Canned)
        .build();
    let with_token = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(tokenwarden_reqwest::TokenMiddleware::new(manager, origins))
        .with(Canned)
        .build();
    let (mut canned_ns, mut token_ns) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        canned_ns.push(ns_per_request(&canned, &url).await);
        token_ns.push(ns_per_request(&with_token, &url).await);
    }
    let own = median(&mut token_ns) - median(&mut canned_ns);
    // The machine's time per request, all cores together, at the static client's rate.
    let per_request = 1e9 / median(&mut plain_rps.clone());
    println!(
        "overhead AuthClient: {:.0} requests/s (median of {ROUNDS} rounds of {REQUESTS_PER_ROUND}, {CONCURRENCY} at a time)",
        median(&mut ours_rps)
    );
    println!(
        "overhead reqwest with a static header: {:.0} requests/s",
        median(&mut plain_rps)
    );
    println!(
        "overhead reqwest-middleware alone (no middleware) / static: {:.3}",
        median(&mut bare_ratios)
    );
    println!(
        "overhead TokenMiddleware's own cost: {own:.0} ns per request (network taken out), \
         {:.1} % of a loopback request here ({:.0} ns of the run per request)",
        100.0 * own / per_request,
        per_request
    );
    println!(
        "overhead ratio AuthClient / static (median of paired rounds): {ratio:.3} (target >= 0.97: {})",
        if ratio >= 0.97 { "met" } else { "MISSED" }
    );
}

/// Answers every request itself, so that a middleware's own cost can be timed
/// without a network in the way.
struct Canned;

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Canned {
    async fn handle(
        &self,
        _: reqwest::Request,
        _: &mut http::Extensions,
        _: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        Ok(reqwest::Response::from(http::Response::new("pong")))
    }
}

/// Nanoseconds per request through `client` (ending in [`Canned`]), sequentially.
async fn ns_per_request(client: &reqwest_middleware::ClientWithMiddleware, url: &str) -> f64 {
    let runs = 200_000;
    let start = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(client.get(url).send().await.unwrap());
    }
    start.elapsed().as_nanos() as f64 / runs as f64
}
