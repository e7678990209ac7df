//! What the replica wait costs per save (docs/design/004): a primary and a
//! replica started here (`redis-server` on loopback; without one the bench says
//! why it skipped and exits 0), 2,000 saves of a token with a refresh token
//! under a lease, with `WAIT 1` (the default where the primary has a replica)
//! and without (`ReplicaWait::Off`); printed: p50, p99 and max per save.
//! Run with `cargo bench -p tokenwarden-redis --features encryption --bench replica_wait`.

// Timing code reads the system clocks; the library itself never does.
#![allow(clippy::disallowed_methods)]

#[allow(dead_code)] // the tests stop and resume the replica; the bench does not
#[path = "../tests/support/replicated.rs"]
mod replicated;

use std::time::{Duration, Instant};
use tokenwarden::store::{TokenCipher, TokenStore};
use tokenwarden::{Token, TokenKey};
use tokenwarden_redis::{RedisStore, ReplicaWait};

const SAVES: usize = 2_000;

fn main() {
    let Some(pair) = replicated::Replicated::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut lines = Vec::new();
    for (label, wait) in [
        ("WAIT 1 (the default with a replica)", ReplicaWait::Auto),
        ("no wait (ReplicaWait::Off)", ReplicaWait::Off),
    ] {
        let times = rt.block_on(saves(&pair.primary.url(), wait));
        lines.push(format!(
            "{label:<38} p50 {:>7.1} µs  p99 {:>7.1} µs  max {:>8.1} µs  ({SAVES} sealed saves)",
            micros(percentile(&times, 50)),
            micros(percentile(&times, 99)),
            micros(*times.last().unwrap()),
        ));
    }
    println!();
    println!("==== replica_wait figures ====");
    for line in lines {
        println!("{line}");
    }
}

async fn saves(url: &str, wait: ReplicaWait) -> Vec<Duration> {
    let store = RedisStore::builder(url)
        .prefix(format!("bench-replica-{}", fastrand::u32(..)))
        .cipher(TokenCipher::new([7; 32]))
        .replicas(wait)
        .build()
        .await
        .expect("a store");
    let key = TokenKey::new("api");
    let lease = store
        .lease(&key, Duration::from_secs(600))
        .await
        .expect("a lease");
    let mut times = Vec::with_capacity(SAVES);
    for n in 0..SAVES {
        let token = Token::new(format!("at-{n}")).with_refresh_token(format!("rt-{n}"));
        let started = Instant::now();
        store
            .save_leased(&key, &token, &lease)
            .await
            .expect("saved");
        times.push(started.elapsed());
    }
    lease.release().await.expect("released");
    times.sort();
    times
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
