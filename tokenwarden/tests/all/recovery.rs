//! The recovery chain (cached → stored → refresh → fetch → error), stores, manual
//! tokens, logout and bad input.

use crate::common::*;
use async_trait::async_trait;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenwarden::store::MemoryStore;
use tokenwarden::{
    source::from_fn, Clock, Error, ErrorKind, Result, Token, TokenEventKind, TokenKey,
    TokenManager, TokenStore,
};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "current_thread")]
async fn rejected_refresh_token_falls_back_to_a_full_fetch() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    let manager = builder.build().unwrap();
    manager.token().await.unwrap();
    source.fail_refresh_with(Some(invalid_grant()));
    clock.advance(HOUR);
    let token = manager.token().await.unwrap();
    assert_eq!(token.access_token.secret(), format!("{MARKER}-at-2"));
    assert_eq!(
        (source.refreshes.load(SeqCst), source.fetches.load(SeqCst)),
        (1, 2)
    );
    let stats = manager.stats();
    assert_eq!((stats.refreshes, stats.fetches, stats.failures), (1, 2, 0));
}

#[tokio::test(flavor = "current_thread")]
async fn other_refresh_errors_do_not_log_in_again() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    let manager = builder.build().unwrap();
    manager.token().await.unwrap();
    source.fail_refresh_with(Some(unavailable()));
    clock.advance(HOUR);
    let error = manager.token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoValidToken);
    assert_eq!(
        source.fetches.load(SeqCst),
        1,
        "no login for a transient refresh failure"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_refresh_without_a_refresh_token_keeps_the_old_one() {
    let _h = harness();
    let clock = clock();
    let store = MemoryStore::new();
    let source = from_fn("no-rotation", || async {
        Ok(Token::new("first")
            .with_refresh_token(format!("{MARKER}-rt"))
            .with_expires_in(HOUR))
    })
    .with_refresh(|current: Token| async move {
        assert_eq!(
            current.refresh_token.as_ref().unwrap().secret(),
            format!("{MARKER}-rt")
        );
        Ok(Token::new("second").with_expires_in(HOUR))
    });
    let manager = TokenManager::builder(source)
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap();
    manager.token().await.unwrap();
    let second = manager.force_refresh().await.unwrap();
    assert_eq!(second.access_token.secret(), "second");
    assert_eq!(
        second.refresh_token.as_ref().unwrap().secret(),
        format!("{MARKER}-rt")
    );
    let stored = store.load(manager.key()).await.unwrap().unwrap();
    assert_eq!(
        stored.refresh_token.unwrap().secret(),
        format!("{MARKER}-rt")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_stored_token_is_used_before_asking_the_source() {
    let _h = harness();
    let (source, clock) = (CountingSource::new(HOUR), clock());
    let store = MemoryStore::new();
    let key = TokenKey::new("counting");
    let saved = Token::new(format!("{MARKER}-saved")).with_expires_at(clock.now() + HOUR);
    store.save(&key, &saved).await.unwrap();
    let manager = TokenManager::builder(source.clone())
        .clock(clock.clone())
        .store(store)
        .build()
        .unwrap();
    assert_eq!(
        manager.info().await.fingerprint,
        Some(saved.fingerprint()),
        "info reads the store"
    );
    assert_eq!(
        manager.token().await.unwrap().fingerprint(),
        saved.fingerprint()
    );
    assert_eq!(source.calls(), 0);
    assert_eq!(manager.stats().store_loads, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn rotated_refresh_tokens_are_stored_before_the_token_is_served() {
    let _h = harness();
    let (source, clock) = (CountingSource::new(HOUR), clock());
    let store = MemoryStore::new();
    let manager = TokenManager::builder(source.clone())
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap();
    for n in 1..=3 {
        let token = manager.token().await.unwrap();
        let stored = store.load(manager.key()).await.unwrap().expect("stored");
        assert_eq!(stored.fingerprint(), token.fingerprint());
        assert_eq!(
            stored.refresh_token.unwrap().secret(),
            format!("{MARKER}-rt-{n}")
        );
        clock.advance(HOUR);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_backing_off_a_token_another_process_stored_is_used() {
    let _h = harness();
    let clock = clock();
    let store = MemoryStore::new();
    let manager = |source: &Arc<CountingSource>| {
        TokenManager::builder(source.clone())
            .clock(clock.clone())
            .store(store.clone())
            .build()
            .unwrap()
    };
    // Two processes sharing a store: this one's endpoint fails, so it backs off.
    let failing = CountingSource::new(HOUR);
    failing.fail_with(Some(unavailable()));
    let ours = manager(&failing);
    assert!(ours.token().await.is_err());
    // The other process gets a token and stores it.
    let other = manager(&CountingSource::new(HOUR));
    let theirs = other.token().await.unwrap().fingerprint();
    // Still within our backoff: our source is not asked again, but the store is.
    clock.advance(Duration::from_millis(150));
    let found = ours
        .token()
        .await
        .expect("the stored token, backoff or not");
    assert_eq!(found.fingerprint(), theirs);
    assert_eq!(failing.calls(), 1, "no new request while backing off");
    assert_eq!(
        ours.stats().failures,
        1,
        "looking in the store is not a failure"
    );
}

/// A memory store that counts its loads.
#[derive(Debug, Default)]
struct CountedLoads {
    inner: MemoryStore,
    loads: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl tokenwarden::TokenStore for CountedLoads {
    async fn load(&self, key: &tokenwarden::TokenKey) -> tokenwarden::Result<Option<Token>> {
        self.loads.fetch_add(1, SeqCst);
        self.inner.load(key).await
    }
    async fn save(&self, key: &tokenwarden::TokenKey, token: &Token) -> tokenwarden::Result<()> {
        self.inner.save(key, token).await
    }
    async fn delete(&self, key: &tokenwarden::TokenKey) -> tokenwarden::Result<()> {
        self.inner.delete(key).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_is_looked_in_at_most_every_100_ms_while_backing_off() {
    let _h = harness();
    let clock = clock();
    let failing = CountingSource::new(HOUR);
    failing.fail_with(Some(unavailable()));
    let store = Arc::new(CountedLoads::default());
    let manager = TokenManager::builder(failing.clone())
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap();
    assert!(manager.token().await.is_err());
    let after_failure = store.loads.load(SeqCst);
    for _ in 0..100 {
        assert!(manager.token().await.is_err(), "nothing in the store");
    }
    assert_eq!(
        store.loads.load(SeqCst),
        after_failure,
        "none within 100 ms"
    );
    clock.advance(Duration::from_millis(150));
    for _ in 0..100 {
        assert!(manager.token().await.is_err());
    }
    assert_eq!(
        store.loads.load(SeqCst),
        after_failure + 1,
        "one per 100 ms (before: {after_failure})"
    );
    assert_eq!(failing.calls(), 1, "the source waits out the backoff");
    assert_eq!(manager.stats().failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_sharing_a_store_refresh_once_between_them() {
    let _h = harness();
    let (source, clock) = (CountingSource::new(HOUR), clock());
    let store = MemoryStore::new();
    let managers: Vec<_> = (0..8)
        .map(|_| {
            TokenManager::builder(source.clone())
                .clock(clock.clone())
                .store(store.clone())
                .build()
                .unwrap()
        })
        .collect();
    for manager in &managers {
        manager.token().await.unwrap();
    }
    assert_eq!(source.calls(), 1, "one fetch, seven store loads");
    for _ in 0..3 {
        clock.advance(HOUR);
        let tasks: Vec<_> = managers
            .iter()
            .map(|m| {
                let m = m.clone();
                tokio::spawn(async move { m.token().await.map(|t| t.fingerprint()) })
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for task in tasks {
            seen.insert(task.await.unwrap().unwrap());
        }
        assert_eq!(seen.len(), 1, "everyone got the same new token");
    }
    assert_eq!(
        source.calls(),
        4,
        "one token request per expiry across 8 managers"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn tokens_from_the_environment_are_refreshed_by_the_source() {
    let _h = harness();
    std::env::set_var("TW_TEST_ACCESS", "");
    std::env::set_var("TW_TEST_REFRESH", format!("{MARKER}-env-rt"));
    let given = Token::from_env_vars("TW_TEST_ACCESS", "TW_TEST_REFRESH").unwrap();
    let refreshed_with = Arc::new(Mutex::new(String::new()));
    let seen = refreshed_with.clone();
    let source = from_fn("env-backed", || async {
        Err(Error::source_failed("env-backed", "no login here"))
    })
    .with_refresh(move |current: Token| {
        *seen.lock().unwrap() = current
            .refresh_token
            .map(|r| r.secret().to_owned())
            .unwrap_or_default();
        async { Ok(Token::new("from-refresh").with_expires_in(HOUR)) }
    });
    let manager = TokenManager::builder(source).build().unwrap();
    manager.set_tokens(given).await.unwrap();
    assert_eq!(
        manager.token().await.unwrap().access_token.secret(),
        "from-refresh"
    );
    assert_eq!(*refreshed_with.lock().unwrap(), format!("{MARKER}-env-rt"));

    let missing = Token::from_env_vars("TW_TEST_UNSET_A", "TW_TEST_UNSET_B").unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Config);
    assert!(missing.to_string().contains("TW_TEST_UNSET_A"), "{missing}");
}

#[tokio::test(flavor = "current_thread")]
async fn set_tokens_stores_and_serves_them() {
    let _h = harness();
    let (source, clock) = (CountingSource::new(HOUR), clock());
    let store = MemoryStore::new();
    let (listener, mut events) = event_channel();
    let manager = TokenManager::builder(source.clone())
        .clock(clock.clone())
        .store(store.clone())
        .listener(listener)
        .build()
        .unwrap();
    let given = Token::new(format!("{MARKER}-given")).with_expires_in(HOUR);
    manager.set_tokens(given).await.unwrap();
    let event = next_event(&mut events, TokenEventKind::Set).await;
    assert!(event.info().authenticated);
    assert_eq!(
        manager.token().await.unwrap().access_token.secret(),
        format!("{MARKER}-given")
    );
    assert_eq!(store.len(), 1);
    assert_eq!(source.calls(), 0);
    let expired = Token::new("old").with_expires_at(clock.now() - HOUR);
    assert_eq!(
        manager.set_tokens(expired).await.unwrap_err().kind(),
        ErrorKind::InvalidResponse
    );
}

#[tokio::test(flavor = "current_thread")]
async fn logout_revokes_then_clears_cache_and_store() {
    let _h = harness();
    let revoked = Arc::new(Mutex::new(Vec::new()));
    let seen = revoked.clone();
    let store = MemoryStore::new();
    let source = from_fn("revocable", || async {
        Ok(Token::new(format!("{MARKER}-rev")).with_expires_in(HOUR))
    })
    .with_revoke(move |token: Token| {
        seen.lock().unwrap().push(token.fingerprint());
        async { Ok(()) }
    });
    let (listener, mut events) = event_channel();
    let manager = TokenManager::builder(source)
        .store(store.clone())
        .listener(listener)
        .build()
        .unwrap();
    let fingerprint = manager.token().await.unwrap().fingerprint();
    manager.logout().await.unwrap();
    assert_eq!(*revoked.lock().unwrap(), vec![fingerprint.clone()]);
    assert!(store.is_empty());
    let info = manager.info().await;
    assert!(!info.authenticated && info.fingerprint.is_none());
    let cleared = next_event(&mut events, TokenEventKind::Cleared).await;
    assert!(cleared.token().is_none());
    // Logged out, the next call logs in again.
    assert_eq!(manager.token().await.unwrap().fingerprint(), fingerprint);
}

/// A store whose every operation fails, like a disk that went read-only.
#[derive(Debug)]
struct BrokenStore;

#[async_trait]
impl TokenStore for BrokenStore {
    async fn load(&self, _: &TokenKey) -> Result<Option<Token>> {
        Err(Error::store(
            "broken",
            "cannot read /nowhere: permission denied",
        ))
    }
    async fn save(&self, _: &TokenKey, _: &Token) -> Result<()> {
        Err(Error::store(
            "broken",
            "cannot write /nowhere: read-only file system",
        ))
    }
    async fn delete(&self, _: &TokenKey) -> Result<()> {
        Err(Error::store("broken", "cannot delete"))
    }
    fn name(&self) -> &str {
        "broken"
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_store_does_not_stop_the_manager() {
    let _h = harness();
    let source = CountingSource::new(HOUR);
    let manager = TokenManager::builder(source.clone())
        .store(BrokenStore)
        .build()
        .unwrap();
    manager.token().await.expect("served without the store");
    assert_eq!(source.calls(), 1);
    let error = manager
        .set_tokens(Token::new("x").with_expires_in(HOUR))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Store);
    assert!(error.to_string().contains("read-only"), "{error}");
    let error = manager.logout().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Store);
    assert!(
        !manager.info().await.authenticated,
        "cleared from memory all the same"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn bad_tokens_from_a_source_are_typed_errors() {
    let _h = harness();
    let clock = clock();
    let expired_at = clock.now() - Duration::from_secs(5);
    let cases: Vec<(Token, &str)> = vec![
        (
            Token::new("ok").with_expires_at(expired_at),
            "already expired",
        ),
        (Token::new(""), "empty"),
        (
            Token::new(format!("{MARKER}\nInjected: header")).with_expires_in(HOUR),
            "not allowed in an HTTP header",
        ),
    ];
    for (token, expected) in cases {
        let manager = TokenManager::builder(from_fn("bad", move || {
            let token = token.clone();
            async move { Ok(token) }
        }))
        .clock(clock.clone())
        .build()
        .unwrap();
        let error = manager.token().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NoValidToken);
        assert!(error.last_attempt().map(|e| e.kind()) == Some(ErrorKind::InvalidResponse));
        let text = format!("{error} / {error:?}");
        assert!(text.contains(expected) && text.contains("`bad`"), "{text}");
        assert_clean("error", &text);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_source_is_an_error_not_a_crash() {
    let _h = harness();
    let clock = clock();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let manager = TokenManager::builder(from_fn("flaky", move || {
        let n = counted.fetch_add(1, SeqCst);
        async move {
            assert!(n > 0, "first login panics");
            Ok(Token::new("fine").with_expires_in(HOUR))
        }
    }))
    .clock(clock.clone())
    .build()
    .unwrap();
    let error = manager.token().await.unwrap_err();
    assert!(error.to_string().contains("panicked"), "{error}");
    clock.advance(Duration::from_secs(2)); // past the first backoff
    assert_eq!(manager.token().await.unwrap().access_token.secret(), "fine");
}

#[test]
fn invalid_settings_are_config_errors_that_say_what_to_fix() {
    let _h = harness();
    let source = || CountingSource::new(HOUR);
    let cases = [
        (
            TokenManager::builder(source()).refresh_jitter(1.5).build(),
            "refresh_jitter",
        ),
        (
            TokenManager::builder(source())
                .min_valid(Duration::from_secs(600))
                .refresh_ahead(Duration::from_secs(60))
                .build(),
            "min_valid",
        ),
        (
            TokenManager::builder(source())
                .default_lifetime(Duration::ZERO)
                .build(),
            "default_lifetime",
        ),
        (
            TokenManager::builder(source())
                .backoff(Duration::ZERO, Duration::ZERO)
                .build(),
            "backoff",
        ),
    ];
    for (built, field) in cases {
        let error = built.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains(field), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_during_a_refresh_wins_over_it() {
    let _h = harness();
    let source = CountingSource::new(HOUR);
    let store = MemoryStore::new();
    let manager = TokenManager::builder(source.clone())
        .store(store.clone())
        .refresh_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    source.close();
    let in_flight = tokio::spawn({
        let manager = manager.clone();
        async move { manager.token().await.map(|t| t.fingerprint()) }
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while source.calls() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the fetch started");
    manager.logout().await.unwrap();
    source.open();
    // The logout waited for the request that was out (up to the refresh
    // timeout); whatever it brings is neither stored nor served.
    let error = in_flight.await.unwrap().unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(store.is_empty(), "the late token was not stored");
    assert!(!manager.info().await.authenticated, "nor served");
    manager.token().await.expect("a new login works");
}

#[test]
fn handles_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<tokenwarden::TokenRef>();
    assert_send_sync::<tokenwarden::HeaderRef>();
    assert_send_sync::<TokenManager>();
    assert_send_sync::<tokenwarden::TokenRegistry<String>>();
}
