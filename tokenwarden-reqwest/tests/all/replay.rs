//! 401 → one refresh → one replay.

use crate::clients::*;
use std::sync::atomic::Ordering::SeqCst;
use tokenwarden_reqwest::AuthClient;

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_and_the_request_replayed() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let manager = manager(&servers.api);
    let client = client(&servers, manager.clone());
    for _ in 0..5 {
        assert_eq!(client.get("data").send().await.unwrap().status(), 200);
    }
    servers.api.revoke_all(); // revoked mid-stream
    let response = client.post("echo").body("payload").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "payload",
        "the replay carried the body"
    );
    assert_eq!(servers.api.logins.load(SeqCst), 2);
    assert_eq!(servers.api.unauthorized.load(SeqCst), 1);
    assert_eq!(manager.stats().fetches, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_401s_cause_one_refresh() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let client = client(&servers, manager(&servers.api));
    client.get("data").send().await.unwrap();
    servers.api.revoke_all();
    let requests: Vec<_> = (0..1_000)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("data").send().await.unwrap().status() })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(
        servers.api.logins.load(SeqCst),
        2,
        "one login, one refresh for 1,000 rejected requests"
    );
}

#[tokio::test]
async fn a_streaming_body_is_not_replayed() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let client = client(&servers, manager(&servers.api));
    client.get("data").send().await.unwrap();
    servers.api.revoke_all();
    let stream = futures_util::stream::once(async { Ok::<_, std::io::Error>("streamed") });
    let response = client
        .post("echo")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "surfaced, not replayed");
    assert_eq!(servers.api.unauthorized.load(SeqCst), 1);
    // The token was invalidated all the same: the next request gets a new one.
    assert_eq!(client.get("data").send().await.unwrap().status(), 200);
    assert_eq!(servers.api.logins.load(SeqCst), 2);
}

#[tokio::test]
async fn a_second_401_is_returned_not_looped() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let client = client(&servers, manager(&servers.api));
    let response = client.get("always-401").send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        servers.api.unauthorized.load(SeqCst),
        2,
        "the request and one replay"
    );
    let no_replay = AuthClient::builder()
        .base_url(&servers.base)
        .token_manager(manager(&servers.api))
        .max_replays(0)
        .build()
        .unwrap();
    no_replay.get("always-401").send().await.unwrap();
    assert_eq!(servers.api.unauthorized.load(SeqCst), 3);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_before_the_request() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let clock = tokenwarden::ManualClock::default();
    let client = client(&servers, manager_with_clock(&servers.api, clock.clone()));
    assert_eq!(client.get("data").send().await.unwrap().status(), 200);
    clock.advance(std::time::Duration::from_secs(3600)); // the token's lifetime
    assert_eq!(client.get("data").send().await.unwrap().status(), 200);
    assert_eq!(servers.api.logins.load(SeqCst), 2, "one refresh per expiry");
    assert_eq!(
        servers.api.unauthorized.load(SeqCst),
        0,
        "no request went out with the expired token"
    );
}
