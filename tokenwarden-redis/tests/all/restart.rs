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
        let process = std::process::Command::new("redis-server")
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
                panic!("redis-server is required under CI: {error}")
            }
            Err(error) => {
                eprintln!("skipped: no redis-server to start ({error})");
                None
            }
        }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_keep_getting_tokens_while_redis_is_down_and_after_it_returns() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Some(mut redis) = OwnRedis::start(port) else {
        return;
    };
    let clock = ManualClock::default();
    let store = connect_when_up(&redis.url(), &clock).await;
    let logins = Arc::new(AtomicUsize::new(0));
    let counted = logins.clone();
    let manager = TokenManager::builder(from_fn("fleet", move || {
        let n = counted.fetch_add(1, SeqCst) + 1;
        async move { Ok(Token::new(format!("t-{n}")).with_expires_in(Duration::from_secs(600))) }
    }))
    .clock(clock.clone())
    .store(store.clone())
    .build()
    .unwrap();
    manager.token().await.unwrap();

    redis.stop(); // Redis goes away
    manager.token().await.expect("served from the cache");
    clock.advance(Duration::from_secs(600)); // and the token expires meanwhile
    let during = tokio::time::timeout(Duration::from_secs(30), manager.token())
        .await
        .expect("no hang while Redis is down")
        .expect("a new token without the store");
    assert_eq!(logins.load(SeqCst), 2);
    let key = manager.key().clone();
    assert!(
        store.load(&key).await.is_err(),
        "the store says Redis is away"
    );

    let _redis = OwnRedis::start(port).unwrap(); // Redis returns (empty)
    let after = connect_when_up(&format!("redis://127.0.0.1:{port}/0"), &clock).await;
    clock.advance(Duration::from_secs(600));
    manager
        .token()
        .await
        .expect("a new token once Redis is back");
    assert_eq!(logins.load(SeqCst), 3);
    tokio::time::timeout(Duration::from_secs(10), async {
        // The store's own connection reconnects by itself; the new token lands there.
        while after.load(&key).await.ok().flatten().is_none() {
            let _ = manager.force_refresh().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("tokens are stored in Redis again");
    assert_ne!(
        during.fingerprint(),
        manager.token().await.unwrap().fingerprint()
    );
}
