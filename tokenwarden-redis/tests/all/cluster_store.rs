//! Redis Cluster (issue 16): a store on a `redis+cluster://` URL keeps tokens
//! whose keys hash to slots on every node, and the coordination protocol (its
//! scripts touch a token's entry, lease, fence and waiters at once) runs there,
//! since a token's keys share one hash tag. A fleet on the cluster refreshes
//! once per expiry.

use crate::cluster::Cluster;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::store::TokenStore;
use tokenwarden::{source::from_fn, ManualClock, Token, TokenKey, TokenManager};
use tokenwarden_redis::RedisStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_on_every_node_and_one_refresh_per_expiry() {
    let _h = crate::leaks::harness();
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let store = RedisStore::builder(cluster.url()).build().await.unwrap();
    // Keys that land on all three nodes (slots by the hash tag).
    let keys: Vec<TokenKey> = (0..30).map(|n| TokenKey::new(format!("api-{n}"))).collect();
    for key in &keys {
        let token =
            Token::new(format!("{}-TOPSECRET", key.as_str())).with_refresh_token("rt-TOPSECRET");
        let lease = store.lease(key, Duration::from_secs(10)).await.unwrap();
        store.save_leased(key, &token, &lease).await.unwrap();
        lease.release().await.unwrap();
        let loaded = store.load(key).await.unwrap().unwrap();
        assert_eq!(loaded.access_token.secret(), token.access_token.secret());
    }
    let holding: usize = cluster
        .nodes
        .iter()
        .filter(|n| n.cli(&["DBSIZE"]).trim() != "0")
        .count();
    assert_eq!(holding, 3, "the tokens are spread over the nodes");

    // Eight managers, each with its own store, share one token through expiries.
    let clock = ManualClock::default();
    let issued = Arc::new(AtomicU32::new(0));
    let mut managers = Vec::new();
    for _ in 0..8 {
        let issued = issued.clone();
        let source = from_fn("fleet", move || {
            let n = issued.fetch_add(1, SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(Token::new(format!("fleet-{n}-TOPSECRET"))
                    .with_expires_in(Duration::from_secs(600)))
            }
        });
        let store = RedisStore::builder(cluster.url())
            .clock(clock.clone())
            .build()
            .await
            .unwrap();
        managers.push(
            TokenManager::builder(source)
                .clock(clock.clone())
                .store(store)
                .build()
                .unwrap(),
        );
    }
    for expiry in 1..=3 {
        let calls: Vec<_> = managers
            .iter()
            .map(|m| {
                let m = m.clone();
                tokio::spawn(async move { m.token().await.map(|t| t.fingerprint()) })
            })
            .collect();
        let mut seen = HashSet::new();
        for call in calls {
            seen.insert(call.await.unwrap().unwrap());
        }
        assert_eq!(seen.len(), 1, "expiry {expiry}: one token in all eight");
        assert_eq!(issued.load(SeqCst), expiry, "one token request per expiry");
        clock.advance(Duration::from_secs(601));
    }
}

/// A cluster whose nodes have an ACL user and no default one: the user and
/// password of the `redis+cluster://` URL reach every node (those discovered
/// too); without them, a typed error that quotes no password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_acl_users_takes_the_urls_credentials() {
    let _h = crate::leaks::harness();
    let Some(cluster) = Cluster::start_as(Some(("tw", "pw-TOPSECRET")), 0) else {
        return;
    };
    let store = RedisStore::builder(cluster.url()).build().await.unwrap();
    // Keys on every node.
    for n in 0..30 {
        let key = TokenKey::new(format!("api-{n}"));
        let token = Token::new(format!("at{n}-TOPSECRET")).with_refresh_token("rt-TOPSECRET");
        let lease = store.lease(&key, Duration::from_secs(10)).await.unwrap();
        store.save_leased(&key, &token, &lease).await.unwrap();
        lease.release().await.unwrap();
        let loaded = store.load(&key).await.unwrap().unwrap();
        assert_eq!(loaded.access_token.secret(), token.access_token.secret());
    }
    let anonymous = cluster.url().replace("tw:pw-TOPSECRET@", "");
    let wrong = cluster.url().replace("pw-TOPSECRET", "wrong-TOPSECRET");
    for url in [anonymous, wrong] {
        let error = RedisStore::builder(url.as_str())
            .timeout(Duration::from_secs(2))
            .build()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), tokenwarden::ErrorKind::Store, "{error}");
        let said = format!("{error} {error:?}");
        assert!(!said.contains("TOPSECRET"), "{said}");
    }
}

/// A cluster whose primaries have replicas: a save of a token with a refresh
/// token (and a lease) waits until the replica of its slot's primary has it;
/// with that replica stopped (SIGSTOP), the save is kept on the primary,
/// reported failed (transient) and counted, as with Sentinel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_with_replicas_a_rotated_token_waits_for_its_replica() {
    let _h = crate::leaks::harness();
    let Some(cluster) = Cluster::start_as(None, 1) else {
        return;
    };
    let store = RedisStore::builder(cluster.url())
        .replica_timeout(crate::replicated::REPLICA_TIMEOUT)
        .build()
        .await
        .unwrap();
    let key = TokenKey::new("api");
    let rotated = |n: u32| {
        Token::new(format!("at{n}-TOPSECRET")).with_refresh_token(format!("rt{n}-TOPSECRET"))
    };
    let lease = store.lease(&key, Duration::from_secs(30)).await.unwrap();
    store.save_leased(&key, &rotated(1), &lease).await.unwrap();
    assert_eq!(store.unreplicated_saves(), 0);

    let name = format!("{}:{{{}}}", store.prefix(), key.as_str());
    let primary = cluster.owner_of(cluster.slot_of(&name));
    // `WAIT` goes with its write to the slot's primary: a stopped replica of
    // another primary holds up nothing here.
    let other = [0, 8_000, 16_000]
        .map(|slot| cluster.owner_of(slot))
        .into_iter()
        .find(|p| *p != primary)
        .unwrap();
    let there = (0..)
        .map(|n| TokenKey::new(format!("api-{n}")))
        .find(|k| {
            let name = format!("{}:{{{}}}", store.prefix(), k.as_str());
            cluster.owner_of(cluster.slot_of(&name)) == other
        })
        .unwrap();
    let elsewhere = &cluster.nodes[cluster.replica_of(other)];
    elsewhere.signal("-STOP");
    let short = store.save(&there, &rotated(2)).await;
    let saved = store.save_leased(&key, &rotated(2), &lease).await;
    elsewhere.signal("-CONT");
    assert!(short.is_err(), "its replica is stopped");
    saved.expect("on the replica of its own slot's primary");
    assert_eq!(store.unreplicated_saves(), 1);

    let replica = &cluster.nodes[cluster.replica_of(primary)];
    replica.signal("-STOP");
    let error = store
        .save_leased(&key, &rotated(2), &lease)
        .await
        .unwrap_err();
    replica.signal("-CONT");
    cluster.nodes[primary].until_replica_lag(1);
    assert!(error.is_transient(), "{error}");
    assert!(
        error.to_string().contains("reached 0 of 1 replicas"),
        "{error}"
    );
    assert!(!error.to_string().contains("TOPSECRET"));
    assert_eq!(store.unreplicated_saves(), 2);
    let kept = store.load(&key).await.unwrap().unwrap();
    assert_eq!(
        kept.access_token.secret(),
        "at2-TOPSECRET",
        "kept on the primary"
    );
    store.save_leased(&key, &rotated(3), &lease).await.unwrap();
    lease.release().await.unwrap();
}
