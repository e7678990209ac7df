//! Against a hostile authorization server (issue 14; RFC 9700): a small server of
//! the test's own (wiremock) that plays the attacker, with the browser driven by
//! hand. Each attack gets nothing: no code, assertion or secret reaches a server
//! it was not meant for.

use crate::common::*;
use base64::Engine as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenwarden::source::oauth2::{ClientAuth, JwtSigner, OAuth2Client};
use tokenwarden::{ErrorKind, TokenSource};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A server whose discovery names itself `A` (its own URL), advertises RFC 9207,
/// and whose token endpoint records what reaches it.
async fn attacker() -> MockServer {
    let server = MockServer::start().await;
    let issuer = server.uri();
    let metadata = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "authorization_response_iss_parameter_supported": true,
    });
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(metadata))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "invalid_grant"})),
        )
        .mount(&server)
        .await;
    server
}

/// How many requests reached `server`'s token endpoint.
async fn token_requests(server: &MockServer) -> usize {
    let requests = server.received_requests().await.unwrap_or_default();
    requests.iter().filter(|r| r.url.path() == "/token").count()
}

/// Signs in through `server`'s client, answering the browser's redirect by hand
/// with a code and the `iss` given (`None`: left out), while another local
/// connection sits idle on the listener; the page the browser was shown.
async fn sign_in_answered_with(
    server: &MockServer,
    iss: Option<String>,
) -> (tokenwarden::Result<tokenwarden::Token>, String) {
    let client = OAuth2Client::builder()
        .issuer(server.uri())
        .client_id("cli")
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let answered = Arc::new(Mutex::new(None));
    let source = client
        .authorization_code()
        // Shorter than one connection's read timeout (2 s): were the idle
        // connection served before the others, the login would time out.
        .login_timeout(Duration::from_secs(1))
        .on_open({
            let answered = answered.clone();
            move |url| {
                let find = |key: &str| query_param(url, key);
                let mut callback = url::Url::parse(&find("redirect_uri")).unwrap();
                callback
                    .query_pairs_mut()
                    .append_pair("code", &format!("{MARKER}-code"))
                    .append_pair("state", &find("state"));
                if let Some(iss) = &iss {
                    callback.query_pairs_mut().append_pair("iss", iss);
                }
                // An idle connection (a browser's preconnect), then the browser
                // coming back from the sign-in.
                *answered.lock().unwrap() = Some(tokio::spawn(async move {
                    let port = callback.port().unwrap();
                    let idle = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .unwrap();
                    let page = reqwest::get(callback).await.unwrap().text().await.unwrap();
                    drop(idle);
                    page
                }));
            }
        });
    let outcome = source.fetch().await;
    let browser = answered
        .lock()
        .unwrap()
        .take()
        .expect("the browser was sent");
    (outcome, browser.await.unwrap())
}

/// The mix-up attack (RFC 9700 §4.4): the login was started with server A, whose
/// authorization endpoint bounced the browser to an honest server H; H's answer
/// comes back naming H. The code is refused, never sent to A's token endpoint.
#[tokio::test]
async fn a_sign_in_answer_from_another_issuer_is_refused() {
    let _h = harness();
    let a = attacker().await;
    let (outcome, page) = sign_in_answered_with(&a, Some("https://honest.example".into())).await;
    let error = outcome.unwrap_err();
    assert!(page.contains("Sign-in failed"), "{page}");
    assert_eq!(error.kind(), ErrorKind::InvalidResponse, "{error}");
    let said = error.to_string();
    assert!(
        said.contains("mix-up") && said.contains("https://honest.example"),
        "{said}"
    );
    assert!(!said.contains(MARKER), "{said}");
    assert_eq!(
        token_requests(&a).await,
        0,
        "the code never reached A's token endpoint"
    );

    // A server that advertises RFC 9207 and leaves `iss` out: refused too.
    let error = sign_in_answered_with(&a, None).await.0.unwrap_err();
    assert!(error.to_string().contains("RFC 9207"), "{error}");
    assert_eq!(token_requests(&a).await, 0);

    // Its own name: the code goes to its token endpoint, which refuses it; the
    // browser is told so only then (not "signed in" before the exchange), and the
    // idle connection held nothing up.
    let own = a.uri();
    let (outcome, page) = sign_in_answered_with(&a, Some(own)).await;
    let error = outcome.unwrap_err();
    assert!(error.is_invalid_grant(), "{error}");
    assert!(page.contains("Sign-in failed"), "{page}");
    assert_eq!(token_requests(&a).await, 1);
}

