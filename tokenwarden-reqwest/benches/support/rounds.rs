//! What the benches share: rounds of requests, `CONCURRENCY` at a time, timed
//! as requests per second, and the median of paired rounds.

// Timing code reads the system clock; the library itself never does.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

/// Requests in one round.
pub const REQUESTS_PER_ROUND: usize = 2_000;
/// Requests in flight at once.
pub const CONCURRENCY: usize = 4;

/// Requests per second for one round of `REQUESTS_PER_ROUND` requests.
pub async fn round<F, Fut>(request: &F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    for _ in 0..REQUESTS_PER_ROUND / CONCURRENCY {
        let batch: Vec<_> = (0..CONCURRENCY).map(|_| tokio::spawn(request())).collect();
        for task in batch {
            task.await.unwrap();
        }
    }
    REQUESTS_PER_ROUND as f64 / start.elapsed().as_secs_f64()
}

/// Round `i` of a pair: one round of each, the first of them `a` in even
/// rounds and `b` in odd ones, so that a drift of the machine's speed falls on
/// both alike; requests per second of `a` and of `b`.
pub async fn pair<A, AF, B, BF>(i: usize, a: &A, b: &B) -> (f64, f64)
where
    A: Fn() -> AF,
    AF: std::future::Future<Output = ()> + Send + 'static,
    B: Fn() -> BF,
    BF: std::future::Future<Output = ()> + Send + 'static,
{
    if i.is_multiple_of(2) {
        let a = round(a).await;
        (a, round(b).await)
    } else {
        let b = round(b).await;
        (round(a).await, b)
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
