//! Fenced leases and retention on a real Redis (issue 12, scenarios 2 and 3): a
//! holder that stalls past its lease cannot overwrite a newer token, learns that
//! its lease is lost, and adopts what is stored; a token is kept as long as its
//! refresh token, so a new instance refreshes instead of logging in again.

use crate::grant_server::{GrantServer, OnReuse};
use crate::{same_prefix, store};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::metrics::LEASE_OUTCOMES;
use tokenwarden::store::TokenStore;
use tokenwarden::{Clock, ManualClock, Token, TokenKey, TokenManager};

const LIFETIME: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_write_under_a_lost_lease_is_refused_and_release_says_so() {
    let _h = crate::leaks::harness();
    let clock = ManualClock::default();
    let Some(store) = store(&clock).await else {
        return;
    };
    let key = TokenKey::new("api");
    let ttl = Duration::from_millis(200);
    let stalled = store.lease(&key, ttl).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // Redis lets it expire
    let next = same_prefix(&store, &clock)
        .await
        .lease(&key, ttl)
        .await
        .unwrap();
    assert!(next.fence() > stalled.fence(), "fences only grow");
    store
        .save_leased(&key, &Token::new("new-TOPSECRET"), &next)
        .await
        .unwrap();
    let refused = store
        .save_leased(&key, &Token::new("old-TOPSECRET"), &stalled)
        .await
        .unwrap_err();
    assert!(refused.is_lease_lost(), "{refused}");
    assert!(!refused.to_string().contains("TOPSECRET"));
    let refused = store.delete_leased(&key, &stalled).await.unwrap_err();
    assert!(refused.is_lease_lost(), "{refused}");
    let kept = store.load(&key).await.unwrap().unwrap();
    assert_eq!(kept.access_token.secret(), "new-TOPSECRET");
    let lost = stalled.release().await.unwrap_err();
    assert!(lost.is_lease_lost(), "{lost}");
    next.release().await.unwrap();
}

/// Scenario 2: a holder that stalls after its token request and before its save,
/// for longer than its lease, while another instance stores a newer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_holder_does_not_overwrite_a_newer_token_and_adopts_it() {
    let _h = crate::leaks::harness();
    let recorded = crate::recorder::recorded();
    let clock = ManualClock::default();
    let Some(store) = store(&clock).await else {
        return;
    };
    // A grant without refresh tokens (client credentials): both instances may
    // get a token, and the store must keep the newer.
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let source = tokenwarden::source::from_fn("client-credentials-fenced", {
        let server = server.clone();
        move || {
            let server = server.clone();
            async move {
                let mut token = tokenwarden::TokenSource::fetch(&*server).await?;
                token.refresh_token = None;
                Ok(token)
            }
        }
    });
    let source = Arc::new(source);
    let build = |store| {
        TokenManager::builder(source.clone())
            .clock(clock.clone())
            .store(store)
            .lease_ttl(Duration::from_millis(500))
            .build()
            .unwrap()
    };
    let stalled = build(store.clone());
    let other = build(same_prefix(&store, &clock).await);

    server.answer.close(); // the first answer is held on its way back: a pause
    let late = tokio::spawn({
        let stalled = stalled.clone();
        async move { stalled.token().await.map(|t| t.fingerprint()) }
    });
    server.answer.until_arrived(1).await;
    tokio::time::sleep(Duration::from_millis(700)).await; // its lease expires in Redis
    server.answer.stop_holding();
    let newer = other.token().await.unwrap().fingerprint();
    server.answer.let_one_through(); // the stalled holder resumes
    let adopted = late.await.unwrap().expect("the stored token");
    assert_eq!(adopted, newer, "the stalled holder serves the newer token");
    assert_eq!(stalled.stats().lease_losses, 1);
    // Counted (issue 18; both instances share the key's series): each took the
    // lease at once (the other's after the first had expired), and the stalled
    // one's save was fenced.
    let key = ("tokenwarden.key", stalled.key().as_str());
    let outcomes =
        |outcome| recorded.counter(LEASE_OUTCOMES, &[key, ("tokenwarden.outcome", outcome)]);
    assert_eq!((outcomes("acquired"), outcomes("fenced")), (2, 1));
    let kept = store.load(stalled.key()).await.unwrap().unwrap();
    assert_eq!(kept.fingerprint(), newer, "the store did not go back");
    assert_eq!(server.issued(), 2);
}

