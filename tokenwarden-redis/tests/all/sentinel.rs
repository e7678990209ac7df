//! Redis Sentinel (issue 16): a store on a `redis+sentinel://` URL talks to the
//! primary the sentinels name, and after the primary dies (SIGKILL) right after
//! a refresh saved a rotated refresh token, it finds the promoted replica, which
//! holds that token (the save waited for it): the spent one never comes back.

use crate::sentinels::Sentinels;
use std::time::Duration;
use tokenwarden::store::TokenStore;
use tokenwarden::{Token, TokenKey};
use tokenwarden_redis::RedisStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_survives_the_primarys_death() {
    let _h = crate::leaks::harness();
    let Some(mut deployment) = Sentinels::start() else {
        return;
    };
    let store = RedisStore::builder(deployment.url())
        .timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let key = TokenKey::new("api");
    let first = Token::new("at1-TOPSECRET").with_refresh_token("rt1-TOPSECRET");
    let rotated = Token::new("at2-TOPSECRET").with_refresh_token("rt2-TOPSECRET");
    store.save(&key, &first).await.unwrap();
    let lease = store.lease(&key, Duration::from_secs(30)).await.unwrap();
    store.save_leased(&key, &rotated, &lease).await.unwrap();

    // The primary dies right after the rotation was saved.
    let old = deployment.pair.primary.port;
    deployment.pair.primary.kill();
    let mut promoted = None;
    for _ in 0..1_500 {
        promoted = deployment.primary_port().filter(|p| *p != old);
        if promoted.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        promoted,
        Some(deployment.pair.replica.port),
        "the sentinels promoted the replica"
    );

    // The store finds it: a command or two may fail while it does (the
    // manager serves from its cache meanwhile), then the rotated token is there.
    let mut loaded = None;
    for _ in 0..50 {
        match store.load(&key).await {
            Ok(token) => {
                loaded = token;
                break;
            }
            Err(error) => {
                assert!(error.is_transient(), "{error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let loaded = loaded.expect("the token, from the promoted replica");
    assert_eq!(loaded.refresh_token.unwrap().secret(), "rt2-TOPSECRET");
    // And it writes there; with no replica left, a rotated token is kept on the
    // new primary and its save reported failed (the manager saves it again),
    // until a replica is back.
    let third = Token::new("at3-TOPSECRET").with_refresh_token("rt3-TOPSECRET");
    let error = store.save(&key, &third).await.unwrap_err();
    assert!(
        error.to_string().contains("reached 0 of 1 replicas"),
        "{error}"
    );
    let again = store.load(&key).await.unwrap().unwrap();
    assert_eq!(again.access_token.secret(), "at3-TOPSECRET");
}

/// A Sentinel URL that cannot be read, or sentinels that are not there: typed
/// errors that never quote the password.
#[tokio::test]
async fn bad_sentinel_urls_and_absent_sentinels_are_typed_errors() {
    let _h = crate::leaks::harness();
    for (url, kind) in [
        (
            "redis+sentinel://tw:TOPSECRET@127.0.0.1:x/m",
            tokenwarden::ErrorKind::Config,
        ),
        (
            "redis+sentinel://127.0.0.1:26379",
            tokenwarden::ErrorKind::Config,
        ),
        (
            "redis+sentinel://tw:TOPSECRET@127.0.0.1:1/m",
            tokenwarden::ErrorKind::Store,
        ),
    ] {
        let error = RedisStore::builder(url)
            .timeout(Duration::from_secs(1))
            .build()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), kind, "{url}: {error}");
        assert!(
            !format!("{error} {error:?}").contains("TOPSECRET"),
            "{error}"
        );
    }
}

/// Rotates on each refresh, remembers every refresh token sent, and kills the
/// process `kill` names (the primary) in the first refresh, after the server
/// answered and before the answer is saved.
#[derive(Clone, Default, Debug)]
struct Rotating {
    sent: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    kill: std::sync::Arc<std::sync::Mutex<Option<u32>>>,
}

#[async_trait::async_trait]
impl tokenwarden::TokenSource for Rotating {
    async fn fetch(&self) -> tokenwarden::Result<Token> {
        Ok(Token::new("at0-TOPSECRET")
            .with_refresh_token("rt0-TOPSECRET")
            .with_expires_in(Duration::from_secs(60)))
    }

    async fn refresh(&self, current: &Token) -> tokenwarden::Result<Token> {
        let spent = current.refresh_token.as_ref().unwrap().secret().to_owned();
        let n = {
            let mut sent = self.sent.lock().unwrap();
            sent.push(spent);
            sent.len()
        };
        if let Some(pid) = self.kill.lock().unwrap().take() {
            let killed = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap();
            assert!(killed.success());
        }
        Ok(Token::new(format!("at{n}-TOPSECRET"))
            .with_refresh_token(format!("rt{n}-TOPSECRET"))
            .with_expires_in(Duration::from_secs(60)))
    }

    fn name(&self) -> &str {
        "rotating"
    }
}

/// The primary dies inside a refresh: the server rotated the refresh token, and
/// the save of the new one fails. Its instance serves it, unsaved, and keeps the
/// lease it refreshed under, which reached the replica before the refresh was
/// sent: on the promoted replica another instance finds it held, waits, and is
/// handed the new token when the first saves it there. The refresh token the
/// store still held is never sent again (a server with reuse detection would
/// revoke the grant).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_the_primary_died_in_is_saved_on_the_promoted_replica_not_redone() {
    let _h = crate::leaks::harness();
    let Some(mut deployment) = Sentinels::start() else {
        return;
    };
    let source = Rotating::default();
    let prefix = format!("tw-midrefresh-{:08x}", fastrand::u32(..));
    let instance = |clock: &tokenwarden::ManualClock| {
        let (url, prefix, clock, source) = (
            deployment.url(),
            prefix.clone(),
            clock.clone(),
            source.clone(),
        );
        async move {
            let store = RedisStore::builder(url)
                .prefix(prefix)
                .clock(clock.clone())
                .build()
                .await
                .unwrap();
            tokenwarden::TokenManager::builder(source)
                .clock(clock)
                .store(store)
                .lease_ttl(Duration::from_secs(20))
                .build()
                .unwrap()
        }
    };
    // Two instances, each on its own clock.
    let (clock_a, clock_b) = (
        tokenwarden::ManualClock::default(),
        tokenwarden::ManualClock::default(),
    );
    let a = instance(&clock_a).await;
    let b = instance(&clock_b).await;
    a.token().await.unwrap();

    // A refreshes; the primary dies before the rotated token is saved.
    *source.kill.lock().unwrap() = Some(deployment.pair.primary.pid());
    clock_a.advance(Duration::from_secs(120));
    let served = a.token().await.expect("served, unsaved").to_token();
    assert_eq!(served.access_token.secret(), "at1-TOPSECRET");
    assert!(a.info().await.unsaved);
    tokio::task::block_in_place(|| deployment.fail_over());

    // B's token has expired too: it finds A's lease held on the promoted
    // replica and waits; A saves under it on its next attempt.
    clock_b.advance(Duration::from_secs(120));
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.token().await.map(|t| t.to_token()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    clock_a.advance(Duration::from_secs(5)); // A's retry is due
    let got = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("B was answered")
        .unwrap()
        .expect("B got a token");
    let sent = source.sent.lock().unwrap().clone();
    let unique: std::collections::HashSet<_> = sent.iter().collect();
    assert_eq!(
        unique.len(),
        sent.len(),
        "no refresh token sent twice: {sent:?}"
    );
    assert_eq!(sent[0], "rt0-TOPSECRET");
    assert!(
        got.access_token.secret() == "at1-TOPSECRET" || sent.len() == 2,
        "B adopted A's token, or refreshed it with its refresh token: {sent:?}"
    );
    // B was woken by A's save; A's own save returns once the replica has it.
    for _ in 0..100 {
        if !a.info().await.unsaved {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info = a.info().await;
    assert!(
        !info.unsaved,
        "saved on the promoted replica: {info:?}, {:?}",
        a.stats()
    );
}

/// Sentinel secured as operators run it: sentinels and nodes over TLS only for
/// the store (`rediss+sentinel://`, certificates from the test's own CA), the
/// nodes with an ACL user (from the URL), the sentinels with a password of
/// their own (`sentinel_credentials`). Tokens round-trip, and the store
/// follows a failover; without the sentinels' password, or trusting another
/// CA, the build fails with a typed error that quotes no password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_and_nodes_over_tls_with_credentials() {
    use crate::secured_sentinels::{SecuredSentinels, SENTINEL_PASSWORD};
    let _h = crate::leaks::harness();
    let pki = crate::tls_redis::Pki::new("tokenwarden sentinel CA");
    let Some(mut deployment) = SecuredSentinels::start(&pki) else {
        return;
    };
    let url = deployment.url();
    let builder = |ca: &str| {
        RedisStore::builder(url.as_str())
            .prefix(format!("tw-secured-{:08x}", fastrand::u32(..)))
            .tls_ca(ca.as_bytes().to_vec())
            .timeout(Duration::from_secs(3))
    };
    let store = builder(&pki.ca)
        .sentinel_credentials("", SENTINEL_PASSWORD)
        .build()
        .await
        .unwrap();
    let key = TokenKey::new("api");
    let token = Token::new("at1-TOPSECRET").with_refresh_token("rt1-TOPSECRET");
    let lease = store.lease(&key, Duration::from_secs(30)).await.unwrap();
    store.save_leased(&key, &token, &lease).await.unwrap();
    lease.release().await.unwrap();
    assert_eq!(
        store.unreplicated_saves(),
        0,
        "the replica has it (over TLS)"
    );

    // The primary dies: the store finds the promoted replica through the
    // sentinels, over TLS, with the same credentials.
    deployment.primary.kill();
    let mut loaded = None;
    for _ in 0..150 {
        if let Ok(Some(found)) = store.load(&key).await {
            loaded = Some(found);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let loaded = loaded.expect("the token, from the promoted replica");
    assert_eq!(loaded.refresh_token.unwrap().secret(), "rt1-TOPSECRET");
    let promoted = deployment.replica.cli(&["ROLE"]);
    assert!(promoted.starts_with("master"), "{promoted}");

    // Without the sentinels' password; trusting another CA.
    let other = crate::tls_redis::Pki::new("another CA");
    for (attempt, error) in [
        (
            "no sentinel password",
            builder(&pki.ca).build().await.unwrap_err(),
        ),
        (
            "another CA",
            builder(&other.ca)
                .sentinel_credentials("", SENTINEL_PASSWORD)
                .build()
                .await
                .unwrap_err(),
        ),
    ] {
        assert_eq!(
            error.kind(),
            tokenwarden::ErrorKind::Store,
            "{attempt}: {error}"
        );
        let said = format!("{error} {error:?}");
        assert!(!said.contains("TOPSECRET"), "{attempt}: {said}");
    }
}

/// After a failover, waiters are woken through the new primary: a store's
/// next pub/sub connection is made on the primary the sentinels name then (it
/// was made on the dead one, and waiters polled until the store was rebuilt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_waiters_subscribe_on_the_new_primary() {
    let _h = crate::leaks::harness();
    let Some(mut deployment) = Sentinels::start() else {
        return;
    };
    let open = |prefix: &str| {
        RedisStore::builder(deployment.url())
            .prefix(prefix)
            .timeout(Duration::from_secs(2))
            .build()
    };
    let prefix = format!("tw-wake-{:08x}", fastrand::u32(..));
    let (a, b) = (open(&prefix).await.unwrap(), open(&prefix).await.unwrap());
    let key = TokenKey::new("api");
    let ttl = Duration::from_secs(30);
    // The store's wake-up channels (the sentinels have their own there).
    let channels = format!("{prefix}*");
    let subscribed = |server: &crate::replicated::Server| {
        !server
            .cli(&["PUBSUB", "CHANNELS", &channels])
            .trim()
            .is_empty()
    };
    // B waits for A's lease, subscribed on `primary`, until A releases it.
    let wait_on = |primary: &crate::replicated::Server, held: tokenwarden::store::Lease| {
        let (b, key) = (b.clone(), key.clone());
        let waiting = tokio::spawn(async move { b.lease(&key, ttl).await });
        let mut seen = false;
        for _ in 0..150 {
            seen = subscribed(primary);
            if seen {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (waiting, held, seen)
    };
    let held = a.lease(&key, ttl).await.unwrap();
    let (waiting, held, seen) =
        tokio::task::block_in_place(|| wait_on(&deployment.pair.primary, held));
    assert!(seen, "subscribed on the first primary");
    held.release().await.unwrap();
    waiting.await.unwrap().unwrap().release().await.unwrap();

    tokio::task::block_in_place(|| deployment.fail_over());
    // The store's commands fail until they find the promoted replica.
    let mut held = None;
    for _ in 0..100 {
        if let Ok(lease) = a.lease(&key, ttl).await {
            held = Some(lease);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = held.expect("a lease on the promoted replica");
    for _ in 0..100 {
        if b.load(&key).await.is_ok() {
            break; // B found it too
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (waiting, held, seen) =
        tokio::task::block_in_place(|| wait_on(&deployment.pair.primary, held));
    assert!(seen, "subscribed on the promoted replica");
    held.release().await.unwrap();
    waiting.await.unwrap().unwrap().release().await.unwrap();
}