/// The claims of the client assertion in a recorded form body.
fn assertion_claims(body: &[u8]) -> serde_json::Value {
    let assertion = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "client_assertion")
        .map(|(_, v)| v.into_owned())
        .expect("a client assertion");
    let payload = assertion.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

/// A hostile discovery document names another server's token endpoint (H's):
/// the assertions H receives are addressed to the hostile issuer, so H (which
/// checks that `aud` names it) can use none of them; and each request's
/// assertion is a new one.
#[tokio::test]
async fn a_client_assertion_is_addressed_to_the_issuer_it_was_made_for() {
    let _h = harness();
    let honest = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(serde_json::json!({"error": "invalid_client"})),
        )
        .mount(&honest)
        .await;
    let hostile = MockServer::start().await;
    let issuer = hostile.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{}/token", honest.uri()),
        })))
        .mount(&hostile)
        .await;
    let signer = JwtSigner::from_pem_key(ed25519_pem(&random_seed()).as_bytes()).unwrap();
    let client = OAuth2Client::builder()
        .issuer(&issuer)
        .client_id("svc")
        .auth(ClientAuth::PrivateKeyJwt(signer))
        .build()
        .unwrap();
    for _ in 0..2 {
        assert!(client.client_credentials().fetch().await.is_err());
    }
    let received = honest.received_requests().await.unwrap();
    assert_eq!(received.len(), 2);
    let claims: Vec<_> = received.iter().map(|r| assertion_claims(&r.body)).collect();
    for claim in &claims {
        assert_eq!(
            claim["aud"], issuer,
            "addressed to the issuer it was made for, not H's endpoint"
        );
    }
    assert_ne!(
        claims[0]["jti"], claims[1]["jti"],
        "a new assertion per request"
    );

    // Addressed to the endpoint (for servers that require it): then no assertion
    // goes to an endpoint off the issuer's origin at all.
    let signer = JwtSigner::from_pem_key(ed25519_pem(&random_seed()).as_bytes()).unwrap();
    let client = OAuth2Client::builder()
        .issuer(&issuer)
        .client_id("svc")
        .auth(ClientAuth::PrivateKeyJwt(signer))
        .assertion_audience(tokenwarden::source::oauth2::AssertionAudience::Endpoint)
        .build()
        .unwrap();
    let error = client.client_credentials().fetch().await.unwrap_err();
    assert!(
        error.to_string().contains("not on the issuer's origin"),
        "{error}"
    );
    let reached = honest.received_requests().await.unwrap().len();
    assert_eq!(reached, 2, "nothing more reached H");
}

/// A server's strings reach the user's terminal without control characters:
/// the device prompt and an error's description with escape sequences (that
/// would retitle the terminal, clear it, or colour it) and a bidi override.
#[tokio::test]
async fn a_servers_strings_reach_the_terminal_without_escape_sequences() {
    let _h = harness();
    let server = MockServer::start().await;
    let nasty = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}";
    Mock::given(method("POST"))
        .and(path("/device"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "device_code": "dc",
            "user_code": format!("{nasty}ABCD-EFGH"),
            "verification_uri": format!("https://example.com/device{nasty}"),
            "verification_uri_complete": format!("https://example.com/device?code=ABCD{nasty}"),
            "expires_in": 60,
            "interval": 1,
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": format!("access_denied{nasty}"),
            "error_description": format!("{nasty}\u{1b}[31mdenied"),
        })))
        .mount(&server)
        .await;
    let client = OAuth2Client::builder()
        .token_url(format!("{}/token", server.uri()))
        .device_authorization_url(format!("{}/device", server.uri()))
        .client_id("cli")
        .build()
        .unwrap();
    let shown = Arc::new(Mutex::new(Vec::new()));
    let source = client.device_code().on_prompt({
        let shown = shown.clone();
        move |prompt| {
            let mut shown = shown.lock().unwrap();
            shown.push(prompt.user_code.clone());
            shown.push(prompt.verification_uri.clone());
            shown.extend(prompt.verification_uri_complete.clone());
        }
    });
    let error = source.fetch().await.unwrap_err();
    let mut texts = shown.lock().unwrap().clone();
    assert_eq!(
        texts[0], "]0;pwned[2JABCD-EFGH",
        "what is left is plain text"
    );
    texts.push(error.to_string());
    texts.push(format!("{error:?}"));
    for text in texts {
        assert!(
            !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "a control character reaches the terminal: {text:?}"
        );
    }
}

