//! What a server's two metadata documents add up to, and the answers that say
//! "try again" (429, 5xx) at every endpoint whose request spends nothing (issue
//! 15): retried as the messages promise, then a transient error.

use crate::common::*;
use std::time::Duration;
use tokenwarden::source::login::{Field, LoginSource};
use tokenwarden::source::oauth2::{OAuth2Client, RetryPolicy};
use tokenwarden::{TokenManager, TokenSource};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Mounts `body` (JSON) at `GET route`.
async fn serve(server: &MockServer, route: &str, body: serde_json::Value) {
    Mock::given(method("GET"))
        .and(path(route))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

/// Answers `POST`/`GET` at `route` with `status` `failures` times, then with `then`.
async fn failing_then(
    server: &MockServer,
    verb: &str,
    route: &str,
    status: u16,
    failures: u64,
    then: ResponseTemplate,
) {
    Mock::given(method(verb))
        .and(path(route))
        .respond_with(ResponseTemplate::new(status).set_body_string("<h1>Bad gateway</h1>"))
        .up_to_n_times(failures)
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method(verb))
        .and(path(route))
        .respond_with(then)
        .with_priority(2)
        .mount(server)
        .await;
}

async fn requests_to(server: &MockServer, route: &str) -> usize {
    let requests = server.received_requests().await.unwrap_or_default();
    requests.iter().filter(|r| r.url.path() == route).count()
}

fn client(server: &MockServer) -> OAuth2Client {
    let mut retry = RetryPolicy::default();
    retry.initial_delay = Duration::from_millis(10);
    OAuth2Client::builder()
        .issuer(server.uri())
        .client_id("app")
        .retry(retry)
        .build()
        .unwrap()
}

fn openid(issuer: &str) -> serde_json::Value {
    serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/token"),
        "authorization_endpoint": format!("{issuer}/authorize"),
    })
}

/// The OpenID document has no revocation endpoint; the RFC 8414 one has: logout
/// revokes there. The OpenID document's endpoints win where both name one.
#[tokio::test]
async fn endpoints_missing_from_the_openid_document_come_from_rfc_8414() {
    let _h = harness();
    let server = MockServer::start().await;
    let issuer = server.uri();
    serve(
        &server,
        "/.well-known/openid-configuration",
        openid(&issuer),
    )
    .await;
    serve(
        &server,
        "/.well-known/oauth-authorization-server",
        serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/other-token"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "device_authorization_endpoint": format!("{issuer}/device"),
        }),
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": format!("{MARKER}-at"), "token_type": "Bearer", "expires_in": 600,
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let client = client(&server);
    let revoke = client.revocation_url().await.unwrap().unwrap();
    assert_eq!(revoke.as_str(), format!("{issuer}/revoke"));
    let metadata = client.metadata().await.unwrap().unwrap();
    assert_eq!(
        metadata.token_endpoint.as_str(),
        format!("{issuer}/token"),
        "the OpenID document's"
    );
    assert!(metadata.device_authorization_endpoint.is_some());

    let manager = TokenManager::builder(client.client_credentials())
        .store_recheck(None)
        .build()
        .unwrap();
    manager.token().await.unwrap();
    manager.logout().await.unwrap();
    assert_eq!(requests_to(&server, "/revoke").await, 1, "revoked");
}

/// An RFC 8414 document for another issuer, or one that is not metadata at all
/// (a web page), adds nothing, and breaks nothing.
#[tokio::test]
async fn an_rfc_8414_document_of_another_issuer_or_none_adds_nothing() {
    let _h = harness();
    for other in [
        Some(serde_json::json!({
            "issuer": "https://evil.example",
            "token_endpoint": "https://evil.example/token",
            "revocation_endpoint": "https://evil.example/revoke",
        })),
        None,
    ] {
        let server = MockServer::start().await;
        let issuer = server.uri();
        serve(
            &server,
            "/.well-known/openid-configuration",
            openid(&issuer),
        )
        .await;
        let oauth = Mock::given(method("GET")).and(path("/.well-known/oauth-authorization-server"));
        match other {
            Some(document) => {
                oauth
                    .respond_with(ResponseTemplate::new(200).set_body_json(document))
                    .mount(&server)
                    .await
            }
            None => {
                oauth
                    .respond_with(ResponseTemplate::new(200).set_body_string("<html>app</html>"))
                    .mount(&server)
                    .await
            }
        }
        let client = client(&server);
        assert_eq!(client.revocation_url().await.unwrap(), None);
        assert_eq!(
            client
                .metadata()
                .await
                .unwrap()
                .unwrap()
                .token_endpoint
                .as_str(),
            format!("{issuer}/token")
        );
    }
}

