//! A fleet at expiry, against the Redis at `redis://127.0.0.1:6379/0` (without one,
//! the bench prints why it skipped and exits 0): N instances share one token, each
//! a `TokenManager` with its own `RedisStore` (its own connections), all in this
//! process on a 2-worker Tokio runtime. Their shared `ManualClock` is moved past the
//! token's expiry, and at that moment every instance calls `token()`; the token
//! source takes 20 ms (a `tokio::time::sleep`), as a token endpoint would.
//!
//! Printed, for N = 16 and N = 200, over the measured rounds (a first round, where
//! each store loads the scripts and subscribes, is printed on its own):
//! - commands sent per instance per expiry, by name: the commands clients sent, read
//!   from the slow log (set to log every command for the bench, then set back; a
//!   script's own commands, logged with client `?:0`, are left out), divided by
//!   instances and rounds; and the delta of `INFO stats` `total_commands_processed`
//!   likewise divided, which counts each command a script runs too;
//! - p50, p99 and max of the time from the expiry moment to each caller holding its
//!   token (real time), and the token requests made (one per expiry is right).
//!
//! Nothing else should use the Redis while it runs: every command counts. Run with
//! `cargo bench -p tokenwarden-redis --features encryption --bench lease_wakeups`.

// Timing code reads the system clocks; the library itself never does.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenwarden::store::TokenCipher;
use tokenwarden::{source::from_fn, ManualClock, Token, TokenKey, TokenManager};
use tokenwarden_redis::RedisStore;

const URL: &str = "redis://127.0.0.1:6379/0";
/// How long the token source takes.
const REQUEST_TIME: Duration = Duration::from_millis(20);
const LIFETIME: Duration = Duration::from_secs(3600);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut out = Vec::new();
    for (instances, rounds, sealed) in [
        (16, 20, true),
        (200, 10, true),
        (16, 20, false),
        (200, 10, false),
    ] {
        match rt.block_on(fleet(instances, rounds, sealed)) {
            Ok(lines) => out.extend(lines),
            Err(error) => {
                println!("skipped: no Redis to measure at {URL}: {error}");
                return;
            }
        }
    }
    println!();
    println!("==== lease_wakeups figures ====");
    for line in out {
        println!("{line}");
    }
}

/// What Redis ran between two readings: the delta of `total_commands_processed`
/// (which counts the commands a script runs, too) and the commands clients sent,
/// by name, from the slow log (which logs every command while
/// `slowlog-log-slower-than` is 0; a script's own commands show a client `?:0`).
struct Counted {
    total: u64,
    sent: BTreeMap<String, u64>,
}

/// Starts a reading: the slow log emptied, `total_commands_processed` read.
async fn start_counting(redis: &mut redis::aio::MultiplexedConnection) -> u64 {
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(redis)
        .await
        .expect("SLOWLOG RESET");
    total_commands(redis).await
}

async fn total_commands(redis: &mut redis::aio::MultiplexedConnection) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(redis)
        .await
        .expect("INFO stats");
    stats
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_commands_processed")
}

/// Ends a reading started at `before` by the connection at `own` (its address).
async fn counted(redis: &mut redis::aio::MultiplexedConnection, before: u64, own: &str) -> Counted {
    // The INFO of the start is counted; this one is not yet.
    let total = total_commands(redis).await - before - 1;
    let log: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query_async(redis)
        .await
        .expect("SLOWLOG GET");
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    };
    let mut sent = BTreeMap::new();
    for entry in &log {
        let redis::Value::Array(fields) = entry else {
            continue;
        };
        let (Some(redis::Value::Array(argv)), Some(client)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        let client = text(client);
        if client == "?:0" || client == own {
            continue;
        }
        let name = argv.first().map(text).unwrap_or_default().to_lowercase();
        *sent.entry(name).or_insert(0) += 1;
    }
    Counted { total, sent }
}

