//! The coordination protocol under adversity (issue 12's scenarios): a slow lease
//! holder, a refresh racing `logout` or `set_tokens`, a forced refresh and an
//! `invalid_grant` in a fleet, a failed save. Against a model server that rotates
//! refresh tokens and revokes the whole grant when a spent one comes back.

use crate::common::*;
use crate::gated_store::GatedStore;
use crate::grant_server::{GrantServer, OnReuse};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::store::{MemoryStore, TokenStore};
use tokenwarden::{Clock as _, ManualClock, TokenManager};

const LIFETIME: Duration = Duration::from_secs(600);

fn manager(
    server: &Arc<GrantServer>,
    clock: &ManualClock,
    store: impl TokenStore + 'static,
) -> TokenManager {
    TokenManager::builder(server.clone())
        .clock(clock.clone())
        .store(store)
        .build()
        .unwrap()
}

/// Scenario 1: a waiter whose wait for the lease ends (the holder is slow) does
/// not refresh with the refresh token it read before waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_lease_wait_ends_spends_no_refresh_token() {
    let _h = harness();
    let dir = tempfile::tempdir().unwrap();
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let clock = clock();
    // Two processes' stores: one directory, two file locks.
    let build = || {
        TokenManager::builder(server.clone())
            .clock(clock.clone())
            .store(file_store(dir.path(), [7; 32]))
            .lease_ttl(Duration::from_millis(300))
            .build()
            .unwrap()
    };
    let (holder, waiter) = (build(), build());
    let first = holder.token().await.unwrap().fingerprint();
    assert_eq!(waiter.token().await.unwrap().fingerprint(), first);

    clock.advance(LIFETIME);
    server.arrival.close(); // the token endpoint is slow
    let holding = tokio::spawn({
        let holder = holder.clone();
        async move { holder.token().await.map(|t| t.fingerprint()) }
    });
    server.arrival.until_arrived(1).await; // the holder's refresh is at the server
    let waited = tokio::time::timeout(Duration::from_secs(10), waiter.token())
        .await
        .expect("the waiter does not wait for the slow holder's request");
    let error = waited.expect_err("no token while the holder refreshes, and no refresh");
    assert!(error.is_transient(), "{error}");
    assert_eq!(server.arrival.arrived(), 1, "the waiter sent nothing");

    server.arrival.open();
    let second = holding.await.unwrap().unwrap();
    clock.advance(Duration::from_secs(2)); // past the waiter's backoff
    assert_eq!(waiter.token().await.unwrap().fingerprint(), second);
    assert_eq!(server.reuses(), 0, "no refresh token spent twice");
}

/// Scenario 2: a holder whose lease ended while it stalled (here: reading the
/// store) learns it before it sends its refresh, and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_lost_its_lease_sends_no_refresh() {
    let _h = harness();
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    // The store's time (Redis's, say) runs on while the holder is stalled.
    let (clock, store_clock) = (clock(), self::clock());
    let store = Arc::new(GatedStore::over(MemoryStore::with_clock(
        store_clock.clone(),
    )));
    let manager = TokenManager::builder(server.clone())
        .clock(clock.clone())
        .store(store.clone())
        .lease_ttl(Duration::from_secs(5))
        .build()
        .unwrap();
    manager.token().await.unwrap();
    clock.advance(LIFETIME);
    store_clock.advance(LIFETIME);
    store.loads.close();
    let stalled = tokio::spawn({
        let manager = manager.clone();
        async move { manager.token().await.map(|t| t.fingerprint()) }
    });
    store.loads.until_arrived(1).await; // the read before the lease
    store.loads.let_one_through();
    store.loads.until_arrived(2).await; // under the lease, reading the store again
    store_clock.advance(Duration::from_secs(6)); // the lease ends meanwhile
    server.arrival.close();
    store.loads.open();
    let error = tokio::time::timeout(Duration::from_secs(10), stalled)
        .await
        .expect("the stalled holder ends")
        .unwrap()
        .expect_err("no token: its lease ended");
    assert!(error.to_string().contains("lease"), "{error}");
    assert_eq!(server.arrival.arrived(), 0, "nothing was sent");
    assert_eq!(manager.stats().lease_losses, 1);
}

