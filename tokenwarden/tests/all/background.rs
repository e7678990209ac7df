//! The optional background refresh task.

use crate::common::*;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::{TokenEventKind, TokenManager};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_the_token_fresh_without_any_call() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    let (manager, mut events) = observed(builder.background_refresh(true));
    next_event(&mut events, TokenEventKind::Fetched).await; // fetched at start
    for round in 1..=3 {
        clock.advance(HOUR - Duration::from_secs(60)); // into the stale window
        next_event(&mut events, TokenEventKind::Refreshed).await;
        assert_eq!(source.calls(), 1 + round);
    }
    let stats = manager.stats();
    assert_eq!(stats.hits + stats.waits, 0, "nobody called token()");
    let token = manager.token().await.unwrap();
    assert_eq!(token.access_token.secret(), format!("{MARKER}-at-4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_ends_when_the_last_handle_is_dropped() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    let (manager, mut events) = observed(builder.background_refresh(true));
    next_event(&mut events, TokenEventKind::Fetched).await;
    let clone = manager.clone();
    drop(manager);
    assert!(Arc::strong_count(&source) > 1, "a handle is still alive");
    drop(clone);
    // Everything holding the source (manager, background task, listener task) is gone.
    tokio::time::timeout(Duration::from_secs(10), async {
        while Arc::strong_count(&source) > 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("no task keeps the manager alive");
    clock.advance(2 * HOUR);
    tokio::task::yield_now().await;
    assert_eq!(source.calls(), 1, "no refresh after the drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_backoff_when_the_source_fails() {
    let _h = harness();
    let (source, clock) = (CountingSource::new(HOUR), clock());
    source.fail_with(Some(unavailable()));
    let (listener, mut events) = event_channel();
    let manager = TokenManager::builder(source.clone())
        .clock(clock.clone())
        .listener(listener)
        .backoff(Duration::from_secs(1), Duration::from_secs(4))
        .background_refresh(true)
        .build()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while manager.stats().failures < 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    source.fail_with(None);
    clock.advance(Duration::from_secs(5)); // past the backoff: the task retries
    next_event(&mut events, TokenEventKind::Fetched).await;
    assert!(manager.token().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_is_not_undone_by_the_background_task() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    let (manager, mut events) = observed(builder.background_refresh(true));
    next_event(&mut events, TokenEventKind::Fetched).await;
    manager.logout().await.unwrap();
    next_event(&mut events, TokenEventKind::Cleared).await;
    clock.advance(2 * HOUR); // the task wakes up more than once meanwhile
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(source.calls(), 1, "no login behind the user's back");
    assert!(!manager.info().await.authenticated);
    manager.token().await.expect("asking again logs in again");
    assert_eq!(source.calls(), 2);
}
