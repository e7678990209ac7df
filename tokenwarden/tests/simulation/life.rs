//! Simulated time and the life of a simulated process: a clock over Tokio's paused
//! time (deterministic, advanced only when every task waits), and pauses (a GC
//! stall, SIGSTOP) and deaths that freeze a process's every step.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokenwarden::clock::Sleep;
use tokenwarden::Clock;
use tokio::sync::watch;

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
    // The simulation's clock is the injected clock: it reads Tokio's paused time.
    #[allow(clippy::disallowed_methods)]
    pub fn new() -> Self {
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
#[derive(Debug, Clone)]
pub struct Life {
    running: Arc<watch::Sender<bool>>,
    dead: Arc<AtomicBool>,
}

impl Default for Life {
    fn default() -> Self {
        Self {
            running: Arc::new(watch::channel(true).0),
            dead: Arc::default(),
        }
    }
}

impl Life {
    pub fn pause(&self) {
        self.running.send_replace(false);
    }

    pub fn resume(&self) {
        if !self.is_dead() {
            self.running.send_replace(true);
        }
    }

    /// Dies: every task of the process stops at its next step, for good (its
    /// store leases are left to expire).
    pub fn kill(&self) {
        self.dead.store(true, SeqCst);
        self.running.send_replace(false);
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(SeqCst)
    }

    pub fn is_running(&self) -> bool {
        *self.running.borrow()
    }

    /// Returns once the process runs (never, if it is dead).
    pub async fn step(&self) {
        let mut running = self.running.subscribe();
        loop {
            if *running.borrow_and_update() {
                return;
            }
            if running.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