/// Scenario 4: a `token()` racing `logout()` never serves the logged-out token
/// once `logout()` returned, and a slow revocation holds nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_call_racing_logout_never_serves_the_logged_out_token() {
    let _h = harness();
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let clock = clock();
    let store = Arc::new(GatedStore::over(MemoryStore::with_clock(clock.clone())));
    let manager = manager(&server, &clock, store.clone());
    let logged_out = manager.token().await.unwrap().fingerprint();

    server.revocation.close(); // a slow revocation endpoint
    let logout = tokio::spawn({
        let manager = manager.clone();
        async move { manager.logout().await }
    });
    server.revocation.until_arrived(1).await;
    // A caller asks for a token while the logout revokes, and reads the store.
    store.loads.close();
    let racing = tokio::spawn({
        let manager = manager.clone();
        async move { manager.token().await.map(|t| t.fingerprint()) }
    });
    store.loads.until_arrived(1).await;
    let read_before = store.loaded.load(SeqCst);
    store.loads.open();
    until(|| store.loaded.load(SeqCst) > read_before).await;
    server.revocation.open();
    // The logout waits for copies elsewhere to lapse, on the manual clock.
    advance_until_finished(&clock, &logout).await;
    logout.await.unwrap().unwrap();
    let racing = tokio::time::timeout(Duration::from_secs(10), racing)
        .await
        .expect("the racing call ends")
        .unwrap();
    if let Ok(racing) = racing {
        assert_ne!(
            racing, logged_out,
            "the racing call got the logged-out token"
        );
    }
    let after = manager.token().await.unwrap().fingerprint();
    assert_ne!(after, logged_out, "a new login after the logout");
    assert_eq!(server.revocations(), 1);
    let stored = store.inner.load(manager.key()).await.unwrap();
    assert!(
        stored.is_none_or(|t| t.fingerprint() != logged_out),
        "not stored again"
    );
}

/// Scenario 4: a logout whose caller stops waiting still removes the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_whose_caller_goes_away_still_removes_the_token() {
    let _h = harness();
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    let manager = manager(&server, &clock, store.clone());
    manager.token().await.unwrap();
    assert_eq!(store.len(), 1);

    server.revocation.close();
    let gave_up = tokio::time::timeout(Duration::from_millis(50), manager.logout()).await;
    assert!(
        gave_up.is_err(),
        "the caller stopped waiting during the revocation"
    );
    assert!(store.is_empty(), "the stored token is gone all the same");
    assert!(!manager.info().await.authenticated, "and not served");
    server.revocation.open();
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.revocations() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the revocation went on without its caller");
}

/// Scenario 4, across instances: once one instance's `logout()` returns, no
/// instance that shares the store serves a token issued before it. Each copy is
/// served for the re-read interval only; the logout waits as long after its delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_a_logout_returns_no_instance_sharing_the_store_serves_the_old_token() {
    let _h = harness();
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let clock = clock();
    let store = Arc::new(GatedStore::over(MemoryStore::with_clock(clock.clone())));
    let (a, b) = (
        manager(&server, &clock, store.clone()),
        manager(&server, &clock, store.clone()),
    );
    let old = a.token().await.unwrap().fingerprint();
    assert_eq!(
        b.token().await.unwrap().fingerprint(),
        old,
        "b adopted a's token"
    );

    let started = clock.monotonic();
    logout_on(&clock, &b).await;
    assert!(
        clock.monotonic() - started >= tokenwarden::DEFAULT_STORE_RECHECK,
        "the logout waited for copies elsewhere to lapse"
    );
    let after = a.token().await.unwrap().fingerprint();
    assert_ne!(after, old, "a serves no token issued before b's logout");
    assert_eq!(server.revocations(), 1);
}

