//! What the grants send, request by request, and how they read odd answers, at a
//! local mock server: JWT bearer, token exchange, password, extra parameters, RFC 8414
//! metadata, device polling (the test authorization server lacks some of these).

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

#[tokio::test]
async fn password_grant_sends_the_users_credentials() {
    let _h = harness();
    let server = token_server().await;
    let source = client(&server)
        .password("alice", format!("{MARKER}-pw"))
        .scope("profile");
    source.fetch().await.unwrap();
    let form = sent_form(&server).await;
    assert_eq!(form["grant_type"], "password");
    assert_eq!(form["username"], "alice");
    assert_eq!(form["password"], format!("{MARKER}-pw"));
    assert_clean("source", &format!("{source:?}"));
}

#[tokio::test]
async fn resource_and_extra_parameters_reach_the_server() {
    let _h = harness();
    let server = token_server().await;
    let source = client(&server)
        .client_credentials()
        .resource("https://a.example.com")
        .audience("api")
        .param("tenant", "t1");
    source.fetch().await.unwrap();
    let form = sent_form(&server).await;
    assert_eq!(form["resource"], "https://a.example.com");
    assert_eq!(form["audience"], "api");
    assert_eq!(form["tenant"], "t1");
}

#[tokio::test]
async fn metadata_falls_back_to_rfc_8414() {
    let _h = harness();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "issuer": server.uri(),
            "token_endpoint": format!("{}/token", server.uri()),
        })))
        .mount(&server)
        .await;
    let client = OAuth2Client::builder()
        .issuer(server.uri())
        .client_id("svc")
        .build()
        .unwrap();
    assert_eq!(
        client.token_url().await.unwrap().as_str(),
        format!("{}/token", server.uri())
    );

    let impostor = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "issuer": "https://evil.example.com",
            "token_endpoint": "https://evil.example.com/token",
        })))
        .mount(&impostor)
        .await;
    let client = OAuth2Client::builder()
        .issuer(impostor.uri())
        .client_id("svc")
        .build()
        .unwrap();
    let error = client.token_url().await.unwrap_err();
    assert!(error.to_string().contains("refusing it"), "{error}");
}

/// A device flow at a mock server that answers the polls with `answers`, on a
/// manual clock moved by the test.
async fn device_flow(answers: Vec<ResponseTemplate>) -> (tokenwarden::Result<Token>, usize) {
    device_flow_with(
        serde_json::json!({"expires_in": 600, "interval": 1}),
        answers,
    )
    .await
}

/// [`device_flow`] with these `expires_in` and `interval`.
async fn device_flow_with(
    timing: serde_json::Value,
    answers: Vec<ResponseTemplate>,
) -> (tokenwarden::Result<Token>, usize) {
    let server = MockServer::start().await;
    let mut authorization = serde_json::json!({
        "device_code": "dc", "user_code": "ABCD-EFGH", "verification_uri": "https://example.com/device"
    });
    authorization
        .as_object_mut()
        .unwrap()
        .extend(timing.as_object().unwrap().clone());
    Mock::given(method("POST"))
        .and(path("/device"))
        .respond_with(ResponseTemplate::new(200).set_body_json(authorization))
        .mount(&server)
        .await;
    for answer in answers {
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(answer)
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    let clock = clock();
    let client = OAuth2Client::builder()
        .token_url(format!("{}/token", server.uri()))
        .device_authorization_url(format!("{}/device", server.uri()))
        .client_id("tv")
        .clock(clock.clone())
        .build()
        .unwrap();
    let fetch = tokio::spawn(async move { client.device_code().on_prompt(|_| {}).fetch().await });
    while !fetch.is_finished() {
        clock.advance(Duration::from_millis(500));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let polls = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/token")
        .count();
    (fetch.await.unwrap(), polls)
}

fn oauth_error(code: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(serde_json::json!({ "error": code }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_polling_waits_slows_down_and_stops_on_denial() {
    let _h = harness();
    let ok = ResponseTemplate::new(200)
        .set_body_json(serde_json::json!({"access_token": "tv-token", "expires_in": 60}));
    let (token, polls) = device_flow(vec![
        oauth_error("authorization_pending"),
        oauth_error("slow_down"),
        ok,
    ])
    .await;
    assert_eq!(token.unwrap().access_token.secret(), "tv-token");
    assert_eq!(polls, 3);

    let (denied, polls) = device_flow(vec![
        oauth_error("authorization_pending"),
        oauth_error("access_denied"),
    ])
    .await;
    assert_eq!(
        denied.unwrap_err().oauth_error().unwrap().error,
        "access_denied"
    );
    assert_eq!(polls, 2);

    let (expired, _) = device_flow(vec![oauth_error("expired_token")]).await;
    assert_eq!(
        expired.unwrap_err().oauth_error().unwrap().error,
        "expired_token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_or_zero_device_numbers_neither_panic_nor_spin() {
    let _h = harness();
    let timing = serde_json::json!({"expires_in": u64::MAX, "interval": 0});
    let (denied, polls) = device_flow_with(timing, vec![oauth_error("access_denied")]).await;
    assert_eq!(
        denied.unwrap_err().oauth_error().unwrap().error,
        "access_denied"
    );
    assert_eq!(polls, 1);
}
