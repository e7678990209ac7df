//! DPoP (RFC 9449) end to end: tokens from the real OpenID provider with its DPoP
//! feature on (client credentials with each algorithm, a nonce the server asks
//! for, a public client's device sign-in whose refresh token is bound to the
//! key), sent through the tower layer (a hyper client, a tonic channel) to a
//! resource server that verifies every proof with a JOSE library of its own
//! (`support/dpop_resource.rs`).

use crate::browser;
use crate::common::*;
use crate::dpop_resource::{self as resource, Checks};
use crate::oidc::{self, Oidc};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use tokenwarden::dpop::{DpopAlgorithm, DpopKey};
use tokenwarden::http::AllowedOrigins;
use tokenwarden::source::oauth2::{ClientAuth, OAuth2Client};
use tokenwarden::tower::{TokenLayer, TokenService};
use tokenwarden::{ClientSecret, TokenManager, TokenSource as _};
use tower_layer::Layer as _;
use tower_service::Service as _;

fn client(oidc: &Oidc, client_id: &str, alg: DpopAlgorithm) -> OAuth2Client {
    let auth = match client_id {
        "cli-dpop" => ClientAuth::None,
        _ => ClientAuth::SecretBasic(ClientSecret::new(format!("{client_id}-{MARKER}"))),
    };
    OAuth2Client::builder()
        .issuer(&oidc.issuer)
        .client_id(client_id)
        .auth(auth)
        .dpop(alg)
        .build()
        .unwrap()
}

fn manager(source: impl tokenwarden::TokenSource + 'static) -> TokenManager {
    TokenManager::builder(source)
        .listener(watching())
        .build()
        .unwrap()
}

/// A device sign-in of `client` (openid offline_access read), which Alice
/// approves in the headless browser.
fn signed_in_by_alice(client: &OAuth2Client) -> tokenwarden::source::oauth2::DeviceCode {
    client
        .device_code()
        .scope("openid offline_access read")
        .on_prompt(|prompt| {
            let page = prompt.verification_uri_complete.clone().unwrap();
            tokio::spawn(
                async move { browser::approve_as(&page, ("alice", "any password")).await },
            );
        })
}

/// What the authorization server says of `token` (RFC 7662).
async fn introspect(oidc: &Oidc, token: &str) -> serde_json::Value {
    oidc::introspect(&oidc.issuer, token).await.unwrap()
}

type Hyper = TokenService<Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>>;

/// A hyper client whose requests to `base` carry `manager`'s token (tower layer).
fn hyper(manager: &TokenManager, base: &str) -> Hyper {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    TokenLayer::new(manager.clone())
        .allowed_origins(AllowedOrigins::of(base).unwrap())
        .layer(client)
}

