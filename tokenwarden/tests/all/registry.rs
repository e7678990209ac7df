//! Keyed managers: one single-flight per key, and idle eviction.

use crate::common::*;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::{source::from_fn, Error, ErrorKind, Token, TokenManager, TokenRegistry};

const HOUR: Duration = Duration::from_secs(3600);

/// Managers on a clock that stands still: with 200,000 tasks on a loaded machine
/// a flight can wait in the run queue past the refresh timeout, and a caller's
/// wait, bounded on the manager's clock, would then end in an error (as it
/// should); what this test checks is one flight per key, not how fast.
fn counting_registry(calls: &Arc<AtomicUsize>) -> TokenRegistry<u32> {
    let calls = calls.clone();
    let still = clock();
    TokenRegistry::builder(move |user: &u32| {
        let (user, calls) = (*user, calls.clone());
        TokenManager::builder(from_fn(format!("user-{user}"), move || {
            calls.fetch_add(1, SeqCst);
            async move {
                tokio::task::yield_now().await; // let the other caller for this key join
                Ok(Token::new(format!("{MARKER}-{user}")).with_expires_in(HOUR))
            }
        }))
        .clock(still.clone())
        .build()
    })
    .clock(clock())
    .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_keys_each_with_its_own_single_flight() {
    let _h = harness();
    let calls = Arc::new(AtomicUsize::new(0));
    let registry = Arc::new(counting_registry(&calls));
    let keys = 100_000u32;
    let tasks: Vec<_> = (0..keys * 2)
        .map(|i| {
            let registry = registry.clone();
            let user = i % keys;
            tokio::spawn(async move {
                let token = registry.token(&user).await.unwrap();
                assert_eq!(token.access_token.secret(), format!("{MARKER}-{user}"));
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(registry.len(), keys as usize);
    assert_eq!(
        calls.load(SeqCst),
        keys as usize,
        "one token request per key"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn idle_managers_are_evicted_and_busy_ones_kept() {
    let _h = harness();
    let clock = clock();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let registry = TokenRegistry::builder(move |user: &u32| {
        let (user, counted) = (*user, counted.clone());
        TokenManager::builder(from_fn(format!("user-{user}"), move || {
            counted.fetch_add(1, SeqCst);
            async { Ok(Token::new("t").with_expires_in(HOUR)) }
        }))
        .build()
    })
    .clock(clock.clone())
    .idle_timeout(Duration::from_secs(60))
    .build();
    for user in 0..10 {
        registry.token(&user).await.unwrap();
    }
    clock.advance(Duration::from_secs(40));
    registry.get(&0).unwrap(); // user 0 stays busy
    clock.advance(Duration::from_secs(40));
    assert_eq!(registry.evict_idle(), 9);
    assert_eq!(registry.len(), 1);
    registry.token(&0).await.unwrap();
    assert_eq!(
        calls.load(SeqCst),
        10,
        "the kept manager still had its token"
    );

    // Eviction also happens by itself as the registry is used.
    clock.advance(Duration::from_secs(120));
    registry.get(&42).unwrap();
    assert_eq!(registry.len(), 1, "user 0 evicted during a lookup");
    assert!(registry.remove(&42) && registry.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn factory_errors_reach_the_caller_and_create_nothing() {
    let _h = harness();
    let registry = TokenRegistry::builder(|user: &String| -> tokenwarden::Result<TokenManager> {
        Err(Error::config(format!(
            "no credentials configured for user {user}"
        )))
    })
    .build();
    let error = registry.token(&"bob".to_owned()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("bob"));
    assert!(registry.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_manager_held_outside_the_registry_is_not_evicted() {
    let _h = harness();
    let clock = clock();
    let registry = TokenRegistry::builder(|user: &u32| {
        TokenManager::builder(from_fn(format!("user-{user}"), || async {
            Ok(Token::new("t").with_expires_in(HOUR))
        }))
        .build()
    })
    .clock(clock.clone())
    .idle_timeout(Duration::from_secs(60))
    .build();
    let held = registry.get(&1).unwrap(); // e.g. an HTTP client built on it
    registry.get(&2).unwrap();
    clock.advance(Duration::from_secs(120));
    assert_eq!(registry.evict_idle(), 1);
    held.token().await.unwrap();
    assert_eq!(
        registry.len(),
        1,
        "the held manager stays, so its key keeps one single-flight"
    );
}

/// A factory may use the registry for another key (a token exchanged from
/// another key's token): no registry lock is held while it runs. Concurrent
/// first callers of a key still get one manager, made once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factory_may_use_the_registry_and_runs_once_per_key() {
    let _h = harness();
    let made = Arc::new(AtomicUsize::new(0));
    let this: Arc<std::sync::OnceLock<Arc<TokenRegistry<String>>>> = Arc::default();
    let registry = Arc::new(
        TokenRegistry::builder({
            let (this, made) = (this.clone(), made.clone());
            move |key: &String| {
                made.fetch_add(1, SeqCst);
                std::thread::sleep(Duration::from_millis(20)); // a slow factory
                                                               // Reads every shard of the map: under a shard's lock, a deadlock.
                assert!(this.get().expect("set").len() <= 2);
                // A dependent token's manager looks up its base key's.
                let base = match key.strip_prefix("exchanged-") {
                    Some(base) => Some(this.get().expect("set").get(&base.to_owned())?),
                    None => None,
                };
                let key = key.clone();
                TokenManager::builder(from_fn(key.clone(), move || {
                    let (key, base) = (key.clone(), base.clone());
                    async move {
                        let prefix = match &base {
                            Some(base) => base.token().await?.access_token.secret().to_owned(),
                            None => MARKER.to_owned(),
                        };
                        Ok(Token::new(format!("{prefix}/{key}")).with_expires_in(HOUR))
                    }
                }))
                .build()
            }
        })
        .build(),
    );
    this.set(registry.clone()).ok();
    let lookups: Vec<_> = (0..8)
        .map(|_| {
            let registry = registry.clone();
            tokio::task::spawn_blocking(move || registry.get(&"exchanged-api".to_owned()))
        })
        .collect();
    let made_in_time = tokio::time::timeout(Duration::from_secs(10), async {
        for lookup in lookups {
            lookup.await.unwrap().unwrap();
        }
    })
    .await;
    assert!(made_in_time.is_ok(), "no deadlock");
    let token = registry.token(&"exchanged-api".to_owned()).await.unwrap();
    assert_eq!(
        token.access_token.secret(),
        format!("{MARKER}/api/exchanged-api")
    );
    assert_eq!(made.load(SeqCst), 2, "one manager per key, made once");
    assert_eq!(registry.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factory_that_needs_its_own_key_gets_an_error_not_a_deadlock() {
    let _h = harness();
    let this: Arc<std::sync::OnceLock<Arc<TokenRegistry<String>>>> = Arc::default();
    // "a" needs "b", "b" needs "a", "self" needs itself; "base" and "on-base" are fine.
    let registry = Arc::new(
        TokenRegistry::builder({
            let this = this.clone();
            move |key: &String| {
                let needs = match key.as_str() {
                    "a" => Some("b"),
                    "b" => Some("a"),
                    "self" => Some("self"),
                    "on-base" => Some("base"),
                    _ => None,
                };
                if let Some(other) = needs {
                    this.get().expect("set").get(&other.to_owned())?;
                }
                TokenManager::builder(from_fn(key.clone(), || async {
                    Ok(Token::new(MARKER).with_expires_in(HOUR))
                }))
                .build()
            }
        })
        .build(),
    );
    this.set(registry.clone()).ok();
    // On threads of their own: a lookup waiting on itself fails the test, not hangs it.
    let (sender, outcomes) = std::sync::mpsc::channel();
    let keys = ["self", "a", "b", "on-base"];
    for (at, key) in keys.into_iter().enumerate() {
        let (registry, sender) = (registry.clone(), sender.clone());
        std::thread::spawn(move || sender.send((at, registry.get(&key.to_owned()))));
    }
    let mut outcomes: Vec<_> = (0..keys.len())
        .map(|_| {
            outcomes
                .recv_timeout(Duration::from_secs(10))
                .expect("no deadlock")
        })
        .collect();
    outcomes.sort_by_key(|(at, _)| *at);
    let outcomes: Vec<_> = outcomes.into_iter().map(|(_, outcome)| outcome).collect();
    for (key, outcome) in ["self", "a", "b"].iter().zip(&outcomes) {
        let error = outcome.as_ref().expect_err(key);
        assert_eq!(error.kind(), ErrorKind::Config, "{key}: {error}");
        assert!(error.to_string().contains("cycle"), "{key}: {error}");
    }
    assert!(outcomes[3].is_ok(), "a key made from another still works");
    // Nothing of the cycles stays: the next caller asks the factory again.
    assert_eq!(registry.len(), 2, "base and on-base only");
    assert!(registry.get(&"self".to_owned()).is_err());
}
