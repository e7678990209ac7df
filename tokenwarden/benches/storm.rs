//! A refresh storm: 10,000 Tokio tasks call `token()` at once on an expired token
//! (DESIGN.md, guarantee 1: one token request per expiry, however many callers).
//!
//! Each round builds a manager on a `ManualClock`, fetches once, moves the clock past
//! expiry, then releases 10,000 tasks together on the multi-thread runtime. The
//! source takes 5 ms, so the tasks pile up behind the one refresh. Prints, per
//! round, the source calls (asserted to be 1) and the p50/p99/max wait per task; a
//! criterion benchmark then times whole storms. A baseline storm on
//! `tokio::sync::OnceCell::get_or_init` (the same tasks, the same 5 ms
//! initialisation) shows what the runtime itself costs.
//!
//! Run with `cargo bench -p tokenwarden --bench storm`.

// Timing code reads the system clocks; the library itself never does.
#![allow(clippy::disallowed_methods)]

mod support;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenwarden::{source::from_fn, ManualClock, Token, TokenManager};
use tokio::sync::{Barrier, OnceCell};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const TASKS: usize = 10_000;
const ROUNDS: usize = 5;
const SOURCE_LATENCY: Duration = Duration::from_millis(5);
const LIFETIME: Duration = Duration::from_secs(3600);

fn main() {
    let mut c = support::criterion(10);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut lines = Vec::new();
    for round in 1..=ROUNDS {
        let r = rt.block_on(storm(TASKS));
        lines.push(format!(
            "storm round {round}: {TASKS} tasks, {} source call(s), {} waited on the flight; wait per task p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs; all done {:.0} µs after release; {:.1} allocations/task",
            r.source_calls,
            r.waits,
            percentile(&r.waits_us, 50.0),
            percentile(&r.waits_us, 99.0),
            percentile(&r.waits_us, 100.0),
            r.all_done.as_secs_f64() * 1e6,
            r.allocations_per_task,
        ));
    }
    for round in 1..=3 {
        let r = rt.block_on(once_cell_storm(TASKS));
        lines.push(format!(
            "baseline OnceCell::get_or_init round {round}: {TASKS} tasks, {} init call(s); wait per task p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs; all done {:.0} µs after release; {:.1} allocations/task",
            r.source_calls,
            percentile(&r.waits_us, 50.0),
            percentile(&r.waits_us, 99.0),
            percentile(&r.waits_us, 100.0),
            r.all_done.as_secs_f64() * 1e6,
            r.allocations_per_task,
        ));
    }

    let mut storms = 0usize;
    c.bench_function(
        "storm/10000 tasks at expiry (release to last task done)",
        |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        storms += 1;
                        rt.block_on(storm(TASKS)).all_done
                    })
                    .sum()
            })
        },
    );
    c.final_summary();

    println!();
    println!("==== storm figures (source latency {SOURCE_LATENCY:?}) ====");
    for line in lines {
        println!("{line}");
    }
    println!("storm: 1 source call per storm asserted in all {} storms (rounds above + criterion samples)", storms + ROUNDS);
}

struct Round {
    source_calls: usize,
    waits: u64,
    /// Time inside `token()` per task, sorted.
    waits_us: Vec<f64>,
    /// From the release of the tasks to the last one getting its token.
    all_done: Duration,
    /// Heap allocations from the spawns to the last task's end, per task.
    allocations_per_task: f64,
}

async fn storm(tasks: usize) -> Round {
    let clock = ManualClock::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let source_calls = calls.clone();
    let manager = TokenManager::builder(from_fn("storm-api", move || {
        let calls = source_calls.clone();
        async move {
            calls.fetch_add(1, SeqCst);
            tokio::time::sleep(SOURCE_LATENCY).await;
            Ok(Token::new("fake-storm-access-token").with_expires_in(LIFETIME))
        }
    }))
    .clock(clock.clone())
    .build()
    .expect("manager");

    manager.token().await.expect("first fetch");
    clock.advance(LIFETIME + Duration::from_secs(1));
    let before = manager.stats();
    let calls_before = calls.load(SeqCst);

    let task_manager = manager.clone();
    let (spans, allocations_per_task) = release(tasks, move || {
        let manager = task_manager.clone();
        async move {
            let token = manager.token().await.expect("a token after the storm");
            assert!(!token.access_token.is_empty());
        }
    })
    .await;

    let source_calls = calls.load(SeqCst) - calls_before;
    assert_eq!(source_calls, 1, "one source call for the whole storm");
    let after = manager.stats();
    assert_eq!(after.fetches - before.fetches, 1);
    let mut round = summarize(&spans, source_calls, allocations_per_task);
    round.waits = after.waits - before.waits;
    round
}

/// The baseline: the same storm on a `tokio::sync::OnceCell` whose initialisation
/// takes as long as the source.
async fn once_cell_storm(tasks: usize) -> Round {
    let cell = Arc::new(OnceCell::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let task_calls = calls.clone();
    let (spans, allocations_per_task) = release(tasks, move || {
        let (cell, calls) = (cell.clone(), task_calls.clone());
        async move {
            let token = cell
                .get_or_init(|| async {
                    calls.fetch_add(1, SeqCst);
                    tokio::time::sleep(SOURCE_LATENCY).await;
                    Token::new("fake-storm-access-token")
                })
                .await;
            assert!(!token.access_token.is_empty());
        }
    })
    .await;
    let source_calls = calls.load(SeqCst);
    assert_eq!(source_calls, 1, "one initialisation for the whole storm");
    summarize(&spans, source_calls, allocations_per_task)
}

/// Spawns `tasks` tasks that each run `make()`'s future once released together;
/// returns when each started and ended, and the allocations per task.
async fn release<F, Fut>(tasks: usize, make: F) -> (Vec<(Instant, Instant)>, f64)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let region = Region::new(GLOBAL);
    let barrier = Arc::new(Barrier::new(tasks + 1));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let barrier = barrier.clone();
            let call = make();
            tokio::spawn(async move {
                barrier.wait().await;
                let start = Instant::now();
                call.await;
                (start, Instant::now())
            })
        })
        .collect();
    barrier.wait().await;
    let mut spans = Vec::with_capacity(tasks);
    for handle in handles {
        spans.push(handle.await.expect("task"));
    }
    let allocations = region.change().allocations as f64 / tasks as f64;
    (spans, allocations)
}

fn summarize(
    spans: &[(Instant, Instant)],
    source_calls: usize,
    allocations_per_task: f64,
) -> Round {
    let released = spans.iter().map(|(start, _)| *start).min().expect("tasks");
    let last = spans.iter().map(|(_, end)| *end).max().expect("tasks");
    let mut waits_us: Vec<f64> = spans
        .iter()
        .map(|(start, end)| (*end - *start).as_secs_f64() * 1e6)
        .collect();
    waits_us.sort_by(f64::total_cmp);
    Round {
        source_calls,
        waits: 0,
        waits_us,
        all_done: last - released,
        allocations_per_task,
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
