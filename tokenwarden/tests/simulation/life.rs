//! Simulated time and the life of a simulated process: a clock over Tokio's paused
//! time (deterministic, advanced only when every task waits), and pauses (a GC
//! stall, SIGSTOP) and deaths that freeze a process's every step.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokenwarden::clock::Sleep;
use tokenwarden::Clock;
use tokio::sync::Notify;

/// The simulation's time: Tokio's (paused) clock, and a wall clock that can be
/// stepped. One per process, sharing the world's wall offset; a paused process's
/// sleeps end only once it runs again.
#[derive(Debug, Clone)]
pub struct SimClock {
    start: tokio::time::Instant,
    wall_step_ms: Arc<AtomicI64>,
    life: Option<Life>,
}

/// 2030-01-01, as the tests' manual clocks.
const WALL_START_SECS: u64 = 1_893_456_000;

impl SimClock {
    /// A clock starting now. Async: it first lets Tokio's paused time advance to
    /// its timer's next millisecond, so that every deadline of the run (whole
    /// milliseconds from the start) falls on the timer's grid; a start a few real
    /// microseconds off the grid would round some deadlines one way in one run and
    /// the other way in the next, and two timers firing in one tick or in two
    /// would make runs of the same seed differ.
    // The simulation's clock is the injected clock: it reads Tokio's paused time.
    #[allow(clippy::disallowed_methods)]
    pub async fn new() -> Self {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Self {
            start: tokio::time::Instant::now(),
            wall_step_ms: Arc::default(),
            life: None,
        }
    }

    /// The same time, seen by a process with `life`.
    pub fn of(&self, life: &Life) -> Self {
        Self {
            life: Some(life.clone()),
            ..self.clone()
        }
    }

    /// Steps the wall clock (an NTP correction), forwards or back.
    pub fn step_wall(&self, by_ms: i64) {
        self.wall_step_ms.fetch_add(by_ms, SeqCst);
    }

    #[allow(clippy::disallowed_methods)]
    fn elapsed(&self) -> Duration {
        tokio::time::Instant::now() - self.start
    }
}

impl Clock for SimClock {
    fn now(&self) -> SystemTime {
        let ms = (WALL_START_SECS * 1000) as i64
            + self.elapsed().as_millis() as i64
            + self.wall_step_ms.load(SeqCst);
        UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        let wait = deadline.duration_since(self.now()).unwrap_or_default();
        self.sleep(wait)
    }

    fn monotonic(&self) -> Duration {
        self.elapsed()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let life = self.life.clone();
        Box::pin(async move {
            tokio::time::sleep(duration).await;
            if let Some(life) = life {
                life.step().await;
            }
        })
    }
}

/// Whether a process runs, is paused, or is dead. Every store and token-endpoint
/// call of a process passes [`Life::step`] on its way out and on its way back, as
/// do its sleeps: a paused process makes no step until it resumes, a dead one never.
///
/// A `Notify`, not a `watch` channel: tokio's `watch` spreads its waiters over
/// shards picked at random, so the order in which paused steps wake would differ
/// between two runs of one seed.
#[derive(Debug, Clone, Default)]
pub struct Life {
    inner: Arc<LifeState>,
}

#[derive(Debug, Default)]
struct LifeState {
    paused: AtomicBool,
    dead: AtomicBool,
    resumed: Notify,
}

impl Life {
    pub fn pause(&self) {
        self.inner.paused.store(true, SeqCst);
    }

    pub fn resume(&self) {
        if !self.is_dead() {
            self.inner.paused.store(false, SeqCst);
            self.inner.resumed.notify_waiters();
        }
    }

    /// Dies: every task of the process stops at its next step, for good (its
    /// store leases are left to expire).
    pub fn kill(&self) {
        self.inner.dead.store(true, SeqCst);
        self.inner.paused.store(true, SeqCst);
    }

    pub fn is_dead(&self) -> bool {
        self.inner.dead.load(SeqCst)
    }

    pub fn is_running(&self) -> bool {
        !self.inner.paused.load(SeqCst)
    }

    /// Returns once the process runs (never, if it is dead).
    pub async fn step(&self) {
        loop {
            let resumed = self.inner.resumed.notified();
            tokio::pin!(resumed);
            resumed.as_mut().enable();
            if self.is_running() {
                return;
            }
            resumed.await;
        }
    }
}

/// A seeded source of the faults' dice, shared by a model's tasks.
#[derive(Debug)]
pub struct Dice(std::sync::Mutex<fastrand::Rng>);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Self(std::sync::Mutex::new(fastrand::Rng::with_seed(seed)))
    }

    fn rng(&self) -> std::sync::MutexGuard<'_, fastrand::Rng> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.rng().f64() < p
    }

    /// A duration in `range`, in milliseconds.
    pub fn millis(&self, range: std::ops::Range<u64>) -> Duration {
        Duration::from_millis(self.rng().u64(range))
    }
}
