//! `dpop`: requests per second through `AuthClient` with a DPoP-bound token (a
//! fresh proof signed per request) against the same client with a bearer token,
//! to a local keep-alive server, 4 at a time, in paired rounds (as `overhead`).
//! Target: DPoP at least 0.95 of bearer. Also prints what a proof costs to sign,
//! per algorithm.
//!
//! Run with `cargo bench -p tokenwarden-reqwest --bench dpop`.

// Timing code reads the system clock; the library itself never does.
#![allow(clippy::disallowed_methods)]

#[path = "support/rounds.rs"]
mod rounds;

use rounds::{median, pair, round, CONCURRENCY, REQUESTS_PER_ROUND};

use axum::routing::get;
use axum::Router;
use std::time::{Duration, Instant, SystemTime};
use tokenwarden::dpop::{DpopAlgorithm, DpopKey};
use tokenwarden::{source::from_fn, Token, TokenManager};
use tokenwarden_reqwest::AuthClient;

const ROUNDS: usize = 41;

/// A manager of a token that lasts the run: DPoP-bound to `dpop`, or bearer.
fn manager(dpop: Option<DpopKey>) -> TokenManager {
    TokenManager::builder(from_fn("bench", move || {
        let dpop = dpop.clone();
        async move {
            let token =
                Token::new("bench-token-0123456789").with_expires_in(Duration::from_secs(3600));
            Ok(match dpop {
                Some(key) => token.with_token_type("DPoP").with_dpop_key(key),
                None => token,
            })
        }
    }))
    .build()
    .unwrap()
}

fn client(base: &str, dpop: Option<DpopKey>) -> AuthClient {
    AuthClient::builder()
        .base_url(base)
        .token_manager(manager(dpop))
        .build()
        .unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let app = Router::new().route("/ping", get(|| async { "pong" }));
        axum::serve(listener, app).await.unwrap()
    });
    let key = DpopKey::generate(DpopAlgorithm::Es256).unwrap();
    let (bearer, dpop) = (client(&base, None), client(&base, Some(key)));
    let run = |client: &AuthClient| {
        let client = client.clone();
        move || {
            let client = client.clone();
            async move {
                client
                    .get("ping")
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
            }
        }
    };
    let (run_bearer, run_dpop) = (run(&bearer), run(&dpop));
    // Warm up both (connections, the first token).
    round(&run_bearer).await;
    round(&run_dpop).await;
    let (mut bearer_rps, mut dpop_rps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let (b, d) = pair(i, &run_bearer, &run_dpop).await;
        bearer_rps.push(b);
        dpop_rps.push(d);
        ratios.push(d / b);
    }
    let ratio = median(&mut ratios);
    println!(
        "dpop AuthClient with a bearer token: {:.0} requests/s (median of {ROUNDS} rounds of {REQUESTS_PER_ROUND}, {CONCURRENCY} at a time)",
        median(&mut bearer_rps)
    );
    println!(
        "dpop AuthClient with a DPoP-bound token (ES256 proof per request): {:.0} requests/s",
        median(&mut dpop_rps)
    );
    for alg in [
        DpopAlgorithm::Es256,
        DpopAlgorithm::EdDsa,
        DpopAlgorithm::Rs256,
    ] {
        let key = DpopKey::generate(alg).unwrap();
        let runs = if alg == DpopAlgorithm::Rs256 {
            500
        } else {
            20_000
        };
        let start = Instant::now();
        for _ in 0..runs {
            let proof = key.proof(
                "GET",
                "http://127.0.0.1/ping",
                Some("ath"),
                None,
                SystemTime::now(),
            );
            std::hint::black_box(proof.unwrap());
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / runs as f64;
        println!(
            "dpop proof signing cost, {}: {us:.1} µs per proof (one core)",
            alg.as_str()
        );
    }
    // What attaching the token costs, in the adapters' shared function: bearer
    // against DPoP (the proof, its nonce lookup, its header).
    let url = url::Url::parse(&format!("{base}ping")).unwrap();
    let mut attach_us = Vec::new();
    for key in [None, Some(DpopKey::generate(DpopAlgorithm::Es256).unwrap())] {
        let manager = manager(key);
        let runs = 20_000;
        let placement = tokenwarden::http::TokenPlacement::Authorization;
        let mut headers = http::HeaderMap::new();
        let start = Instant::now();
        for _ in 0..runs {
            let header = manager.header().await.unwrap();
            let method = http::Method::GET;
            tokenwarden::http::authorize(
                &placement,
                &mut headers,
                &header,
                &method,
                &url,
                &manager,
            )
            .unwrap();
        }
        attach_us.push(start.elapsed().as_secs_f64() * 1e6 / runs as f64);
    }
    println!(
        "dpop attaching the token (tokenwarden::http::authorize): bearer {:.2} µs, DPoP ES256 {:.1} µs",
        attach_us[0], attach_us[1]
    );
    // The bound the signature alone sets: the machine's time per bearer request
    // (both cores) against that plus the proof's.
    let per_request = 2.0 * 1e6 / median(&mut bearer_rps.clone());
    let proof = attach_us[1] - attach_us[0];
    println!(
        "dpop a bearer request takes {per_request:.0} µs of this 2-core machine; with the proof's {proof:.1} µs the best ratio possible is {:.3}",
        per_request / (per_request + proof)
    );
    println!(
        "dpop ratio DPoP / bearer (median of paired rounds): {ratio:.3} (target >= 0.95: {})",
        if ratio >= 0.95 { "met" } else { "MISSED" }
    );
}
