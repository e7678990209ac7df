//! Two users never share a token's key (DESIGN.md: the key names "the user
//! (subject) where there is one"): per grant, and through a shared store, where
//! one user must never be served the other's token.

use crate::common::*;
use tokenwarden::source::oauth2::{JwtSigner, OAuth2Client};
use tokenwarden::store::MemoryStore;
use tokenwarden::{TokenManager, TokenSource};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(token_url: &str) -> OAuth2Client {
    OAuth2Client::builder()
        .token_url(token_url)
        .client_id("app")
        .build()
        .unwrap()
}

#[test]
fn each_grant_keys_its_user() {
    let client = client("http://127.0.0.1:9/token");
    let signer = || {
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n";
        JwtSigner::from_pem_key(pem.as_bytes()).unwrap()
    };
    let pairs: Vec<(&str, [Box<dyn TokenSource>; 2])> = vec![
        (
            "refresh_token",
            [
                Box::new(client.refresh_token(format!("{MARKER}-rt-alice"))),
                Box::new(client.refresh_token(format!("{MARKER}-rt-bob"))),
            ],
        ),
        (
            "password",
            [
                Box::new(client.password("alice", "pw")),
                Box::new(client.password("bob", "pw")),
            ],
        ),
        (
            "device_code",
            [
                Box::new(client.device_code().user("alice")),
                Box::new(client.device_code().user("bob")),
            ],
        ),
        (
            "authorization_code",
            [
                Box::new(client.authorization_code().user("alice")),
                Box::new(client.authorization_code().user("bob")),
            ],
        ),
        (
            "jwt_bearer",
            [
                Box::new(client.jwt_bearer(signer(), "app", "alice")),
                Box::new(client.jwt_bearer(signer(), "app", "bob")),
            ],
        ),
        (
            "token_exchange",
            [
                Box::new(client.token_exchange(format!("{MARKER}-alice"))),
                Box::new(client.token_exchange(format!("{MARKER}-bob"))),
            ],
        ),
    ];
    for (grant, [alice, bob]) in pairs {
        assert_ne!(alice.key(), bob.key(), "{grant}: two users, one key");
        assert!(
            !alice.key().as_str().contains(MARKER),
            "{grant}: no secret in a key"
        );
    }
}

/// The review's case: two users' refresh tokens, one client, one shared store.
#[tokio::test]
async fn through_a_shared_store_a_user_is_never_served_anothers_token() {
    let _h = harness();
    let server = MockServer::start().await;
    struct PerUser;
    impl wiremock::Respond for PerUser {
        fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
            let body = String::from_utf8_lossy(&request.body);
            let user = if body.contains("alice") {
                "alice"
            } else {
                "bob"
            };
            ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "access_token": format!("{MARKER}-at-{user}"),
                "token_type": "Bearer",
                "expires_in": 3600,
            }))
        }
    }
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(PerUser)
        .mount(&server)
        .await;
    let client = client(&format!("{}/token", server.uri()));
    let store = MemoryStore::new();
    let manager = |user: &str| {
        TokenManager::builder(client.refresh_token(format!("{MARKER}-rt-{user}")))
            .store(store.clone())
            .build()
            .unwrap()
    };
    let (alice, bob) = (manager("alice"), manager("bob"));
    let of = |token: tokenwarden::TokenRef| token.access_token.secret().to_owned();
    assert_eq!(
        of(alice.token().await.unwrap()),
        format!("{MARKER}-at-alice")
    );
    assert_eq!(of(bob.token().await.unwrap()), format!("{MARKER}-at-bob"));
    assert_eq!(store.len(), 2, "one entry each");
}
