//! The hit path: `token()` and `header()` on a fresh cached token, expiry check
//! included (DESIGN.md, guarantee 2: no lock, no allocation).
//!
//! Targets: ≤ 20 ns median on 1 thread, ≤ 25 ns per call with 2 threads calling at
//! once, zero heap allocations per call. Prints, from the same run, two baselines
//! (an `RwLock<Option<Token>>` read + clone, and an `ArcSwap` load + a
//! `SystemTime::now()` comparison) with the ratio of our figure to each, and the
//! cost of the parts every hit path pays (an `ArcSwap` load, a clock read).
//!
//! Each future is polled once with a reused no-op waker, as an `.await` in a running
//! task polls it; a Tokio runtime is entered because the manager may spawn.
//!
//! With the feature `metrics`, it also measures `token()` and `header()` again
//! with a metrics recorder installed (Prometheus's), right after the same
//! measurement without one, and prints the ratio (goal: ≤ 1.03: the hit path
//! records nothing), and what a `tokenwarden::metrics::publish()` costs.
//!
//! Run with `cargo bench -p tokenwarden --bench hit_path --features blocking,metrics`
//! (without a feature, its figures are left out); the figures are printed at
//! the end, one per line.

// Timing code reads the system clocks; the library itself never does.
#![allow(clippy::disallowed_methods)]

mod support;

use arc_swap::ArcSwap;
use criterion::black_box;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::future::Future;
use std::pin::pin;
use std::sync::{Barrier, RwLock};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, SystemTime};
use support::{measure, ns, ratio, time_loop, SAMPLES};
use tokenwarden::store::MemoryStore;
use tokenwarden::{source::from_fn, Clock, SystemClock, Token, TokenManager};
use tokio::runtime::Handle;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Calls per allocation count.
const ALLOC_CALLS: u64 = 1_000_000;

const TARGET_1_THREAD_NS: f64 = 20.0;
const TARGET_2_THREADS_NS: f64 = 25.0;