/// The re-read costs one store read per interval, made by one caller; a token
/// that another instance put in the store (here `set_tokens`) is served from the
/// next re-read on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_is_checked_against_the_store_once_per_interval() {
    let _h = harness();
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let clock = clock();
    let store = Arc::new(GatedStore::over(MemoryStore::with_clock(clock.clone())));
    let (a, b) = (
        manager(&server, &clock, store.clone()),
        manager(&server, &clock, store.clone()),
    );
    let first = a.token().await.unwrap().fingerprint();
    let reads = store.loaded.load(SeqCst);
    for _ in 0..100 {
        assert_eq!(a.token().await.unwrap().fingerprint(), first);
    }
    assert_eq!(
        store.loaded.load(SeqCst),
        reads,
        "no reads within the interval"
    );

    b.set_tokens(server.login()).await.unwrap();
    let given = b.token().await.unwrap().fingerprint();
    assert_eq!(
        a.token().await.unwrap().fingerprint(),
        first,
        "a's copy, within its interval"
    );
    clock.advance(tokenwarden::DEFAULT_STORE_RECHECK);
    let callers: Vec<_> = (0..50)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.token().await.map(|t| t.fingerprint()) })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), given, "the token b set");
    }
    assert_eq!(
        store.loaded.load(SeqCst),
        reads + 1,
        "50 callers at the end of the interval: one read"
    );
    assert_eq!(
        server.issued(),
        2,
        "a's login and the token b set: nothing fetched to find it"
    );
}

/// A machine suspended for longer than the interval (its monotonic clock stood
/// still) reads the store again on waking: its wall clock says the copy lapsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_lapses_across_a_suspend() {
    let _h = harness();
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    let (a, b) = (
        manager(&server, &clock, store.clone()),
        manager(&server, &clock, store),
    );
    let first = a.token().await.unwrap().fingerprint();
    b.set_tokens(server.login()).await.unwrap();
    let set = b.token().await.unwrap().fingerprint();
    assert_eq!(
        a.token().await.unwrap().fingerprint(),
        first,
        "within the interval"
    );
    clock.suspend(Duration::from_secs(60));
    assert_eq!(
        a.token().await.unwrap().fingerprint(),
        set,
        "re-read after the suspend"
    );
}

/// A login whose save failed (the store held nothing) is not served past
/// another instance's logout: the store, empty, cannot say whether it was
/// emptied since, and the logout wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsaved_login_does_not_outlive_a_logout_elsewhere() {
    let _h = harness();
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let clock = clock();
    let memory = MemoryStore::with_clock(clock.clone());
    let failing = Arc::new(GatedStore::over(memory.clone()));
    failing.failing_saves.store(usize::MAX, SeqCst);
    let b = manager(&server, &clock, failing.clone());
    let a = manager(&server, &clock, memory);
    let unsaved = b.token().await.unwrap().fingerprint();
    assert!(b.info().await.unsaved);

    logout_on(&clock, &a).await;
    failing.failing_saves.store(0, SeqCst);
    let after = b.token().await.unwrap().fingerprint();
    assert_ne!(
        after, unsaved,
        "the unsaved login did not outlive the logout"
    );
}

/// With re-reads off (a store nobody else shares), a logout does not wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_re_reads_a_logout_does_not_wait() {
    let _h = harness();
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let clock = clock();
    let manager = TokenManager::builder(server.clone())
        .clock(clock.clone())
        .store(MemoryStore::with_clock(clock.clone()))
        .store_recheck(None)
        .build()
        .unwrap();
    manager.token().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), manager.logout())
        .await
        .expect("no wait on the manual clock")
        .unwrap();
    assert!(!manager.info().await.authenticated);
}

