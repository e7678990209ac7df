//! `TokenRegistry<u64>` with 1,000,000 keys: ns per `registry.get(&key)` for random
//! existing keys, and heap bytes per entry (net bytes allocated while inserting,
//! counted by the global allocator, / 1,000,000).
//!
//! Each key's manager has its own trivial `from_fn` source; no token is fetched.
//! Run with `cargo bench -p tokenwarden --bench registry_lookup` (without `--bench`,
//! e.g. under `cargo test --benches`, it uses 10,000 keys).

// Timing code reads the system clocks; the library itself never does.
#![allow(clippy::disallowed_methods)]

mod support;

use criterion::black_box;
use dashmap::DashMap;
use stats_alloc::{Region, Stats, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};
use support::{measure, ns, SAMPLES};
use tokenwarden::{source::from_fn, Token, TokenManager, TokenRegistry};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const KEYS: u64 = 1_000_000;
/// Random keys looked up, cycled through by the benchmark loops.
const LOOKUP_KEYS: usize = 1 << 20;

fn main() {
    let keys = if std::env::args().any(|a| a == "--bench") {
        KEYS
    } else {
        10_000
    };
    let mut c = support::criterion(SAMPLES);

    let rt = support::current_thread_runtime();
    let _entered = rt.enter();

    // One manager alone, for comparison with the per-entry figure.
    let managers = 1_000u64;
    let region = Region::new(GLOBAL);
    let alone: Vec<TokenManager> = (0..managers).map(|k| manager_for(&k)).collect();
    let manager_bytes = net_bytes(&region.change()) as f64 / managers as f64
        - std::mem::size_of::<TokenManager>() as f64;
    let manager_allocs = region.change().allocations as f64 / managers as f64;
    drop(alone);

    let registry = TokenRegistry::builder(|k: &u64| Ok(manager_for(k))).build();
    let region = Region::new(GLOBAL);
    let start = Instant::now();
    for k in 0..keys {
        registry.get(&k).expect("manager");
    }
    let fill_time = start.elapsed();
    let fill = region.change();
    assert_eq!(registry.len() as u64, keys);
    let bytes_per_entry = net_bytes(&fill) as f64 / keys as f64;
    let allocs_per_entry = (fill.allocations - fill.deallocations) as f64 / keys as f64;

    let lookups = random_keys(keys);
    let get = |k: &u64| registry.get(k);

    let mut g = c.benchmark_group("registry");
    let one = measure(&mut g, &format!("get random key of {keys}/1 thread"), |n| {
        time_loop(n, &lookups, 0, get)
    });
    let two = measure(
        &mut g,
        &format!("get random key of {keys}/2 threads"),
        |n| two_threads(n, &lookups, get),
    );
    let hot1 = measure(&mut g, "get one hot key/1 thread", |n| {
        time_loop(n, &[7u64; 64], 0, get)
    });
    let hot = measure(&mut g, "get one hot key/2 threads", |n| {
        two_threads(n, &[7u64; 64], get)
    });
    g.finish();

    // The floor: the same random lookups in a plain map of as many u64 -> u64.
    let plain: DashMap<u64, u64> = (0..keys).map(|k| (k, k)).collect();
    let mut g = c.benchmark_group("baseline");
    let base = measure(
        &mut g,
        &format!("DashMap<u64, u64> get random key of {keys}/1 thread"),
        |n| time_loop(n, &lookups, 0, |k| plain.get(k).map(|v| *v)),
    );
    g.finish();
    drop(plain);

    let region = Region::new(GLOBAL);
    let calls = 1_000_000u64;
    time_loop(calls, &lookups, 0, get);
    let allocs_per_lookup = region.change().allocations as f64 / calls as f64;
    assert_eq!(registry.len() as u64, keys, "nothing evicted meanwhile");

    c.final_summary();
    println!();
    println!("==== registry_lookup figures ====");
    println!(
        "registry_lookup fill: {keys} keys in {:.2} s ({:.0} ns/insert)",
        fill_time.as_secs_f64(),
        fill_time.as_nanos() as f64 / keys as f64
    );
    println!(
        "registry_lookup get() random existing key, 1 thread: {}, {allocs_per_lookup} allocations/call",
        ns(one)
    );
    println!(
        "registry_lookup get() random existing key, 2 threads at once: {} (per call, each thread)",
        ns(two)
    );
    println!(
        "registry_lookup get() one hot key (all in cache), 1 thread: {}",
        ns(hot1)
    );
    println!(
        "registry_lookup get() one hot key, 2 threads at once: {} (per call, each thread)",
        ns(hot)
    );
    println!(
        "baseline DashMap<u64, u64> get() random key of {keys}, 1 thread: {}; registry get()/baseline = {}",
        ns(base),
        match (one, base) {
            (Some(o), Some(b)) if b > 0.0 => format!("{:.2}x", o / b),
            _ => "n/a".into(),
        }
    );
    println!(
        "registry_lookup memory: {bytes_per_entry:.0} bytes/entry net heap ({allocs_per_entry:.1} live allocations/entry); a TokenManager alone: {manager_bytes:.0} bytes in {manager_allocs:.1} allocations"
    );
}

/// The factory's manager: a trivial source per key, never called here.
fn manager_for(key: &u64) -> TokenManager {
    TokenManager::builder(from_fn(format!("svc-{key}"), || async {
        Ok(Token::new("fake-registry-access-token").with_expires_in(Duration::from_secs(3600)))
    }))
    .build()
    .expect("manager")
}

fn net_bytes(stats: &Stats) -> i64 {
    stats.bytes_allocated as i64 - stats.bytes_deallocated as i64 + stats.bytes_reallocated as i64
}

/// Uniformly random keys in `0..keys` (splitmix64; fixed seed).
fn random_keys(keys: u64) -> Vec<u64> {
    let mut state = 0x5eed_u64;
    (0..LOOKUP_KEYS)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % keys
        })
        .collect()
}

/// `iters` lookups of the keys in `keys`, cycling from `offset`; each result is
/// dropped inside the loop.
fn time_loop<O>(iters: u64, keys: &[u64], offset: usize, f: impl Fn(&u64) -> O) -> Duration {
    let mut i = offset % keys.len();
    let start = Instant::now();
    for _ in 0..iters {
        black_box(f(&keys[i]));
        i += 1;
        if i == keys.len() {
            i = 0;
        }
    }
    start.elapsed()
}

/// Two threads make `iters` lookups each at once (released by a barrier); returns the
/// longer loop time, so `elapsed / iters` is the time per call each thread sees.
fn two_threads<O>(iters: u64, keys: &[u64], f: impl Fn(&u64) -> O + Sync) -> Duration {
    let barrier = Barrier::new(2);
    let run = |offset: usize| {
        barrier.wait();
        time_loop(iters, keys, offset, &f)
    };
    thread::scope(|s| {
        let a = s.spawn(|| run(0));
        let b = s.spawn(|| run(keys.len() / 2));
        let a = a.join().expect("bench thread");
        let b = b.join().expect("bench thread");
        a.max(b)
    })
}
