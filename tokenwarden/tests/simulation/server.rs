//! The model authorization server and each process's client of it. The server
//! rotates refresh tokens and revokes the whole grant when a spent one comes back;
//! it can be slow, fail (before or after processing), hang, or lose its answer.
//! Each reuse is classified: the residual case (the first sender never got its
//! answer in time to store it: it paused, died, timed out, or its lease had
//! ended; or the store failed to save it) or a violation of the protocol.

use crate::life::{Dice, Life, SimClock};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokenwarden::{Clock, Error, OAuthError, Result, Token, TokenSource};

/// How long the model client waits for an answer (the OAuth2 client's request
/// timeout); it sends a refresh only when this fits in the time left.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How the endpoint misbehaves, per request (probabilities).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// A 503 before processing (the client may retry).
    pub unavailable: f64,
    /// A 500 after processing: the refresh token is spent, the answer lost.
    pub fails_after: f64,
    /// 1 to 4 s before processing.
    pub slow: f64,
    /// No answer for 30 s (processed at the end, long after the client gave up).
    pub hangs: f64,
}

/// One refresh request as the server saw it.
#[derive(Debug, Clone)]
struct Use {
    process: usize,
    /// The refresh token it carried.
    refresh: u64,
    /// Its sender never got the answer in time to store it: the sender timed
    /// out, was cancelled or died, or the answer came after its deadline.
    lost: bool,
    /// The token the refresh issued, if it did.
    issued: Option<u64>,
    /// Its answer reached the sender (in time or not).
    delivered: bool,
    /// When its sender's time ran out (monotonic): its lease or refresh timeout.
    deadline: Duration,
}

#[derive(Debug, Default)]
struct State {
    issued: u64,
    /// Refresh token number → (grant, the use that spent it).
    refresh_tokens: HashMap<u64, (u64, Option<usize>)>,
    revoked: HashSet<u64>,
    uses: Vec<Use>,
    /// Requests that issued a token (fetches and refreshes).
    requests: u64,
    pub residual: u64,
    pub violations: Vec<String>,
    /// Refresh requests that came while the refreshed token was still fresh.
    pub early: Vec<String>,
}

#[derive(Debug)]
pub struct Server {
    clock: SimClock,
    lifetime: Duration,
    /// The refresh-ahead window of the managers (capped at half the lifetime).
    ahead: Duration,
    faults: Faults,
    dice: Dice,
    state: Mutex<State>,
    /// Tokens whose save the store refused for a fault of its own.
    pub unsaved: Mutex<HashSet<u64>>,
    /// Tokens the store holds or held.
    pub written: Mutex<HashSet<u64>>,
}

