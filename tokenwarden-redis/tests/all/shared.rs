//! One process, many instances: round trips, sealing, leases and expiries.

use crate::{same_prefix, store, URL};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::store::TokenStore;
use tokenwarden::{source::from_fn, ManualClock, Token, TokenKey, TokenManager};
use tokenwarden_redis::RedisStore;

#[tokio::test]
async fn tokens_round_trip_and_expire_with_the_token() {
    let _h = crate::leaks::harness();
    let clock = ManualClock::default();
    let Some(store) = store(&clock).await else {
        return;
    };
    let key = TokenKey::new("api");
    assert!(store.load(&key).await.unwrap().is_none());
    let token = Token::new("at")
        .with_refresh_token("rt")
        .with_expires_at(tokenwarden::Clock::now(&clock) + Duration::from_secs(120));
    store.save(&key, &token).await.unwrap();
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.refresh_token.unwrap().secret(), "rt");
    let redis = redis::Client::open(URL.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pttl = |name: String| {
        let mut redis = redis.clone();
        async move {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(name)
                .query_async(&mut redis)
                .await
                .unwrap();
            ttl
        }
    };
    let name = format!("{}:{{{}}}", store.prefix(), key.as_str());
    let ttl = pttl(name.clone()).await;
    let retention = tokenwarden_redis::DEFAULT_REFRESH_RETENTION.as_millis() as i64;
    assert!(
        (retention - 10_000..=retention).contains(&ttl),
        "kept as long as the refresh token can be used: {ttl}"
    );
    // Without a refresh token: as long as the access token.
    let access_only = Token::new("at")
        .with_expires_at(tokenwarden::Clock::now(&clock) + Duration::from_secs(120));
    store.save(&key, &access_only).await.unwrap();
    let ttl = pttl(name.clone()).await;
    assert!(
        (110_000..=120_000).contains(&ttl),
        "the TTL ends with the token: {ttl}"
    );
    // The server says how long the refresh token lives (Keycloak's field).
    let mut said = token.clone();
    said.issued_at = Some(tokenwarden::Clock::now(&clock));
    said.extra
        .insert("refresh_expires_in".into(), serde_json::json!(1800));
    store.save(&key, &said).await.unwrap();
    let ttl = pttl(name).await;
    assert!(
        (1_790_000..=1_800_000).contains(&ttl),
        "the refresh token's own lifetime: {ttl}"
    );
    store.delete(&key).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_none());
}

