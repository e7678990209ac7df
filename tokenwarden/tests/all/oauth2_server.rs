//! OAuth2 sources end to end against real authorization servers (see
//! `servers.rs`: every scenario runs on each server that supports what it needs),
//! through `TokenManager`.

use crate::browser;
use crate::common::*;
use crate::servers::{self, Server};
use std::time::Duration;
use tokenwarden::source::oauth2::{ClientAuth, JwtSigner, OAuth2Client, SigningAlgorithm};
use tokenwarden::{ClientSecret, ErrorKind, TokenManager, TokenSource};

fn client(server: &Server, client_id: &str, auth: ClientAuth) -> OAuth2Client {
    let mut builder = OAuth2Client::builder()
        .issuer(&server.issuer)
        .client_id(client_id)
        .auth(auth);
    if let Some(url) = &server.device_authorization_url {
        builder = builder.device_authorization_url(url);
    }
    builder.build().unwrap()
}

/// The server's user approves `page` in the headless browser, in a task.
fn approve(server: &'static Server, page: String) {
    let (login, password) = &server.user;
    tokio::spawn(
        async move { browser::approve_as(&page, (login.as_str(), password.as_str())).await },
    );
}

fn secret(client_id: &str) -> ClientSecret {
    ClientSecret::new(format!("{client_id}-{MARKER}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_with_each_client_authentication_method() {
    let _h = harness();
    for server in servers::all() {
        let mut clients = vec![
            client(
                server,
                "cc-basic",
                ClientAuth::SecretBasic(secret("cc-basic")),
            ),
            client(server, "cc-post", ClientAuth::SecretPost(secret("cc-post"))),
        ];
        if server.supports.private_key_jwt {
            clients.extend(jwt_clients(server));
        }
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
                .unwrap_or_else(|e| panic!("{}: {client:?}: {e}", server.name));
            assert_eq!(first.scope.as_deref(), Some("read"), "{}", server.name);
            assert_eq!(first.token_type, "Bearer", "{}", server.name);
            // The server's 5 s lifetime, read from expires_in, drives the manager.
            clock.advance(Duration::from_secs(5));
            let second = manager.token().await.unwrap();
            assert_ne!(
                first.fingerprint(),
                second.fingerprint(),
                "{}: {client:?}: a new token after expiry",
                server.name
            );
            assert_eq!(manager.stats().fetches, 2);
        }
    }
}

/// The `cc-jwt` client with each of the server's keys (the algorithm named, or
/// read from the key), after checking what is read from each key.
fn jwt_clients(server: &Server) -> Vec<OAuth2Client> {
    let keys = &server.keys;
    let signer = |alg: &str, kind| JwtSigner::from_pem(keys[alg].as_bytes(), kind).unwrap();
    for (alg, kind) in [
        ("RS256", SigningAlgorithm::Rs256),
        ("ES256", SigningAlgorithm::Es256),
        ("ES384", SigningAlgorithm::Es384),
        ("EdDSA", SigningAlgorithm::EdDsa),
    ] {
        assert_eq!(
            SigningAlgorithm::of_pem(keys[alg].as_bytes()).unwrap(),
            kind
        );
    }
    // A key of another kind than the one named: an error that says what to use.
    let wrong = JwtSigner::from_pem(keys["ES256"].as_bytes(), SigningAlgorithm::Rs256);
    let wrong = wrong.unwrap_err().to_string();
    assert!(
        wrong.contains("EC P-256") && wrong.contains("use ES256"),
        "{wrong}"
    );
    assert!(
        !wrong.contains(keys["ES256"].lines().nth(1).unwrap()),
        "no key material"
    );
    let jwt = |signer| client(server, "cc-jwt", ClientAuth::PrivateKeyJwt(signer));
    vec![
        jwt(signer("RS256", SigningAlgorithm::Rs256)),
        jwt(signer("ES256", SigningAlgorithm::Es256).with_key_id("ES256-key")),
        // The algorithm read from the key: EC P-384 and Ed25519 too.
        jwt(JwtSigner::from_pem_key(keys["ES384"].as_bytes()).unwrap()),
        jwt(JwtSigner::from_pem_key(keys["EdDSA"].as_bytes()).unwrap()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_the_endpoints_and_the_key_names_everything() {
    let _h = harness();
    for server in servers::all() {
        let client = client(
            server,
            "cc-basic",
            ClientAuth::SecretBasic(secret("cc-basic")),
        );
        let name = server.name;
        let metadata = client.metadata().await.unwrap().expect("discovered");
        assert_eq!(metadata.issuer, server.issuer, "{name}");
        let token_url = client.token_url().await.unwrap();
        assert_eq!(token_url.as_str(), server.token_url, "{name}");
        // From the OpenID document, or the RFC 8414 one where only that names it.
        assert!(client.revocation_url().await.unwrap().is_some(), "{name}");
        assert_eq!(
            client.device_authorization_url().await.unwrap().is_some(),
            server.supports.device,
            "{name}"
        );
        let read = client.client_credentials().scope("read").key();
        let write = client.client_credentials().scope("write").key();
        assert_ne!(read, write, "another scope, another token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_at_the_server() {
    let _h = harness();
    for server in servers::all() {
        let client = client(server, "cc-post", ClientAuth::SecretPost(secret("cc-post")));
        let manager = TokenManager::builder(client.client_credentials().scope("read"))
            .listener(watching())
            .store_recheck(None)
            .build()
            .unwrap();
        let token = manager.token().await.unwrap().to_token();
        let name = server.name;
        assert!(
            introspect(server, token.access_token.secret()).await,
            "{name}: active before logout"
        );
        manager.logout().await.unwrap();
        assert!(
            !introspect(server, token.access_token.secret()).await,
            "{name}: revoked by logout"
        );
    }
}

/// Asks the server (RFC 7662) whether `token` is active.
async fn introspect(server: &Server, token: &str) -> bool {
    let response: serde_json::Value = reqwest::Client::new()
        .post(&server.introspection_url)
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
    for server in servers::all() {
        let name = server.name;
        let wrong_secret = client(
            server,
            "cc-basic",
            ClientAuth::SecretBasic(ClientSecret::new(format!("{MARKER}-wrong"))),
        );
        let error = wrong_secret.client_credentials().fetch().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::OAuth, "{name}: {error}");
        assert_eq!(
            error.oauth_error().unwrap().error,
            "invalid_client",
            "{name}"
        );
        assert!(!error.is_transient());
        assert!(
            error
                .to_string()
                .contains("check the client id, secret or key"),
            "{name}: {error}"
        );
        assert_clean("error", &format!("{error} {error:?}"));

        let right = client(
            server,
            "cc-basic",
            ClientAuth::SecretBasic(secret("cc-basic")),
        );
        let error = right
            .client_credentials()
            .scope(server.refused_scope)
            .fetch()
            .await
            .unwrap_err();
        assert_eq!(
            error.oauth_error().unwrap().error,
            "invalid_scope",
            "{name}"
        );

        // Through a manager: the error names the source and the cause.
        let manager = TokenManager::builder(wrong_secret.client_credentials())
            .listener(watching())
            .build()
            .unwrap();
        let error = manager.token().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NoValidToken);
        assert_eq!(error.oauth_error().unwrap().error, "invalid_client");
        assert!(error.to_string().contains("`cc-basic`"), "{name}: {error}");
    }
}

/// The password grant (where a server still offers it): a token for the user,
/// with a refresh token that refreshes; a wrong password is `invalid_grant`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_grant_signs_in_and_refreshes() {
    let _h = harness();
    for server in servers::supporting(|s| s.password) {
        let name = server.name;
        let client = client(server, "pw", ClientAuth::SecretBasic(secret("pw")));
        let (login, password) = &server.user;
        let manager = TokenManager::builder(
            client
                .password(login.clone(), password.clone())
                .scope("read"),
        )
        .listener(watching())
        .build()
        .unwrap();
        let first = manager
            .token()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(first.refresh_token.is_some(), "{name}");
        let refreshed = manager.force_refresh().await.unwrap();
        assert_ne!(refreshed.fingerprint(), first.fingerprint(), "{name}");
        let wrong = client
            .password(login.clone(), format!("{MARKER}-wrong"))
            .scope("read")
            .fetch()
            .await
            .unwrap_err();
        assert!(wrong.is_invalid_grant(), "{name}: {wrong}");
        assert_clean("error", &format!("{wrong} {wrong:?}"));
    }
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
fn device_login(
    server: &'static Server,
) -> (OAuth2Client, tokenwarden::source::oauth2::DeviceCode) {
    let (id, confidential) = server.device_client;
    let auth = match confidential {
        true => ClientAuth::SecretBasic(secret(id)),
        false => ClientAuth::None,
    };
    let client = client(server, id, auth);
    let source = client
        .device_code()
        .scope(server.sign_in_scope)
        .on_prompt(move |prompt| {
            let page = prompt.verification_uri_complete.clone().unwrap_or_else(|| {
                format!("{}?user_code={}", prompt.verification_uri, prompt.user_code)
            });
            approve(server, page);
        });
    (client, source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_login_then_twenty_rotations_with_concurrent_callers() {
    let _h = harness();
    for server in servers::supporting(|s| s.device && s.rotation) {
        device_login_then_rotations(server).await;
    }
}

async fn device_login_then_rotations(server: &'static Server) {
    let name = server.name;
    let (client, source) = device_login(server);
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
        .unwrap_or_else(|e| panic!("{name}: approved in the headless browser: {e}"))
        .to_token();
    assert_eq!(
        first.id_token.is_some(),
        server.supports.device_id_token,
        "{name}"
    );
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
                .unwrap_or_else(|e| panic!("{name}: round {round}: {e}"));
            seen.insert(token.fingerprint());
            latest = Some(token);
        }
        assert_eq!(
            seen.len(),
            1,
            "{name}: round {round}: one refresh for ten callers"
        );
        let rotated = latest
            .unwrap()
            .refresh_token
            .expect("kept")
            .secret()
            .to_owned();
        assert!(
            !refresh_tokens.contains(&rotated),
            "{name}: round {round}: the server rotated it"
        );
        refresh_tokens.push(rotated);
    }
    let stats = manager.stats();
    assert_eq!(
        (stats.fetches, stats.refreshes, stats.failures),
        (1, 20, 0),
        "{name}"
    );

    // A spent refresh token is refused by the server, with a typed error.
    let spent = client.refresh_token(refresh_tokens[0].clone());
    let error = spent.fetch().await.unwrap_err();
    assert!(error.is_invalid_grant(), "{name}: {error}");

    // So is a revoked one, through a manager: the error names the cause.
    let live = refresh_tokens.last().unwrap().clone();
    manager.logout().await.unwrap(); // revokes at the server
    let after_logout = TokenManager::builder(client.refresh_token(live))
        .listener(watching())
        .build()
        .unwrap();
    let error = after_logout.token().await.unwrap_err();
    assert!(error.is_invalid_grant(), "{name}: {error}");
    assert_clean("error", &format!("{error} {error:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_with_pkce_signed_in_headlessly() {
    let _h = harness();
    for server in servers::all() {
        let name = server.name;
        let client = client(server, "cli", ClientAuth::None);
        let opened = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen = opened.clone();
        let source = client
            .authorization_code()
            .scope(server.sign_in_scope)
            .auth_param("prompt", "consent")
            .on_open(move |url| {
                *seen.lock().unwrap() = Some(url.clone());
                let page = url.to_string();
                approve(server, page);
            });
        let manager = TokenManager::builder(source)
            .listener(watching())
            .build()
            .unwrap();
        let token = manager
            .token()
            .await
            .unwrap_or_else(|e| panic!("{name}: signed in through the browser pages: {e}"));
        assert!(
            token.refresh_token.is_some() && token.id_token.is_some(),
            "{name}"
        );
        let url = opened
            .lock()
            .unwrap()
            .clone()
            .expect("the browser was opened");
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["code_challenge"].len(), 43);
        assert!(query["redirect_uri"].starts_with("http://127.0.0.1:"));
        assert!(
            query.contains_key("nonce"),
            "{name}: openid asks for an ID token"
        );
        // And it refreshes like any other.
        let refreshed = manager.force_refresh().await.unwrap();
        assert_ne!(refreshed.fingerprint(), token.fingerprint(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_redirect_is_refused_and_the_real_one_still_awaited() {
    let _h = harness();
    for server in servers::all() {
        let client = client(server, "cli", ClientAuth::None);
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
                let (login, password) = &server.user;
                tokio::spawn(async move {
                    let forged = reqwest::get(format!("{redirect}?code=stolen&state=forged"))
                        .await
                        .unwrap();
                    *seen.lock().unwrap() = Some(forged.status().as_u16());
                    // ...then the user signs in for real.
                    browser::approve_as(&page, (login.as_str(), password.as_str())).await;
                });
            });
        source
            .fetch()
            .await
            .unwrap_or_else(|e| panic!("{}: the real sign-in completes: {e}", server.name));
        assert_eq!(*forged_status.lock().unwrap(), Some(400));
    }
}

/// A sign-in the server refuses (a scope it does not know) ends with the
/// server's own error, typed, on every server: also where the error redirect
/// lacks the `iss` the server advertises (django-oauth-toolkit), since an error
/// carries no code that another server could use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_sign_in_reports_the_servers_error() {
    let _h = harness();
    for server in servers::all() {
        let client = client(server, "cli", ClientAuth::None);
        let source = client
            .authorization_code()
            .scope("openid no-such-scope")
            .login_timeout(Duration::from_secs(20))
            .on_open(move |url| {
                let page = url.to_string();
                approve(server, page);
            });
        let error = source.fetch().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::OAuth, "{}: {error}", server.name);
        assert_eq!(
            error.oauth_error().unwrap().error,
            "invalid_scope",
            "{}: {error}",
            server.name
        );
    }
}
