//! Metrics (issue 18), read from an in-process recorder after each scenario:
//! token requests, attempts and their reasons, waits, failures and backoff,
//! leases, store operations, hits and gauges; and series that stay few with
//! 100,000 registry keys.

use crate::common::*;
use crate::gated_store::GatedStore;
use crate::recorder::recorded;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::metrics::*;
use tokenwarden::store::{MemoryStore, TokenStore};
use tokenwarden::{Clock as _, Error, OAuthError, Token, TokenKey, TokenManager, TokenRegistry};

const HOUR: Duration = Duration::from_secs(3600);

/// A key of this test's own: its series are apart from every other test's.
fn key(name: &str) -> TokenKey {
    TokenKey::new(format!("metrics-{name}"))
}

fn oauth(code: &str) -> Error {
    Error::oauth("counting", Some(400), OAuthError::new(code))
}

/// No label of any series holds a secret.
fn no_secret_in_labels() {
    for (name, labels) in recorded().series() {
        for (label, value) in labels {
            assert!(!value.contains(MARKER), "{name} {label}={value}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_counts_its_requests_attempts_waits_and_failures() {
    let _h = harness();
    let m = recorded();
    let (source, clock, builder) = counting(HOUR);
    let store = MemoryStore::with_clock(clock.clone());
    let manager = builder
        .key(key("counts"))
        .store(store)
        .refresh_jitter(0.0)
        .build()
        .unwrap();
    let k = ("tokenwarden.key", manager.key().as_str());
    let series = |more: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        let mut labels = vec![k, ("tokenwarden.source", "counting")];
        labels.extend_from_slice(more);
        labels
    };
    let attempts = |reason, outcome| {
        m.counter(
            REFRESHES,
            &series(&[
                ("tokenwarden.reason", reason),
                ("tokenwarden.outcome", outcome),
            ]),
        )
    };

    // The first call logs in: one request, one attempt, one caller that waited.
    manager.token().await.unwrap();
    let login = [
        ("tokenwarden.grant", "custom"),
        ("tokenwarden.outcome", "success"),
    ];
    assert_eq!(m.counter(TOKEN_REQUESTS, &series(&login)), 1);
    assert_eq!(
        m.histogram(TOKEN_REQUEST_DURATION, &series(&login)).len(),
        1
    );
    assert_eq!(attempts("first_use", "fetched"), 1);
    assert_eq!(m.histogram(WAIT_DURATION, &series(&[])).len(), 1);
    assert_eq!(
        m.counter(
            LEASE_OUTCOMES,
            &series(&[("tokenwarden.outcome", "acquired")])
        ),
        1
    );
    let store_op = |operation, outcome| {
        let labels = [
            ("tokenwarden.store", "memory"),
            ("tokenwarden.operation", operation),
            ("tokenwarden.outcome", outcome),
        ];
        m.counter(STORE_OPERATIONS, &labels)
    };
    assert!(store_op("save", "ok") >= 1 && store_op("lease", "ok") >= 1);

    // Hits are read when metrics are collected, never counted per call.
    for _ in 0..10 {
        manager.token().await.unwrap();
    }
    let hits_before = m.counter(HITS, &series(&[]));
    publish();
    assert_eq!(m.counter(HITS, &series(&[])), hits_before.max(10));
    assert_eq!(m.counter(HITS, &series(&[])), manager.stats().hits);
    let expires_in = m.gauge(TOKEN_EXPIRES_IN, &series(&[])).unwrap();
    assert!((3590.0..=3600.0).contains(&expires_in), "{expires_in}");
    assert_eq!(m.gauge(BACKING_OFF, &series(&[])), Some(0.0));
    assert_eq!(m.gauge(UNSAVED, &series(&[])), Some(0.0));

    // In the stale window: refreshed ahead of expiry, with the refresh token.
    clock.advance(Duration::from_secs(56 * 60));
    manager.token().await.unwrap();
    until(|| attempts("ahead_of_expiry", "refreshed") == 1).await;
    let refreshed = [
        ("tokenwarden.grant", "refresh_token"),
        ("tokenwarden.outcome", "success"),
    ];
    assert_eq!(m.counter(TOKEN_REQUESTS, &series(&refreshed)), 1);

    // After a 401, and when asked.
    let rejected = manager.token().await.unwrap().to_token();
    assert!(manager.invalidate(&rejected));
    manager.token().await.unwrap();
    assert_eq!(attempts("invalidated", "refreshed"), 1);
    manager.force_refresh().await.unwrap();
    assert_eq!(attempts("forced", "refreshed"), 1);

    // The authorization server refuses: counted by its error code, and the
    // manager backs off.
    source.fail_refresh_with(Some(oauth("invalid_client")));
    clock.advance(2 * HOUR);
    assert!(manager.token().await.is_err());
    let refused = [
        ("tokenwarden.grant", "refresh_token"),
        ("tokenwarden.outcome", "invalid_client"),
    ];
    assert_eq!(m.counter(TOKEN_REQUESTS, &series(&refused)), 1);
    assert_eq!(m.counter(FAILURES, &series(&[("error.type", "oauth")])), 1);
    assert_eq!(attempts("expired", "failed"), 1);
    publish();
    assert_eq!(m.gauge(BACKING_OFF, &series(&[])), Some(1.0));

    // A code no RFC defines mints no series of its own.
    source.fail_refresh_with(Some(oauth("made_up_by_a_hostile_server")));
    clock.advance(Duration::from_secs(60)); // past the backoff
    assert!(manager.token().await.is_err());
    let other = [("tokenwarden.outcome", "other_oauth_error")];
    assert_eq!(m.counter(TOKEN_REQUESTS, &series(&other)), 1);
    assert_eq!(
        m.counter(
            TOKEN_REQUESTS,
            &[("tokenwarden.outcome", "made_up_by_a_hostile_server")]
        ),
        0
    );

    // It recovers: no longer backing off.
    source.fail_refresh_with(None);
    clock.advance(Duration::from_secs(60));
    manager.token().await.unwrap();
    publish();
    assert_eq!(m.gauge(BACKING_OFF, &series(&[])), Some(0.0));
    assert_eq!(m.counter(FAILURES, &series(&[])), 2);
    no_secret_in_labels();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_that_hangs_is_counted_as_a_timeout() {
    let _h = harness();
    let m = recorded();
    let (source, clock, builder) = counting(HOUR);
    let manager = builder
        .key(key("timeout"))
        .refresh_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    source.close(); // the token endpoint never answers
    let asking = tokio::spawn({
        let manager = manager.clone();
        async move { manager.token().await }
    });
    until(|| source.calls() == 1).await;
    until(|| clock.sleepers() >= 1).await;
    // Past the refresh timeout, not yet past the caller's own wait (a second more).
    clock.advance(Duration::from_millis(5_500));
    let error = asking
        .await
        .unwrap()
        .expect_err("no token within the timeout");
    assert!(error.is_timeout(), "{error}");
    let k = ("tokenwarden.key", manager.key().as_str());
    until(|| m.counter(FAILURES, &[k, ("error.type", "timeout")]) == 1).await;
    assert_eq!(
        m.counter(TOKEN_REQUESTS, &[k, ("tokenwarden.outcome", "timeout")]),
        1
    );
    source.open();
}

/// Two instances over one store: the lease taken at once, waited out (the
/// holder's token taken instead), taken over from a holder that let it go, lost
/// by a holder that stalled; and a save that failed (the token unsaved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_outcomes_and_unsaved_tokens_are_counted() {
    let _h = harness();
    let m = recorded();
    let (clock, store_clock) = (clock(), clock());
    let store = Arc::new(GatedStore::over(MemoryStore::with_clock(
        store_clock.clone(),
    )));
    let source = CountingSource::new(HOUR);
    let manager = TokenManager::builder(source.clone())
        .key(key("leases"))
        .clock(clock.clone())
        .store(store.clone())
        .lease_ttl(Duration::from_secs(5))
        .build()
        .unwrap();
    let k = ("tokenwarden.key", manager.key().as_str());
    let leases = |outcome| m.counter(LEASE_OUTCOMES, &[k, ("tokenwarden.outcome", outcome)]);
    let key = key("leases");

    // Over a memory store (whose lease waits end when the token changes),
    // another instance holds the lease and stores its token: this one takes it.
    let memory = MemoryStore::with_clock(store_clock.clone());
    let watching = TokenManager::builder(source.clone())
        .key(self::key("waits"))
        .clock(clock.clone())
        .store(memory.clone())
        .build()
        .unwrap();
    let w = ("tokenwarden.key", watching.key().as_str());
    let held = memory
        .lease(watching.key(), Duration::from_secs(5))
        .await
        .unwrap();
    let asking = tokio::spawn({
        let manager = watching.clone();
        async move { manager.token().await.map(|t| t.fingerprint()) }
    });
    until(|| store_clock.sleepers() >= 1).await; // waiting for the lease
    let theirs = Token::new(format!("{MARKER}-theirs")).with_expires_at(clock.now() + HOUR);
    memory
        .save_leased(watching.key(), &theirs, &held)
        .await
        .unwrap();
    assert_eq!(asking.await.unwrap().unwrap(), theirs.fingerprint());
    held.release().await.unwrap();
    assert_eq!(
        m.counter(LEASE_OUTCOMES, &[w, ("tokenwarden.outcome", "changed")]),
        1
    );
    assert_eq!(source.calls(), 0);

    // Another instance holds it and lets it go without a token: taken over.
    let held = store.lease(&key, Duration::from_secs(5)).await.unwrap();
    let forced = tokio::spawn({
        let manager = manager.clone();
        async move { manager.force_refresh().await.map(|t| t.fingerprint()) }
    });
    until(|| store_clock.sleepers() >= 1).await;
    held.release().await.unwrap();
    forced.await.unwrap().unwrap();
    assert_eq!(leases("taken_over"), 1);
    assert_eq!(leases("acquired"), 0);

    // The save fails: the token is served unsaved.
    store.failing_saves.store(1, SeqCst);
    manager.force_refresh().await.unwrap();
    assert_eq!(leases("acquired"), 1);
    publish();
    assert_eq!(m.gauge(UNSAVED, &[k]), Some(1.0));
    let failed_save = [
        ("tokenwarden.store", "gated"),
        ("tokenwarden.operation", "save"),
        ("tokenwarden.outcome", "store"),
    ];
    assert_eq!(m.counter(STORE_OPERATIONS, &failed_save), 1);
    // Saved on the next attempt (the retry under the lease it kept).
    clock.advance(Duration::from_secs(2));
    store_clock.advance(Duration::from_secs(2));
    until(|| !manager.stats().unsaved).await;
    publish();
    assert_eq!(m.gauge(UNSAVED, &[k]), Some(0.0));

    // A holder that stalls past its lease learns it before it sends anything.
    let store = Arc::new(GatedStore::over(MemoryStore::with_clock(
        store_clock.clone(),
    )));
    let stalling = TokenManager::builder(source.clone())
        .key(self::key("stalls"))
        .clock(clock.clone())
        .store(store.clone())
        .lease_ttl(Duration::from_secs(5))
        .build()
        .unwrap();
    store.loads.close();
    let stalled = tokio::spawn({
        let manager = stalling.clone();
        async move { manager.token().await.map(|t| t.fingerprint()) }
    });
    store.loads.until_arrived(1).await; // the read before the lease
    store.loads.let_one_through();
    store.loads.until_arrived(2).await; // under the lease, reading the store again
    store_clock.advance(Duration::from_secs(6)); // the lease ends meanwhile
    store.loads.open();
    assert!(stalled.await.unwrap().is_err());
    let s = ("tokenwarden.key", stalling.key().as_str());
    assert_eq!(
        m.counter(LEASE_OUTCOMES, &[s, ("tokenwarden.outcome", "lost")]),
        1
    );
    no_secret_in_labels();
}

/// A registry of 100,000 keys exports one series per metric (and label values),
/// not one per key; one that asks for per-key metrics gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_of_100_000_keys_keeps_its_series_few() {
    let _h = harness();
    let m = recorded();
    let clock = clock();
    let registry = TokenRegistry::builder({
        let clock = clock.clone();
        move |tenant: &u32| {
            let tenant = *tenant;
            TokenManager::builder(tokenwarden::source::from_fn(
                format!("tenant-{tenant}"),
                move || async move {
                    Ok(Token::new(format!("{MARKER}-tenant-{tenant}")).with_expires_in(HOUR))
                },
            ))
            .key(TokenKey::new(format!("cardinality-{tenant}")))
            .clock(clock.clone())
            .build()
        }
    })
    .build();
    for tenant in 0..100_000u32 {
        registry.token(&tenant).await.unwrap();
        registry.token(&tenant).await.unwrap(); // a hit
    }
    publish();
    // No series names a key or source of the registry's.
    let per_key = (m.series().into_iter())
        .filter(|(_, labels)| {
            labels
                .iter()
                .any(|(_, v)| v.starts_with("cardinality-") || v.starts_with("tenant-"))
        })
        .count();
    assert_eq!(per_key, 0);
    // Added up instead (other tests' registries add to these too).
    assert!(m.gauge(REGISTRY_MANAGERS, &[]).unwrap() >= 100_000.0);
    let first_uses = [
        ("tokenwarden.reason", "first_use"),
        ("tokenwarden.outcome", "fetched"),
    ];
    assert!(m.counter(REFRESHES, &first_uses) >= 100_000);
    let unlabelled_hits = (m.series().into_iter())
        .filter(|(name, labels)| name == HITS && labels.is_empty())
        .count();
    assert_eq!(unlabelled_hits, 1);

    // The series of every metric stay few: the labels of its own tests and the
    // label values, not the keys.
    let series = m.series().len();
    assert!(series < 2_000, "{series} series");
    drop(registry);

    // A registry that asks for them gets per-key series.
    let few = TokenRegistry::builder(|name: &String| {
        let name = name.clone();
        TokenManager::builder(tokenwarden::source::from_fn(
            name.clone(),
            move || async move { Ok(Token::new(format!("{MARKER}-few")).with_expires_in(HOUR)) },
        ))
        .key(TokenKey::new(format!("few-{name}")))
        .build()
    })
    .per_key_metrics(true)
    .build();
    few.token(&"a".to_owned()).await.unwrap();
    let a = few.get(&"a".to_owned()).unwrap();
    let labels = [
        ("tokenwarden.key", a.key().as_str()),
        ("tokenwarden.source", "a"),
    ];
    assert_eq!(m.counter(TOKEN_REQUESTS, &labels), 1);
    no_secret_in_labels();
}

/// Hits survive their manager: a key's counter goes on where the dropped
/// manager left it, never back, never twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_of_a_dropped_manager_are_kept_once() {
    let _h = harness();
    let m = recorded();
    let build = || {
        let (_, _, builder) = counting(HOUR);
        builder.key(key("dropped")).build().unwrap()
    };
    let first = build();
    let labels = [("tokenwarden.key", first.key().as_str().to_owned())];
    let hits = || {
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        m.counter(HITS, &labels)
    };
    for _ in 0..6 {
        first.token().await.unwrap(); // a fetch, then 5 hits
    }
    publish();
    assert_eq!(hits(), 5);
    drop(first);
    publish();
    publish();
    assert_eq!(hits(), 5, "kept, not counted again");
    let second = build();
    for _ in 0..4 {
        second.token().await.unwrap(); // 3 hits
    }
    publish();
    assert_eq!(hits(), 8);
}
