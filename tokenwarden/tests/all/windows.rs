//! The refresh windows, backoff and clock jumps, driven by a `ManualClock`.

use crate::common::*;
use std::time::Duration;
use tokenwarden::{Clock, ErrorKind, TokenEventKind, TokenManager};

const HOUR: Duration = Duration::from_secs(3600);

fn manager(
    source: &std::sync::Arc<CountingSource>,
    clock: &tokenwarden::ManualClock,
) -> TokenManager {
    TokenManager::builder(source.clone())
        .clock(clock.clone())
        .refresh_jitter(0.0)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn fresh_token_is_served_from_cache() {
    let _h = harness();
    let (source, clock) = (CountingSource::new(HOUR), clock());
    let manager = manager(&source, &clock);
    let first = manager.token().await.unwrap().fingerprint();
    for _ in 0..100 {
        assert_eq!(manager.token().await.unwrap().fingerprint(), first);
        assert_eq!(
            *manager.header().await.unwrap(),
            format!("Bearer {MARKER}-at-1").as_str()
        );
    }
    assert_eq!(source.calls(), 1);
    assert_eq!(manager.stats().hits, 200);
    assert_eq!(manager.stats().fetches, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn no_refresh_ahead_means_no_background_refresh_and_callers_wait_when_expiring() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    let manager = builder
        .refresh_jitter(0.0)
        .refresh_ahead(Duration::ZERO)
        .build()
        .unwrap();
    let first = manager.token().await.unwrap().fingerprint();
    // Where the default stale window would be: served, nothing started.
    clock.advance(HOUR - Duration::from_secs(60));
    assert_eq!(manager.token().await.unwrap().fingerprint(), first);
    settle().await;
    assert_eq!(
        source.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // The expiring window (the last 30 s): the caller waits for the new token.
    clock.advance(Duration::from_secs(31));
    assert_ne!(manager.token().await.unwrap().fingerprint(), first);
    assert_eq!(
        source.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test(flavor = "current_thread")]
async fn stale_window_serves_the_cached_token_and_refreshes_once_in_background() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    let (manager, mut events) = observed(builder.refresh_jitter(0.0));
    let first = manager.token().await.unwrap().fingerprint();
    next_event(&mut events, TokenEventKind::Fetched).await;

    clock.advance(HOUR - Duration::from_secs(300) - Duration::from_millis(1));
    manager.token().await.unwrap();
    settle().await;
    assert_eq!(
        source.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "still fresh"
    );

    clock.advance(Duration::from_millis(1)); // the stale window begins
    source.close(); // hold the refresh so that every call below sees it in flight
    for _ in 0..50 {
        assert_eq!(
            manager.token().await.unwrap().fingerprint(),
            first,
            "stale is served at once"
        );
    }
    source.open();
    let event = next_event(&mut events, TokenEventKind::Refreshed).await;
    assert_eq!(
        source.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let second = manager.token().await.unwrap().fingerprint();
    assert_ne!(second, first);
    assert_eq!(event.info().fingerprint.as_deref(), Some(second.as_str()));
    assert_eq!(
        manager.stats().waits,
        0,
        "nobody waited for a stale refresh"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn expiring_window_waits_for_the_refresh() {
    let _h = harness();
    let (source, clock) = (CountingSource::new(HOUR), clock());
    let manager = manager(&source, &clock);
    let first = manager.token().await.unwrap().fingerprint();
    clock.advance(HOUR - Duration::from_secs(30)); // min_valid: 30 s
    let second = manager.token().await.unwrap();
    assert_ne!(
        second.fingerprint(),
        first,
        "the caller waited for the new token"
    );
    assert_eq!(second.expires_in(clock.now()), Some(HOUR));
    assert_eq!(source.calls(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn failed_refresh_keeps_serving_a_valid_token_then_errors_once_expired() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    let manager = builder
        .backoff(Duration::from_secs(2), Duration::from_secs(10))
        .build()
        .unwrap();
    let first = manager.token().await.unwrap().fingerprint();
    source.fail_with(Some(unavailable()));

    clock.advance(HOUR - Duration::from_secs(20)); // expiring, still valid
    assert_eq!(
        manager.token().await.unwrap().fingerprint(),
        first,
        "served despite the failure"
    );
    assert_eq!(manager.stats().failures, 1);
    // Backing off: further calls get the valid token without asking the source.
    for _ in 0..10 {
        assert_eq!(manager.token().await.unwrap().fingerprint(), first);
    }
    assert_eq!(source.calls(), 2);

    clock.advance(Duration::from_secs(21)); // expired
    let error = manager.token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoValidToken);
    assert_eq!(error.source_name(), Some("counting"));
    assert!(error.is_transient());
    let message = error.to_string();
    assert!(
        message.contains("`counting`") && message.contains("HTTP 503"),
        "{message}"
    );
    assert_clean("error", &format!("{error} {error:?}"));

    source.fail_with(None);
    clock.advance(Duration::from_secs(10)); // past any backoff
    assert_ne!(
        manager.token().await.unwrap().fingerprint(),
        first,
        "recovered"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn backoff_grows_with_jitter_and_is_capped() {
    let _h = harness();
    let (source, clock) = (CountingSource::new(HOUR), clock());
    source.fail_with(Some(unavailable()));
    let manager = TokenManager::builder(source.clone())
        .clock(clock.clone())
        .backoff(Duration::from_secs(1), Duration::from_secs(8))
        .build()
        .unwrap();
    assert!(manager.token().await.is_err());
    let step = Duration::from_millis(50);
    let mut gaps = Vec::new();
    let mut since_last = Duration::ZERO;
    while gaps.len() < 6 {
        clock.advance(step);
        since_last += step;
        let before = source.calls();
        assert!(manager.token().await.is_err());
        if source.calls() > before {
            gaps.push(since_last);
            since_last = Duration::ZERO;
        }
    }
    for (gap, ceiling) in gaps.iter().zip([1u64, 2, 4, 8, 8, 8]) {
        let ceiling = Duration::from_secs(ceiling);
        assert!(
            *gap >= ceiling / 2 && *gap <= ceiling + step,
            "gap {gap:?} for ceiling {ceiling:?}: {gaps:?}"
        );
    }
    assert_eq!(manager.stats().failures, 7);
}

#[tokio::test(flavor = "current_thread")]
async fn short_tokens_are_served_from_cache_for_most_of_their_life() {
    let _h = harness();
    // Peers with a fixed 30-60 s margin turn every call for a 5 s token into a
    // token request; windows that scale with the lifetime do not.
    let (source, clock, builder) = counting(Duration::from_secs(5));
    let manager = builder.build().unwrap();
    let calls = 600; // one call every 100 ms for 60 s
    for _ in 0..calls {
        manager.token().await.expect("always a valid token");
        settle().await;
        clock.advance(Duration::from_millis(100));
    }
    let stats = manager.stats();
    // One token per 2.5-3 s of its 5 s life.
    assert!(
        source.calls() <= 25,
        "{} token requests for {calls} calls",
        source.calls()
    );
    assert!(stats.hits >= calls - 1, "{stats:?}");
    assert_eq!(stats.waits, 0, "{stats:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn clock_jumps_cause_neither_a_stall_nor_a_storm() {
    let _h = harness();
    let (source, clock) = (CountingSource::new(HOUR), clock());
    let manager = manager(&source, &clock);
    manager.token().await.unwrap();

    clock.advance(Duration::from_secs(10 * 3600)); // forward: one refresh
    for _ in 0..20 {
        manager.token().await.unwrap();
    }
    assert_eq!(source.calls(), 2);

    clock.rewind(Duration::from_secs(24 * 3600)); // backward: the token looks young
    for _ in 0..20 {
        manager.token().await.unwrap();
    }
    assert_eq!(source.calls(), 2);

    // A failure, then the clock steps back before it: the backoff does not stall.
    clock.advance(Duration::from_secs(24 * 3600 + 3600));
    source.fail_with(Some(unavailable()));
    assert!(manager.token().await.is_err());
    let failed = source.calls();
    clock.rewind(Duration::from_secs(60));
    source.fail_with(None);
    // A minute earlier the token is valid again but stale: it is served, and the
    // refresh starts at once instead of waiting out a backoff measured in the future.
    manager.token().await.expect("a valid token");
    settle().await;
    assert_eq!(source.calls(), failed + 1);
    assert_eq!(manager.stats().failures, 1);
}

/// Issue 17: a window the user did not set follows the one they did. A short
/// `refresh_ahead` alone builds (its `min_valid` is a tenth of it, 100 ms here):
/// one second before expiry the cached token is served and refreshed in the
/// background. A long `min_valid` alone builds (the stale window grows to it).
/// Only both set, and contradicting, is an error, and it says what to do.
#[tokio::test(flavor = "current_thread")]
async fn a_window_left_unset_follows_the_one_set() {
    let _h = harness();
    let (source, clock, builder) = counting(Duration::from_secs(60));
    let manager = builder
        .refresh_jitter(0.0)
        .refresh_ahead(Duration::from_secs(1))
        .build()
        .expect("refresh_ahead alone builds");
    let first = manager.token().await.unwrap().fingerprint();
    clock.advance(Duration::from_millis(58_950)); // fresh still
    assert_eq!(manager.token().await.unwrap().fingerprint(), first);
    settle().await;
    assert_eq!(
        source.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    clock.advance(Duration::from_millis(100)); // 950 ms left: stale, not expiring
    assert_eq!(manager.token().await.unwrap().fingerprint(), first);
    settle().await;
    assert_eq!(manager.stats().waits, 0, "nobody waited");
    assert_eq!(
        source.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    let (_, _, builder) = counting(HOUR);
    builder
        .min_valid(Duration::from_secs(600))
        .build()
        .expect("min_valid alone builds");
    let (_, _, builder) = counting(HOUR);
    let error = builder
        .refresh_ahead(Duration::from_secs(10))
        .min_valid(Duration::from_secs(20))
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(
        error.to_string().contains("set one of them only"),
        "{error}"
    );
}
