//! Managers used from more than one Tokio runtime, and time that steps (issue 12,
//! scenarios 9 and 10): typed errors and bounded waits, never a stuck manager.

use crate::common::*;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::{TokenEvent, TokenManager};

const HOUR: Duration = Duration::from_secs(3600);

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `work` on a thread of its own and waits 10 s of real time for it: a
/// deadlock fails the test instead of hanging the suite.
fn within_10_s<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || drop(done.send(work())));
    result
        .recv_timeout(Duration::from_secs(10))
        .expect("finished, not deadlocked")
}

#[test]
fn a_refresh_started_on_a_runtime_that_shut_down_is_a_typed_error_not_a_deadlock() {
    let _h = harness();
    let (source, _clock, builder) = counting(HOUR);
    let manager = builder.build().unwrap();
    let gone = current_thread();
    let handle = gone.handle().clone();
    drop(gone);
    let outcome = within_10_s({
        let manager = manager.clone();
        move || {
            let _entered = handle.enter(); // a runtime context whose runtime has shut down
            futures_util::FutureExt::now_or_never(manager.token()).map(|r| r.map(|_| ()))
        }
    });
    if let Some(result) = outcome {
        let error = result.expect_err("no token from a runtime that is gone");
        assert!(error.is_transient(), "{error}");
    }
    // The manager is not stuck: on a live runtime the next call gets a token.
    let live = current_thread();
    live.block_on(manager.token()).expect("a token");
    assert_eq!(source.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_joining_a_refresh_stuck_on_an_idle_runtime_waits_a_bounded_time() {
    let _h = harness();
    let source = CountingSource::new(HOUR);
    let manager = TokenManager::builder(source.clone())
        .refresh_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    // A flight spawned on a current-thread runtime that nobody drives afterwards.
    let idle = std::thread::spawn({
        let manager = manager.clone();
        move || {
            let idle = current_thread();
            idle.block_on(async {
                let call = manager.token();
                futures_util::pin_mut!(call);
                assert!(futures_util::poll!(call).is_pending(), "the flight started");
            });
            idle // kept alive, not driven
        }
    })
    .join()
    .unwrap();
    let joined = tokio::time::timeout(Duration::from_secs(10), manager.token())
        .await
        .expect("a bounded wait on the caller's side");
    let error = joined.expect_err("the stuck flight gives no token");
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("refresh timeout"), "{error}");
    // The stuck flight no longer holds the slot: the next caller gets a token.
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if manager.token().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // the backoff
        }
    })
    .await
    .expect("a token from a new flight");
    idle.shutdown_background();
}

#[test]
fn listeners_are_told_whichever_runtime_the_manager_is_used_from() {
    let _h = harness();
    let heard = Arc::new(AtomicUsize::new(0));
    let (_source, _clock, builder) = counting(HOUR);
    let manager = builder
        .listener({
            let heard = heard.clone();
            move |_: &TokenEvent| {
                heard.fetch_add(1, SeqCst);
            }
        })
        .build()
        .unwrap();
    let first = current_thread();
    first.block_on(async {
        manager.token().await.unwrap();
        settle().await;
    });
    first.block_on(async {
        // Delivery runs on the blocking pool; let it finish.
        tokio::time::timeout(Duration::from_secs(10), async {
            while heard.load(SeqCst) < 1 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the first event");
    });
    drop(first); // the runtime that delivered the first event ends
    let second = current_thread();
    second.block_on(async {
        manager.force_refresh().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while heard.load(SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the second event, from the second runtime");
    });
    assert_eq!(heard.load(SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_stepped_back_does_not_extend_the_refresh_timeout() {
    let _h = harness();
    let (source, clock, builder) = counting(HOUR);
    let manager = builder
        .refresh_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    source.close(); // the token endpoint hangs
    let waiting = tokio::spawn({
        let manager = manager.clone();
        async move { manager.token().await.map(|_| ()) }
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while source.calls() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the fetch started");
    clock.rewind(HOUR); // the wall clock steps back an hour...
    clock.advance(Duration::from_secs(31)); // ...and 31 s pass
    let outcome = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the timeout ran on monotonic time")
        .unwrap();
    let error = outcome.expect_err("no token from a hung endpoint");
    assert!(error.to_string().contains("refresh timeout"), "{error}");
    source.open();
}
