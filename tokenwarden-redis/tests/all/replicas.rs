//! The replica wait (issue 16): a save of a token with a refresh token returns
//! once a replica has it, so that a failover cannot bring back the refresh token
//! it replaced; a replica that does not answer (stopped) leaves the token on the
//! primary and the save failed, counted, to be made again.

use crate::replicated::Replicated;
use std::time::Duration;
use tokenwarden::store::TokenStore;
use tokenwarden::{Token, TokenKey};
use tokenwarden_redis::{RedisStore, ReplicaWait};

async fn get(url: &str, key: &str) -> Option<Vec<u8>> {
    let mut redis = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut redis)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_is_on_a_replica_when_its_save_returns() {
    let _h = crate::leaks::harness();
    let Some(pair) = Replicated::start() else {
        return;
    };
    // `Auto`: the primary has a replica, so saves wait for one.
    let store = RedisStore::builder(pair.primary.url())
        .replica_timeout(crate::replicated::REPLICA_TIMEOUT)
        .build()
        .await
        .unwrap();
    let key = TokenKey::new("api");
    let name = format!("{}:{{{}}}", store.prefix(), key.as_str());
    let rotated = |n: u32| {
        Token::new(format!("at{n}-TOPSECRET")).with_refresh_token(format!("rt{n}-TOPSECRET"))
    };
    let lease = store.lease(&key, Duration::from_secs(30)).await.unwrap();
    store.save_leased(&key, &rotated(1), &lease).await.unwrap();
    let on_replica = get(&pair.replica.url(), &name).await.expect("replicated");
    assert!(String::from_utf8_lossy(&on_replica).contains("rt1-TOPSECRET"));
    store.save(&key, &rotated(2)).await.unwrap();
    assert!(
        String::from_utf8_lossy(&get(&pair.replica.url(), &name).await.unwrap())
            .contains("rt2-TOPSECRET")
    );

    // The replica hangs: the save is kept on the primary, and fails (transient),
    // counted, so that the manager reports it unsaved and saves it again.
    pair.replica.signal("-STOP");
    let error = store
        .save_leased(&key, &rotated(3), &lease)
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        error.to_string().contains("reached 0 of 1 replicas"),
        "{error}"
    );
    assert!(!error.to_string().contains("TOPSECRET"));
    assert_eq!(store.unreplicated_saves(), 1);
    let on_primary = get(&pair.primary.url(), &name).await.unwrap();
    assert!(String::from_utf8_lossy(&on_primary).contains("rt3-TOPSECRET"));
    // A token without a refresh token does not wait: a new one costs a fetch.
    store
        .save_leased(&key, &Token::new("at-only-TOPSECRET"), &lease)
        .await
        .unwrap();
    // Nor does a store told not to.
    let unwaiting = RedisStore::builder(pair.primary.url())
        .replicas(ReplicaWait::Off)
        .build()
        .await
        .unwrap();
    unwaiting.save(&key, &rotated(4)).await.unwrap();

    // Back: the save made again reaches it.
    pair.replica.signal("-CONT");
    store.save_leased(&key, &rotated(5), &lease).await.unwrap();
    assert!(
        String::from_utf8_lossy(&get(&pair.replica.url(), &name).await.unwrap())
            .contains("rt5-TOPSECRET")
    );
    assert_eq!(store.unreplicated_saves(), 1);
    lease.release().await.unwrap();
}

/// On a server without replicas (the tests' shared one), `Auto` waits for none.
#[tokio::test]
async fn without_replicas_no_save_waits() {
    let _h = crate::leaks::harness();
    let clock = tokenwarden::ManualClock::default();
    let Some(store) = crate::store(&clock).await else {
        return;
    };
    let key = TokenKey::new("api");
    let token = Token::new("at-TOPSECRET").with_refresh_token("rt-TOPSECRET");
    store.save(&key, &token).await.unwrap();
    assert_eq!(store.unreplicated_saves(), 0);
    store.delete(&key).await.unwrap();
}

/// Through a manager: with the replica stopped, a refresh's token is served
/// (its refresh token is spent) and reported unsaved; once the replica is back,
/// the manager's own retry saves it, replica wait included, and it is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_saves_again_until_the_replica_has_its_token() {
    let _h = crate::leaks::harness();
    let Some(pair) = Replicated::start() else {
        return;
    };
    let clock = tokenwarden::ManualClock::default();
    let store = RedisStore::builder(pair.primary.url())
        .clock(clock.clone())
        .replica_timeout(crate::replicated::REPLICA_TIMEOUT)
        .build()
        .await
        .unwrap();
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let source = tokenwarden::source::from_fn("api", {
        let issued = issued.clone();
        move || {
            let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                Ok(Token::new(format!("at{n}-TOPSECRET"))
                    .with_refresh_token(format!("rt{n}-TOPSECRET"))
                    .with_expires_in(Duration::from_secs(3600)))
            }
        }
    });
    let manager = tokenwarden::TokenManager::builder(source)
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap();
    manager.token().await.unwrap();
    assert!(!manager.info().await.unsaved);

    pair.replica.signal("-STOP");
    let served = manager.force_refresh().await.unwrap().to_token();
    assert!(manager.info().await.unsaved, "served, reported unsaved");
    assert!(store.unreplicated_saves() >= 1);
    // While the replica still hangs, a retry finds its own token on the primary
    // (written, not confirmed) and writes it again, waiting for the replica
    // again: still unsaved.
    let before = store.unreplicated_saves();
    clock.advance(Duration::from_secs(5));
    for _ in 0..200 {
        if store.unreplicated_saves() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store.unreplicated_saves() > before, "a retry waited again");
    assert!(manager.info().await.unsaved, "not confirmed: still unsaved");

    pair.replica.signal("-CONT");
    // The manager's retries back off on its clock: moved until one lands.
    for _ in 0..600 {
        if !manager.info().await.unsaved {
            break;
        }
        clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !manager.info().await.unsaved,
        "saved once the replica answered"
    );
    let key = manager.key().clone();
    let stored = store.load(&key).await.unwrap().unwrap();
    assert_eq!(stored.fingerprint(), served.fingerprint());
}

/// The lease reaches the replica before its holder refreshes: a primary that
/// dies mid-refresh leaves it (and its fence) on the replica promoted, so no
/// other instance takes it there and spends the same refresh token. A replica
/// that hangs delays the lease by the replica timeout; the lease is used all
/// the same, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_on_a_replica_when_it_is_taken() {
    let _h = crate::leaks::harness();
    let Some(pair) = Replicated::start() else {
        return;
    };
    let store = RedisStore::builder(pair.primary.url())
        .replica_timeout(crate::replicated::REPLICA_TIMEOUT)
        .build()
        .await
        .unwrap();
    let key = TokenKey::new("api");
    let name = format!("{}:{{{}}}:lease", store.prefix(), key.as_str());
    let lease = store.lease(&key, Duration::from_secs(30)).await.unwrap();
    assert!(
        get(&pair.replica.url(), &name).await.is_some(),
        "replicated"
    );
    assert_eq!(store.unreplicated_saves(), 0);
    lease.release().await.unwrap();

    pair.replica.signal("-STOP");
    let lease = store.lease(&key, Duration::from_secs(30)).await.unwrap();
    assert_eq!(store.unreplicated_saves(), 1, "counted");
    assert!(get(&pair.primary.url(), &name).await.is_some(), "held");
    pair.replica.signal("-CONT");
    lease.release().await.unwrap();
}
