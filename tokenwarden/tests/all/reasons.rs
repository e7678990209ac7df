//! Why each refresh happened (issue 18): carried by `TokenEvent::reason`, and
//! kept as the manager's `last_refresh` with how it ended.

use crate::common::*;
use std::time::Duration;
use tokenwarden::{ErrorKind, RefreshOutcome, RefreshReason, Token, TokenEventKind};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refresh_says_why_it_happened_and_how_it_ended() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    let builder = builder.background_refresh(false).refresh_jitter(0.0);
    let (manager, mut events) = observed(builder);
    let last = |manager: &tokenwarden::TokenManager| {
        let last = manager.last_refresh().expect("a refresh was made");
        (last.reason, last.outcome)
    };
    assert!(manager.last_refresh().is_none());

    // The first call logs in.
    manager.token().await.unwrap();
    let event = next_event(&mut events, TokenEventKind::Fetched).await;
    assert_eq!(event.reason(), Some(RefreshReason::FirstUse));
    assert_eq!(
        last(&manager),
        (RefreshReason::FirstUse, RefreshOutcome::Fetched)
    );

    // In the stale window (the last 5 minutes of the hour): served, and refreshed
    // ahead of its expiry.
    clock.advance(Duration::from_secs(56 * 60));
    manager.token().await.unwrap();
    let event = next_event(&mut events, TokenEventKind::Refreshed).await;
    assert_eq!(event.reason(), Some(RefreshReason::AheadOfExpiry));
    // The event is told as the token is stored; the attempt ends just after.
    until(|| manager.last_refresh().unwrap().reason == RefreshReason::AheadOfExpiry).await;
    assert_eq!(
        last(&manager),
        (RefreshReason::AheadOfExpiry, RefreshOutcome::Refreshed)
    );

    // Past its expiry: callers wait for the refresh.
    clock.advance(2 * HOUR);
    manager.token().await.unwrap();
    let event = next_event(&mut events, TokenEventKind::Refreshed).await;
    assert_eq!(event.reason(), Some(RefreshReason::Expired));

    // Rejected by the API (a 401).
    let rejected = manager.token().await.unwrap();
    assert!(manager.invalidate(&rejected));
    manager.token().await.unwrap();
    let event = next_event(&mut events, TokenEventKind::Refreshed).await;
    assert_eq!(event.reason(), Some(RefreshReason::Invalidated));

    // Asked for.
    manager.force_refresh().await.unwrap();
    let event = next_event(&mut events, TokenEventKind::Refreshed).await;
    assert_eq!(event.reason(), Some(RefreshReason::Forced));
    assert_eq!(
        last(&manager),
        (RefreshReason::Forced, RefreshOutcome::Refreshed)
    );

    // Given by the caller: no reason of the manager's.
    let given = Token::new(format!("{MARKER}-set")).with_expires_in(HOUR);
    manager.set_tokens(given).await.unwrap();
    let event = next_event(&mut events, TokenEventKind::Set).await;
    assert_eq!(event.reason(), None);

    // A failed refresh is the last one, with what failed.
    source.fail_with(Some(unavailable()));
    clock.advance(2 * HOUR);
    assert!(manager.token().await.is_err());
    assert_eq!(
        last(&manager),
        (
            RefreshReason::Expired,
            RefreshOutcome::Failed(ErrorKind::Transport)
        )
    );
    let took = manager.last_refresh().unwrap().took;
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert!(format!("{:?}", manager.last_refresh()).contains("Expired"));
}