fn main() {
    let mut c = support::criterion(SAMPLES);

    let rt = support::current_thread_runtime();
    let _entered = rt.enter();
    let handle = rt.handle().clone();

    let manager = TokenManager::builder(from_fn("bench-api", || async {
        Ok(Token::new("fake-access-token-0123456789abcdef")
            .with_refresh_token("fake-refresh-token")
            .with_expires_in(Duration::from_secs(3600)))
    }))
    .build()
    .expect("manager");
    let token = rt
        .block_on(manager.token())
        .expect("first fetch")
        .to_token();
    let fetches_before = manager.stats().fetches;

    // The same with a store: its copy is checked against the store every
    // `DEFAULT_STORE_RECHECK` (5 s), so the hit path also reads the coarse
    // monotonic clock, and one call in each interval reads the store.
    let stored = TokenManager::builder(from_fn("bench-api-stored", || async {
        Ok(Token::new("fake-access-token-0123456789abcdef")
            .with_refresh_token("fake-refresh-token")
            .with_expires_in(Duration::from_secs(3600)))
    }))
    .store(MemoryStore::new())
    .build()
    .expect("manager");
    rt.block_on(stored.token()).expect("first fetch");

    // The baselines hold the same token.
    let expires_at = SystemTime::now() + Duration::from_secs(3600);
    let rwlock = RwLock::new(Some(token.clone()));
    let swap = ArcSwap::from_pointee((token, expires_at));

    let token_fn = || poll_once(manager.token());
    let header_fn = || poll_once(manager.header());
    // A call that finds the copy due for its re-read returns `Pending` here (its
    // flight runs when the runtime next runs): counted like any other call.
    let stored_fn = || poll_once(stored.token());
    let rwlock_fn = || rwlock.read().expect("not poisoned").clone();
    let swap_fn = || {
        let entry = swap.load();
        (SystemTime::now() < entry.1).then_some(entry)
    };

    // --- our figures -------------------------------------------------------------
    let mut g = c.benchmark_group("hit_path");
    let t1 = measure(&mut g, "token()/1 thread", |n| time_loop(n, token_fn));
    let h1 = measure(&mut g, "header()/1 thread", |n| time_loop(n, header_fn));
    let t2 = measure(&mut g, "token()/2 threads", |n| {
        two_threads(n, &handle, token_fn)
    });
    let h2 = measure(&mut g, "header()/2 threads", |n| {
        two_threads(n, &handle, header_fn)
    });
    let s1 = measure(&mut g, "token() with a store/1 thread", |n| {
        let elapsed = time_loop(n, stored_fn);
        // Lets a due re-read run, so that the next batch finds the copy fresh.
        rt.block_on(tokio::task::yield_now());
        elapsed
    });
    // The blocking manager (feature `blocking`), on a thread outside every
    // runtime, as its callers are.
    #[cfg(feature = "blocking")]
    let blocking = TokenManager::builder(from_fn("bench-api-blocking", || async {
        Ok(Token::new("fake-access-token-0123456789abcdef")
            .with_refresh_token("fake-refresh-token")
            .with_expires_in(Duration::from_secs(3600)))
    }))
    .build_blocking()
    .expect("manager");
    #[cfg(feature = "blocking")]
    let b1 = {
        let blocking_fn = || blocking.token().expect("a fresh token");
        let outside = |work: &(dyn Fn() -> f64 + Sync)| {
            thread::scope(|s| s.spawn(work).join().expect("bench thread"))
        };
        outside(&|| {
            blocking_fn(); // the first fetch
            0.0
        });
        let time = measure(&mut g, "blocking token()/1 thread", |n| {
            thread::scope(|s| {
                s.spawn(|| time_loop(n, blocking_fn))
                    .join()
                    .expect("bench thread")
            })
        });
        (time, outside(&|| allocations_per_call(blocking_fn)))
    };
    g.finish();

    // --- with a metrics recorder -------------------------------------------------
    #[cfg(feature = "metrics")]
    let recorded = {
        let mut g = c.benchmark_group("metrics");
        let without = (
            measure(&mut g, "token()/1 thread, no recorder", |n| {
                time_loop(n, token_fn)
            }),
            measure(&mut g, "header()/1 thread, no recorder", |n| {
                time_loop(n, header_fn)
            }),
        );
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder");
        tokenwarden::metrics::describe();
        let with = (
            measure(&mut g, "token()/1 thread, recorder installed", |n| {
                time_loop(n, token_fn)
            }),
            measure(&mut g, "header()/1 thread, recorder installed", |n| {
                time_loop(n, header_fn)
            }),
        );
        let publish = measure(&mut g, "metrics::publish() (3 managers)", |n| {
            time_loop(n, tokenwarden::metrics::publish)
        });
        g.finish();
        (without, with, publish)
    };

    // --- baselines ---------------------------------------------------------------
    let mut g = c.benchmark_group("baseline");
    let rw1 = measure(&mut g, "RwLock read + Token clone/1 thread", |n| {
        time_loop(n, rwlock_fn)
    });
    let rw2 = measure(&mut g, "RwLock read + Token clone/2 threads", |n| {
        two_threads(n, &handle, rwlock_fn)
    });
    let sw1 = measure(&mut g, "ArcSwap load + SystemTime::now cmp/1 thread", |n| {
        time_loop(n, swap_fn)
    });
    let sw2 = measure(
        &mut g,
        "ArcSwap load + SystemTime::now cmp/2 threads",
        |n| two_threads(n, &handle, swap_fn),
    );
    g.finish();

    // --- the parts every hit path pays -------------------------------------------
    let mut g = c.benchmark_group("parts");
    g.measurement_time(Duration::from_secs(2));
    let p_load = measure(&mut g, "ArcSwap::load + guard drop", |n| {
        time_loop(n, || swap.load())
    });
    let p_millis = measure(&mut g, "SystemClock::now_millis (coarse)", |n| {
        time_loop(n, || SystemClock.now_millis())
    });
    let p_now = measure(&mut g, "SystemTime::now", |n| time_loop(n, SystemTime::now));
    g.finish();

    // --- allocations per call ----------------------------------------------------
    let a_token = allocations_per_call(token_fn);
    let a_header = allocations_per_call(header_fn);
    // Counted within one interval (a million calls take milliseconds), after a
    // call that lets a due re-read run.
    rt.block_on(stored.token()).expect("re-read");
    let a_stored = allocations_per_call(stored_fn);
    let a_rw = allocations_per_call(rwlock_fn);
    let a_swap = allocations_per_call(swap_fn);

    assert_eq!(
        manager.stats().fetches,
        fetches_before,
        "the token must stay fresh for the whole run"
    );
    c.final_summary();

    let out = [
        format!("hit_path token() 1 thread: {}, {a_token} allocations/call", ns(t1)),
        format!("hit_path header() 1 thread: {}, {a_header} allocations/call", ns(h1)),
        format!("hit_path token() 2 threads calling at once: {} (per call, each thread)", ns(t2)),
        format!(
            "hit_path token() with a store (its copy re-read every 5 s) 1 thread: {}, {a_stored} allocations/call",
            ns(s1)
        ),
        format!("hit_path header() 2 threads calling at once: {} (per call, each thread)", ns(h2)),
        #[cfg(feature = "blocking")]
        format!(
            "hit_path blocking::TokenManager::token() 1 thread (no runtime on it): {}, {} allocations/call; async token() on the same run: {}",
            ns(b1.0), b1.1, ns(t1)
        ),
        #[cfg(not(feature = "blocking"))]
        "hit_path blocking::TokenManager::token(): run with --features blocking".to_owned(),
        format!(
            "baseline (a) RwLock<Option<Token>> read + Token clone 1 thread: {}, {a_rw} allocations/call; token()/baseline = {}, header()/baseline = {}",
            ns(rw1), ratio(t1, rw1), ratio(h1, rw1)
        ),
        format!(
            "baseline (a) RwLock<Option<Token>> read + Token clone 2 threads: {}; token()/baseline = {}, header()/baseline = {}",
            ns(rw2), ratio(t2, rw2), ratio(h2, rw2)
        ),
        format!(
            "baseline (b) ArcSwap load + SystemTime::now() cmp 1 thread: {}, {a_swap} allocations/call; token()/baseline = {}, header()/baseline = {}",
            ns(sw1), ratio(t1, sw1), ratio(h1, sw1)
        ),
        format!(
            "baseline (b) ArcSwap load + SystemTime::now() cmp 2 threads: {}; token()/baseline = {}, header()/baseline = {}",
            ns(sw2), ratio(t2, sw2), ratio(h2, sw2)
        ),
        #[cfg(feature = "metrics")]
        format!(
            "metrics token() 1 thread: {} without a recorder, {} with one installed: ratio {} (goal <= 1.03: {})",
            ns(recorded.0 .0), ns(recorded.1 .0), ratio(recorded.1 .0, recorded.0 .0),
            goal(recorded.1 .0, recorded.0 .0)
        ),
        #[cfg(feature = "metrics")]
        format!(
            "metrics header() 1 thread: {} without a recorder, {} with one installed: ratio {} (goal <= 1.03: {})",
            ns(recorded.0 .1), ns(recorded.1 .1), ratio(recorded.1 .1, recorded.0 .1),
            goal(recorded.1 .1, recorded.0 .1)
        ),
        #[cfg(feature = "metrics")]
        format!("metrics publish() with 3 managers: {}", ns(recorded.2)),
        #[cfg(not(feature = "metrics"))]
        "metrics: run with --features metrics".to_owned(),
        format!("part ArcSwap::load + guard drop: {}", ns(p_load)),
        format!("part SystemClock::now_millis (coarse): {}", ns(p_millis)),
        format!("part SystemTime::now (precise): {}", ns(p_now)),
        verdict("target token() 1 thread <= 20 ns", t1, TARGET_1_THREAD_NS),
        verdict("target header() 1 thread <= 20 ns", h1, TARGET_1_THREAD_NS),
        verdict("target token() 2 threads <= 25 ns", t2, TARGET_2_THREADS_NS),
        verdict("target header() 2 threads <= 25 ns", h2, TARGET_2_THREADS_NS),
        format!(
            "target 0 allocations/call: {}",
            if a_token == 0.0 && a_header == 0.0 { "met" } else { "MISSED" }
        ),
    ];

    support::print_figures("hit_path", &out);
}

