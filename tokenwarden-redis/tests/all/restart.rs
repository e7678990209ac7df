//! Redis stopped and started under a running manager, on a private redis-server.

use crate::required;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::store::TokenStore;
use tokenwarden::{source::from_fn, ManualClock, Token, TokenManager};
use tokenwarden_redis::RedisStore;

/// A private redis-server on a free port, for tests that stop and start it.
struct OwnRedis {
    port: u16,
    process: Option<std::process::Child>,
}

impl OwnRedis {
    fn start(port: u16) -> Option<Self> {
        let process = std::process::Command::new(crate::replicated::server_program())
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn();
        match process {
            Ok(process) => Some(Self {
                port,
                process: Some(process),
            }),
            Err(error) if required() => {
                panic!(
                    "{} is required under CI: {error}",
                    crate::replicated::server_program()
                )
            }
            Err(error) => {
                eprintln!("skipped: no redis-server to start ({error})");
                None
            }
        }
    }

    /// A server on a port that was free a moment ago.
    fn on_a_free_port() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        Self::start(port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn connect_when_up(url: &str, clock: &ManualClock) -> RedisStore {
    for _ in 0..100 {
        if let Ok(store) = RedisStore::builder(url).clock(clock.clone()).build().await {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server did not come up at {url}");
}

/// A private server, a clock, and a store on that server; `None` (skip) where
/// there is no redis-server and `CI` is not set.
async fn private_store() -> Option<(OwnRedis, ManualClock, RedisStore)> {
    let redis = OwnRedis::on_a_free_port()?;
    let clock = ManualClock::default();
    let store = connect_when_up(&redis.url(), &clock).await;
    Some((redis, clock, store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_no_refresh_token_is_spent_and_refreshes_resume_after() {
    let _h = crate::leaks::harness();
    let Some((mut redis, clock, store)) = private_store().await else {
        return;
    };
    let port = redis.port;
    // A server that rotates refresh tokens: none may be lost or spent twice.
    let server = Arc::new(Rotating::default());
    let logins = &server.issued;
    let manager = TokenManager::builder(server.clone())
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap();
    let first = manager.token().await.unwrap().fingerprint();

    redis.stop(); // Redis goes away
    manager.token().await.expect("served from the cache");
    clock.advance(Duration::from_secs(600)); // and the token expires meanwhile
                                             // Without the store's lease, instances cannot agree on who refreshes: the
                                             // refresh token is not spent (every instance would send the same one).
    let during = tokio::time::timeout(Duration::from_secs(30), manager.token())
        .await
        .expect("no hang while Redis is down")
        .expect_err("no refresh without the lease");
    assert!(during.is_transient(), "{during}");
    assert!(during.to_string().contains("Redis"), "{during}");
    assert_eq!(logins.load(SeqCst), 1, "nothing was sent");
    let key = manager.key().clone();
    assert!(
        store.load(&key).await.is_err(),
        "the store says Redis is away"
    );

    let _redis = OwnRedis::start(port).unwrap(); // Redis returns (empty)
    let after = connect_when_up(&format!("redis://127.0.0.1:{port}/0"), &clock).await;
    let token = tokio::time::timeout(Duration::from_secs(10), async {
        // The store's own connection reconnects by itself; the backoff ends.
        loop {
            if let Ok(token) = manager.token().await {
                return token;
            }
            clock.advance(Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a new token once Redis is back");
    assert_ne!(first, token.fingerprint());
    assert_eq!(
        logins.load(SeqCst),
        2,
        "one refresh, with the unspent refresh token"
    );
    assert!(
        after.load(&key).await.unwrap().is_some(),
        "stored in Redis again"
    );
    assert_eq!(
        server.reused.load(SeqCst),
        0,
        "no refresh token spent twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_a_grant_without_refresh_tokens_still_gets_tokens() {
    let _h = crate::leaks::harness();
    let Some((mut redis, clock, store)) = private_store().await else {
        return;
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let source = {
        let calls = calls.clone();
        from_fn("client-credentials", move || {
            let n = calls.fetch_add(1, SeqCst) + 1;
            async move {
                Ok(Token::new(format!("at-TOPSECRET-{n}"))
                    .with_expires_in(Duration::from_secs(600)))
            }
        })
    };
    let manager = TokenManager::builder(source)
        .clock(clock.clone())
        .store(store)
        .build()
        .unwrap();
    let first = manager.token().await.unwrap().fingerprint();
    redis.stop();
    clock.advance(Duration::from_secs(600));
    // A fetch spends nothing: this instance gets a token of its own.
    let during = tokio::time::timeout(Duration::from_secs(30), manager.token())
        .await
        .expect("no hang while Redis is down")
        .expect("a token without the store");
    assert_ne!(first, during.fingerprint());
    assert_eq!(calls.load(SeqCst), 2);
}

/// A server that rotates refresh tokens and refuses a spent one, as real ones do.
#[derive(Debug, Default)]
struct Rotating {
    issued: AtomicUsize,
    spent: std::sync::Mutex<std::collections::HashSet<String>>,
    reused: AtomicUsize,
}

impl Rotating {
    fn issue(&self) -> Token {
        let n = self.issued.fetch_add(1, SeqCst) + 1;
        Token::new(format!("at-TOPSECRET-{n}"))
            .with_refresh_token(format!("rt-TOPSECRET-{n}"))
            .with_expires_in(Duration::from_secs(600))
    }
}

#[async_trait::async_trait]
impl tokenwarden::TokenSource for Rotating {
    async fn fetch(&self) -> tokenwarden::Result<Token> {
        Ok(self.issue())
    }

    async fn refresh(&self, current: &Token) -> tokenwarden::Result<Token> {
        let refresh = current.refresh_token.as_ref().expect("a refresh token");
        if !self
            .spent
            .lock()
            .unwrap()
            .insert(refresh.secret().to_owned())
        {
            self.reused.fetch_add(1, SeqCst);
            return Err(tokenwarden::Error::oauth(
                "rotating",
                Some(400),
                tokenwarden::OAuthError::new("invalid_grant"),
            ));
        }
        Ok(self.issue())
    }

    fn name(&self) -> &str {
        "rotating"
    }
}

/// SIGSTOP or SIGCONT to a process.
fn signal(process: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &process.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::disallowed_methods)] // times real waits on Redis; token time is the ManualClock's
async fn a_stalled_redis_costs_bounded_waits_and_the_chain_converges_after() {
    let _h = crate::leaks::harness();
    let Some(redis) = OwnRedis::on_a_free_port() else {
        return;
    };
    let clock = ManualClock::default();
    let timeout = Duration::from_millis(300);
    let connect = || async {
        let store = connect_when_up(&redis.url(), &clock).await;
        RedisStore::builder(redis.url())
            .prefix(store.prefix())
            .clock(clock.clone())
            .timeout(timeout)
            .build()
            .await
            .unwrap()
    };
    let server = Arc::new(Rotating::default());
    // Two instances (as two processes would be), each with its own connection.
    let mut instances = Vec::new();
    for _ in 0..2 {
        instances.push(
            TokenManager::builder(server.clone())
                .clock(clock.clone())
                .store(connect().await)
                .lease_ttl(Duration::from_secs(2))
                .build()
                .unwrap(),
        );
    }
    for instance in &instances {
        instance.token().await.unwrap();
    }
    assert_eq!(
        server.issued.load(SeqCst),
        1,
        "one login, shared through Redis"
    );

    // Redis freezes (SIGSTOP: connections stay open, nothing answers) as the
    // token expires. Every caller gets a token, each within a bounded wait.
    let process = redis.process.as_ref().unwrap();
    signal(process, "-STOP");
    clock.advance(Duration::from_secs(600));
    for instance in &instances {
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(10), instance.token())
            .await
            .expect("a bounded wait while Redis is frozen");
        // Without the lease the refresh token is not spent: a typed error.
        let error = outcome.expect_err("no refresh without the lease");
        assert!(error.is_transient(), "{error}");
        let waited = started.elapsed();
        println!("an error while Redis is frozen after {waited:?}");
        assert!(
            waited < Duration::from_secs(3),
            "a bounded wait: {waited:?}"
        );
    }
    let reused_in_stall = server.reused.load(SeqCst);
    assert_eq!(
        reused_in_stall, 0,
        "no refresh token spent while Redis was frozen"
    );
    signal(process, "-CONT");

    // Redis thaws. Three more expiries: one refresh each, every refresh token
    // spent once, and both instances on the same token again.
    tokio::time::sleep(Duration::from_millis(500)).await; // the stale writes land
    for round in 0..3 {
        clock.advance(Duration::from_secs(600));
        let before = server.issued.load(SeqCst);
        let mut fingerprints = std::collections::HashSet::new();
        for instance in &instances {
            // The backoff after the freeze's errors may still run: bounded retries.
            let token = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    if let Ok(token) = instance.token().await {
                        return token;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .expect("a bounded wait");
            fingerprints.insert(token.fingerprint());
        }
        assert_eq!(
            server.issued.load(SeqCst) - before,
            1,
            "round {round}: one refresh for both instances"
        );
        assert_eq!(fingerprints.len(), 1, "round {round}: one shared token");
    }
    assert_eq!(
        server.reused.load(SeqCst),
        reused_in_stall,
        "no refresh token spent twice once Redis is back"
    );
    println!(
        "refresh tokens spent twice during the freeze: {reused_in_stall}; after: 0; tokens issued: {}",
        server.issued.load(SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_during_a_refresh_costs_the_caller_nothing() {
    let _h = crate::leaks::harness();
    let Some((mut redis, clock, store)) = private_store().await else {
        return;
    };
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let entered = Arc::new(tokio::sync::Notify::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let source = {
        let (gate, entered, calls) = (gate.clone(), entered.clone(), calls.clone());
        from_fn("gated", move || {
            let (gate, entered) = (gate.clone(), entered.clone());
            let n = calls.fetch_add(1, SeqCst) + 1;
            async move {
                entered.notify_one();
                gate.acquire().await.unwrap().forget();
                Ok(Token::new(format!("at-TOPSECRET-{n}"))
                    .with_expires_in(Duration::from_secs(600)))
            }
        })
    };
    let manager = TokenManager::builder(source)
        .clock(clock.clone())
        .store(store)
        .build()
        .unwrap();
    let caller = tokio::spawn({
        let manager = manager.clone();
        async move { manager.token().await.map(|t| t.fingerprint()) }
    });
    entered.notified().await; // the fetch is in flight, under a lease in Redis
    redis.stop();
    gate.add_permits(1);
    let fingerprint = tokio::time::timeout(Duration::from_secs(10), caller)
        .await
        .expect("a bounded wait")
        .unwrap()
        .expect("the token, though it could not be saved");
    assert_eq!(manager.token().await.unwrap().fingerprint(), fingerprint);
    assert_eq!(calls.load(SeqCst), 1, "one token request");
}