/// Scenario 3: a token whose access token expired is still in Redis while its
/// refresh token can be used, so a new instance refreshes instead of logging in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_after_the_access_token_expired_refreshes_with_the_stored_token() {
    let _h = crate::leaks::harness();
    let clock = ManualClock::default();
    let Some(store) = store(&clock).await else {
        return;
    };
    let server = GrantServer::new(Duration::from_secs(1), OnReuse::RevokeGrant);
    let first = TokenManager::builder(server.clone())
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap();
    first.token().await.unwrap();
    drop(first);
    // The access token lives 1 s; Redis would drop a key that lived as long.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    clock.advance(Duration::from_secs(2));
    let next = TokenManager::builder(server.clone())
        .clock(clock.clone())
        .store(same_prefix(&store, &clock).await)
        .build()
        .unwrap();
    let token = next.token().await.expect("refreshed");
    assert!(!token.is_expired_at(clock.now()));
    let stats = next.stats();
    assert_eq!((stats.fetches, stats.refreshes), (0, 1), "no new login");
    assert_eq!(server.reuses(), 0);
}

/// Scenario 4 across machines: two instances, each with its own connection to
/// Redis. Once one instance's `logout()` returns, the other serves no token
/// issued before it: its copy lapses within the re-read interval, which the
/// logout waits out after its delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_a_logout_returns_the_other_instances_serve_nothing_from_before_it() {
    let _h = crate::leaks::harness();
    let clock = ManualClock::default();
    let Some(store) = store(&clock).await else {
        return;
    };
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let instance = |store| {
        TokenManager::builder(server.clone())
            .clock(clock.clone())
            .store(store)
            .build()
            .unwrap()
    };
    let other = same_prefix(&store, &clock).await;
    let (a, b) = (instance(store), instance(other));
    let old = a.token().await.unwrap().fingerprint();
    assert_eq!(
        b.token().await.unwrap().fingerprint(),
        old,
        "b uses a's token"
    );

    let logout = tokio::spawn({
        let b = b.clone();
        async move { b.logout().await }
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while !logout.is_finished() {
            clock.advance(Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the logout ended");
    logout.await.unwrap().unwrap();
    let after = a.token().await.unwrap().fingerprint();
    assert_ne!(after, old, "a serves no token issued before b's logout");
    assert_eq!(server.issued(), 2, "a logged in again, once");
}

/// After a failover, the promoted replica may lack the last lease taken on the
/// old primary and its fence (a take that did not reach the replica in time is
/// used all the same), and the next lease there gets the same fence. The old
/// holder keeps its lease for a token it could not save: its late save must not
/// pass for the new lease's and overwrite the token saved under it. The
/// promoted replica's state is made here on one server: the lease gone, the
/// fence one back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_handed_out_again_after_a_failover_lets_only_its_new_owner_write() {
    let _h = crate::leaks::harness();
    let clock = ManualClock::default();
    let Some(store) = store(&clock).await else {
        return;
    };
    let key = TokenKey::new("api");
    let ttl = Duration::from_secs(30);
    let old = store.lease(&key, ttl).await.unwrap();
    let fence = old.fence().unwrap();
    let mut redis = redis::Client::open(crate::URL.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let base = format!("{}:{{{}}}", store.prefix(), key.as_str());
    redis::cmd("DEL")
        .arg(format!("{base}:lease"))
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    redis::cmd("SET")
        .arg(format!("{base}:fence"))
        .arg(fence - 1)
        .arg("PX")
        .arg(60_000)
        .query_async::<()>(&mut redis)
        .await
        .unwrap();

    let other = same_prefix(&store, &clock).await;
    let new = other.lease(&key, ttl).await.unwrap();
    assert_eq!(new.fence(), Some(fence), "the fence, handed out again");
    other
        .save_leased(&key, &Token::new("new-TOPSECRET"), &new)
        .await
        .unwrap();
    new.release().await.unwrap();
    let refused = store
        .save_leased(&key, &Token::new("old-TOPSECRET"), &old)
        .await
        .unwrap_err();
    assert!(refused.is_lease_lost(), "{refused}");
    let kept = store.load(&key).await.unwrap().unwrap();
    assert_eq!(kept.access_token.secret(), "new-TOPSECRET");
}