/// GETs `base` + `path`; the status and the body.
async fn get(client: &mut Hyper, base: &str, path: &str) -> (u16, String) {
    let request = http::Request::get(format!("{base}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.call(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn items() -> axum::Router {
    axum::Router::new().route("/v1/items", axum::routing::get(|| async { "items" }))
}

/// Every proof the server saw is watched: one that reached a log fails the test.
fn no_proof_logged(checks: &Checks) {
    for proof in checks.proofs() {
        watch(&proof);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_tokens_are_bound_to_their_key_and_useless_without_it() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    let checks = Checks::new(&oidc.issuer, false);
    let base = resource::serve(checks.clone(), items()).await;
    for alg in [
        DpopAlgorithm::Es256,
        DpopAlgorithm::EdDsa,
        DpopAlgorithm::Rs256,
    ] {
        let manager = manager(
            client(oidc, "cc-dpop", alg)
                .client_credentials()
                .scope("read"),
        );
        let token = manager.token().await.unwrap().to_token();
        assert!(token.is_dpop(), "{alg:?}: {}", token.token_type);
        let key = token
            .dpop_key
            .clone()
            .expect("the key, kept with the token");
        assert_eq!(key.algorithm(), alg);
        // The server bound it to that key.
        let said = introspect(oidc, token.access_token.secret()).await;
        assert_eq!(said["token_type"], "DPoP", "{alg:?}: {said}");
        assert_eq!(said["cnf"]["jkt"], key.thumbprint(), "{alg:?}");

        // Through the tower layer: a fresh proof on each request (the server
        // refuses a jti it saw before).
        let mut http = hyper(&manager, &base);
        let served = checks.served();
        for _ in 0..20 {
            assert_eq!(
                get(&mut http, &base, "/v1/items?page=2").await,
                (200, "items".into())
            );
        }
        assert_eq!(checks.served(), served + 20, "{:?}", checks.refusals());
        assert_eq!(
            manager.stats().fetches,
            1,
            "{alg:?}: nothing refused, nothing refetched"
        );

        // Stolen: without the key, the token is refused, as a bearer token or
        // with a proof of another key.
        let thief = reqwest::Client::new();
        let url = format!("{base}/v1/items");
        let as_bearer = thief
            .get(&url)
            .bearer_auth(token.access_token.secret())
            .send()
            .await
            .unwrap();
        assert_eq!(as_bearer.status(), 401);
        let other = DpopKey::generate(DpopAlgorithm::Es256).unwrap();
        let proof = other
            .proof(
                "GET",
                &url,
                Some(&tokenwarden::dpop::ath(&token.access_token)),
                None,
                tokenwarden::Clock::now(&tokenwarden::SystemClock),
            )
            .unwrap();
        let with_another_key = thief
            .get(&url)
            .header(
                "authorization",
                format!("DPoP {}", token.access_token.secret()),
            )
            .header("dpop", proof)
            .send()
            .await
            .unwrap();
        assert_eq!(with_another_key.status(), 401);
        let refusals = checks.refusals();
        assert!(
            refusals.ends_with(&[
                "not a DPoP authorization".to_owned(),
                "the token is bound to another key".to_owned()
            ]),
            "{refusals:?}"
        );
        // Past the PKCS#8 document's fixed header: the private key itself.
        let debug = format!("{token:?} {key:?}");
        let stored = serde_json::to_value(&key).unwrap();
        let pkcs8 = stored["pkcs8"].as_str().unwrap();
        assert!(!debug.contains(&pkcs8[40..60]), "{debug}");
    }
    no_proof_logged(&checks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nonces_of_the_authorization_server_and_of_the_resource_server() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    // The authorization server asks this client for its nonce: the first token
    // request is answered `use_dpop_nonce`, the second (with it) gets the token.
    let source = client(oidc, "cc-dpop-nonce", DpopAlgorithm::Es256)
        .client_credentials()
        .scope("read");
    let first = source.fetch().await.unwrap();
    assert!(first.is_dpop());
    let manager = manager(source);
    manager.token().await.unwrap();

    // The resource server asks for its own: one replay with it, the token kept.
    let checks = Checks::new(&oidc.issuer, true);
    let base = resource::serve(checks.clone(), items()).await;
    let mut http = hyper(&manager, &base);
    assert_eq!(get(&mut http, &base, "/v1/items").await.0, 200);
    assert_eq!((checks.challenges(), checks.served()), (1, 1));
    // Remembered: no challenge the next time.
    assert_eq!(get(&mut http, &base, "/v1/items").await.0, 200);
    assert_eq!((checks.challenges(), checks.served()), (1, 2));
    // A new nonce: one challenge, one replay.
    checks.rotate_nonce();
    assert_eq!(get(&mut http, &base, "/v1/items").await.0, 200);
    assert_eq!((checks.challenges(), checks.served()), (2, 3));
    let stats = manager.stats();
    assert_eq!(
        (stats.fetches, stats.refreshes),
        (1, 0),
        "a nonce challenge never costs the token"
    );
    assert!(checks.refusals().is_empty(), "{:?}", checks.refusals());
    no_proof_logged(&checks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_clients_refresh_token_is_bound_to_the_key_kept_in_the_store() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store_key = random_seed();
    let client = client(oidc, "cli-dpop", DpopAlgorithm::Es256);
    let device = signed_in_by_alice(&client);
    let first = TokenManager::builder(device)
        .store(file_store(dir.path(), store_key))
        .listener(watching())
        .build()
        .unwrap();
    let signed_in = first.token().await.unwrap().to_token();
    assert!(signed_in.is_dpop());
    let key = signed_in.dpop_key.clone().unwrap();
    let refresh_token = signed_in.refresh_token.clone().expect("offline_access");
    drop(first);

    // Another process (a new manager on the same store, no browser): it reads
    // the token and its key, and refreshes with that key.
    let nobody = client
        .device_code()
        .scope("openid offline_access read")
        .on_prompt(|_| panic!("no sign-in: the stored refresh token is used"));
    let second = TokenManager::builder(nobody)
        .store(file_store(dir.path(), store_key))
        .listener(watching())
        .build()
        .unwrap();
    let loaded = second.token().await.unwrap().to_token();
    assert_eq!(
        loaded.fingerprint(),
        signed_in.fingerprint(),
        "read from the store"
    );
    let refreshed = second.force_refresh().await.unwrap().to_token();
    assert_ne!(refreshed.fingerprint(), signed_in.fingerprint());
    assert_eq!(
        refreshed.dpop_key.as_ref().unwrap().thumbprint(),
        key.thumbprint(),
        "a refresh keeps the key"
    );
    let said = introspect(oidc, refreshed.access_token.secret()).await;
    assert_eq!(said["cnf"]["jkt"], key.thumbprint());
    assert_eq!(second.stats().refreshes, 1);

    // The rotated refresh token with another key: refused by the server.
    let rotated = refreshed.refresh_token.clone().unwrap();
    assert_ne!(rotated.secret(), refresh_token.secret());
    let error = client
        .refresh_token(rotated.secret().to_owned())
        .fetch()
        .await
        .unwrap_err();
    assert!(error.is_invalid_grant(), "{error}");
    assert_clean("error", &format!("{error} {error:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_channel_sends_proofs_and_learns_the_servers_nonce() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    use crate::tonic_channel::pinger::{self, Ping};
    use http::uri::PathAndQuery;
    use tonic_prost::ProstCodec;
    let manager = manager(
        client(oidc, "cc-dpop", DpopAlgorithm::EdDsa)
            .client_credentials()
            .scope("read"),
    );
    let token = manager.token().await.unwrap().to_token();
    let state = Arc::new(pinger::State::default());
    state
        .valid
        .lock()
        .unwrap()
        .insert(token.access_token.secret().to_owned());
    let checks = Checks::new(&oidc.issuer, true);
    let routes = tonic::service::Routes::new(pinger::Pinger(state.clone())).into_axum_router();
    let base = resource::serve(checks.clone(), routes).await;

    let channel = tonic::transport::Channel::from_shared(base.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let layer = TokenLayer::new(manager.clone())
        .no_replay()
        .relative_origin(url::Url::parse(&base).unwrap());
    let client = tonic::client::Grpc::new(layer.layer(channel));
    let path = PathAndQuery::from_static("/test.Pinger/Ping");
    let call = |text: &str| {
        let request = tonic::Request::new(Ping { text: text.into() });
        let (path, mut client) = (path.clone(), client.clone());
        async move {
            client.ready().await.unwrap();
            client
                .unary(request, path, ProstCodec::<Ping, Ping>::default())
                .await
        }
    };
    // A stream is not replayed: the first call meets the nonce challenge...
    let status = call("one").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // ...and the next carries the nonce; the token was never dropped.
    assert_eq!(call("two").await.unwrap().into_inner().text, "pong: two");
    assert_eq!(
        call("three").await.unwrap().into_inner().text,
        "pong: three"
    );
    assert_eq!((checks.challenges(), checks.served()), (1, 2));
    assert_eq!(manager.stats().fetches, 1);
    no_proof_logged(&checks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_grant_keeps_its_key_across_refreshes() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    // A confidential client's grant (its refresh token is not bound to a key,
    // its access tokens are).
    let client = OAuth2Client::builder()
        .issuer(&oidc.issuer)
        .client_id("app")
        .client_secret(format!("app-{MARKER}"))
        .dpop(DpopAlgorithm::Es256)
        .build()
        .unwrap();
    let device = signed_in_by_alice(&client);
    let signed_in = manager(device).token().await.unwrap().to_token();
    let refresh_token = signed_in.refresh_token.clone().unwrap();
    // Carried on as a refresh-token grant: each refresh proves the key of the
    // one before (a new key with each would orphan a bound refresh token).
    let grant = manager(client.refresh_token(refresh_token.secret().to_owned()));
    let first = grant.token().await.unwrap().to_token();
    let second = grant.force_refresh().await.unwrap().to_token();
    assert_ne!(first.fingerprint(), second.fingerprint());
    let thumbprint =
        |token: &tokenwarden::Token| token.dpop_key.as_ref().unwrap().thumbprint().to_owned();
    assert_eq!(thumbprint(&first), thumbprint(&second));
    let said = introspect(oidc, second.access_token.secret()).await;
    assert_eq!(said["cnf"]["jkt"], thumbprint(&second));
}
