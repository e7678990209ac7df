//! The declarative login source against a mock of a cookie-based login API, like
//! the trading API of the automatic-refresh seed document.

use crate::common::*;
use std::time::Duration;
use tokenwarden::source::login::{Field, LoginSource, Placement};
use tokenwarden::{ErrorKind, TokenManager};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn cookies(access: &str, refresh: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .append_header(
            "set-cookie",
            format!("auth-access-token={access}; Path=/; HttpOnly").as_str(),
        )
        .append_header(
            "set-cookie",
            format!("auth-refresh-token={refresh}; Path=/; HttpOnly").as_str(),
        )
        .set_body_json(serde_json::json!({"ok": true, "expires": 900}))
}

fn source(server: &MockServer) -> LoginSource {
    LoginSource::builder("trading-api")
        .login_url(format!("{}/login", server.uri()))
        .credentials_json(serde_json::json!({"email": "me@example.com", "password": format!("{MARKER}-password")}))
        .access_token(Field::cookie("auth-access-token"))
        .refresh_token(Field::cookie("auth-refresh-token"))
        .expires_in(Field::json("expires"))
        .refresh_url(format!("{}/refresh-access-token", server.uri()))
        .send_refresh_token(Placement::Cookie("auth-refresh-token".into()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn logs_in_with_json_and_refreshes_with_the_cookie() {
    let _h = harness();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/login"))
        .and(body_json(serde_json::json!({"email": "me@example.com", "password": format!("{MARKER}-password")})))
        .respond_with(cookies("at-1", "rt-1"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/refresh-access-token"))
        .and(header("cookie", "auth-refresh-token=rt-1"))
        .respond_with(cookies("at-2", "rt-2"))
        .mount(&server)
        .await;
    let clock = clock();
    let manager = TokenManager::builder(source(&server))
        .clock(clock.clone())
        .build()
        .unwrap();
    let first = manager.token().await.unwrap();
    assert_eq!(first.access_token.secret(), "at-1");
    assert_eq!(
        first.expires_in(tokenwarden::Clock::now(&clock)),
        Some(Duration::from_secs(900))
    );
    clock.advance(Duration::from_secs(900));
    let second = manager.token().await.unwrap();
    assert_eq!(second.access_token.secret(), "at-2");
    assert_eq!(second.refresh_token.as_ref().unwrap().secret(), "rt-2");
    assert_eq!(manager.stats().refreshes, 1);
    assert_clean("source", &format!("{:?}", source(&server)));
}

#[tokio::test]
async fn a_rejected_refresh_logs_in_again() {
    let _h = harness();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/login"))
        .respond_with(cookies("at-1", "rt-1"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/refresh-access-token"))
        .respond_with(ResponseTemplate::new(401).set_body_string("refresh token expired"))
        .mount(&server)
        .await;
    let clock = clock();
    let manager = TokenManager::builder(source(&server))
        .clock(clock.clone())
        .build()
        .unwrap();
    manager.token().await.unwrap();
    clock.advance(Duration::from_secs(900));
    manager.token().await.unwrap();
    let stats = manager.stats();
    assert_eq!((stats.fetches, stats.refreshes, stats.failures), (2, 1, 0));
}

#[tokio::test]
async fn a_login_response_without_the_token_is_a_typed_error() {
    let _h = harness();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/login"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"ok": false})))
        .mount(&server)
        .await;
    let error = TokenManager::builder(source(&server))
        .build()
        .unwrap()
        .token()
        .await
        .unwrap_err();
    assert_eq!(
        error.last_attempt().unwrap().kind(),
        ErrorKind::InvalidResponse
    );
    assert!(error.to_string().contains("auth-access-token"), "{error}");
    assert_clean("error", &format!("{error:?}"));
}

/// A login API whose error page echoes the request: the error quotes the page
/// without the password (as sent, or escaped inside JSON).
#[tokio::test]
async fn an_error_page_echoing_the_login_quotes_no_password() {
    let _h = harness();
    struct Echo;
    impl wiremock::Respond for Echo {
        fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
            let echoed = String::from_utf8_lossy(&request.body).into_owned();
            wiremock::ResponseTemplate::new(422).set_body_string(format!("invalid input: {echoed}"))
        }
    }
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Echo)
        .mount(&server)
        .await;
    let source = tokenwarden::source::login::LoginSource::builder("api")
        .login_url(format!("{}/login", server.uri()))
        .credentials_json(
            serde_json::json!({"email": "me@example.com", "password": format!("p\"w {MARKER}")}),
        )
        .build()
        .unwrap();
    let error = tokenwarden::TokenSource::fetch(&source).await.unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(!text.contains(MARKER), "the password quoted back: {text}");
    assert!(text.contains("[redacted]"), "{text}");
}