/// A server (or a proxy in front of it) whose error page echoes the request:
/// the error names the status and quotes the page, but never a value the
/// request carried (the client secret, the password), as sent or form-encoded.
#[tokio::test]
async fn an_error_page_that_echoes_the_request_quotes_no_secret() {
    let _h = harness();
    struct Echo(u16, bool);
    impl wiremock::Respond for Echo {
        fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
            let echoed = String::from_utf8_lossy(&request.body).into_owned();
            match self.1 {
                // A JSON error whose description repeats the request.
                true => ResponseTemplate::new(self.0).set_body_json(serde_json::json!({
                    "error": "invalid_request",
                    "error_description": format!("could not parse {echoed}"),
                })),
                false => ResponseTemplate::new(self.0)
                    .set_body_string(format!("<pre>bad request: {echoed}</pre>")),
            }
        }
    }
    for (status, json) in [(400, true), (502, false)] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(Echo(status, json))
            .mount(&server)
            .await;
        let client = OAuth2Client::builder()
            .token_url(format!("{}/token", server.uri()))
            .client_id("svc")
            .auth(ClientAuth::SecretPost(tokenwarden::ClientSecret::new(
                format!("cs {MARKER}"),
            )))
            .retry(tokenwarden::source::oauth2::RetryPolicy::none())
            .build()
            .unwrap();
        let error = client
            .password("alice", format!("hunter2/{MARKER}"))
            .fetch()
            .await
            .unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(!text.contains(MARKER), "a secret quoted back: {text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("[redacted]"),
            "the echo is quoted, redacted: {text}"
        );
    }
}

/// The device flow waits at least the server's interval, however long (here
/// 90 s), and a `slow_down` sent with HTTP 429 is not retried sooner by the
/// request's own retries: the next poll comes 5 s later than the interval.
#[tokio::test]
async fn device_polling_keeps_to_the_servers_interval() {
    let _h = harness();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/device"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "device_code": "dc",
            "user_code": "ABCD",
            "verification_uri": "https://example.com/device",
            "expires_in": 600,
            "interval": 90,
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(429).set_body_json(serde_json::json!({"error": "slow_down"})),
        )
        .mount(&server)
        .await;
    let clock = clock();
    let client = OAuth2Client::builder()
        .token_url(format!("{}/token", server.uri()))
        .device_authorization_url(format!("{}/device", server.uri()))
        .client_id("cli")
        .clock(clock.clone())
        .build()
        .unwrap();
    let polling = tokio::spawn(async move { client.device_code().on_prompt(|_| {}).fetch().await });
    let settle = || tokio::time::sleep(Duration::from_millis(10));
    // The device code first: the poll's wait starts from its answer.
    tokio::time::timeout(Duration::from_secs(10), async {
        while server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
        {
            settle().await;
        }
    })
    .await
    .expect("the device code was asked for");
    assert!(
        advance_until(&server, &clock, 1).await >= 90,
        "not before the server's 90 s"
    );
    // slow_down (with 429): the next poll is 95 s later, not a quick retry.
    assert!(
        advance_until(&server, &clock, 2).await >= 95,
        "not within the 95 s after slow_down"
    );
    polling.abort();
}

/// Moves `clock` on a second at a time until `count` polls reached `server`;
/// how many seconds that took (a slow machine only adds seconds: the waits
/// checked are lower bounds).
async fn advance_until(server: &MockServer, clock: &tokenwarden::ManualClock, count: usize) -> u64 {
    for seconds in 0..1_000u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if token_requests(server).await >= count {
            return seconds;
        }
        clock.advance(Duration::from_secs(1));
    }
    panic!("no poll {count} within 1,000 s of the clock");
}

