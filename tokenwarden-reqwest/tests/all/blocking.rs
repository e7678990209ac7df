//! The blocking client (feature `blocking`, issue 17): the replay and the single
//! refresh of the async client, from 1,000 OS threads without a runtime.

use crate::resource_server::*;
use std::sync::atomic::Ordering::SeqCst;
use tokenwarden_reqwest::blocking::AuthClient;

/// The API on a runtime of its own (its threads), for clients without one.
fn servers() -> (tokio::runtime::Runtime, Servers) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let servers = runtime.block_on(start());
    (runtime, servers)
}

fn client(servers: &Servers) -> (tokenwarden::blocking::TokenManager, AuthClient) {
    let manager = blocking_manager(&servers.api);
    let client = AuthClient::builder()
        .base_url(&servers.base)
        .token_manager(manager.clone())
        .build()
        .unwrap();
    (manager, client)
}

#[test]
fn a_thousand_threads_whose_token_is_rejected_cause_one_refresh() {
    let _h = crate::leaks::harness();
    let (_runtime, servers) = servers();
    let (_manager, client) = client(&servers);
    assert_eq!(client.get("data").send().unwrap().status(), 200);
    servers.api.revoke_all();
    let threads: Vec<_> = (0..1_000)
        .map(|_| {
            let client = client.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || client.get("data").send().unwrap().status())
                .unwrap()
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 200);
    }
    assert_eq!(
        servers.api.logins.load(SeqCst),
        2,
        "one login, one refresh for 1,000 rejected requests"
    );
}

#[test]
fn a_rejected_token_is_refreshed_and_the_request_replayed_with_its_body() {
    let _h = crate::leaks::harness();
    let (_runtime, servers) = servers();
    let (manager, client) = client(&servers);
    client.get("data").send().unwrap();
    servers.api.revoke_all();
    let response = client.post("echo").body("payload").send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().unwrap(),
        "payload",
        "the replay carried the body"
    );
    assert_eq!(servers.api.unauthorized.load(SeqCst), 1);
    assert_eq!(manager.stats().fetches, 2);

    // A body read from a reader cannot be sent twice: the 401 comes back, and
    // the token is dropped all the same, so the next request has a new one.
    servers.api.revoke_all();
    let reader = reqwest::blocking::Body::new(std::io::Cursor::new(b"streamed".to_vec()));
    let response = client.post("echo").body(reader).send().unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(client.get("data").send().unwrap().status(), 200);
    assert_eq!(manager.stats().fetches, 3);
}

#[test]
fn the_token_goes_to_allowed_origins_only() {
    let _h = crate::leaks::harness();
    let (_runtime, servers) = servers();
    let (_manager, client) = client(&servers);
    let elsewhere = format!("{}/capture", servers.other);
    assert_eq!(client.get(&elsewhere).send().unwrap().status(), 200);
    // Redirected there from the API: reqwest drops the token on the way.
    assert_eq!(client.get("redirect").send().unwrap().status(), 200);
    assert_eq!(*servers.api.captured.lock().unwrap(), [None, None]);
    assert_eq!(
        servers.api.logins.load(SeqCst),
        1,
        "the API's request had one"
    );
}

/// Inside a runtime the blocking client is not built (reqwest would panic): a
/// typed error that names the async client.
#[tokio::test]
async fn inside_a_runtime_it_is_a_typed_error_not_a_panic() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let manager =
        std::thread::scope(|s| s.spawn(|| blocking_manager(&servers.api)).join().unwrap());
    let error = AuthClient::builder()
        .base_url(&servers.base)
        .token_manager(manager)
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), tokenwarden::ErrorKind::Config, "{error}");
    assert!(
        error.to_string().contains("inside a Tokio runtime"),
        "{error}"
    );
    assert_eq!(servers.api.logins.load(SeqCst), 0);
}
