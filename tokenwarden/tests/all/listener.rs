//! Listeners: one call per new token, in order, and no harm from bad listeners.

use crate::common::*;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::{TokenEvent, TokenEventKind, TokenManager, TracingListener};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_token_is_announced_once_in_order() {
    let _h = harness();
    let (_source, clock, builder) = counting(HOUR);
    let (manager, mut events) = observed(builder.listener(TracingListener));
    for _ in 0..5 {
        manager.token().await.unwrap(); // one fetch, four hits
    }
    clock.advance(HOUR);
    manager.token().await.unwrap(); // a refresh
    manager
        .set_tokens(tokenwarden::Token::new(format!("{MARKER}-set")).with_expires_in(HOUR))
        .await
        .unwrap();
    manager.logout().await.unwrap();

    let mut kinds = Vec::new();
    for expected in [
        TokenEventKind::Fetched,
        TokenEventKind::Refreshed,
        TokenEventKind::Set,
        TokenEventKind::Cleared,
    ] {
        let event = next_event(&mut events, expected).await;
        assert_clean("event", &format!("{event:?}"));
        if expected != TokenEventKind::Cleared {
            let token = event.token().expect("the token, on request");
            assert_eq!(
                event.info().fingerprint.as_deref(),
                Some(token.fingerprint().as_str())
            );
        }
        kinds.push(event.kind());
    }
    assert!(events.try_recv().is_err(), "no other event");
    drop(manager);
    assert!(
        captured().contains("token changed"),
        "TracingListener logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_listener_does_not_break_the_manager_or_other_listeners() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    // An unwinding panic that skips the panic hook: with RUST_BACKTRACE=1 the
    // hook resolves a backtrace's symbols in this large test binary, which under
    // load took longer than the wait below for each of the three events (the
    // listeners after it hear each event once it returns).
    let bug = |_: &TokenEvent| std::panic::resume_unwind(Box::new("listener bug"));
    let (manager, mut events) = observed(builder.listener(bug));
    for _ in 0..3 {
        manager.token().await.unwrap();
        clock.advance(HOUR);
    }
    next_event(&mut events, TokenEventKind::Fetched).await;
    next_event(&mut events, TokenEventKind::Refreshed).await;
    next_event(&mut events, TokenEventKind::Refreshed).await;
    assert_eq!(source.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_listener_does_not_block_refreshes() {
    let _h = harness();
    let source = CountingSource::new(HOUR);
    let (unblock, blocked) = std::sync::mpsc::channel::<()>();
    let blocked = std::sync::Mutex::new(blocked);
    let heard = Arc::new(AtomicUsize::new(0));
    let counter = heard.clone();
    let manager = TokenManager::builder(source.clone())
        .listener(move |_: &TokenEvent| {
            let _ = blocked.lock().unwrap().recv(); // stuck until the test says so
            counter.fetch_add(1, SeqCst);
        })
        .build()
        .unwrap();
    for _ in 0..5 {
        manager.force_refresh().await.unwrap();
    }
    assert_eq!(
        source.calls(),
        5,
        "five refreshes done while the listener is stuck"
    );
    for _ in 0..5 {
        unblock.send(()).unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        while heard.load(SeqCst) < 5 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("all five events delivered once unblocked");
}

/// Issue 17: `listeners_idle` returns once every listener has returned from
/// every event emitted before it: no sleep to see a logout's `Cleared`. A slow
/// listener holds it back until it is done; a manager without listeners does
/// not wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_idle_waits_until_every_event_was_heard() {
    let _h = harness();
    let (_source, _clock, builder) = counting(HOUR);
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let hold = std::sync::Mutex::new(hold);
    let manager = builder
        .listener({
            let heard = heard.clone();
            move |event: &TokenEvent| {
                if event.kind() == TokenEventKind::Cleared {
                    let _ = hold.lock().unwrap().recv(); // slow on the last one
                }
                heard.lock().unwrap().push(event.kind());
            }
        })
        .build()
        .unwrap();
    manager.token().await.unwrap();
    manager.force_refresh().await.unwrap();
    manager.logout().await.unwrap();
    let idle = tokio::spawn({
        let manager = manager.clone();
        async move { manager.listeners_idle().await }
    });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(!idle.is_finished(), "the listener is still on `Cleared`");
    release.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), idle)
        .await
        .expect("idle once the listener returned")
        .unwrap();
    assert_eq!(
        *heard.lock().unwrap(),
        [
            TokenEventKind::Fetched,
            TokenEventKind::Refreshed,
            TokenEventKind::Cleared
        ]
    );

    let (_source, _clock, builder) = counting(HOUR);
    let quiet = builder.build().unwrap();
    quiet.token().await.unwrap();
    quiet.listeners_idle().await; // no listener: at once
}