/// Two threads each make `iters` calls of `f` at once (released by a barrier); the
/// result is the longer of their two loop times, so `elapsed / iters` is the time
/// per call each thread sees while the other one calls too.
fn two_threads<O>(iters: u64, handle: &Handle, f: impl Fn() -> O + Sync) -> Duration {
    let barrier = Barrier::new(2);
    let run = || {
        let _entered = handle.enter();
        barrier.wait();
        time_loop(iters, &f)
    };
    thread::scope(|s| {
        let (a, b) = (s.spawn(run), s.spawn(run));
        let a = a.join().expect("bench thread");
        let b = b.join().expect("bench thread");
        a.max(b)
    })
}

/// Polls `future` once, as an `.await` inside an already running task does: the
/// hit path completes on its first poll, so this measures `token()` itself and no
/// executor or waker set-up.
#[inline(always)]
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// Heap allocations per call of `f`, counted by the global allocator.
fn allocations_per_call<O>(mut f: impl FnMut() -> O) -> f64 {
    black_box(f()); // anything allocated lazily on first use
    let region = Region::new(GLOBAL);
    for _ in 0..ALLOC_CALLS {
        black_box(f());
    }
    region.change().allocations as f64 / ALLOC_CALLS as f64
}

/// Whether `with / without` is within 3 %.
#[cfg(feature = "metrics")]
fn goal(with: Option<f64>, without: Option<f64>) -> &'static str {
    match (with, without) {
        (Some(with), Some(without)) if with <= without * 1.03 => "met",
        (Some(_), Some(_)) => "MISSED",
        _ => "not measured",
    }
}

fn verdict(what: &str, value: Option<f64>, target: f64) -> String {
    match value {
        Some(v) if v <= target => format!("{what}: met ({v:.1} ns)"),
        Some(v) => format!("{what}: MISSED ({v:.1} ns)"),
        None => format!("{what}: not measured"),
    }
}
