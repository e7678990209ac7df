//! DPoP-bound tokens (RFC 9449) from the real OpenID provider through
//! `AuthClient`, `TokenMiddleware` and the blocking `AuthClient`, to a resource
//! server that verifies each proof with a JOSE library of its own and asks for
//! its nonce.

use crate::dpop_resource::{self as resource, Checks};
use crate::leaks::{harness, watch, watching};
use crate::oidc;
use tokenwarden::dpop::DpopAlgorithm;
use tokenwarden::http::AllowedOrigins;
use tokenwarden::source::oauth2::OAuth2Client;
use tokenwarden::TokenManager;
use tokenwarden_reqwest::{AuthClient, TokenMiddleware};

fn source(oidc: &oidc::Oidc) -> tokenwarden::source::oauth2::ClientCredentials {
    OAuth2Client::builder()
        .issuer(&oidc.issuer)
        .client_id("cc-dpop")
        .client_secret("cc-dpop-TOPSECRET")
        .dpop(DpopAlgorithm::Es256)
        .build()
        .unwrap()
        .client_credentials()
        .scope("read")
}

fn api() -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/items", get(|| async { "items" }))
        .route("/v1/echo", post(|body: String| async move { body }))
}

/// Every proof the server saw is watched: one that reached a log fails the test.
fn no_proof_logged(checks: &Checks) {
    for proof in checks.proofs() {
        watch(&proof);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_client_and_middleware_send_proofs_and_answer_the_nonce_challenge() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    let checks = Checks::new(&oidc.issuer, true);
    let base = resource::serve(checks.clone(), api()).await;
    let manager = TokenManager::builder(source(oidc))
        .listener(watching())
        .build()
        .unwrap();

    let client = AuthClient::builder()
        .base_url(format!("{base}/v1/"))
        .token_manager(manager.clone())
        .build()
        .unwrap();
    // The first request meets the nonce challenge and is replayed with it.
    let first = client.get("items?page=1").send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!((checks.challenges(), checks.served()), (1, 1));
    for page in 2..=10 {
        let answer = client
            .get(&format!("items?page={page}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.text().await.unwrap(), "items");
    }
    // A body is replayed too (after a new nonce).
    checks.rotate_nonce();
    let echoed = client.post("echo").body("hello").send().await.unwrap();
    assert_eq!(echoed.text().await.unwrap(), "hello");
    assert_eq!((checks.challenges(), checks.served()), (2, 11));

    // The middleware in a client of one's own.
    let middleware = TokenMiddleware::new(manager.clone(), AllowedOrigins::of(&base).unwrap());
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    let answer = http.get(format!("{base}/v1/items")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(checks.served(), 12, "{:?}", checks.refusals());
    let stats = manager.stats();
    assert_eq!(
        (stats.fetches, stats.refreshes),
        (1, 0),
        "the token was never dropped"
    );
    no_proof_logged(&checks);
}

#[test]
fn the_blocking_client_sends_proofs_too() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let checks = Checks::new(&oidc.issuer, true);
    let base = runtime.block_on(resource::serve(checks.clone(), api()));
    let manager = TokenManager::builder(source(oidc))
        .listener(watching())
        .build_blocking()
        .unwrap();
    let client = tokenwarden_reqwest::blocking::AuthClient::builder()
        .base_url(format!("{base}/v1/"))
        .token_manager(manager)
        .build()
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| client.get("items").send().unwrap().status().as_u16())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), vec![200; 5]);
    }
    assert_eq!(checks.served(), 20, "{:?}", checks.refusals());
    assert!(checks.challenges() >= 1);
    no_proof_logged(&checks);
}
