//! A model authorization server, as a token source, for the coordination tests of
//! the whole workspace: every refresh rotates the refresh token, and a spent
//! refresh token that comes back revokes the whole grant (what oidc-provider,
//! Okta, Auth0 and Keycloak with revoke-on-reuse do), so that a double spend is
//! counted instead of going unnoticed. Calls can be held at [`Gate`]s: on arrival
//! (before the server processes them) or on the way back (processed, answer not
//! yet received: a client that stalled after sending).

#![allow(dead_code)] // each test binary uses a part

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokenwarden::{Error, OAuthError, Result, Token, TokenSource};
use tokio::sync::{Notify, Semaphore};

/// Holds calls while closed; lets them through one by one, in arrival order, or
/// all at once.
#[derive(Debug)]
pub struct Gate {
    closed: AtomicBool,
    permits: Semaphore,
    /// How many calls arrived at the gate (held or not) since it was last closed.
    arrived: AtomicUsize,
    arrival: Notify,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            closed: AtomicBool::new(false),
            permits: Semaphore::new(0),
            arrived: AtomicUsize::new(0),
            arrival: Notify::new(),
        }
    }
}

impl Gate {
    /// Holds the calls that arrive from now on, and counts arrivals from zero.
    pub fn close(&self) {
        self.arrived.store(0, SeqCst);
        self.closed.store(true, SeqCst);
    }

    /// Lets one held call (the earliest) through.
    pub fn let_one_through(&self) {
        self.permits.add_permits(1);
    }

    /// Lets the calls that arrive from now on through, and keeps holding those
    /// that are held.
    pub fn stop_holding(&self) {
        self.closed.store(false, SeqCst);
    }

    /// Lets every call through, now and later.
    pub fn open(&self) {
        self.closed.store(false, SeqCst);
        self.permits.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    /// How many calls have arrived since the gate was last closed.
    pub fn arrived(&self) -> usize {
        self.arrived.load(SeqCst)
    }

    /// Waits (10 s of real time at most: a hang, not a timing check) until `n`
    /// calls have arrived.
    pub async fn until_arrived(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let arrival = self.arrival.notified();
                tokio::pin!(arrival);
                arrival.as_mut().enable();
                if self.arrived() >= n {
                    return;
                }
                arrival.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} calls did not arrive at the gate"));
    }

    pub async fn pass(&self) {
        let arrive = || {
            self.arrived.fetch_add(1, SeqCst);
            self.arrival.notify_waiters();
        };
        if !self.closed.load(SeqCst) {
            return arrive();
        }
        let permit = self.permits.acquire();
        tokio::pin!(permit);
        // In the queue before it counts as arrived: calls go through in the order
        // the test saw them arrive.
        if let std::task::Poll::Ready(permit) = futures_util::poll!(permit.as_mut()) {
            permit.expect("never closed").forget();
            return arrive();
        }
        arrive();
        permit.await.expect("never closed").forget();
    }
}

/// What the server does when a spent refresh token comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReuse {
    /// Revokes the whole grant (every refresh token of it): the strict servers.
    RevokeGrant,
    /// Refuses that request only.
    Refuse,
}

#[derive(Debug, Default)]
struct State {
    issued: u64,
    /// Refresh token → (grant, spent).
    refresh_tokens: HashMap<String, (u64, bool)>,
    revoked_grants: HashSet<u64>,
    reuses: usize,
    refreshed_with: HashMap<String, usize>,
    revocations: usize,
}

/// The model server. Tokens are `at-TOPSECRET-<n>` / `rt-TOPSECRET-<n>`.
#[derive(Debug)]
pub struct GrantServer {
    lifetime: Duration,
    on_reuse: OnReuse,
    state: Mutex<State>,
    /// Calls wait here before the server processes them.
    pub arrival: Gate,
    /// Processed calls wait here before the answer reaches the client.
    pub answer: Gate,
    /// Revocations wait here.
    pub revocation: Gate,
}

impl GrantServer {
    pub fn new(lifetime: Duration, on_reuse: OnReuse) -> Arc<Self> {
        Arc::new(Self {
            lifetime,
            on_reuse,
            state: Mutex::default(),
            arrival: Gate::default(),
            answer: Gate::default(),
            revocation: Gate::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many tokens were issued.
    pub fn issued(&self) -> u64 {
        self.state().issued
    }

    /// How many times a spent refresh token came back.
    pub fn reuses(&self) -> usize {
        self.state().reuses
    }

    /// How many refresh requests carried `refresh_token`.
    pub fn refreshes_with(&self, refresh_token: &str) -> usize {
        self.state()
            .refreshed_with
            .get(refresh_token)
            .copied()
            .unwrap_or(0)
    }

    /// How many revocation requests came.
    pub fn revocations(&self) -> usize {
        self.state().revocations
    }

    /// A token of a new grant, issued without a call (a login made elsewhere).
    pub fn login(&self) -> Token {
        let mut state = self.state();
        state.issued += 1;
        let grant = state.issued;
        self.issue(&mut state, grant)
    }

    fn issue(&self, state: &mut State, grant: u64) -> Token {
        let n = state.issued;
        let refresh = format!("rt-TOPSECRET-{n}");
        state.refresh_tokens.insert(refresh.clone(), (grant, false));
        Token::new(format!("at-TOPSECRET-{n}"))
            .with_refresh_token(refresh)
            .with_expires_in(self.lifetime)
    }

    fn rotate(&self, refresh: &str) -> Result<Token> {
        let mut state = self.state();
        *state.refreshed_with.entry(refresh.to_owned()).or_default() += 1;
        let Some(&(grant, spent)) = state.refresh_tokens.get(refresh) else {
            return Err(invalid_grant("unknown refresh token"));
        };
        if spent {
            state.reuses += 1;
            if self.on_reuse == OnReuse::RevokeGrant {
                state.revoked_grants.insert(grant);
            }
            return Err(invalid_grant("refresh token already used"));
        }
        if state.revoked_grants.contains(&grant) {
            return Err(invalid_grant("grant revoked"));
        }
        state
            .refresh_tokens
            .insert(refresh.to_owned(), (grant, true));
        state.issued += 1;
        Ok(self.issue(&mut state, grant))
    }
}

fn invalid_grant(description: &str) -> Error {
    Error::oauth(
        "grant-server",
        Some(400),
        OAuthError::new("invalid_grant").with_description(description),
    )
}

#[async_trait::async_trait]
impl TokenSource for GrantServer {
    async fn fetch(&self) -> Result<Token> {
        self.arrival.pass().await;
        let token = self.login();
        self.answer.pass().await;
        Ok(token)
    }

    async fn refresh(&self, current: &Token) -> Result<Token> {
        let refresh = current.refresh_token.as_ref().expect("a refresh token");
        self.arrival.pass().await;
        let outcome = self.rotate(refresh.secret());
        self.answer.pass().await;
        outcome
    }

    async fn revoke(&self, token: &Token) -> Result<()> {
        self.revocation.pass().await;
        let mut state = self.state();
        state.revocations += 1;
        if let Some(refresh) = &token.refresh_token {
            if let Some(&(grant, _)) = state.refresh_tokens.get(refresh.secret()) {
                state.revoked_grants.insert(grant);
            }
        }
        Ok(())
    }

    fn name(&self) -> &str {
        "grant-server"
    }
}
