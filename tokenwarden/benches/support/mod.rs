//! Helpers shared by the benchmarks: medians of criterion samples, the formatting
//! of the printed figures, a realistic token, and a timing loop for async calls.
//! `tokenwarden-redis/benches` includes this file too (`#[path]`).

#![allow(dead_code)] // each benchmark uses its own subset

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use std::cell::RefCell;
use std::time::Duration;

/// Criterion samples per benchmark; the printed figures are medians over them.
pub const SAMPLES: usize = 100;

/// Runs a benchmark whose routine times `iters` calls itself, and returns the median
/// ns per call over the measurement samples (`None` if it did not run, e.g. filtered
/// out).
pub fn measure(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    mut routine: impl FnMut(u64) -> Duration,
) -> Option<f64> {
    let samples = RefCell::new(Vec::new());
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let elapsed = routine(iters);
            samples
                .borrow_mut()
                .push(elapsed.as_nanos() as f64 / iters.max(1) as f64);
            elapsed
        })
    });
    let samples = samples.into_inner();
    // The warm-up calls come first; the last SAMPLES calls are the measurement.
    let mut measured = samples[samples.len().saturating_sub(SAMPLES)..].to_vec();
    median(&mut measured)
}

/// The median of `values` (sorted in place), `None` if there are none.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

pub fn ns(value: Option<f64>) -> String {
    value.map_or_else(|| "not measured".into(), |v| format!("{v:.1} ns/call"))
}

pub fn ratio(ours: Option<f64>, base: Option<f64>) -> String {
    match (ours, base) {
        (Some(o), Some(b)) if b > 0.0 => format!("{:.2}x", o / b),
        _ => "n/a".into(),
    }
}

/// Criterion with `samples` samples and short warm-up and measurement times (the
/// machines this runs on have 2 cores), plus the command line's options.
pub fn criterion(samples: usize) -> Criterion {
    Criterion::default()
        .sample_size(samples)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args()
}

/// A current-thread Tokio runtime, for managers that may spawn.
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn us(value: Option<f64>) -> String {
    value.map_or_else(
        || "not measured".into(),
        |v| format!("{:.1} µs/op", v / 1e3),
    )
}

/// A token as an OpenID provider issues it: a ~900-byte JWT-like access token
/// (an RS256 header, then claims and a signature of seeded random base64url), an
/// opaque refresh token, a JWT-like ID token, and an expiry an hour away.
pub fn realistic_token() -> tokenwarden::Token {
    const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = fastrand::Rng::with_seed(7);
    let mut b64 = |len: usize| -> String {
        (0..len)
            .map(|_| B64URL[rng.usize(..B64URL.len())] as char)
            .collect()
    };
    // {"alg":"RS256","typ":"JWT","kid":"bench-1"}
    let header = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImJlbmNoLTEifQ";
    let access = format!("{header}.{}.{}", b64(496), b64(342));
    let id = format!("{header}.{}.{}", b64(380), b64(342));
    tokenwarden::Token::new(access)
        .with_refresh_token(format!("rt1.{}", b64(86)))
        .with_id_token(id)
        .with_scope("openid profile email offline_access")
        .with_expires_at(std::time::SystemTime::now() + Duration::from_secs(3600))
}

/// `iters` awaits of `f()` inside one `block_on` on `rt`, each result checked; the
/// time of the loop alone.
pub fn async_loop<F, T, E>(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    mut f: impl FnMut() -> F,
) -> Duration
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    rt.block_on(async {
        let start = std::time::Instant::now();
        for _ in 0..iters {
            criterion::black_box(f().await.expect("the call succeeds"));
        }
        start.elapsed()
    })
}

/// Prints a bench's summary: its figures, and a warning when criterion ran it in
/// test mode (`cargo test --benches`), where the figures are not measurements.
pub fn print_figures(name: &str, lines: &[String]) {
    println!();
    println!("==== {name} figures (medians of {SAMPLES} criterion samples) ====");
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test") {
        println!("(test mode: each benchmark ran once; these figures are not measurements)");
    }
    for line in lines {
        println!("{line}");
    }
}

/// `iters` calls of `f` on this thread; each result is dropped inside the loop.
#[allow(dead_code)] // not every bench that includes this module times a closure
pub fn time_loop<O>(iters: u64, mut f: impl FnMut() -> O) -> std::time::Duration {
    let start = std::time::Instant::now();
    for _ in 0..iters {
        criterion::black_box(f());
    }
    start.elapsed()
}