/// A device authorization endpoint answering 500 twice is asked a third time
/// (it used to count the 500 as an answer and stop); answering 500 every time,
/// it ends with a transient error after the policy's attempts.
#[tokio::test]
async fn device_authorization_5xx_is_retried() {
    let _h = harness();
    for (failures, works) in [(2, true), (10, false)] {
        let server = MockServer::start().await;
        let issuer = server.uri();
        let mut metadata = openid(&issuer);
        metadata["device_authorization_endpoint"] = format!("{issuer}/device").into();
        serve(&server, "/.well-known/openid-configuration", metadata).await;
        failing_then(
            &server,
            "POST",
            "/device",
            500,
            failures,
            ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "device_code": format!("{MARKER}-dc"),
                "user_code": "ABCD-EFGH",
                "verification_uri": format!("{issuer}/activate"),
                "expires_in": 600,
                "interval": 1,
            })),
        )
        .await;
        // Denied at once: the flow ends after the device authorization.
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(
                ResponseTemplate::new(400)
                    .set_body_json(serde_json::json!({"error": "access_denied"})),
            )
            .mount(&server)
            .await;
        let prompted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = prompted.clone();
        let error = client(&server)
            .device_code()
            .on_prompt(move |_| seen.store(true, std::sync::atomic::Ordering::SeqCst))
            .fetch()
            .await
            .unwrap_err();
        let prompted = prompted.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            requests_to(&server, "/device").await,
            3,
            "{failures} failures"
        );
        match works {
            true => {
                assert!(prompted, "the user was shown the code");
                assert_eq!(error.oauth_error().unwrap().error, "access_denied");
            }
            false => {
                assert!(!prompted);
                assert_eq!(error.status(), Some(500), "{error}");
                assert!(error.is_transient(), "{error}");
            }
        }
    }
}

/// Discovery, the issuer's keys and a login API answering 503 or 502 once are
/// asked again, and work.
#[tokio::test]
async fn discovery_and_login_apis_retry_5xx() {
    let _h = harness();
    let server = MockServer::start().await;
    let issuer = server.uri();
    failing_then(
        &server,
        "GET",
        "/.well-known/openid-configuration",
        503,
        1,
        ResponseTemplate::new(200).set_body_json(openid(&issuer)),
    )
    .await;
    let client = client(&server);
    assert!(client.metadata().await.unwrap().is_some());
    assert_eq!(
        requests_to(&server, "/.well-known/openid-configuration").await,
        2
    );

    failing_then(
        &server,
        "POST",
        "/login",
        502,
        1,
        ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({"token": format!("{MARKER}-at"), "expires": 900})),
    )
    .await;
    let login = LoginSource::builder("api")
        .login_url(format!("{issuer}/login"))
        .credentials_json(serde_json::json!({"user": "me", "password": format!("{MARKER}-pw")}))
        .access_token(Field::json("token"))
        .expires_in(Field::json("expires"))
        .build()
        .unwrap();
    let token = login.fetch().await.unwrap();
    assert_eq!(token.access_token.secret(), format!("{MARKER}-at"));
    assert_eq!(requests_to(&server, "/login").await, 2);
}

/// An issuer with a path has its RFC 8414 document at the host's root, which
/// another application on a shared host may answer: only endpoints under the
/// issuer (its origin and path) are taken from it.
#[tokio::test]
async fn only_endpoints_under_the_issuer_come_from_rfc_8414() {
    let _h = harness();
    let server = MockServer::start().await;
    let issuer = format!("{}/tenant", server.uri());
    serve(
        &server,
        "/tenant/.well-known/openid-configuration",
        openid(&issuer),
    )
    .await;
    serve(
        &server,
        "/.well-known/oauth-authorization-server/tenant",
        serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/token"),
            "revocation_endpoint": format!("{}/other-app/revoke", server.uri()),
            "device_authorization_endpoint": format!("{issuer}/device"),
        }),
    )
    .await;
    let client = OAuth2Client::builder()
        .issuer(&issuer)
        .client_id("app")
        .build()
        .unwrap();
    assert_eq!(
        client.revocation_url().await.unwrap(),
        None,
        "not under the issuer"
    );
    assert_eq!(
        client
            .device_authorization_url()
            .await
            .unwrap()
            .unwrap()
            .as_str(),
        format!("{issuer}/device")
    );
}

/// A login API's refresh spends its refresh token (the API may have rotated it
/// before its 502): it is never sent again, unlike the login, which spends
/// nothing.
#[tokio::test]
async fn a_login_apis_refresh_is_not_sent_again_after_a_5xx() {
    let _h = harness();
    let server = MockServer::start().await;
    let issuer = server.uri();
    failing_then(
        &server,
        "POST",
        "/refresh",
        502,
        1,
        ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"token": format!("{MARKER}-at2"), "refresh": format!("{MARKER}-rt2")}),
        ),
    )
    .await;
    let login = LoginSource::builder("api")
        .login_url(format!("{issuer}/login"))
        .refresh_url(format!("{issuer}/refresh"))
        .credentials_json(serde_json::json!({"user": "me", "password": format!("{MARKER}-pw")}))
        .access_token(Field::json("token"))
        .refresh_token(Field::json("refresh"))
        .build()
        .unwrap();
    let current = tokenwarden::Token::new(format!("{MARKER}-at1"))
        .with_refresh_token(format!("{MARKER}-rt1"));
    let error = login.refresh(&current).await.unwrap_err();
    assert_eq!(error.status(), Some(502), "{error}");
    assert_eq!(requests_to(&server, "/refresh").await, 1, "sent once");
}
