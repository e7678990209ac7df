//! One simulated run: processes with real `TokenManager`s over the shared store
//! model and the model server, doing what a seed says at the moments it says,
//! under faults; then the checks.

use crate::life::{Life, SimClock};
use crate::server::{number, Client, Faults, Server};
use crate::store::{Door, Shared, StoreFaults};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::store::MemoryStore;
use tokenwarden::{Clock, TokenKey, TokenManager};

pub const LIFETIME: Duration = Duration::from_secs(60);
/// The managers' refresh-ahead window (the default, capped at half the lifetime).
pub const AHEAD: Duration = Duration::from_secs(30);
pub const LEASE_TTL: Duration = Duration::from_secs(5);
const RUN: Duration = Duration::from_secs(600);

/// What a run is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every fault and every operation.
    Adversity,
    /// A healthy endpoint and store, callers only: one request per expiry, every
    /// caller served within a bound.
    Healthy,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub violations: Vec<String>,
    pub residual: u64,
    pub requests: u64,
    pub calls: u64,
    /// Calls that got a token from before a logout elsewhere because their
    /// process could not read the store to check its copy.
    pub served_while_store_unreadable: u64,
}

struct Process {
    life: Life,
    manager: TokenManager,
}

/// A logout that returned: no call made later, by any process, may return a
/// token issued before it.
#[derive(Debug, Clone, Copy)]
struct Logout {
    /// Tokens up to this number were issued before it.
    issued: u64,
    /// When it began.
    started: tokio::time::Instant,
}

struct World {
    kind: Kind,
    rng: fastrand::Rng,
    clock: SimClock,
    server: Arc<Server>,
    shared: Arc<Shared>,
    processes: Vec<Process>,
    /// The logouts that returned, in any process.
    logouts: Rc<RefCell<Vec<Logout>>>,
    outcome: Rc<RefCell<Outcome>>,
}

/// Runs `seed` of `kind`; with `sees_changes`, over a store whose lease wait sees
/// a changed token at once (the manager then takes the lease without a read).
pub async fn run(seed: u64, kind: Kind, sees_changes: bool, verbose: bool) -> Outcome {
    let mut rng = fastrand::Rng::with_seed(seed);
    let clock = SimClock::new().await;
    let (faults, store_faults) = match kind {
        Kind::Healthy => (
            Faults::default(),
            StoreFaults {
                sees_changes,
                ..StoreFaults::default()
            },
        ),
        Kind::Adversity => (
            Faults {
                unavailable: rng.f64() * 0.1,
                fails_after: rng.f64() * 0.05,
                slow: rng.f64() * 0.1,
                hangs: rng.f64() * 0.03,
            },
            StoreFaults {
                fails: rng.f64() * 0.05,
                answer_lost: rng.f64() * 0.02,
                stalls: rng.f64() * 0.05,
                sees_changes,
            },
        ),
    };
    let server = Server::new(clock.clone(), LIFETIME, AHEAD, faults, seed);
    let memory = MemoryStore::with_clock(clock.clone());
    let shared = Shared::new(memory, server.clone(), store_faults, seed);
    let count = rng.usize(2..=6);
    let mut world = World {
        kind,
        rng,
        clock,
        server,
        shared,
        processes: Vec::new(),
        logouts: Rc::default(),
        outcome: Rc::default(),
    };
    for i in 0..count {
        let process = world.start(i);
        world.processes.push(process);
    }
    world.drive(verbose).await;
    world.finish().await
}

impl World {
    fn start(&self, i: usize) -> Process {
        let life = Life::default();
        let source = Client {
            server: self.server.clone(),
            life: life.clone(),
            process: i,
            name: format!("p{i}"),
        };
        let door = Door {
            shared: self.shared.clone(),
            life: life.clone(),
            process: i,
            last_seen: std::sync::Mutex::default(),
        };
        let manager = TokenManager::builder(source)
            .key(TokenKey::new("sim"))
            .clock(self.clock.of(&life))
            .store(door)
            .lease_ttl(LEASE_TTL)
            .backoff(Duration::from_millis(500), Duration::from_secs(8))
            .build()
            .expect("valid settings");
        Process { life, manager }
    }

    fn note(&self, verbose: bool, what: String) {
        if verbose {
            let at = self.clock.monotonic().as_millis();
            println!("{at:>7} ms  {what}");
        }
    }

