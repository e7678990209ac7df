//! Several APIs side by side, per-user tokens from a registry, and the trace.

use crate::clients::*;
use std::sync::Arc;
use tokenwarden::TokenRegistry;
use tokenwarden_reqwest::AuthClient;

#[tokio::test]
async fn two_services_with_their_own_managers() {
    let _h = crate::leaks::harness();
    let (a, b) = (start().await, start().await);
    let client_a = client(&a, user_manager(&a.api, "a"));
    let client_b = client(&b, user_manager(&b.api, "b"));
    assert_eq!(client_a.get("data").send().await.unwrap().status(), 200);
    assert_eq!(client_b.get("data").send().await.unwrap().status(), 200);
    // Each API only knows its own tokens; a's client never sent its token to b.
    let sent_to = |servers: &Servers| {
        servers
            .api
            .requests
            .lock()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(sent_to(&a).len(), 1);
    assert_eq!(sent_to(&b).len(), 1);
    assert_ne!(sent_to(&a), sent_to(&b));
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct User(&'static str);

#[tokio::test]
async fn per_user_tokens_chosen_per_request() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let api = servers.api.clone();
    let registry =
        Arc::new(TokenRegistry::builder(move |user: &User| Ok(user_manager(&api, user.0))).build());
    let client = AuthClient::builder()
        .base_url(&servers.base)
        .token_registry(registry.clone())
        .build()
        .unwrap();
    for user in ["alice", "bob", "alice"] {
        let response = client
            .get("data")
            .with_extension(User(user))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let requests = servers.api.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "one token per user");
    assert_eq!(
        requests
            .iter()
            .find(|(t, _)| t.contains("-alice-"))
            .map(|(_, n)| *n),
        Some(2)
    );
    assert_eq!(registry.len(), 2);
    let error = client.get("data").send().await.unwrap_err();
    assert!(error.to_string().contains("names no"), "{error}");
    // A key of another type (a `&str` for a `User`) is the same error, which
    // says what to use instead.
    let error = client
        .get("data")
        .with_extension("alice")
        .send()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("build_keyed"), "{error}");
}

/// The keyed client: the key is an argument of the registry's key type; a
/// `&str` becomes a `String` key (a key of another type would not compile).
#[tokio::test]
async fn a_keyed_client_takes_each_requests_key_by_type() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let api = servers.api.clone();
    let registry =
        Arc::new(TokenRegistry::builder(move |user: &String| Ok(user_manager(&api, user))).build());
    let client = AuthClient::builder()
        .base_url(&servers.base)
        .build_keyed(registry.clone())
        .unwrap();
    for user in ["alice", "bob", "alice"] {
        assert_eq!(client.get(user, "data").send().await.unwrap().status(), 200);
    }
    let response = client
        .post(String::from("bob"), "echo")
        .body("hi")
        .send()
        .await;
    assert_eq!(response.unwrap().text().await.unwrap(), "hi");
    let requests = servers.api.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "one token per user");
    assert_eq!(registry.len(), 2);
}

#[tokio::test]
async fn the_trace_shows_the_refresh_and_replay() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let client = client(&servers, manager(&servers.api));
    client.get("data").send().await.unwrap();
    servers.api.revoke_all();
    client.get("data").send().await.unwrap();
    let logs = captured_logs();
    assert!(logs.contains("tokenwarden.request"), "a span per request");
    assert!(logs.contains("token rejected; refreshed and replaying"));
    assert!(
        logs.contains("fingerprint="),
        "requests carry the token's fingerprint"
    );
}