/// Sets a server setting for the bench and returns its value before.
async fn set_config(
    redis: &mut redis::aio::MultiplexedConnection,
    name: &str,
    value: &str,
) -> String {
    let old: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(redis)
        .await
        .expect("CONFIG GET");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(redis)
        .await
        .expect("CONFIG SET");
    old.get(1).cloned().unwrap_or_default()
}

fn per_instance(calls: &BTreeMap<String, u64>, divisor: f64) -> String {
    calls
        .iter()
        .map(|(name, n)| format!("{name} {:.2}", *n as f64 / divisor))
        .collect::<Vec<_>>()
        .join(", ")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// One fleet of `instances`, `rounds` measured expiries after a first one; its
/// stores seal their tokens (the save's wake-up then carries the token) or not.
async fn fleet(instances: usize, rounds: usize, sealed: bool) -> Result<Vec<String>, String> {
    let prefix = format!("tokenwarden-bench-{:016x}", fastrand::u64(..));
    let clock = ManualClock::default();
    let key = TokenKey::new("fleet");
    let requests = Arc::new(AtomicU64::new(0));
    // When the last token request started.
    let started = Arc::new(std::sync::Mutex::new(Instant::now()));
    let mut managers = Vec::with_capacity(instances);
    let mut stores = Vec::with_capacity(instances);
    for _ in 0..instances {
        let builder = RedisStore::builder(URL)
            .prefix(&prefix)
            .clock(clock.clone());
        let builder = match sealed {
            true => builder.cipher(TokenCipher::new([7; 32])),
            false => builder,
        };
        let store = builder.build().await.map_err(|e| e.to_string())?;
        stores.push(store.clone());
        let requests = requests.clone();
        let started = started.clone();
        let source = from_fn("bench", move || {
            let n = requests.fetch_add(1, SeqCst);
            *started.lock().expect("not poisoned") = Instant::now();
            async move {
                tokio::time::sleep(REQUEST_TIME).await;
                Ok(Token::new(format!("at-{n}")).with_expires_in(LIFETIME))
            }
        });
        let manager = TokenManager::builder(source)
            .store(store)
            .key(key.clone())
            .clock(clock.clone())
            .background_refresh(false)
            .build()
            .map_err(|e| e.to_string())?;
        managers.push(Arc::new(manager));
    }
    let client = redis::Client::open(URL).map_err(|e| e.to_string())?;
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let info: String = redis::cmd("CLIENT")
        .arg("INFO")
        .query_async(&mut redis)
        .await
        .map_err(|e| e.to_string())?;
    let own = info
        .split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))
        .unwrap_or_default()
        .to_owned();
    let slower_than = set_config(&mut redis, "slowlog-log-slower-than", "0").await;
    let max_len = set_config(&mut redis, "slowlog-max-len", "1000000").await;
    // The first token, so that every round is an expiry.
    managers[0].token().await.map_err(|e| e.to_string())?;

    let mut waits = Vec::new();
    // From the end of each round's token request to each caller holding the token.
    let mut after_request = Vec::new();
    let mut request_starts = Vec::new();
    let mut first = None;
    let (mut total, mut sent) = (0, BTreeMap::new());
    let requests_before = requests.load(SeqCst);
    for round in 0..=rounds {
        clock.advance(LIFETIME + Duration::from_secs(60));
        let before = start_counting(&mut redis).await;
        let expiry = Instant::now();
        let tasks: Vec<_> = managers
            .iter()
            .map(|manager| {
                let manager = manager.clone();
                tokio::spawn(async move { manager.token().await.map(|_| expiry.elapsed()) })
            })
            .collect();
        let mut round_waits = Vec::with_capacity(instances);
        for task in tasks {
            round_waits.push(
                task.await
                    .expect("the task ends")
                    .map_err(|e| e.to_string())?,
            );
        }
        // Leases are released after the callers have their token: let them land.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let counts = counted(&mut redis, before, &own).await;
        if round == 0 {
            first = Some(counts);
            continue;
        }
        let start = started.lock().expect("not poisoned").duration_since(expiry);
        request_starts.push(start);
        after_request.extend(
            round_waits
                .iter()
                .map(|wait| wait.saturating_sub(start + REQUEST_TIME)),
        );
        waits.extend(round_waits);
        total += counts.total;
        for (name, n) in counts.sent {
            *sent.entry(name).or_insert(0) += n;
        }
    }
    let requests_made = requests.load(SeqCst) - requests_before;
    let reads = floor(&stores, &key, rounds).await?;
    set_config(&mut redis, "slowlog-log-slower-than", &slower_than).await;
    set_config(&mut redis, "slowlog-max-len", &max_len).await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:{{{}}}", key.as_str()))
        .arg(format!("{prefix}:{{{}}}:fence", key.as_str()))
        .query_async(&mut redis)
        .await
        .map_err(|e| e.to_string())?;
    drop(managers);

    waits.sort();
    after_request.sort();
    request_starts.sort();
    let divisor = (instances * rounds) as f64;
    let first = first.expect("a first round");
    let sum = |sent: &BTreeMap<String, u64>| sent.values().sum::<u64>() as f64;
    Ok(vec![
        format!(
            "{instances} instances, tokens {}, {rounds} measured expiries (+1 first), token request {}:",
            if sealed { "sealed" } else { "in clear" },
            ms(REQUEST_TIME)
        ),
        format!(
            "  commands sent per instance per expiry: {:.2} ({}); run by Redis, scripts' own included: {:.2}",
            sum(&sent) / divisor,
            per_instance(&sent, divisor),
            total as f64 / divisor
        ),
        format!(
            "  first expiry, commands sent per instance: {:.2} ({}); run by Redis: {:.2}",
            sum(&first.sent) / instances as f64,
            per_instance(&first.sent, instances as f64),
            first.total as f64 / instances as f64
        ),
        format!(
            "  wait from expiry to token: p50 {}, p99 {}, max {}",
            ms(percentile(&waits, 50.0)),
            ms(percentile(&waits, 99.0)),
            ms(*waits.last().expect("waits"))
        ),
        format!(
            "  the token request started after expiry: p50 {}, max {} (the instances' first reads, on this machine's 2 cores)",
            ms(percentile(&request_starts, 50.0)),
            ms(*request_starts.last().expect("rounds"))
        ),
        format!(
            "  wait from the token request's end to each caller's token: p50 {}, p99 {}, max {}",
            ms(percentile(&after_request, 50.0)),
            ms(percentile(&after_request, 99.0)),
            ms(*after_request.last().expect("waits"))
        ),
        format!(
            "  floor: every instance reading the token once, all at once (no lease, no wait): p50 {}, p99 {}, max {}",
            ms(percentile(&reads, 50.0)),
            ms(percentile(&reads, 99.0)),
            ms(*reads.last().expect("reads"))
        ),
        format!("  token requests: {requests_made} in {} expiries", rounds + 1),
    ])
}

/// What this machine takes for every instance to get the stored token with one
/// read of its own, all at the same moment: the least any protocol can cost where
/// each instance must learn a new token from the store (each read's time from
/// that moment), over `rounds` rounds.
async fn floor(
    stores: &[RedisStore],
    key: &TokenKey,
    rounds: usize,
) -> Result<Vec<Duration>, String> {
    use tokenwarden::TokenStore as _;
    let mut reads = Vec::with_capacity(stores.len() * rounds);
    for _ in 0..rounds {
        let moment = Instant::now();
        let tasks: Vec<_> = stores
            .iter()
            .map(|store| {
                let (store, key) = (store.clone(), key.clone());
                tokio::spawn(async move { store.load(&key).await.map(|_| moment.elapsed()) })
            })
            .collect();
        for task in tasks {
            reads.push(
                task.await
                    .expect("the task ends")
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    reads.sort();
    Ok(reads)
}