    async fn drive(&mut self, verbose: bool) {
        let end = self.clock.monotonic() + RUN;
        while self.clock.monotonic() < end {
            let gap = Duration::from_millis(self.rng.u64(50..3_000));
            tokio::time::sleep(gap).await;
            let i = self.rng.usize(..self.processes.len());
            let action = match self.kind {
                Kind::Healthy => 0,
                Kind::Adversity => self.rng.u32(0..100),
            };
            match action {
                0..=59 => self.call(i, verbose),
                60..=67 => {
                    // A 401 from the API: the token in use is dropped.
                    let manager = self.processes[i].manager.clone();
                    if let Some(Ok(token)) = futures_util::FutureExt::now_or_never(manager.token())
                    {
                        self.note(verbose, format!("p{i} invalidates {}", token.fingerprint()));
                        manager.invalidate(&token);
                    }
                }
                68..=73 => {
                    self.note(verbose, format!("p{i} force_refresh"));
                    let manager = self.processes[i].manager.clone();
                    tokio::spawn(async move { drop(manager.force_refresh().await) });
                }
                74..=77 => {
                    let token = self.server.login();
                    self.shared.handed_over(&token);
                    self.note(
                        verbose,
                        format!("p{i} set_tokens {}", number(token.access_token.secret())),
                    );
                    let manager = self.processes[i].manager.clone();
                    tokio::spawn(async move { drop(manager.set_tokens(token).await) });
                }
                78..=80 => self.logout(i, verbose),
                81..=87 => {
                    let life = self.processes[i].life.clone();
                    let pause =
                        Duration::from_millis(self.rng.u64(500..3 * LEASE_TTL.as_millis() as u64));
                    self.note(verbose, format!("p{i} pauses for {pause:?}"));
                    life.pause();
                    tokio::spawn(async move {
                        tokio::time::sleep(pause).await;
                        life.resume();
                    });
                }
                88..=91 => {
                    self.note(verbose, format!("p{i} crashes and restarts"));
                    self.processes[i].life.kill();
                    self.server.died(i);
                    let restarted = self.start(i);
                    self.processes[i] = restarted;
                }
                92..=95 => {
                    let step = self.rng.i64(-120_000..120_000);
                    self.note(verbose, format!("the wall clock steps {step} ms"));
                    self.clock.step_wall(step);
                }
                _ => self.call(i, verbose),
            }
        }
    }

    /// A caller of process `i`: its outcome is checked when it returns.
    fn call(&self, i: usize, verbose: bool) {
        let process = &self.processes[i];
        if !process.life.is_running() {
            return;
        }
        let manager = process.manager.clone();
        let outcome = self.outcome.clone();
        let clock = self.clock.clone();
        let kind = self.kind;
        // The logouts that returned before this call: none of their tokens may come back.
        let before: Vec<Logout> = self.logouts.borrow().clone();
        let shared = self.shared.clone();
        let started = clock.monotonic();
        self.note(verbose, format!("p{i} token()"));
        tokio::task::spawn_local(async move {
            let result = manager.token().await;
            let mut outcome = outcome.borrow_mut();
            outcome.calls += 1;
            let waited = clock.monotonic() - started;
            match result {
                Ok(token) => {
                    let n = number(token.access_token.secret());
                    // A token set by hand after the logout is a new sign-in.
                    let cleared_by = before
                        .iter()
                        .find(|logout| n <= logout.issued && !shared.was_handed_over(n));
                    if let Some(logout) = cleared_by {
                        // A process that could not read the store serves its copy on.
                        let window = logout.started - Duration::from_secs(1);
                        if shared.read_failed_since(i, window) {
                            outcome.served_while_store_unreadable += 1;
                        } else {
                            outcome.violations.push(format!(
                                "p{i} served token {n} after a logout that cleared every token up to {}",
                                logout.issued
                            ));
                        }
                    }
                    if token.is_expired_at(clock.now()) {
                        outcome
                            .violations
                            .push(format!("p{i} served expired token {n}"));
                    }
                }
                Err(error) if kind == Kind::Healthy => outcome
                    .violations
                    .push(format!("p{i}: an error with a healthy endpoint: {error}")),
                Err(_) => {}
            }
            if kind == Kind::Healthy && waited > Duration::from_secs(1) {
                outcome.violations.push(format!(
                    "p{i}: a caller waited {waited:?} with a healthy endpoint"
                ));
            }
        });
    }

    fn logout(&self, i: usize, verbose: bool) {
        self.note(verbose, format!("p{i} logout"));
        let manager = self.processes[i].manager.clone();
        let logouts = self.logouts.clone();
        let shared = self.shared.clone();
        // Tokens issued before the call: none may be served or stored once it returns.
        let issued = self.server.issued();
        let started = tokio::time::Instant::now();
        tokio::task::spawn_local(async move {
            if manager.logout().await.is_ok() {
                logouts.borrow_mut().push(Logout { issued, started });
                shared.logged_out(issued);
            }
        });
    }

    async fn finish(self) -> Outcome {
        // Everything resumes; what is still running ends within the timeouts.
        for process in &self.processes {
            process.life.resume();
        }
        tokio::time::sleep(Duration::from_secs(120)).await;
        let mut outcome = std::mem::take(&mut *self.outcome.borrow_mut());
        outcome.violations.extend(self.server.violations());
        outcome.violations.extend(self.shared.violations());
        if self.kind == Kind::Healthy {
            outcome.violations.extend(self.server.early());
        }
        outcome.residual = self.server.residual();
        outcome.requests = self.server.requests();
        outcome
    }
}
