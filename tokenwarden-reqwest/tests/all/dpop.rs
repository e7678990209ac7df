//! DPoP-bound tokens (RFC 9449) from the real OpenID provider through
//! `AuthClient`, `TokenMiddleware` and the blocking `AuthClient`, to a resource
//! server that verifies each proof with a JOSE library of its own and asks for
//! its nonce.

use crate::dpop_resource::{self as resource, Checks};
use crate::leaks::{harness, watch, watching};
use crate::oidc;
use std::sync::Arc;
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

    // The middleware in a client of one's own, with a manager of its own (no
    // nonce known yet: it meets the challenge too).
    let own = TokenManager::builder(source(oidc))
        .listener(watching())
        .build()
        .unwrap();
    let middleware = TokenMiddleware::new(own.clone(), AllowedOrigins::of(&base).unwrap());
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build();
    let answer = http.get(format!("{base}/v1/items")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        (checks.challenges(), checks.served()),
        (3, 12),
        "{:?}",
        checks.refusals()
    );
    assert_eq!((own.stats().fetches, own.stats().refreshes), (1, 0));
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

/// A manager whose token is DPoP-bound (a key of its own), with no server to
/// get it from: for the resource servers below, which check nothing but play
/// their part.
fn dpop_manager() -> TokenManager {
    let key = tokenwarden::dpop::DpopKey::generate(DpopAlgorithm::Es256).unwrap();
    TokenManager::builder(tokenwarden::source::from_fn("dpop", move || {
        let key = key.clone();
        async move {
            Ok(tokenwarden::Token::new("dpop-bound-TOPSECRET")
                .with_token_type("DPoP")
                .with_dpop_key(key)
                .with_expires_in(std::time::Duration::from_secs(600)))
        }
    }))
    .build()
    .unwrap()
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// The `htu` of a request's DPoP proof.
fn htu(headers: &axum::http::HeaderMap) -> String {
    use base64::Engine as _;
    let proof = headers["dpop"].to_str().unwrap();
    let claims = proof.split('.').nth(1).unwrap();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
    claims["htu"].as_str().unwrap().to_owned()
}

/// An `AuthClient` for `base`/v1/ with a DPoP-bound token of its own manager.
fn dpop_client(base: &str) -> (AuthClient, TokenManager) {
    let manager = dpop_manager();
    let client = AuthClient::builder()
        .base_url(format!("{base}/v1/"))
        .token_manager(manager.clone())
        .build()
        .unwrap();
    (client, manager)
}

/// A resource server whose `/v1/items` answers every request 401 with the
/// headers `challenge` gives for its number (0, 1...); its base and the count.
async fn refusing(
    challenge: fn(u32) -> Vec<(&'static str, String)>,
) -> (String, Arc<std::sync::atomic::AtomicU32>) {
    let requests = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = requests.clone();
    let app = axum::Router::new().route(
        "/v1/items",
        axum::routing::get(move || {
            let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut answer = axum::http::Response::builder().status(401);
            for (name, value) in challenge(n) {
                answer = answer.header(name, value);
            }
            async move { answer.body(axum::body::Body::empty()).unwrap() }
        }),
    );
    (serve(app).await, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_wants_a_new_nonce_every_time_gets_one_replay_and_the_token_stays() {
    let _h = harness();
    let (base, requests) = refusing(|n| {
        vec![
            (
                "www-authenticate",
                r#"DPoP error="use_dpop_nonce""#.to_owned(),
            ),
            ("dpop-nonce", format!("n-{n}")),
        ]
    })
    .await;
    let (client, manager) = dpop_client(&base);
    let answer = client.get("items").send().await.unwrap();
    assert_eq!(answer.status(), 401, "the server's last answer, as it is");
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one replay, no loop"
    );
    let stats = manager.stats();
    assert_eq!((stats.fetches, stats.refreshes), (1, 0), "the token stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_refused_after_a_redirect_costs_no_refresh() {
    let _h = harness();
    let app = axum::Router::new()
        .route(
            "/v1/old",
            axum::routing::get(|| async { axum::response::Redirect::temporary("/v1/items") }),
        )
        .route(
            "/v1/items",
            axum::routing::get(|headers: axum::http::HeaderMap| async move {
                // The proof names the URI it was made for.
                let status = if htu(&headers).ends_with("/v1/items") {
                    200
                } else {
                    401
                };
                axum::http::StatusCode::from_u16(status).unwrap()
            }),
        );
    let base = serve(app).await;
    let (client, manager) = dpop_client(&base);
    assert_eq!(client.get("items").send().await.unwrap().status(), 200);
    let redirected = client.get("old").send().await.unwrap();
    assert_eq!(redirected.status(), 401);
    assert_eq!(
        manager.stats().refreshes + manager.stats().fetches,
        1,
        "no refresh for it"
    );
    assert!(crate::leaks::captured().contains("request the final URI directly"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_proof_is_not_a_refused_token() {
    let _h = harness();
    let (base, requests) = refusing(|_| {
        let challenge = r#"DPoP error="invalid_dpop_proof", error_description="iat too far""#;
        vec![("www-authenticate", challenge.to_owned())]
    })
    .await;
    let (client, manager) = dpop_client(&base);
    for _ in 0..3 {
        assert_eq!(client.get("items").send().await.unwrap().status(), 401);
    }
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "no replay"
    );
    let stats = manager.stats();
    assert_eq!(
        (stats.fetches, stats.refreshes),
        (1, 0),
        "no new token for it"
    );
}
