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

    // Back: the save made again reaches it (once the primary sees it answer:
    // until then, it is not waited for).
    pair.replica.signal("-CONT");
    pair.primary.until_replica_lag(1);
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
    let (clock, store, source) = rotating(&pair, Duration::from_secs(3600)).await;
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

/// A write and its `WAIT` go to Redis together (one pipeline), so that no
/// reconnect comes between them: a `WAIT` sent on a new connection counts
/// nothing of the write and answers at once, a replication that did not happen.
/// The stand-in answers a write only once the command after it arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_and_its_wait_are_sent_together() {
    let _h = crate::leaks::harness();
    let server = crate::held_writes::HeldWrites::start();
    let connection = redis::Client::open(server.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let store = RedisStore::with_connection(connection)
        .replicas(ReplicaWait::AtLeast(1))
        .timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let key = TokenKey::new("api");
    let token = Token::new("at-TOPSECRET").with_refresh_token("rt-TOPSECRET");
    store
        .save(&key, &token)
        .await
        .expect("saved and replicated");
    let lease = store
        .lease(&key, Duration::from_secs(30))
        .await
        .expect("taken and replicated");
    store
        .save_leased(&key, &token, &lease)
        .await
        .expect("saved under it and replicated");
    assert_eq!(store.unreplicated_saves(), 0);
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|c| *c == "WAIT").count(), 3, "{seen:?}");
    // Its release would be held too: left to expire.
    std::mem::forget(lease);
}

/// How many `WAIT` commands `server` ran.
fn waits(server: &crate::replicated::Server) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.trim().strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// A save waiting for a stopped replica holds up no other command of the
/// store: the writes that wait have a connection of their own, so reads (and
/// lease waits, and releases) go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_waiting_for_a_replica_holds_up_no_read() {
    let _h = crate::leaks::harness();
    let Some(pair) = Replicated::start() else {
        return;
    };
    let store = RedisStore::builder(pair.primary.url())
        .timeout(Duration::from_secs(2))
        .replica_timeout(Duration::from_secs(120))
        .build()
        .await
        .unwrap();
    let key = TokenKey::new("api");
    let token = Token::new("at-TOPSECRET").with_refresh_token("rt-TOPSECRET");
    store.save(&key, &token).await.unwrap();
    pair.replica.signal("-STOP");
    let waiting = tokio::spawn({
        let (store, key, token) = (store.clone(), key.clone(), token.clone());
        async move { store.save(&key, &token).await }
    });
    // Until the primary has the save's `WAIT` blocked (a readiness poll).
    let mut blocked = false;
    for _ in 0..1_000 {
        blocked = pair.primary.cli(&["CLIENT", "LIST"]).contains("cmd=wait");
        if blocked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(blocked, "the save waits for the replica");
    let read = store
        .load(&key)
        .await
        .expect("answered while the save waits");
    assert_eq!(read.unwrap().access_token.secret(), "at-TOPSECRET");
    pair.replica.signal("-CONT");
    waiting
        .await
        .unwrap()
        .expect("replicated once the replica is back");
}

/// A replica that the primary's `INFO` shows behind (no acknowledgement for
/// 3 s or more) is not waited for again: after the save that found it away,
/// saves fail at once, counted, instead of each holding for the replica
/// timeout; once it acknowledges again, saves wait for it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_the_primary_shows_away_is_not_waited_for() {
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
    let token = Token::new("at-TOPSECRET").with_refresh_token("rt-TOPSECRET");
    store.save(&key, &token).await.unwrap();
    pair.replica.signal("-STOP");
    let error = store.save(&key, &token).await.unwrap_err();
    assert!(error.to_string().contains("reached 0 of 1"), "{error}");
    // Until the primary shows it behind (a readiness poll on the server's view).
    for _ in 0..1_000 {
        if pair.primary.replica_lag() >= Some(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        pair.primary.replica_lag() >= Some(3),
        "{}",
        pair.primary.replication()
    );
    let before = waits(&pair.primary);
    let error = store.save(&key, &token).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(
        error.to_string().contains("0 of 1 replicas answering"),
        "{error}"
    );
    assert!(!error.to_string().contains("TOPSECRET"));
    assert_eq!(waits(&pair.primary), before, "no WAIT for a replica away");
    assert_eq!(store.unreplicated_saves(), 2);

    pair.replica.signal("-CONT");
    pair.primary.until_replica_lag(1);
    store
        .save(&key, &token)
        .await
        .expect("waited for, and replicated");
    assert_eq!(waits(&pair.primary), before + 1);
    assert_eq!(store.unreplicated_saves(), 2);
}

/// A refresh due while the token it would replace is still unsaved (its replica
/// away) goes on under the lease that token kept: the flight does not wait for
/// its own manager's lease to expire. The key's fence shows no new lease taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_due_while_unsaved_goes_on_under_the_kept_lease() {
    let _h = crate::leaks::harness();
    let Some(pair) = Replicated::start() else {
        return;
    };
    let (clock, store, source) = rotating(&pair, Duration::from_secs(600)).await;
    // The background retries of the save wait past the test (they would take
    // the kept lease in turn).
    let manager = tokenwarden::TokenManager::builder(source)
        .clock(clock.clone())
        .store(store.clone())
        .lease_ttl(Duration::from_secs(1_200))
        .backoff(Duration::from_secs(7_200), Duration::from_secs(7_200))
        .build()
        .unwrap();
    manager.token().await.unwrap();
    pair.replica.signal("-STOP");
    manager.force_refresh().await.unwrap();
    assert!(manager.info().await.unsaved);
    let fence_key = format!("{}:{{{}}}:fence", store.prefix(), manager.key().as_str());
    let fence = get(&pair.primary.url(), &fence_key).await;

    clock.advance(Duration::from_secs(601));
    let token = manager
        .token()
        .await
        .expect("refreshed under the kept lease");
    assert_eq!(token.access_token.secret(), "at2-TOPSECRET");
    assert_eq!(
        get(&pair.primary.url(), &fence_key).await,
        fence,
        "no lease taken: the kept one served"
    );
    assert!(manager.info().await.unsaved, "its replica is still away");
    pair.replica.signal("-CONT");
}

/// A manual clock, a store on `pair`'s primary that waits for its replica, and
/// a source whose tokens (`at<n>`, `rt<n>`) live `lifetime`.
async fn rotating(
    pair: &Replicated,
    lifetime: Duration,
) -> (
    tokenwarden::ManualClock,
    RedisStore,
    tokenwarden::source::FnSource,
) {
    let clock = tokenwarden::ManualClock::default();
    let store = RedisStore::builder(pair.primary.url())
        .clock(clock.clone())
        .replica_timeout(crate::replicated::REPLICA_TIMEOUT)
        .build()
        .await
        .unwrap();
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let source = tokenwarden::source::from_fn("api", move || {
        let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            Ok(Token::new(format!("at{n}-TOPSECRET"))
                .with_refresh_token(format!("rt{n}-TOPSECRET"))
                .with_expires_in(lifetime))
        }
    });
    (clock, store, source)
}