/// A server answering the token endpoint with `granted` as the scope (`None`:
/// no `scope` field), and a revocation endpoint; its token URL.
async fn granting(granted: Option<&str>) -> MockServer {
    let server = MockServer::start().await;
    let mut body = serde_json::json!({
        "access_token": format!("{MARKER}-at"),
        "refresh_token": format!("{MARKER}-rt"),
        "token_type": "Bearer",
        "expires_in": 600,
    });
    if let Some(granted) = granted {
        body["scope"] = granted.into();
    }
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

fn client_of(server: &MockServer, accept_narrower: bool) -> OAuth2Client {
    OAuth2Client::builder()
        .token_url(format!("{}/token", server.uri()))
        .revocation_url(format!("{}/revoke", server.uri()))
        .client_id("svc")
        .accept_narrower_scope(accept_narrower)
        .build()
        .unwrap()
}

/// The granted scope is kept with the token (the one asked for where the
/// server said none, RFC 6749 §5.1), and shows in `info()`/`status`.
#[tokio::test]
async fn the_granted_scope_is_kept_with_the_token() {
    let _h = harness();
    for (granted, kept) in [
        (Some("write read admin"), "write read admin"),
        (None, "read write"),
        // GitHub's commas.
        (Some("read,write"), "read write"),
    ] {
        let server = granting(granted).await;
        let fetched = client_of(&server, false)
            .client_credentials()
            .scope("read write")
            .fetch()
            .await;
        assert_eq!(fetched.unwrap().scope.as_deref(), Some(kept));
    }
}

/// A new token granted less than was asked for is refused, typed
/// (`invalid_scope`, no HTTP status: our refusal, not the server's), dropped
/// (not revoked), and never stored or served; with `accept_narrower_scope` it is
/// kept as granted.
#[tokio::test]
async fn a_new_token_with_less_scope_than_asked_is_not_served() {
    let _h = harness();
    let server = granting(Some("read")).await;
    let store = tokenwarden::store::MemoryStore::new();
    let manager = tokenwarden::TokenManager::builder(
        client_of(&server, false)
            .client_credentials()
            .scope("read write"),
    )
    .store(store.clone())
    .build()
    .unwrap();
    let error = manager.token().await.unwrap_err();
    let cause = error.last_attempt().unwrap_or(&error);
    assert_eq!(cause.kind(), ErrorKind::OAuth);
    assert_eq!(cause.status(), None);
    let oauth = cause.oauth_error().unwrap();
    assert_eq!(oauth.error, "invalid_scope");
    let description = oauth.error_description.as_deref().unwrap();
    assert!(
        description.contains("`read`") && description.contains("`write`"),
        "{description}"
    );
    assert!(
        description.contains("accept_narrower_scope"),
        "{description}"
    );
    let revoked = server.received_requests().await.unwrap();
    assert_eq!(
        revoked.iter().filter(|r| r.url.path() == "/revoke").count(),
        0,
        "dropped, not revoked: a server may revoke the whole grant with it"
    );
    assert!(tokenwarden::TokenStore::load(&store, manager.key())
        .await
        .unwrap()
        .is_none());
    assert_clean("the error", &format!("{error} {error:?}"));

    let accepting = client_of(&server, true)
        .client_credentials()
        .scope("read write")
        .fetch()
        .await
        .unwrap();
    assert_eq!(accepting.scope.as_deref(), Some("read"));
}

/// A refresh answered with less scope is kept (its refresh token may have
/// rotated, and the old one is spent): the exception, logged.
#[tokio::test]
async fn a_refreshed_token_with_less_scope_is_kept() {
    let _h = harness();
    let server = granting(Some("read")).await;
    let grant = client_of(&server, false)
        .client_credentials()
        .scope("read write");
    let current = tokenwarden::Token::new("old")
        .with_refresh_token("old-rt")
        .with_scope("read write");
    let refreshed = grant.refresh(&current).await.unwrap();
    assert_eq!(refreshed.scope.as_deref(), Some("read"));
    assert_eq!(
        refreshed.refresh_token.unwrap().secret(),
        format!("{MARKER}-rt")
    );
}
