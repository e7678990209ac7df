//! Single-flight under contention: many tasks on a multi-threaded runtime.

use crate::common::*;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::{source::from_fn, Token, TokenManager};

const HOUR: Duration = Duration::from_secs(3600);

/// Waits (in real time, bounded) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_callers_at_expiry_cause_one_token_request() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    let manager = builder.build().unwrap();
    let first = manager.token().await.unwrap().fingerprint();
    clock.advance(HOUR);

    source.close();
    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move { manager.token().await.map(|t| t.fingerprint()) })
        })
        .collect();
    until("all 10,000 callers wait", || manager.stats().waits == 9_999).await;
    source.open();
    let mut fingerprints = std::collections::HashSet::new();
    for task in tasks {
        fingerprints.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(source.calls(), 2, "one initial fetch, one refresh");
    assert_eq!(fingerprints.len(), 1);
    assert!(!fingerprints.contains(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_any_token_yet_share_one_fetch() {
    let _h = harness();
    let source = CountingSource::new(HOUR);
    let manager = TokenManager::builder(source.clone()).build().unwrap();
    source.close();
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move { manager.header().await.map(|h| h.token().fingerprint()) })
        })
        .collect();
    until("all callers wait", || manager.stats().waits == 999).await;
    source.open();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(source.fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_invalidations_of_the_same_token_cause_one_refresh() {
    let _h = harness();
    let source = CountingSource::new(HOUR);
    let manager = TokenManager::builder(source.clone()).build().unwrap();
    let rejected = manager.token().await.unwrap().to_token();
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let (manager, rejected) = (manager.clone(), rejected.clone());
            tokio::spawn(async move {
                manager.invalidate(&rejected); // the API answered 401 with it
                manager.token().await.map(|t| t.fingerprint())
            })
        })
        .collect();
    for task in tasks {
        assert_ne!(task.await.unwrap().unwrap(), rejected.fingerprint());
    }
    assert_eq!(source.calls(), 2, "one fetch, one refresh");
    assert!(
        !manager.invalidate(&rejected),
        "no longer the current token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_does_not_cancel_the_refresh() {
    let _h = harness();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let (release, released) = tokio::sync::watch::channel(false);
    let manager = TokenManager::builder(from_fn("slow", move || {
        let (counted, mut released) = (counted.clone(), released.clone());
        async move {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = released.wait_for(|r| *r).await;
            Ok(Token::new("slow-token").with_expires_in(HOUR))
        }
    }))
    .build()
    .unwrap();
    // The first caller times out while the fetch is in flight...
    let gave_up = tokio::time::timeout(Duration::from_millis(20), manager.token()).await;
    assert!(gave_up.is_err());
    // ...the fetch goes on, and the next caller gets its result.
    let waiting = tokio::spawn({
        let manager = manager.clone();
        async move { manager.token().await.map(|t| t.fingerprint()) }
    });
    release.send_replace(true);
    waiting.await.unwrap().unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_source_times_out_into_a_transient_error() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    let manager = builder
        .refresh_timeout(Duration::from_secs(10))
        .backoff(Duration::from_secs(1), Duration::from_secs(1))
        .build()
        .unwrap();
    source.close(); // the endpoint never answers
    let waiting = tokio::spawn({
        let manager = manager.clone();
        async move { manager.token().await.map(|t| t.fingerprint()) }
    });
    until("the fetch started", || source.calls() == 1).await;
    clock.advance(Duration::from_secs(10));
    let error = waiting.await.unwrap().unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("refresh timeout"), "{error}");
    source.open();
    clock.advance(Duration::from_secs(1)); // past the backoff
    manager.token().await.expect("the endpoint answers again");
    assert_eq!(source.calls(), 2);
}

#[test]
fn a_runtime_shut_down_mid_refresh_does_not_block_the_manager() {
    let _h = harness();
    let source = CountingSource::new(HOUR);
    let manager = TokenManager::builder(source.clone()).build().unwrap();
    let first = tokio::runtime::Runtime::new().unwrap();
    source.close();
    first.spawn({
        let manager = manager.clone();
        async move { manager.token().await.map(|_| ()) }
    });
    first.block_on(until("the fetch started", || source.calls() == 1));
    drop(first); // cancels the refresh task
    source.open();
    let second = tokio::runtime::Runtime::new().unwrap();
    second
        .block_on(manager.token())
        .expect("a new runtime refreshes again");
    assert_eq!(source.calls(), 2);
}

#[test]
fn outside_a_tokio_runtime_the_error_says_so() {
    let _h = harness();
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let manager = TokenManager::builder(CountingSource::new(HOUR))
        .build()
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let token = std::pin::pin!(manager.token());
    let Poll::Ready(result) = token.poll(&mut cx) else {
        panic!("no runtime: answered at once");
    };
    let error = result.unwrap_err();
    assert_eq!(error.kind(), tokenwarden::ErrorKind::Config);
    assert!(error.to_string().contains("Tokio runtime"), "{error}");
}
