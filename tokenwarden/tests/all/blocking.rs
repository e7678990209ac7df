//! The blocking API (issue 17): the same single flight from 1,000 OS threads,
//! every method from threads without a runtime, and a typed error (never a
//! deadlock) when called from inside a Tokio runtime.

use crate::common::*;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use tokenwarden::{ErrorKind, TokenEventKind};

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn a_thousand_threads_share_one_token_request() {
    let _h = harness();
    let (source, _clock, builder) = counting(HOUR);
    let manager = builder.build_blocking().unwrap();
    source.close(); // the request is held until every thread has asked
    let threads = 1_000;
    let start = Arc::new(Barrier::new(threads + 1));
    let asking = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (manager, start, asking) = (manager.clone(), start.clone(), asking.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    start.wait();
                    asking.fetch_add(1, SeqCst);
                    manager.token().map(|t| t.access_token.secret().to_owned())
                })
                .unwrap()
        })
        .collect();
    start.wait();
    while asking.load(SeqCst) < threads || source.fetches.load(SeqCst) == 0 {
        std::thread::yield_now();
    }
    source.open();
    let tokens: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().unwrap().expect("a token"))
        .collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "one token for all");
    assert_eq!(source.calls(), 1, "one token request");
    assert_eq!(manager.stats().fetches, 1);
}

#[test]
fn every_method_works_from_a_thread_without_a_runtime() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    let (listener, mut events) = event_channel();
    let manager = builder.listener(listener).build_blocking().unwrap();
    let first = manager.token().unwrap().to_token();
    assert_eq!(
        &*manager.header().unwrap(),
        manager.token().unwrap().header()
    );
    assert!(manager.info().unwrap().authenticated);

    // Expired: the next call waits for the refresh.
    clock.advance(HOUR + Duration::from_secs(1));
    let refreshed = manager.token().unwrap().to_token();
    assert_ne!(refreshed.access_token.secret(), first.access_token.secret());
    assert_eq!(source.refreshes.load(SeqCst), 1);

    // Rejected by the API: invalidated once, refreshed once.
    assert!(manager.invalidate(&refreshed));
    assert!(!manager.invalidate(&refreshed), "already dropped");
    let third = manager.token().unwrap().to_token();
    assert_ne!(third.access_token.secret(), refreshed.access_token.secret());
    let forced = manager.force_refresh().unwrap().to_token();
    assert_ne!(forced.access_token.secret(), third.access_token.secret());
    assert_eq!(source.calls(), 4);

    manager
        .set_tokens(tokenwarden::Token::new("given-TOPSECRET").with_expires_in(HOUR))
        .unwrap();
    assert_eq!(
        manager.token().unwrap().access_token.secret(),
        "given-TOPSECRET"
    );
    manager.logout().unwrap();
    manager.listeners_idle().unwrap();
    let mut kinds = Vec::new();
    while let Ok(event) = events.try_recv() {
        kinds.push(event.kind());
    }
    assert_eq!(kinds.last(), Some(&TokenEventKind::Cleared), "{kinds:?}");
    assert!(!manager.info().unwrap().authenticated);
    assert_eq!(manager.key(), manager.as_async().key());
}

#[test]
fn a_failed_request_is_the_same_typed_error_as_async() {
    let _h = harness();
    let (source, _clock, builder) = counting(HOUR);
    let manager = builder.build_blocking().unwrap();
    source.fail_with(Some(unavailable()));
    let error = manager.token().unwrap_err();
    assert!(error.is_transient(), "{error}");
    source.fail_with(None);
}

/// Inside a runtime (a task, `block_on`, `spawn_blocking`) a call is an error
/// that says what to use instead; it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_a_runtime_it_is_a_typed_error_not_a_deadlock() {
    let _h = harness();
    let (source, _clock, builder) = counting(HOUR);
    let manager = builder.build_blocking().unwrap();
    let error = manager.token().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(
        error.to_string().contains("inside a Tokio runtime"),
        "{error}"
    );
    assert!(error.to_string().contains("as_async"), "{error}");
    assert!(error.to_string().contains("std::thread::spawn"), "{error}");
    let in_blocking = tokio::task::spawn_blocking({
        let manager = manager.clone();
        move || manager.header().map(drop)
    });
    let error = in_blocking.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    // The async manager underneath serves the same token.
    manager.as_async().token().await.unwrap();
    assert_eq!(source.calls(), 1);
    // And from a thread of its own, the blocking one does.
    let from_thread = std::thread::spawn(move || manager.token().map(drop));
    from_thread.join().unwrap().unwrap();
}

/// A stale token is served at once from a thread without a runtime, and its
/// background refresh runs on the blocking API's runtime thread.
#[test]
fn a_stale_token_is_served_and_refreshed_in_the_background() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    let manager = builder.build_blocking().unwrap();
    let first = manager.token().unwrap().to_token();
    clock.advance(HOUR - Duration::from_secs(60)); // in the stale window, not expired
    let served = manager.token().unwrap().to_token();
    assert_eq!(served.access_token.secret(), first.access_token.secret());
    for _ in 0..1_000 {
        if source.refreshes.load(SeqCst) == 1 && manager.stats().refreshes == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10)); // a readiness poll, not a timing check
    }
    assert_eq!(
        source.refreshes.load(SeqCst),
        1,
        "refreshed in the background"
    );
    let next = manager.token().unwrap().to_token();
    assert_ne!(next.access_token.secret(), first.access_token.secret());
}
