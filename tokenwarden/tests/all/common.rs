//! Shared test helpers: the log capture that fails tests on a leaked secret
//! (`tests/support/leaks.rs`, shared by the whole workspace), and a scriptable
//! counting token source.

#[path = "../support/leaks.rs"]
mod leaks;
pub use leaks::*;

use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenwarden::{
    Error, ManualClock, OAuthError, Result, Token, TokenEvent, TokenEventKind, TokenManager,
    TokenManagerBuilder, TokenSource,
};
use tokio::sync::{mpsc, watch};

/// A manual clock at a round time.
/// An Ed25519 private key (PKCS#8 PEM) made from `seed`.
pub fn ed25519_pem(seed: &[u8; 32]) -> String {
    use base64::Engine as _;
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
}

/// A random 32-byte seed (for [`ed25519_pem`]).
pub fn random_seed() -> [u8; 32] {
    std::array::from_fn(|_| fastrand::u8(..))
}

/// The value of the query parameter `key` of `url` (panics if it has none).
pub fn query_param(url: &url::Url, key: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no `{key}` in {url}"))
}

pub fn clock() -> ManualClock {
    ManualClock::default()
}

/// What [`CountingSource`] does on its next calls.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Errors for `fetch` (and `refresh` unless `refresh_error` is set).
    pub fail: Option<Error>,
    /// An error for `refresh` only.
    pub refresh_error: Option<Error>,
    /// Whether new tokens come with a refresh token.
    pub issue_refresh_tokens: bool,
}

/// A token source that counts its calls, issues `TOPSECRET-at-<n>` tokens with a
/// fixed lifetime, and can be told to fail or to hold every call at a gate.
#[derive(Debug)]
pub struct CountingSource {
    pub name: String,
    pub lifetime: Duration,
    pub fetches: AtomicUsize,
    pub refreshes: AtomicUsize,
    pub script: Mutex<Script>,
    issued: AtomicUsize,
    gate: watch::Sender<bool>,
}

impl CountingSource {
    pub fn new(lifetime: Duration) -> Arc<Self> {
        Arc::new(Self {
            name: "counting".into(),
            lifetime,
            fetches: AtomicUsize::new(0),
            refreshes: AtomicUsize::new(0),
            script: Mutex::new(Script {
                issue_refresh_tokens: true,
                ..Script::default()
            }),
            issued: AtomicUsize::new(0),
            gate: watch::channel(true).0,
        })
    }

    pub fn calls(&self) -> usize {
        self.fetches.load(SeqCst) + self.refreshes.load(SeqCst)
    }

    pub fn fail_with(&self, error: Option<Error>) {
        self.script.lock().unwrap().fail = error;
    }

    pub fn fail_refresh_with(&self, error: Option<Error>) {
        self.script.lock().unwrap().refresh_error = error;
    }

    /// Holds every call until [`open`](Self::open).
    pub fn close(&self) {
        self.gate.send_replace(false);
    }

    pub fn open(&self) {
        self.gate.send_replace(true);
    }

    async fn pass_gate(&self) {
        let mut gate = self.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
    }

    fn issue(&self) -> Result<Token> {
        let script = self.script.lock().unwrap().clone();
        if let Some(error) = script.fail {
            return Err(error);
        }
        let n = self.issued.fetch_add(1, SeqCst) + 1;
        let token = Token::new(format!("{MARKER}-at-{n}")).with_expires_in(self.lifetime);
        Ok(if script.issue_refresh_tokens {
            token.with_refresh_token(format!("{MARKER}-rt-{n}"))
        } else {
            token
        })
    }
}

#[async_trait]
impl TokenSource for CountingSource {
    async fn fetch(&self) -> Result<Token> {
        self.fetches.fetch_add(1, SeqCst);
        self.pass_gate().await;
        self.issue()
    }

    async fn refresh(&self, current: &Token) -> Result<Token> {
        assert!(
            current.refresh_token.is_some(),
            "refresh called without a refresh token"
        );
        self.refreshes.fetch_add(1, SeqCst);
        self.pass_gate().await;
        if let Some(error) = self.script.lock().unwrap().refresh_error.clone() {
            return Err(error);
        }
        self.issue()
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// A transient failure of the kind a token endpoint that is down produces.
pub fn unavailable() -> Error {
    Error::transport("counting", "HTTP 503 Service Unavailable").with_status(503)
}

/// The server's answer to a spent or revoked refresh token.
pub fn invalid_grant() -> Error {
    Error::oauth(
        "counting",
        Some(400),
        OAuthError::new("invalid_grant").with_description("refresh token expired"),
    )
}

/// A listener that forwards events to a channel, and the receiving end.
pub fn event_channel() -> (
    impl Fn(&TokenEvent) + Send + Sync + 'static,
    mpsc::UnboundedReceiver<TokenEvent>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (move |event: &TokenEvent| drop(tx.send(event.clone())), rx)
}

/// Waits for the next event of `kind`, failing after 10 s of real time (a hang,
/// not a timing assertion).
pub async fn next_event(
    rx: &mut mpsc::UnboundedReceiver<TokenEvent>,
    kind: TokenEventKind,
) -> TokenEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = rx.recv().await.expect("listener channel open");
            if event.kind() == kind {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} event within 10 s"))
}

/// Lets spawned tasks (a background refresh) run to completion on a
/// current-thread runtime.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// A counting source of tokens living `lifetime`, a manual clock, and a manager
/// builder that uses both.
pub fn counting(lifetime: Duration) -> (Arc<CountingSource>, ManualClock, TokenManagerBuilder) {
    let (source, clock) = (CountingSource::new(lifetime), clock());
    let builder = TokenManager::builder(source.clone()).clock(clock.clone());
    (source, clock, builder)
}

/// Builds with a listener that forwards every event to the returned channel.
pub fn observed(
    builder: TokenManagerBuilder,
) -> (TokenManager, mpsc::UnboundedReceiver<TokenEvent>) {
    let (listener, events) = event_channel();
    (
        builder.listener(listener).build().expect("valid settings"),
        events,
    )
}

/// How many files the file store moved aside (`*.corrupt-*`) in `dir`.
pub fn files_moved_aside(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".corrupt-")
        })
        .count()
}

/// A file store in `dir` with the data key `key` (no keyring, no key file).
pub fn file_store(dir: &std::path::Path, key: [u8; 32]) -> tokenwarden::store::FileStore {
    tokenwarden::store::FileStore::builder("tokenwarden-tests")
        .dir(dir)
        .key(tokenwarden::store::FileKey::bytes(key))
        .build()
        .unwrap()
}

/// Polls `done` (10 s of real time at most: a hang, not a timing check).
pub async fn until(done: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the condition came true");
}
