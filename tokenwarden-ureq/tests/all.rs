//! tokenwarden-ureq against the local API of tokenwarden-reqwest's tests (it
//! accepts only the tokens its login registered, counts requests, can revoke,
//! and redirects to a second origin), from threads without a runtime.

#[allow(dead_code)] // not every binary uses every helper
#[path = "../../tokenwarden/tests/support/leaks.rs"]
mod leaks;
#[allow(dead_code)]
#[path = "../../tokenwarden-reqwest/tests/all/resource_server.rs"]
mod resource_server;

use resource_server::*;
use std::sync::atomic::Ordering::SeqCst;
use tokenwarden::http::AllowedOrigins;
use tokenwarden_ureq::{with_replay, TokenMiddleware};

/// The API on a runtime of its own, for clients without one.
fn servers() -> (tokio::runtime::Runtime, Servers) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let servers = runtime.block_on(start());
    (runtime, servers)
}

/// An agent whose requests to the API carry tokens of `manager`; 4xx are
/// errors unless `statuses_as_answers`.
fn agent(
    servers: &Servers,
    manager: &tokenwarden::blocking::TokenManager,
    statuses_as_answers: bool,
) -> ureq::Agent {
    let origins = AllowedOrigins::of(&servers.base).unwrap();
    ureq::Agent::config_builder()
        .middleware(TokenMiddleware::new(manager.clone(), origins))
        .http_status_as_error(!statuses_as_answers)
        .build()
        .into()
}

#[test]
fn a_thousand_threads_whose_token_is_rejected_cause_one_refresh() {
    let _h = leaks::harness();
    let (_runtime, servers) = servers();
    let manager = blocking_manager(&servers.api);
    let agent = agent(&servers, &manager, false);
    let data = format!("{}data", servers.base);
    assert_eq!(agent.get(&data).call().unwrap().status(), 200);
    servers.api.revoke_all();
    let threads: Vec<_> = (0..1_000)
        .map(|_| {
            let (agent, data) = (agent.clone(), data.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || with_replay(|| agent.get(&data).call()).unwrap().status())
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
fn a_rejected_token_is_replayed_with_the_body_built_again() {
    let _h = leaks::harness();
    let (_runtime, servers) = servers();
    let manager = blocking_manager(&servers.api);
    let echo = format!("{}echo", servers.base);
    manager.token().unwrap(); // logged in
    for statuses_as_answers in [false, true] {
        let agent = agent(&servers, &manager, statuses_as_answers);
        servers.api.revoke_all();
        let mut response = with_replay(|| agent.post(&echo).send("payload")).unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.body_mut().read_to_string().unwrap(), "payload");
    }
    assert_eq!(servers.api.unauthorized.load(SeqCst), 2);
    assert_eq!(
        manager.stats().fetches,
        3,
        "a login, then one per rejection"
    );

    // Without the replay: the rejection comes back, and the token is dropped,
    // so the next call carries a fresh one.
    let agent = agent(&servers, &manager, false);
    servers.api.revoke_all();
    let error = agent
        .get(format!("{}data", servers.base))
        .call()
        .unwrap_err();
    assert!(matches!(error, ureq::Error::StatusCode(401)), "{error}");
    let data = format!("{}data", servers.base);
    assert_eq!(agent.get(&data).call().unwrap().status(), 200);
    assert_eq!(manager.stats().fetches, 4);
}

#[test]
fn the_token_goes_to_allowed_origins_only() {
    let _h = leaks::harness();
    let (_runtime, servers) = servers();
    let manager = blocking_manager(&servers.api);
    let agent = agent(&servers, &manager, false);
    let elsewhere = format!("{}/capture", servers.other);
    assert_eq!(agent.get(&elsewhere).call().unwrap().status(), 200);
    // Redirected there from the API: ureq drops `Authorization` on the way.
    let redirect = format!("{}redirect", servers.base);
    assert_eq!(agent.get(&redirect).call().unwrap().status(), 200);
    assert_eq!(*servers.api.captured.lock().unwrap(), [None, None]);
}

/// A middleware used inside a Tokio runtime fails the request with the blocking
/// manager's typed error, before anything is sent.
#[tokio::test]
async fn inside_a_runtime_the_request_fails_with_a_typed_error() {
    let _h = leaks::harness();
    let servers = start().await;
    let manager =
        std::thread::scope(|s| s.spawn(|| blocking_manager(&servers.api)).join().unwrap());
    let agent = agent(&servers, &manager, false);
    let error = agent
        .get(format!("{}data", servers.base))
        .call()
        .unwrap_err();
    let ureq::Error::Other(inner) = error else {
        panic!("{error}")
    };
    let error = inner.downcast::<tokenwarden::Error>().unwrap();
    assert_eq!(error.kind(), tokenwarden::ErrorKind::Config, "{error}");
    assert_eq!(servers.api.logins.load(SeqCst), 0, "nothing was sent");
}

/// A DPoP-bound token needs a proof this middleware does not sign: a typed
/// error that says what to use, and nothing sent.
#[test]
fn a_dpop_bound_token_is_refused_before_anything_is_sent() {
    let _h = leaks::harness();
    let (_runtime, servers) = servers();
    let manager =
        tokenwarden::TokenManager::builder(tokenwarden::source::from_fn("dpop", || async {
            Ok(tokenwarden::Token::new("dpop-bound-TOPSECRET").with_token_type("DPoP"))
        }))
        .build_blocking()
        .unwrap();
    let agent = agent(&servers, &manager, false);
    let error = agent
        .get(format!("{}data", servers.base))
        .call()
        .unwrap_err();
    let ureq::Error::Other(inner) = error else {
        panic!("{error}")
    };
    let error = inner.downcast::<tokenwarden::Error>().unwrap();
    assert!(error.to_string().contains("tokenwarden-reqwest"), "{error}");
    assert_eq!(*servers.api.requests.lock().unwrap(), Default::default());
}