/// Scenario 5: `set_tokens` stops a refresh in flight before it reaches the
/// source, so the refresh token it sets is never spent by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_tokens_supersedes_a_refresh_in_flight_before_it_is_sent() {
    let _h = harness();
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let clock = clock();
    let store = Arc::new(GatedStore::over(MemoryStore::with_clock(clock.clone())));
    let manager = manager(&server, &clock, store.clone());
    manager.token().await.unwrap();

    clock.advance(LIFETIME);
    store.loads.close(); // the refresh is on its way, reading the store
    let in_flight = tokio::spawn({
        let manager = manager.clone();
        async move { manager.token().await.map(|t| t.fingerprint()) }
    });
    store.loads.until_arrived(1).await;
    let given = server.login(); // signed in elsewhere, handed over by the user
    let given_refresh = given.refresh_token.as_ref().unwrap().secret().to_owned();
    manager.set_tokens(given.clone()).await.unwrap();
    store.loads.open();

    let served = in_flight.await.unwrap().expect("the token that was set");
    assert_eq!(served, given.fingerprint());
    assert_eq!(
        server.refreshes_with(&given_refresh),
        0,
        "the flight did not spend the refresh token just set"
    );
    clock.advance(LIFETIME);
    manager
        .token()
        .await
        .expect("the set refresh token still works");
    assert_eq!(server.refreshes_with(&given_refresh), 1);
    assert_eq!(server.reuses(), 0);
}

/// Scenario 6: a forced refresh with a shared store looks in the store first; a
/// token newer than the caller's (another instance refreshed) counts as forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_refresh_takes_a_newer_stored_token_instead_of_spending_its_own() {
    let _h = harness();
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    let (a, b) = (
        manager(&server, &clock, store.clone()),
        manager(&server, &clock, store.clone()),
    );
    a.token().await.unwrap();
    b.token().await.unwrap(); // the same token, from the store
    let newer = a.force_refresh().await.unwrap().fingerprint();
    let forced = b.force_refresh().await.unwrap().fingerprint();
    assert_eq!(forced, newer, "b took the token a stored");
    assert_eq!(b.stats().refreshes, 0);
    assert_eq!(server.reuses(), 0, "b's old refresh token was not sent");
}

/// Scenario 7: `invalid_grant` on a refresh looks in the store (a sibling rotated
/// the token) before logging in again. A store without leases lets the two
/// instances refresh at once; the server refuses the second use of the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_in_a_fleet_takes_the_siblings_token_before_logging_in() {
    let _h = harness();
    let server = GrantServer::new(LIFETIME, OnReuse::Refuse);
    let clock = clock();
    let store = Arc::new(GatedStore {
        without_leases: true,
        ..GatedStore::over(MemoryStore::with_clock(clock.clone()))
    });
    let (a, b) = (
        manager(&server, &clock, store.clone()),
        manager(&server, &clock, store.clone()),
    );
    a.token().await.unwrap();
    b.token().await.unwrap();

    clock.advance(LIFETIME);
    server.arrival.close();
    let first = tokio::spawn({
        let a = a.clone();
        async move { a.token().await.map(|t| t.fingerprint()) }
    });
    server.arrival.until_arrived(1).await;
    let second = tokio::spawn({
        let b = b.clone();
        async move { b.token().await.map(|t| t.fingerprint()) }
    });
    server.arrival.until_arrived(2).await;
    server.arrival.let_one_through(); // a's refresh: rotated, stored
    let rotated = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("a ends")
        .unwrap()
        .unwrap();
    server.arrival.stop_holding(); // a new login would not be held
    server.arrival.let_one_through(); // b's, with the spent token: invalid_grant
    let taken = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("b ends")
        .unwrap()
        .expect("the sibling's token");
    assert_eq!(taken, rotated);
    assert_eq!(b.stats().fetches, 0, "no new login");
    assert_eq!(server.reuses(), 1, "the one refused request");
}

