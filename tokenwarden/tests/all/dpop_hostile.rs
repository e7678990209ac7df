//! DPoP against authorization servers that misbehave (a wiremock server of the
//! test's own, for answers a real server does not give): a nonce demanded
//! forever gets one retry, an invalid nonce none, and a bearer token given to
//! a new DPoP grant is refused (a bearer token is sent without a proof).

use crate::common::*;
use base64::Engine as _;
use tokenwarden::dpop::DpopAlgorithm;
use tokenwarden::source::oauth2::OAuth2Client;
use tokenwarden::{TokenManager, TokenSource as _};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(server: &MockServer) -> OAuth2Client {
    OAuth2Client::builder()
        .token_url(format!("{}/token", server.uri()))
        .client_id("svc")
        .client_secret("svc-TOPSECRET")
        .dpop(DpopAlgorithm::Es256)
        .build()
        .unwrap()
}

/// The claims of the DPoP proof of each token request the server received.
async fn proofs(server: &MockServer) -> Vec<serde_json::Value> {
    let requests = server.received_requests().await.unwrap();
    requests
        .iter()
        .map(|request| {
            let proof = request
                .headers
                .get("dpop")
                .expect("a proof")
                .to_str()
                .unwrap();
            let claims = proof.split('.').nth(1).unwrap();
            let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(claims)
                .unwrap();
            serde_json::from_slice(&claims).unwrap()
        })
        .collect()
}

fn use_dpop_nonce(nonce: &str) -> ResponseTemplate {
    ResponseTemplate::new(400)
        .insert_header("dpop-nonce", nonce)
        .set_body_json(serde_json::json!({
            "error": "use_dpop_nonce",
            "error_description": "Authorization server requires nonce in DPoP proof"
        }))
}

#[tokio::test]
async fn a_nonce_demanded_forever_gets_one_retry_and_a_typed_error() {
    let _h = harness();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(use_dpop_nonce("n-1"))
        .mount(&server)
        .await;
    let error = client(&server)
        .client_credentials()
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(
        error.oauth_error().unwrap().error,
        "use_dpop_nonce",
        "{error}"
    );
    let proofs = proofs(&server).await;
    assert_eq!(proofs.len(), 2, "one retry with the nonce, no loop");
    assert!(proofs[0].get("nonce").is_none());
    assert_eq!(proofs[1]["nonce"], "n-1");
    assert_ne!(
        proofs[0]["jti"], proofs[1]["jti"],
        "a fresh proof for the retry"
    );
    assert_eq!(proofs[1]["htm"], "POST");
    assert_eq!(proofs[1]["htu"], format!("{}/token", server.uri()));
}

#[tokio::test]
async fn an_invalid_nonce_is_not_sent_back() {
    let _h = harness();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(use_dpop_nonce("a\"quote"))
        .mount(&server)
        .await;
    let error = client(&server)
        .client_credentials()
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(error.oauth_error().unwrap().error, "use_dpop_nonce");
    assert_eq!(proofs(&server).await.len(), 1, "nothing to retry with");
}

#[tokio::test]
async fn a_bearer_token_for_a_new_dpop_grant_is_refused() {
    let _h = harness();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "plain-bearer-TOPSECRET",
            "token_type": "Bearer",
            "expires_in": 600,
        })))
        .mount(&server)
        .await;
    // A downgrade (or a server that does not do DPoP for this client): the
    // client asked for tokens a thief cannot use, and gets none.
    let manager = TokenManager::builder(client(&server).client_credentials())
        .build()
        .unwrap();
    let error = manager.header().await.unwrap_err();
    assert!(
        error.to_string().contains("not bound to the key"),
        "{error}"
    );
    assert!(!manager.info().await.authenticated);
    assert_clean("error", &format!("{error} {error:?}"));
    // A bearer token (with a key) is sent as one, without a proof.
    let key = tokenwarden::dpop::DpopKey::generate(DpopAlgorithm::Es256).unwrap();
    let token = tokenwarden::Token::new("plain-bearer-TOPSECRET").with_dpop_key(key);
    let source = tokenwarden::source::StaticSource::new("given", token);
    let bearer = TokenManager::builder(source).build().unwrap();
    let header = bearer.header().await.unwrap();
    assert!(header.to_str().unwrap().starts_with("Bearer "));
    let now = tokenwarden::Clock::now(&tokenwarden::SystemClock);
    let proof = header.dpop_proof("GET", "https://api.example/x", None, now);
    assert!(proof.unwrap().is_none());
}