#[tokio::test]
async fn sealed_tokens_open_only_with_the_fleet_key() {
    let _h = crate::leaks::harness();
    use tokenwarden::store::TokenCipher;
    let clock = ManualClock::default();
    let Some(plain) = store(&clock).await else {
        return;
    };
    let sealed = |key: [u8; 32]| {
        RedisStore::builder(URL.as_str())
            .prefix(plain.prefix())
            .clock(clock.clone())
            .cipher(TokenCipher::new(key))
            .build()
    };
    let store = sealed([3; 32]).await.unwrap();
    let key = TokenKey::new("api");
    let token = Token::new("at-TOPSECRET").with_refresh_token("rt-TOPSECRET");
    store.save(&key, &token).await.unwrap();
    let mut redis = redis::Client::open(URL.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let name = format!("{}:{{{}}}", store.prefix(), key.as_str());
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(&name)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        !raw.windows(9).any(|w| w == b"TOPSECRET"),
        "sealed in Redis"
    );
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.refresh_token.unwrap().secret(), "rt-TOPSECRET");

    let misconfigured = sealed([4; 32]).await.unwrap();
    let other_key = misconfigured.load(&key).await.unwrap_err();
    assert!(other_key.to_string().contains("same key"), "{other_key}");
    let no_key = plain.load(&key).await.unwrap_err();
    assert!(no_key.to_string().contains(&name), "{no_key}");
    // Neither writes over what it could not read (with a lease or without):
    // the fleet's token, and its refresh token, stay for those with the key.
    let theirs = Token::new("at2-TOPSECRET").with_refresh_token("rt2-TOPSECRET");
    for wrong in [&misconfigured, &plain] {
        let refused = wrong.save(&key, &theirs).await.unwrap_err();
        assert!(refused.to_string().contains("cannot read"), "{refused}");
        assert!(!refused.is_transient());
        let lease = wrong.lease(&key, Duration::from_secs(5)).await.unwrap();
        let refused = wrong.save_leased(&key, &theirs, &lease).await.unwrap_err();
        assert!(refused.to_string().contains("it is kept"), "{refused}");
        lease.release().await.unwrap();
    }
    // Nor does a fresh instance that never read it, saving under a lease at
    // once (as `set_tokens` does): the lease's own read tells.
    let fresh = sealed([4; 32]).await.unwrap();
    let lease = fresh.lease(&key, Duration::from_secs(5)).await.unwrap();
    let refused = fresh.save_leased(&key, &theirs, &lease).await.unwrap_err();
    assert!(refused.to_string().contains("cannot read"), "{refused}");
    lease.release().await.unwrap();
    let kept = store.load(&key).await.unwrap().unwrap();
    assert_eq!(kept.refresh_token.unwrap().secret(), "rt-TOPSECRET");
    // Once the entry is gone (a logout), the same instance writes again.
    store.delete(&key).await.unwrap();
    misconfigured.save(&key, &theirs).await.unwrap();
    store.save(&key, &token).await.unwrap();
    // An entry in clear (an earlier build, an instance without a key) is no
    // one's sealed token: a sealing store cannot read it, and seals over it.
    let clear = TokenKey::new("written-in-clear");
    plain.save(&clear, &theirs).await.unwrap();
    assert!(store.load(&clear).await.is_err());
    store.save(&clear, &token).await.unwrap();
    let sealed_now = store.load(&clear).await.unwrap().unwrap();
    assert_eq!(sealed_now.access_token.secret(), "at-TOPSECRET");
    store.delete(&clear).await.unwrap();
    // A value copied under another key name does not open.
    let other = TokenKey::new("another-api");
    let _: () = redis::cmd("COPY")
        .arg(&name)
        .arg(format!("{}:{{{}}}", store.prefix(), other.as_str()))
        .query_async(&mut redis)
        .await
        .unwrap();
    let copied = store.load(&other).await;
    assert!(copied.is_err(), "{copied:?}");
    for error in [other_key, no_key] {
        assert!(!format!("{error} {error:?}").contains("TOPSECRET"));
    }
    store.delete(&key).await.unwrap();
    store.delete(&other).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lease_holder_at_a_time_and_a_dead_holder_expires() {
    let _h = crate::leaks::harness();
    let clock = ManualClock::default();
    let Some(a) = store(&clock).await else { return };
    let b = same_prefix(&a, &clock).await;
    let key = TokenKey::new("api");
    let held = a.lease(&key, Duration::from_secs(5)).await.unwrap();
    let waiting = tokio::spawn({
        let (b, key) = (b.clone(), key.clone());
        async move {
            b.lease(&key, Duration::from_secs(5))
                .await
                .map(|l| l.is_held())
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!waiting.is_finished(), "the other instance waits");
    held.release().await.unwrap();
    assert!(waiting.await.unwrap().unwrap());

    // A holder that dies without releasing: its lease runs out after the TTL.
    let key = TokenKey::new("dead");
    drop(a.lease(&key, Duration::from_millis(300)).await.unwrap());
    let taken = b.lease(&key, Duration::from_secs(2)).await.unwrap();
    assert!(taken.is_held());
}

/// A lease dropped unreleased is released by a task; one dropped as its runtime
/// shuts down (the task cannot run) is left to expire, and its drop does not
/// spawn again and again until the stack overflows.
#[test]
fn a_lease_dropped_as_its_runtime_shuts_down_is_left_to_expire() {
    let _h = crate::leaks::harness();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let clock = ManualClock::default();
    let Some(store) = runtime.block_on(store(&clock)) else {
        return;
    };
    let key = TokenKey::new("api");
    let lease = runtime
        .block_on(store.lease(&key, Duration::from_millis(500)))
        .unwrap();
    runtime.spawn(async move {
        let _held = lease;
        std::future::pending::<()>().await;
    });
    drop(runtime);
    // The store's connection went with its runtime: another instance's.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let next = runtime.block_on(async {
        let other = same_prefix(&store, &clock).await;
        other.lease(&key, Duration::from_secs(5)).await
    });
    assert!(next.unwrap().is_held());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_instances_make_one_token_request_per_expiry() {
    let _h = crate::leaks::harness();
    let clock = ManualClock::default();
    let Some(first) = store(&clock).await else {
        return;
    };
    let logins = Arc::new(AtomicUsize::new(0));
    let mut instances = Vec::new();
    for _ in 0..16 {
        let logins = logins.clone();
        let source = from_fn("fleet", move || {
            let n = logins.fetch_add(1, SeqCst) + 1;
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await; // the token endpoint
                Ok(Token::new(format!("fleet-{n}")).with_expires_in(Duration::from_secs(600)))
            }
        });
        let manager = TokenManager::builder(source)
            .clock(clock.clone())
            .store(same_prefix(&first, &clock).await)
            .build()
            .unwrap();
        instances.push(manager);
    }
    for expiry in 0..10 {
        let calls: Vec<_> = instances
            .iter()
            .flat_map(|m| (0..50).map(move |_| m.clone()))
            .map(|m| tokio::spawn(async move { m.token().await.map(|t| t.fingerprint()) }))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for call in calls {
            seen.insert(call.await.unwrap().unwrap());
        }
        assert_eq!(
            seen.len(),
            1,
            "expiry {expiry}: one token for 16 × 50 callers"
        );
        assert_eq!(
            logins.load(SeqCst),
            expiry + 1,
            "expiry {expiry}: one token request"
        );
        clock.advance(Duration::from_secs(600));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_on_a_multiplexed_connection_share_tokens_and_leases() {
    let _h = crate::leaks::harness();
    let clock = ManualClock::default();
    let Some(first) = store(&clock).await else {
        return;
    };
    let client = redis::Client::open(URL.as_str()).unwrap();
    let on_multiplexed = || async {
        RedisStore::with_connection(client.get_multiplexed_async_connection().await.unwrap())
            .prefix(first.prefix())
            .clock(clock.clone())
            .build()
            .await
            .unwrap()
    };
    let (a, b) = (on_multiplexed().await, on_multiplexed().await);
    let key = TokenKey::new("multiplexed");
    let lease = a.lease(&key, Duration::from_secs(5)).await.unwrap();
    let waiting = tokio::spawn(async move {
        b.lease(&key, Duration::from_secs(5))
            .await
            .map(|l| l.is_held())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "b waits while a holds the lease");
    lease.release().await.unwrap();
    assert!(waiting.await.unwrap().unwrap());

    let logins = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let counted = logins.clone();
        let manager = TokenManager::builder(from_fn("multiplexed", move || {
            let n = counted.fetch_add(1, SeqCst) + 1;
            async move { Ok(Token::new(format!("m-{n}")).with_expires_in(Duration::from_secs(600))) }
        }))
        .clock(clock.clone())
        .store(on_multiplexed().await)
        .build()
        .unwrap();
        assert_eq!(manager.token().await.unwrap().access_token.secret(), "m-1");
    }
    assert_eq!(
        logins.load(SeqCst),
        1,
        "the second read the first one's token"
    );
}
