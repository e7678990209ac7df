//! Refreshes per second for 1,000 distinct keys (issue 16), on three
//! deployments side by side, all started here on loopback (`redis-server`;
//! without one the bench says why it skipped and exits 0): a single server,
//! Sentinel (a primary, one replica, three sentinels) and Cluster (three
//! primaries). One refresh is what the manager asks of its store: take the
//! lease, save the refreshed token (sealed, with a refresh token) under it,
//! release the lease. 64 tasks on a 2-worker runtime refresh the 1,000 keys
//! three times; printed for the last pass (the first warms the connections):
//! refreshes per second, and p50 and p99 per refresh. Sentinel runs twice: with
//! the replica wait (its default) and without (`ReplicaWait::Off`).
//! Run with `cargo bench -p tokenwarden-redis --features encryption --bench deployments`.

// Timing code reads the system clocks; the library itself never does.
#![allow(clippy::disallowed_methods)]

#[allow(dead_code)] // the tests stop and resume servers; the bench does not
#[path = "../tests/support/replicated.rs"]
mod replicated;

#[allow(dead_code)] // the tests follow failovers; the bench does not
#[path = "../tests/support/sentinels.rs"]
mod sentinels;

#[allow(dead_code)]
#[path = "../tests/support/cluster.rs"]
mod cluster;

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenwarden::store::{TokenCipher, TokenStore};
use tokenwarden::{Token, TokenKey};
use tokenwarden_redis::{RedisStore, ReplicaWait};

const KEYS: usize = 1_000;
const TASKS: usize = 64;
const PASSES: usize = 3;

/// What one deployment sustained in the last pass.
struct Figures {
    per_second: f64,
    sorted: Vec<Duration>,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut lines = Vec::new();

    // Each deployment runs alone (the others stopped), so that they do not
    // share the cores while measured.
    {
        let Some(server) = replicated::Server::start(&["--save", "", "--appendonly", "no"]) else {
            return;
        };
        let figures = rt.block_on(run(&server.url(), ReplicaWait::Auto));
        lines.push(line("single server", &figures, "sealed"));
    }
    {
        let Some(sentinels) = sentinels::Sentinels::start() else {
            return;
        };
        let figures = rt.block_on(run(&sentinels.url(), ReplicaWait::Auto));
        lines.push(line(
            "Sentinel",
            &figures,
            "sealed; lease and save WAIT for the replica",
        ));
        let figures = rt.block_on(run(&sentinels.url(), ReplicaWait::Off));
        lines.push(line(
            "Sentinel, no wait",
            &figures,
            "sealed; ReplicaWait::Off",
        ));
    }
    {
        let Some(cluster) = cluster::Cluster::start() else {
            return;
        };
        let figures = rt.block_on(run(&cluster.url(), ReplicaWait::Auto));
        lines.push(line(
            "Cluster",
            &figures,
            "sealed; keys over 3 primaries, no replicas",
        ));
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!("==== deployments figures ====");
    println!(
        "machine: {cores} cores, shared by the bench (tokio, 2 workers) and every redis-server; \
         last of {PASSES} passes over the keys"
    );
    println!(
        "one refresh = lease + save_leased (a token with a refresh token) + release; \
         Sentinel has a replica, so by default the lease take and the save each wait \
         for it (WAIT 1): that is the real cost there"
    );
    for line in lines {
        println!("{line}");
    }
}

/// `PASSES` passes of `KEYS` refreshes by `TASKS` tasks on a store of `url`; the
/// figures of the last.
async fn run(url: &str, wait: ReplicaWait) -> Figures {
    let store = RedisStore::builder(url)
        .prefix(format!("bench-deploy-{}", fastrand::u32(..)))
        .cipher(TokenCipher::new([7; 32]))
        .replicas(wait)
        .build()
        .await
        .expect("a store");
    let store = Arc::new(store);
    let keys: Arc<Vec<TokenKey>> = Arc::new(
        (0..KEYS)
            .map(|k| TokenKey::new(format!("api-{k}")))
            .collect(),
    );
    let mut figures = None;
    for pass in 0..PASSES {
        figures = Some(pass_over(&store, &keys, pass).await);
    }
    for key in keys.iter() {
        store.delete(key).await.expect("deleted");
    }
    figures.expect("at least one pass")
}

/// One refresh of every key; the time of each, and the refreshes per second of
/// the whole.
async fn pass_over(store: &Arc<RedisStore>, keys: &Arc<Vec<TokenKey>>, pass: usize) -> Figures {
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            let keys = keys.clone();
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(KEYS / TASKS + 1);
                for k in (task..KEYS).step_by(TASKS) {
                    let key = &keys[k];
                    let n = pass * KEYS + k;
                    let token = Token::new(format!("at-{n}")).with_refresh_token(format!("rt-{n}"));
                    let begun = Instant::now();
                    let lease = store
                        .lease(key, Duration::from_secs(30))
                        .await
                        .expect("a lease");
                    store.save_leased(key, &token, &lease).await.expect("saved");
                    lease.release().await.expect("released");
                    times.push(begun.elapsed());
                }
                times
            })
        })
        .collect();
    let mut sorted = Vec::with_capacity(KEYS);
    for task in tasks {
        sorted.extend(task.await.expect("a task"));
    }
    let elapsed = started.elapsed();
    sorted.sort();
    Figures {
        per_second: KEYS as f64 / elapsed.as_secs_f64(),
        sorted,
    }
}

fn line(label: &str, figures: &Figures, note: &str) -> String {
    format!(
        "{label:<20} {:>7} refreshes/s  p50 {:>8.1} µs  p99 {:>8.1} µs  ({} keys, {TASKS} tasks, {note})",
        grouped(figures.per_second.round() as u64),
        micros(percentile(&figures.sorted, 50)),
        micros(percentile(&figures.sorted, 99)),
        grouped(KEYS as u64),
    )
}

/// `n` with a comma between each group of three digits.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
