//! Helpers shared by the benchmarks: medians of criterion samples and the
//! formatting of the printed figures.

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
