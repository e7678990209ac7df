//! OAuth2 sources end to end against a real authorization server (see `oidc.rs`),
//! through `TokenManager`.

use crate::browser;
use crate::common::*;
use crate::oidc;
use std::time::Duration;
use tokenwarden::source::oauth2::{ClientAuth, JwtSigner, OAuth2Client, SigningAlgorithm};
use tokenwarden::{ClientSecret, ErrorKind, TokenManager, TokenSource};

fn client(oidc: &oidc::Oidc, client_id: &str, auth: ClientAuth) -> OAuth2Client {
    OAuth2Client::builder()
        .issuer(&oidc.issuer)
        .client_id(client_id)
        .auth(auth)
        .build()
        .unwrap()
}

fn secret(client_id: &str) -> ClientSecret {
    ClientSecret::new(format!("{client_id}-{MARKER}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_with_each_client_authentication_method() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    let signer = |alg: &str, kind| JwtSigner::from_pem(oidc.keys[alg].as_bytes(), kind).unwrap();
    let clients = [
        client(
            oidc,
            "cc-basic",
            ClientAuth::SecretBasic(secret("cc-basic")),
        ),
        client(oidc, "cc-post", ClientAuth::SecretPost(secret("cc-post"))),
        client(
            oidc,
            "cc-jwt",
            ClientAuth::PrivateKeyJwt(signer("RS256", SigningAlgorithm::Rs256)),
        ),
        client(
            oidc,
            "cc-jwt",
            ClientAuth::PrivateKeyJwt(
                signer("ES256", SigningAlgorithm::Es256).with_key_id("ES256-key"),
            ),
        ),
        // The algorithm read from the key: EC P-384 and Ed25519 too.
        client(
            oidc,
            "cc-jwt",
            ClientAuth::PrivateKeyJwt(
                JwtSigner::from_pem_key(oidc.keys["ES384"].as_bytes()).unwrap(),
            ),
        ),
        client(
            oidc,
            "cc-jwt",
            ClientAuth::PrivateKeyJwt(
                JwtSigner::from_pem_key(oidc.keys["EdDSA"].as_bytes()).unwrap(),
            ),
        ),
    ];
    for (alg, kind) in [
        ("RS256", SigningAlgorithm::Rs256),
        ("ES256", SigningAlgorithm::Es256),
        ("ES384", SigningAlgorithm::Es384),
        ("EdDSA", SigningAlgorithm::EdDsa),
    ] {
        assert_eq!(
            SigningAlgorithm::of_pem(oidc.keys[alg].as_bytes()).unwrap(),
            kind
        );
    }
    // A key of another kind than the one named: an error that says what to use.
    let wrong = JwtSigner::from_pem(oidc.keys["ES256"].as_bytes(), SigningAlgorithm::Rs256);
    let wrong = wrong.unwrap_err().to_string();
    assert!(
        wrong.contains("EC P-256") && wrong.contains("use ES256"),
        "{wrong}"
    );
    assert!(
        !wrong.contains(oidc.keys["ES256"].lines().nth(1).unwrap()),
        "no key material"
    );
    for client in clients {
        let clock = clock();
        let manager = TokenManager::builder(client.client_credentials().scope("read"))
            .clock(clock.clone())
            .listener(watching())
            .build()
            .unwrap();
        let first = manager
            .token()
            .await
            .unwrap_or_else(|e| panic!("{client:?}: {e}"));
        assert_eq!(first.scope.as_deref(), Some("read"));
        assert_eq!(first.token_type, "Bearer");
        // The server's 5 s lifetime, read from expires_in, drives the manager.
        clock.advance(Duration::from_secs(5));
        let second = manager.token().await.unwrap();
        assert_ne!(
            first.fingerprint(),
            second.fingerprint(),
            "{client:?}: a new token after expiry"
        );
        assert_eq!(manager.stats().fetches, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_the_endpoints_and_the_key_names_everything() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    let client = client(
        oidc,
        "cc-basic",
        ClientAuth::SecretBasic(secret("cc-basic")),
    );
    let metadata = client.metadata().await.unwrap().expect("discovered");
    assert_eq!(metadata.issuer, oidc.issuer);
    assert_eq!(client.token_url().await.unwrap().as_str(), oidc.token_url());
    assert!(client.revocation_url().await.unwrap().is_some());
    assert!(client.device_authorization_url().await.unwrap().is_some());
    let read = client.client_credentials().scope("read").key();
    let write = client.client_credentials().scope("write").key();
    assert_ne!(read, write, "another scope, another token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_at_the_server() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    let client = client(oidc, "cc-post", ClientAuth::SecretPost(secret("cc-post")));
    let manager = TokenManager::builder(client.client_credentials().scope("read"))
        .listener(watching())
        .build()
        .unwrap();
    let token = manager.token().await.unwrap().to_token();
    assert!(
        introspect(oidc, token.access_token.secret()).await,
        "active before logout"
    );
    manager.logout().await.unwrap();
    assert!(
        !introspect(oidc, token.access_token.secret()).await,
        "revoked by logout"
    );
}

/// Asks the server (RFC 7662) whether `token` is active.
async fn introspect(oidc: &oidc::Oidc, token: &str) -> bool {
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/token/introspection", oidc.issuer))
        .basic_auth("cc-basic", Some(format!("cc-basic-{MARKER}")))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    response["active"].as_bool().unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_typed() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    let wrong_secret = client(
        oidc,
        "cc-basic",
        ClientAuth::SecretBasic(ClientSecret::new(format!("{MARKER}-wrong"))),
    );
    let error = wrong_secret.client_credentials().fetch().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::OAuth);
    assert_eq!(error.oauth_error().unwrap().error, "invalid_client");
    assert!(!error.is_transient());
    assert!(
        error
            .to_string()
            .contains("check the client id, secret or key"),
        "{error}"
    );
    assert_clean("error", &format!("{error} {error:?}"));

    let right = client(
        oidc,
        "cc-basic",
        ClientAuth::SecretBasic(secret("cc-basic")),
    );
    let error = right
        .client_credentials()
        .scope("offline_access")
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(error.oauth_error().unwrap().error, "invalid_scope");

    // Through a manager: the error names the source and the cause.
    let manager = TokenManager::builder(wrong_secret.client_credentials())
        .listener(watching())
        .build()
        .unwrap();
    let error = manager.token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoValidToken);
    assert_eq!(error.oauth_error().unwrap().error, "invalid_client");
    assert!(error.to_string().contains("`cc-basic`"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_remote_host_is_refused() {
    let _h = harness();
    let error = OAuth2Client::builder()
        .token_url("http://auth.example.com/token")
        .client_id("svc")
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("must use https"), "{error}");
}

/// The `app` client, a device-code source for it that reports its prompt, and a
/// task that approves the prompt in the headless browser.
fn device_login(oidc: &oidc::Oidc) -> (OAuth2Client, tokenwarden::source::oauth2::DeviceCode) {
    let client = client(oidc, "app", ClientAuth::SecretBasic(secret("app")));
    let source = client
        .device_code()
        .scope("openid offline_access read")
        .on_prompt(|prompt| {
            let page = prompt
                .verification_uri_complete
                .clone()
                .expect("oidc-provider gives it");
            tokio::spawn(async move { browser::approve(&page).await });
        });
    (client, source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_login_then_twenty_rotations_with_concurrent_callers() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    let (client, source) = device_login(oidc);
    let clock = clock();
    let manager = TokenManager::builder(source)
        .clock(clock.clone())
        .store(tokenwarden::store::MemoryStore::new())
        // One manager on its store: its logout has no copies elsewhere to wait for.
        .store_recheck(None)
        .listener(watching())
        .build()
        .unwrap();
    let first = manager
        .token()
        .await
        .expect("approved in the headless browser")
        .to_token();
    assert!(first
        .scope
        .as_deref()
        .unwrap_or_default()
        .contains("offline_access"));
    assert!(first.id_token.is_some());
    let mut refresh_tokens = vec![first
        .refresh_token
        .clone()
        .expect("a refresh token")
        .secret()
        .to_owned()];

    for round in 1..=20 {
        clock.advance(Duration::from_secs(5)); // the server's access token lifetime
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let manager = manager.clone();
                tokio::spawn(async move { manager.token().await.map(|t| t.to_token()) })
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut latest = None;
        for caller in callers {
            let token = caller
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            seen.insert(token.fingerprint());
            latest = Some(token);
        }
        assert_eq!(seen.len(), 1, "round {round}: one refresh for ten callers");
        let rotated = latest
            .unwrap()
            .refresh_token
            .expect("kept")
            .secret()
            .to_owned();
        assert!(
            !refresh_tokens.contains(&rotated),
            "round {round}: the server rotated it"
        );
        refresh_tokens.push(rotated);
    }
    let stats = manager.stats();
    assert_eq!((stats.fetches, stats.refreshes, stats.failures), (1, 20, 0));

    // A spent refresh token is refused by the server, with a typed error.
    let spent = client.refresh_token(refresh_tokens[0].clone());
    let error = spent.fetch().await.unwrap_err();
    assert!(error.is_invalid_grant(), "{error}");

    // So is a revoked one, through a manager: the error names the cause.
    let live = refresh_tokens.last().unwrap().clone();
    manager.logout().await.unwrap(); // revokes at the server
    let after_logout = TokenManager::builder(client.refresh_token(live))
        .listener(watching())
        .build()
        .unwrap();
    let error = after_logout.token().await.unwrap_err();
    assert!(error.is_invalid_grant(), "{error}");
    assert_clean("error", &format!("{error} {error:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_with_pkce_signed_in_headlessly() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    let client = client(oidc, "cli", ClientAuth::None);
    let opened = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = opened.clone();
    let source = client
        .authorization_code()
        .scope("openid offline_access read")
        .auth_param("prompt", "consent")
        .on_open(move |url| {
            *seen.lock().unwrap() = Some(url.clone());
            let page = url.to_string();
            tokio::spawn(async move { browser::approve(&page).await });
        });
    let manager = TokenManager::builder(source)
        .listener(watching())
        .build()
        .unwrap();
    let token = manager
        .token()
        .await
        .expect("signed in through the browser pages");
    assert!(token.refresh_token.is_some() && token.id_token.is_some());
    let url = opened
        .lock()
        .unwrap()
        .clone()
        .expect("the browser was opened");
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert!(query["redirect_uri"].starts_with("http://127.0.0.1:"));
    // And it refreshes like any other.
    let refreshed = manager.force_refresh().await.unwrap();
    assert_ne!(refreshed.fingerprint(), token.fingerprint());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_redirect_is_refused_and_the_real_one_still_awaited() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    let client = client(oidc, "cli", ClientAuth::None);
    let forged_status = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = forged_status.clone();
    let source = client
        .authorization_code()
        .scope("openid")
        .on_open(move |url| {
            // Someone on this machine hits our listener first, with another state...
            let redirect: String = url
                .query_pairs()
                .find(|(k, _)| k == "redirect_uri")
                .map(|(_, v)| v.into_owned())
                .unwrap();
            let (page, seen) = (url.to_string(), seen.clone());
            tokio::spawn(async move {
                let forged = reqwest::get(format!("{redirect}?code=stolen&state=forged"))
                    .await
                    .unwrap();
                *seen.lock().unwrap() = Some(forged.status().as_u16());
                // ...then the user signs in for real.
                browser::approve(&page).await;
            });
        });
    source.fetch().await.expect("the real sign-in completes");
    assert_eq!(*forged_status.lock().unwrap(), Some(400));
}
