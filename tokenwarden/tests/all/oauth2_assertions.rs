//! The JWT bearer and token exchange grants: the exact requests they send, checked
//! at a local mock server (the test authorization server has neither grant).

use crate::common::*;
use base64::Engine as _;
use std::time::Duration;
use tokenwarden::source::oauth2::{JwtSigner, OAuth2Client, SigningAlgorithm, ACCESS_TOKEN_TYPE};
use tokenwarden::{source::from_fn, Token, TokenManager, TokenSource};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &[u8] = include_bytes!("../fixtures/test-only-es256.pem");

async fn token_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "issued", "token_type": "Bearer", "expires_in": 300
        })))
        .mount(&server)
        .await;
    server
}

async fn sent_form(server: &MockServer) -> std::collections::HashMap<String, String> {
    let requests = server.received_requests().await.unwrap();
    let body = &requests.last().expect("a request").body;
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn client(server: &MockServer) -> OAuth2Client {
    OAuth2Client::builder()
        .token_url(format!("{}/token", server.uri()))
        .client_id("svc")
        .client_secret("svc-secret")
        .build()
        .unwrap()
}

#[tokio::test]
async fn jwt_bearer_sends_a_signed_assertion_for_the_subject() {
    let _h = harness();
    let server = token_server().await;
    let signer = JwtSigner::from_pem(KEY, SigningAlgorithm::Es256)
        .unwrap()
        .with_key_id("k1");
    let source = client(&server)
        .jwt_bearer(signer, "my-service", "user-42")
        .scope("read");
    let token = source.fetch().await.unwrap();
    assert_eq!(token.access_token.secret(), "issued");
    let form = sent_form(&server).await;
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    assert_eq!(form["scope"], "read");
    let parts: Vec<&str> = form["assertion"].split('.').collect();
    let decode = |part: &str| -> serde_json::Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    let (header, claims) = (decode(parts[0]), decode(parts[1]));
    assert_eq!(
        (header["alg"].as_str(), header["kid"].as_str()),
        (Some("ES256"), Some("k1"))
    );
    assert_eq!(claims["iss"], "my-service");
    assert_eq!(claims["sub"], "user-42");
    assert_eq!(claims["aud"], format!("{}/token", server.uri()));
    assert!(claims["exp"].as_u64() > claims["iat"].as_u64());
    assert_ne!(
        source.key(),
        client(&server)
            .jwt_bearer(
                JwtSigner::from_pem(KEY, SigningAlgorithm::Es256).unwrap(),
                "my-service",
                "user-43"
            )
            .key()
    );
}

#[tokio::test]
async fn token_exchange_trades_another_managers_token() {
    let _h = harness();
    let server = token_server().await;
    let upstream = TokenManager::builder(from_fn("user-session", || async {
        Ok(Token::new(format!("{MARKER}-user-token")).with_expires_in(Duration::from_secs(600)))
    }))
    .build()
    .unwrap();
    let source = client(&server)
        .token_exchange_from(upstream.clone())
        .audience("https://billing.example.com")
        .requested_token_type(ACCESS_TOKEN_TYPE);
    let manager = TokenManager::builder(source).build().unwrap();
    assert_eq!(
        manager.token().await.unwrap().access_token.secret(),
        "issued"
    );
    let form = sent_form(&server).await;
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(form["subject_token"], format!("{MARKER}-user-token"));
    assert_eq!(form["subject_token_type"], ACCESS_TOKEN_TYPE);
    assert_eq!(form["audience"], "https://billing.example.com");
    assert_clean("key", manager.key().as_str());
    assert_clean("manager", &format!("{manager:?}"));
}
