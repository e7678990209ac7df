//! Lease wake-ups: a waiter is woken by the release (not by polling or its
//! fallback), a wake-up for a waiter that gave up is passed on, and a holder that
//! died without releasing (no message) still lets the next one in after its TTL.
//!
//! The attempts to take a lease are counted with `MONITOR`, on the test's own
//! prefix: each is one call of the take script, the only one with 5 keys.

use crate::{store, URL};
use futures_util::StreamExt as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenwarden::store::{LeaseWait, TokenCipher, TokenStore};
use tokenwarden::{source::from_fn, ManualClock, Token, TokenKey, TokenManager};
use tokenwarden_redis::RedisStore;

/// Every command Redis runs, as `MONITOR` prints it, from when it was started.
struct Monitor {
    lines: Arc<Mutex<Vec<String>>>,
    redis: redis::aio::MultiplexedConnection,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    async fn start() -> Self {
        let client = redis::Client::open(URL.as_str()).unwrap();
        let monitor = client.get_async_monitor().await.unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let lines = lines.clone();
            async move {
                let mut stream = monitor.into_on_message::<String>();
                while let Some(line) = stream.next().await {
                    lines.lock().unwrap().push(line);
                }
            }
        });
        let redis = client.get_multiplexed_async_connection().await.unwrap();
        Self { lines, redis, task }
    }

    /// The attempts made so far to take `lease` (the commands Redis ran before
    /// this call, all of them seen: `MONITOR` prints in the order of execution).
    async fn takes(&mut self, lease: &str) -> usize {
        self.count(&format!("\"5\" \"{lease}\"")).await
    }

    /// The commands clients sent so far (not those their scripts ran) whose line
    /// holds `text`, as `MONITOR` printed them.
    async fn sent(&mut self, text: &str) -> Vec<String> {
        self.count(text).await; // every command run before this call is in
        let lines = self.lines.lock().unwrap();
        let sent = lines
            .iter()
            .filter(|l| l.contains(text) && !l.contains(" lua]"));
        sent.cloned().collect()
    }

    /// The commands run so far whose line holds `text`; a script call refused
    /// because Redis did not have the script yet (the client's next command then
    /// loads it, and calls it again) is not counted.
    async fn count(&mut self, text: &str) -> usize {
        let mark = format!("monitor-mark-{:016x}", fastrand::u64(..));
        let _: String = redis::cmd("ECHO")
            .arg(&mark)
            .query_async(&mut self.redis)
            .await
            .unwrap();
        for _ in 0..1000 {
            {
                let lines = self.lines.lock().unwrap();
                if lines.iter().any(|l| l.contains(&mark)) {
                    return (0..lines.len())
                        .filter(|&i| lines[i].contains(text) && !refused(&lines, i))
                        .count();
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("MONITOR did not show the mark within 10 s");
    }
}

/// The client of a `MONITOR` line: `<time> [<db> <address>] "<command>" ...`.
fn client(line: &str) -> Option<&str> {
    line.split_once('[')?
        .1
        .split_once(']')
        .map(|(client, _)| client)
}

/// Whether the script call on line `i` was refused for a script Redis did not
/// have: its client's next command is `SCRIPT LOAD`.
fn refused(lines: &[String], i: usize) -> bool {
    let caller = client(&lines[i]);
    lines[i + 1..]
        .iter()
        .find(|line| client(line) == caller)
        .is_some_and(|next| next.to_ascii_uppercase().contains("\"SCRIPT\" \"LOAD\""))
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Stores on the system clock (their waits give up in real time) sharing `first`'s
/// prefix.
async fn on_system_clock(first: &RedisStore) -> RedisStore {
    RedisStore::builder(URL.as_str())
        .prefix(first.prefix())
        .build()
        .await
        .unwrap()
}

/// The Redis key of `key`'s `suffix` (lease, queue) under `store`'s prefix.
fn redis_key(store: &RedisStore, key: &TokenKey, suffix: &str) -> String {
    format!("{}:{{{}}}{suffix}", store.prefix(), key.as_str())
}

/// Waits until `count` waiters are queued for `key`'s lease.
async fn queued(store: &RedisStore, key: &TokenKey, count: usize) {
    let mut redis = redis::Client::open(URL.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let waiters = redis_key(store, key, ":waiters");
    for _ in 0..2000 {
        let queued: usize = redis::cmd("ZCARD")
            .arg(&waiters)
            .query_async(&mut redis)
            .await
            .unwrap();
        if queued == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{count} waiter(s) were not queued within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_woken_by_the_release_not_by_polling() {
    let _h = crate::leaks::harness();
    let clock = ManualClock::default();
    let Some(a) = store(&clock).await else { return };
    let b = on_system_clock(&a).await;
    let mut monitor = Monitor::start().await;
    let key = TokenKey::new("api");
    let ttl = Duration::from_secs(30);
    let held = a.lease(&key, ttl).await.unwrap();
    let waiting = tokio::spawn({
        let (b, key) = (b.clone(), key.clone());
        async move { b.lease(&key, ttl).await }
    });
    queued(&a, &key, 1).await;
    // A waiter polling every 25 ms would try 8 times meanwhile; the fallback (1 s)
    // and the holder's lease (30 s) are far off.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the lease is held");
    let fence = held.fence();
    held.release().await.unwrap();
    let taken = waiting.await.unwrap().unwrap();
    assert!(taken.fence() > fence);
    let takes = monitor.takes(&redis_key(&a, &key, ":lease")).await;
    // The holder's; the waiter's first, then the one that queued it once it had
    // subscribed, then the one the release woke it for.
    assert_eq!(takes, 4, "attempts to take the lease");
    taken.release().await.unwrap();
}

/// The holder's save ends every `lease_unless_changed` wait at once, and the
/// waiters leave the queue; a plain `lease` waiter is woken too, and queues
/// again. A store that seals its tokens hands the saved token over in the
/// message (no further attempt on the lease); one that stores them in clear
/// never sends a token over pub/sub (each waiter reads it with one attempt).
async fn a_save_wakes_every_waiter(sealed: bool) {
    let _h = crate::leaks::harness();
    let clock = ManualClock::default();
    let Some(first) = store(&clock).await else {
        return;
    };
    let open = |first: RedisStore| async move {
        let builder = RedisStore::builder(URL.as_str()).prefix(first.prefix());
        let builder = match sealed {
            true => builder.cipher(TokenCipher::new([9; 32])),
            false => builder,
        };
        builder.build().await.unwrap()
    };
    let a = open(first.clone()).await;
    let mut monitor = Monitor::start().await;
    let key = TokenKey::new("api");
    let ttl = Duration::from_secs(30);
    let held = a.lease(&key, ttl).await.unwrap();
    let mut watching = Vec::new();
    for _ in 0..3 {
        let (b, key) = (open(first.clone()).await, key.clone());
        // As a manager's store would, it has read the key: a store that has not
        // answers at once with what is stored (see `leases_see_changes`).
        assert!(b.load(&key).await.unwrap().is_none());
        watching.push(tokio::spawn(async move {
            b.lease_unless_changed(&key, ttl).await
        }));
    }
    let plain = tokio::spawn({
        let (b, key) = (open(first.clone()).await, key.clone());
        async move { b.lease(&key, ttl).await }
    });
    queued(&a, &key, 4).await;
    let before = monitor.takes(&redis_key(&a, &key, ":lease")).await;
    a.save_leased(&key, &Token::new("new-TOPSECRET"), &held)
        .await
        .unwrap();
    for waiter in watching {
        match waiter.await.unwrap().unwrap() {
            LeaseWait::Changed(Some(token)) => {
                assert_eq!(token.access_token.secret(), "new-TOPSECRET");
            }
            other => panic!("not the saved token: {other:?}"),
        }
    }
    queued(&a, &key, 1).await; // the plain waiter, queued again
    let after = monitor.takes(&redis_key(&a, &key, ":lease")).await;
    let expected = if sealed { 1 } else { 4 };
    assert_eq!(
        after - before,
        expected,
        "attempts on the lease after the save"
    );
    // In clear, the token shows in the save's script call and its SET only,
    // never in a PUBLISH; sealed, nowhere.
    let in_clear = if sealed { 0 } else { 2 };
    assert_eq!(
        monitor.count("TOPSECRET").await,
        in_clear,
        "lines with the token"
    );
    held.release().await.unwrap();
    plain.await.unwrap().unwrap().release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_hands_a_sealed_token_to_every_waiter_in_its_message() {
    a_save_wakes_every_waiter(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_in_clear_wakes_every_waiter_without_sending_the_token() {
    a_save_wakes_every_waiter(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_up_for_a_waiter_that_gave_up_is_passed_on() {
    let _h = crate::leaks::harness();
    let clock = ManualClock::default();
    let Some(a) = store(&clock).await else { return };
    let (quitter, b) = (on_system_clock(&a).await, on_system_clock(&a).await);
    let mut monitor = Monitor::start().await;
    let key = TokenKey::new("api");
    let held = a.lease(&key, Duration::from_secs(30)).await.unwrap();
    let gave_up = quitter.lease(&key, Duration::from_millis(300)).await;
    assert!(gave_up.is_err(), "the lease stayed held");
    queued(&a, &key, 1).await;
    let waiting = tokio::spawn({
        let (b, key) = (b.clone(), key.clone());
        async move { b.lease(&key, Duration::from_secs(30)).await }
    });
    queued(&a, &key, 2).await;
    let before = monitor.takes(&redis_key(&a, &key, ":lease")).await;
    // The release wakes the first in the queue, which gave up; its store passes
    // the wake-up on.
    held.release().await.unwrap();
    let taken = waiting.await.unwrap().unwrap();
    let after = monitor.takes(&redis_key(&a, &key, ":lease")).await;
    assert_eq!(after - before, 1, "the waiter behind was woken once");
    let passed_on = format!(
        "\"2\" \"{}\" \"{}\" \"\"",
        redis_key(&a, &key, ":lease"),
        redis_key(&a, &key, ":waiters")
    );
    assert_eq!(
        monitor.count(&passed_on).await,
        1,
        "passed on by the store that gave up"
    );
    taken.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_died_without_releasing_lets_the_next_in_after_its_ttl() {
    let _h = crate::leaks::harness();
    let clock = ManualClock::default();
    let Some(a) = store(&clock).await else { return };
    let b = on_system_clock(&a).await;
    let mut monitor = Monitor::start().await;
    let key = TokenKey::new("api");
    let dead = a.lease(&key, Duration::from_millis(600)).await.unwrap();
    let fence = dead.fence();
    // Died: neither released nor dropped (a drop would release it).
    std::mem::forget(dead);
    let taken = b.lease(&key, Duration::from_secs(10)).await.unwrap();
    assert!(taken.fence() > fence);
    let takes = monitor.takes(&redis_key(&a, &key, ":lease")).await;
    // The holder's; the waiter's first, the one that queued it, and one when the
    // holder's lease ran out (read from the answer), give or take a fallback.
    assert!(
        (4..=5).contains(&takes),
        "attempts to take the lease: {takes}"
    );
    taken.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_a_connection_of_yours_is_woken_with_a_pubsub_client_and_polls_without() {
    let _h = crate::leaks::harness();
    let clock = ManualClock::default();
    let Some(a) = store(&clock).await else { return };
    let client = redis::Client::open(URL.as_str()).unwrap();
    let connection = client.get_multiplexed_async_connection().await.unwrap();
    let woken = RedisStore::with_connection(connection.clone())
        .prefix(a.prefix())
        .pubsub(client)
        .build()
        .await
        .unwrap();
    let polling = RedisStore::with_connection(connection)
        .prefix(a.prefix())
        .build()
        .await
        .unwrap();
    let mut monitor = Monitor::start().await;
    for (waiter, polls) in [(woken, false), (polling, true)] {
        let key = TokenKey::new(if polls { "polled" } else { "woken" });
        let held = a.lease(&key, Duration::from_secs(30)).await.unwrap();
        let waiting = tokio::spawn({
            let key = key.clone();
            async move { waiter.lease(&key, Duration::from_secs(30)).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        held.release().await.unwrap();
        waiting.await.unwrap().unwrap().release().await.unwrap();
        let takes = monitor.takes(&redis_key(&a, &key, ":lease")).await;
        if polls {
            assert!(takes > 5, "it polled: {takes} attempts");
        } else {
            assert_eq!(takes, 4, "it was woken");
        }
    }
}

/// A due refresh takes the lease without reading the store first (the take
/// returns the stored token to its winner), and an instance whose token another
/// already refreshed gets the new one from that one command, taking no lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_refresh_is_one_command_where_another_instance_refreshed() {
    let _h = crate::leaks::harness();
    let clock = ManualClock::default();
    let Some(first) = store(&clock).await else {
        return;
    };
    let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let instance = |store: RedisStore| {
        let requests = requests.clone();
        let source = from_fn("fleet", move || {
            let n = requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok(Token::new(format!("at-{n}")).with_expires_in(Duration::from_secs(60))) }
        });
        TokenManager::builder(source)
            .store(store)
            .key(TokenKey::new("fleet"))
            .clock(clock.clone())
            .background_refresh(false)
            .build()
            .unwrap()
    };
    let second = RedisStore::builder(URL.as_str())
        .prefix(first.prefix())
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let prefix = first.prefix().to_owned();
    let (a, b) = (instance(first), instance(second));
    assert_eq!(a.token().await.unwrap().access_token.secret(), "at-0");
    assert_eq!(b.token().await.unwrap().access_token.secret(), "at-0");
    clock.advance(Duration::from_secs(61));

    let mut monitor = Monitor::start().await;
    assert_eq!(a.token().await.unwrap().access_token.secret(), "at-1");
    let by_a = monitor.sent(&prefix).await;
    assert!(
        !by_a
            .iter()
            .any(|l| l.contains("\"GET\"") || l.contains("\"get\"")),
        "the winner took the lease without a read first: {by_a:#?}"
    );
    assert_eq!(by_a.len(), 3, "take, save, release: {by_a:#?}");

    assert_eq!(b.token().await.unwrap().access_token.secret(), "at-1");
    let by_b = monitor.sent(&prefix).await[by_a.len()..].to_vec();
    assert_eq!(by_b.len(), 1, "one command: {by_b:#?}");
    assert!(by_b[0].to_uppercase().contains("EVALSHA"), "{by_b:#?}");
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one refresh"
    );
    assert_eq!(b.stats().refreshes + b.stats().fetches, 0, "b adopted");
}