/// Scenario 11: a token the store failed to save is served, shown as unsaved,
/// and saved again with backoff until the save lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_save_is_retried_until_it_lands() {
    let _h = harness();
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let clock = clock();
    let store = Arc::new(GatedStore::over(MemoryStore::with_clock(clock.clone())));
    store.failing_saves.store(2, SeqCst);
    let manager = manager(&server, &clock, store.clone());
    let served = manager.token().await.expect("served though not saved");
    assert!(manager.info().await.unsaved);
    assert!(manager.stats().unsaved);
    assert_eq!(manager.stats().save_failures, 1);
    assert!(store.inner.is_empty());

    // The retries back off (1 s, then 2 s) on the clock's monotonic time.
    clock.advance(Duration::from_secs(1));
    until(|| store.failed_saves.load(SeqCst) == 2).await;
    assert!(store.inner.is_empty());
    clock.advance(Duration::from_secs(2));
    until(|| !store.inner.is_empty()).await;
    let stored = store.inner.load(manager.key()).await.unwrap().unwrap();
    assert_eq!(stored.fingerprint(), served.fingerprint());
    until(|| !manager.stats().unsaved).await;
    assert!(!manager.info().await.unsaved);
}

/// Scenario 11: a 401 for a token the store failed to save does not bring back
/// the stored token it replaced (whose refresh token is spent): the unsaved
/// token's refresh token is the one sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsaved_token_rejected_by_the_api_is_refreshed_not_replaced_by_the_stale_one() {
    let _h = harness();
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let clock = clock();
    let store = Arc::new(GatedStore::over(MemoryStore::with_clock(clock.clone())));
    let manager = manager(&server, &clock, store.clone());
    manager.token().await.unwrap(); // stored
    store.failing_saves.store(1, SeqCst);
    let unsaved = manager.force_refresh().await.unwrap().to_token();
    assert!(manager.stats().unsaved);
    manager.invalidate(&unsaved); // the API answered 401
    let next = manager.token().await.expect("refreshed");
    assert_ne!(next.fingerprint(), unsaved.fingerprint());
    let spent = unsaved.refresh_token.as_ref().unwrap().secret().to_owned();
    assert_eq!(
        server.refreshes_with(&spent),
        1,
        "the unsaved refresh token was used"
    );
    assert_eq!(server.reuses(), 0, "the stale stored one was not");
}

/// Scenario 11: a newer token ends the retries of an older one's save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_token_replaces_an_unsaved_one() {
    let _h = harness();
    let server = GrantServer::new(LIFETIME, OnReuse::RevokeGrant);
    let clock = clock();
    let store = Arc::new(GatedStore::over(MemoryStore::with_clock(clock.clone())));
    store.failing_saves.store(1, SeqCst);
    let manager = manager(&server, &clock, store.clone());
    manager.token().await.unwrap();
    assert!(manager.stats().unsaved);
    let newer = manager.force_refresh().await.unwrap().fingerprint();
    assert!(!manager.stats().unsaved);
    clock.advance(Duration::from_secs(60));
    settle().await;
    let stored = store.inner.load(manager.key()).await.unwrap().unwrap();
    assert_eq!(
        stored.fingerprint(),
        newer,
        "the old one was not saved over it"
    );
}

/// `manager`'s logout, with `clock` moved on while it waits for copies
/// elsewhere to lapse; it must succeed.
async fn logout_on(clock: &ManualClock, manager: &TokenManager) {
    let logout = tokio::spawn({
        let manager = manager.clone();
        async move { manager.logout().await }
    });
    advance_until_finished(clock, &logout).await;
    logout.await.unwrap().unwrap();
}

/// Moves `clock` on a second at a time until `task` ends (10 s of real time at
/// most: a hang, not a timing check).
async fn advance_until_finished<T>(clock: &ManualClock, task: &tokio::task::JoinHandle<T>) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !task.is_finished() {
            clock.advance(Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the task ended");
}
