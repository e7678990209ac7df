//! Tokens go only to allowed origins, and never across a redirect to another one.

use crate::resource_server::*;
use tokenwarden_reqwest::{AllowedOrigins, AuthClient};

#[tokio::test]
async fn another_origin_gets_no_token() {
    let servers = start().await;
    let client = client(&servers, manager(&servers.api));
    let absolute = format!("{}/capture", servers.other);
    assert_eq!(client.get(&absolute).send().await.unwrap().status(), 200);
    assert_eq!(
        client
            .get("redirect")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "captured"
    );
    assert_eq!(
        *servers.api.captured.lock().unwrap(),
        vec![None, None],
        "no Authorization arrived there"
    );
    assert_eq!(
        servers.api.logins.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the redirect's first leg had it"
    );
    assert_no_leaks();
}

#[tokio::test]
async fn an_explicitly_allowed_origin_gets_the_token() {
    let servers = start().await;
    let origins = AllowedOrigins::of(&servers.base)
        .unwrap()
        .with(&servers.other)
        .unwrap();
    let client = AuthClient::builder()
        .base_url(&servers.base)
        .token_manager(manager(&servers.api))
        .allowed_origins(origins)
        .build()
        .unwrap();
    client
        .get(&format!("{}/capture", servers.other))
        .send()
        .await
        .unwrap();
    let captured = servers.api.captured.lock().unwrap().clone();
    assert!(captured[0]
        .as_deref()
        .is_some_and(|h| h.starts_with("Bearer ")));
}
