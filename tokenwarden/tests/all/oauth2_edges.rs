//! Token endpoint answers a real server will not give, from a local mock server:
//! malformed bodies, odd fields, overload with `Retry-After`, hangs, huge bodies,
//! redirects.

use crate::common::*;
use std::time::Duration;
use tokenwarden::source::oauth2::{OAuth2Client, RetryPolicy};
use tokenwarden::{ClientSecret, ErrorKind, TokenManager, TokenSource};
use wiremock::matchers::{body_string_contains, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(server: &MockServer, retry: RetryPolicy) -> OAuth2Client {
    OAuth2Client::builder()
        .token_url(format!("{}/token", server.uri()))
        .client_id("svc")
        .client_secret(ClientSecret::new(format!("{MARKER}-client-secret")))
        .retry(retry)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

fn quick_retries() -> RetryPolicy {
    let mut retry = RetryPolicy::default();
    retry.initial_delay = Duration::from_millis(10);
    retry
}

async fn answering(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn malformed_bodies_are_typed_errors_without_secrets() {
    let _h = harness();
    for (status, body, expected) in [
        (200, "<html>maintenance</html>", "not JSON"),
        (200, "", "not JSON (0 bytes"),
        (200, r#"{"token_type":"bearer"}"#, "no `access_token`"),
        (
            200,
            r#"{"access_token":"TOPSECRET-x","expires_in":"an hour"}"#,
            "`expires_in`",
        ),
        (404, "no such endpoint", "unexpected HTTP status 404"),
    ] {
        let server = answering(ResponseTemplate::new(status).set_body_string(body)).await;
        let error = client(&server, RetryPolicy::none())
            .client_credentials()
            .fetch()
            .await
            .unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(text.contains(expected), "{body}: {text}");
        assert_clean("error", &text);
        assert!(!error.is_transient(), "{body}");
        assert!(matches!(
            error.kind(),
            ErrorKind::InvalidResponse | ErrorKind::Transport
        ));
    }
}

#[tokio::test]
async fn odd_but_valid_fields_are_accepted() {
    let _h = harness();
    let server = answering(ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "access_token": "abc", "token_type": "BEARER", "expires_in": "120", "vendor": {"x": 1}
    })))
    .await;
    let clock = clock();
    let manager = TokenManager::builder(client(&server, RetryPolicy::none()).client_credentials())
        .clock(clock.clone())
        .build()
        .unwrap();
    let token = manager.token().await.unwrap();
    assert_eq!(token.token_type, "Bearer");
    assert_eq!(
        token.expires_in(tokenwarden::Clock::now(&clock)),
        Some(Duration::from_secs(120))
    );
    assert!(token.extra.contains_key("vendor"));
    assert_eq!(*manager.header().await.unwrap(), "Bearer abc");
}

#[tokio::test]
async fn overload_is_retried_honouring_retry_after() {
    let _h = harness();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "0"))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header_exists("authorization"))
        .and(body_string_contains("grant_type=client_credentials"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"access_token": "ok", "expires_in": 60})),
        )
        .mount(&server)
        .await;
    let token = client(&server, quick_retries())
        .client_credentials()
        .fetch()
        .await
        .unwrap();
    assert_eq!(token.access_token.secret(), "ok");
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_long_retry_after_goes_to_the_manager_backoff() {
    let _h = harness();
    let server = answering(ResponseTemplate::new(429).insert_header("retry-after", "120")).await;
    let error = client(&server, quick_retries())
        .client_credentials()
        .fetch()
        .await
        .unwrap_err();
    assert!(error.is_transient());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "not retried here"
    );
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let _h = harness();
    let server = answering(
        ResponseTemplate::new(401).set_body_json(serde_json::json!({"error": "invalid_client"})),
    )
    .await;
    let error = client(&server, quick_retries())
        .client_credentials()
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(error.oauth_error().unwrap().error, "invalid_client");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_hanging_endpoint_times_out() {
    let _h = harness();
    let server = answering(ResponseTemplate::new(200).set_delay(Duration::from_secs(30))).await;
    let error = client(&server, RetryPolicy::none())
        .client_credentials()
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transport);
    assert!(error.is_transient());
    assert!(error.to_string().contains("no answer within 2s"), "{error}");
}

#[tokio::test]
async fn a_huge_body_is_refused_unread() {
    let _h = harness();
    let server = answering(ResponseTemplate::new(200).set_body_bytes(vec![b'x'; 8 << 20])).await;
    let error = client(&server, RetryPolicy::none())
        .client_credentials()
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidResponse);
    assert!(
        error.to_string().contains("larger than 1024 KiB"),
        "{error}"
    );
}

/// A token endpoint that redirects (307) to another that would hand out a token.
async fn redirecting() -> (MockServer, MockServer) {
    let elsewhere = answering(
        ResponseTemplate::new(200).set_body_json(serde_json::json!({"access_token": "x"})),
    )
    .await;
    let server = answering(
        ResponseTemplate::new(307)
            .insert_header("location", format!("{}/token", elsewhere.uri()).as_str()),
    )
    .await;
    (server, elsewhere)
}

#[tokio::test]
async fn redirects_are_not_followed_with_credentials() {
    let _h = harness();
    let (server, elsewhere) = redirecting().await;
    let error = client(&server, RetryPolicy::none())
        .client_credentials()
        .fetch()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("307"), "{error}");
    assert!(
        elsewhere.received_requests().await.unwrap().is_empty(),
        "the secret never left"
    );
}

/// A client whose token endpoint (with `query`) is a loopback port nobody listens on.
fn refused(query: &str) -> OAuth2Client {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    OAuth2Client::builder()
        .token_url(format!("http://127.0.0.1:{port}/token{query}"))
        .client_id("svc")
        .retry(RetryPolicy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let _h = harness();
    let error = refused("").client_credentials().fetch().await.unwrap_err();
    assert!(error.is_transient());
    assert!(error.to_string().contains("could not connect"), "{error}");
}

#[tokio::test]
async fn a_user_client_that_follows_redirects_is_caught() {
    let _h = harness();
    let (server, elsewhere) = redirecting().await;
    let client = OAuth2Client::builder()
        .token_url(format!("{}/token", server.uri()))
        .client_id("svc")
        .http_client(reqwest::Client::new()) // follows redirects
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let error = client.client_credentials().fetch().await.unwrap_err();
    assert!(error.to_string().contains("redirected to"), "{error}");
    assert!(!error.is_transient());
    // reqwest followed the redirect itself; tokenwarden refused the answer.
    assert_eq!(elsewhere.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_refresh_asks_for_the_same_audience_and_resource() {
    let _h = harness();
    let server = answering(ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "access_token": "a", "refresh_token": "r", "expires_in": 60
    })))
    .await;
    let source = client(&server, RetryPolicy::none())
        .client_credentials()
        .audience("api")
        .resource("https://a.example.com");
    let token = source.fetch().await.unwrap();
    source.refresh(&token).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&requests[1].body)
            .into_owned()
            .collect();
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["audience"], "api");
    assert_eq!(form["resource"], "https://a.example.com");
}

#[tokio::test]
async fn transport_errors_do_not_quote_the_url() {
    let _h = harness();
    let client = refused(&format!("?api_key={MARKER}"));
    let error = client.client_credentials().fetch().await.unwrap_err();
    assert_clean("error", &format!("{error} {error:?}"));
    let bad = OAuth2Client::builder()
        .token_url(format!("http://user:{MARKER}@auth.example.com/token"))
        .client_id("svc")
        .build()
        .unwrap_err();
    assert_clean("error", &format!("{bad} {bad:?}"));
}