/// The number in `at-<n>` / `rt-<n>`.
pub fn number(secret: &str) -> u64 {
    secret
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Server {
    pub fn new(
        clock: SimClock,
        lifetime: Duration,
        ahead: Duration,
        faults: Faults,
        seed: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            clock,
            lifetime,
            ahead,
            faults,
            dice: Dice::new(seed ^ 0x5e4e_4e4e),
            state: Mutex::default(),
            unsaved: Mutex::default(),
            written: Mutex::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn issued(&self) -> u64 {
        self.state().issued
    }

    /// A process died: the answers it was waiting for are lost.
    pub fn died(&self, process: usize) {
        for waiting in self.state().uses.iter_mut() {
            if waiting.process == process && !waiting.delivered {
                waiting.lost = true;
            }
        }
    }

    pub fn requests(&self) -> u64 {
        self.state().requests
    }

    pub fn residual(&self) -> u64 {
        self.state().residual
    }

    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }

    pub fn early(&self) -> Vec<String> {
        self.state().early.clone()
    }

    /// A token of a new grant (a login, or one made elsewhere and handed over).
    pub fn login(&self) -> Token {
        let mut state = self.state();
        state.issued += 1;
        let grant = state.issued;
        self.issue(&mut state, grant)
    }

    fn issue(&self, state: &mut State, grant: u64) -> Token {
        let n = state.issued;
        tracing::debug!("server: token {n} issued (grant {grant})");
        state.refresh_tokens.insert(n, (grant, None));
        Token::new(format!("at-TOPSECRET-{n}"))
            .with_refresh_token(format!("rt-TOPSECRET-{n}"))
            .with_expires_at(self.clock.now() + self.lifetime)
    }

    fn refresh(
        &self,
        refresh: u64,
        use_id: usize,
        expires_at: Option<std::time::SystemTime>,
    ) -> Result<Token> {
        let mut state = self.state();
        let Some(&(grant, spent_by)) = state.refresh_tokens.get(&refresh) else {
            return Err(invalid_grant());
        };
        if let Some(first) = spent_by {
            state.revoked.insert(grant);
            // Residual: some send of this refresh token lost its answer (the
            // one no client can rule out), or the store refused to save what it
            // brought. Otherwise two live senders spent it: a violation.
            let (unsaved, written) = (self.unsaved.lock().unwrap(), self.written.lock().unwrap());
            let now = self.clock.monotonic();
            let residual = state.uses.iter().any(|u| {
                // Its sender's time ran out before it had the answer, or before
                // the store had what the answer brought (a stalled store, say).
                let not_stored = u.issued.is_some_and(|n| !written.contains(&n));
                let overdue = (!u.delivered || not_stored) && now > u.deadline;
                u.refresh == refresh
                    && (u.lost || overdue || u.issued.is_some_and(|n| unsaved.contains(&n)))
            });
            drop((unsaved, written));
            if residual {
                state.residual += 1;
            } else {
                let (first, second) = (state.uses[first].process, state.uses[use_id].process);
                state.violations.push(format!(
                    "refresh token {refresh} spent twice: first by process {first} (its answer delivered), then by process {second}"
                ));
            }
            return Err(invalid_grant());
        }
        if state.revoked.contains(&grant) {
            return Err(invalid_grant());
        }
        if let Some(expires_at) = expires_at {
            if self.clock.now() + self.ahead < expires_at {
                state.early.push(format!(
                    "refresh token {refresh} sent {:?} before its stale window",
                    expires_at
                        .duration_since(self.clock.now() + self.ahead)
                        .unwrap_or_default()
                ));
            }
        }
        state.refresh_tokens.insert(refresh, (grant, Some(use_id)));
        state.issued += 1;
        state.requests += 1;
        let token = self.issue(&mut state, grant);
        state.uses[use_id].issued = Some(number(token.access_token.secret()));
        Ok(token)
    }

    fn revoke(&self, token: &Token) {
        let mut state = self.state();
        if let Some(refresh) = &token.refresh_token {
            if let Some(&(grant, _)) = state.refresh_tokens.get(&number(refresh.secret())) {
                state.revoked.insert(grant);
            }
        }
    }
}

fn invalid_grant() -> Error {
    Error::oauth("sim", Some(400), OAuthError::new("invalid_grant"))
}

fn unavailable() -> Error {
    Error::transport("sim", "HTTP 503").with_status(503)
}

/// One process's client of the server: its requests stop while the process is
/// paused, never come back if it died, and give up after [`REQUEST_TIMEOUT`].
#[derive(Debug)]
pub struct Client {
    pub server: Arc<Server>,
    pub life: Life,
    pub process: usize,
    /// `p<process>`, the manager's source name in logs.
    pub name: String,
}

impl Client {
    /// Sends one request: the server processes it in a task of its own (it goes
    /// on if the client gives up), after the network and its faults.
    async fn send(
        &self,
        work: impl FnOnce(&Server) -> Result<Token> + Send + 'static,
    ) -> Result<Token> {
        let server = self.server.clone();
        let f = server.faults;
        let (answer, answered) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut wait = server.dice.millis(5..50);
            if server.dice.chance(f.slow) {
                wait += server.dice.millis(1_000..4_000);
            }
            if server.dice.chance(f.hangs) {
                wait += Duration::from_secs(30);
            }
            if server.dice.chance(f.unavailable) {
                tokio::time::sleep(wait).await;
                let _ = answer.send(Err(unavailable()));
                return;
            }
            tokio::time::sleep(wait).await;
            let mut outcome = work(&server);
            if outcome.is_ok() && server.dice.chance(f.fails_after) {
                outcome = Err(Error::transport("sim", "HTTP 500").with_status(500));
            }
            tokio::time::sleep(server.dice.millis(5..50)).await;
            let _ = answer.send(outcome);
        });
        match tokio::time::timeout(REQUEST_TIMEOUT, answered).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(Error::transport("sim", "the connection closed")),
            Err(_) => Err(Error::transport("sim", "no answer within the timeout")),
        }
    }
}

#[async_trait::async_trait]
impl TokenSource for Client {
    async fn fetch(&self) -> Result<Token> {
        self.life.step().await;
        let token = self
            .send(|server| {
                let token = server.login();
                server.state().requests += 1;
                Ok(token)
            })
            .await;
        self.life.step().await;
        token
    }

    async fn refresh(&self, current: &Token) -> Result<Token> {
        self.life.step().await;
        // As the OAuth2 client: no refresh that could outlive the time left.
        let left = tokenwarden::source::time_left().unwrap_or(Duration::MAX);
        if left < REQUEST_TIMEOUT {
            return Err(Error::transport(&self.name, "not sent: no time left"));
        }
        let refresh = number(
            current
                .refresh_token
                .as_ref()
                .expect("a refresh token")
                .secret(),
        );
        let deadline = self.server.clock.monotonic() + left;
        let use_id = {
            let mut state = self.server.state();
            state.uses.push(Use {
                process: self.process,
                refresh,
                lost: false,
                issued: None,
                delivered: false,
                deadline,
            });
            state.uses.len() - 1
        };
        // Marks the use lost unless its answer is delivered in time (a timeout, a
        // cancelled flight and a death all drop or end it otherwise).
        let mut delivery = Delivery {
            server: &self.server,
            use_id,
            in_time: false,
        };
        let expires_at = current.expires_at;
        let outcome = self
            .send(move |server| server.refresh(refresh, use_id, expires_at))
            .await;
        // A pause here: the answer came, the process stopped before storing it.
        self.life.step().await;
        delivery.in_time = outcome.is_ok() && self.server.clock.monotonic() <= deadline;
        outcome
    }

    async fn revoke(&self, token: &Token) -> Result<()> {
        self.life.step().await;
        self.server.revoke(token);
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Marks a refresh's answer lost when it was not delivered in time.
struct Delivery<'a> {
    server: &'a Server,
    use_id: usize,
    in_time: bool,
}

impl Drop for Delivery<'_> {
    fn drop(&mut self) {
        let mut state = self.server.state();
        let delivered = &mut state.uses[self.use_id];
        delivered.delivered = true;
        if !self.in_time {
            delivered.lost = true;
        }
    }
}
