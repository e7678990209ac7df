//! Callbacks when a manager's token changes: [`TokenListener`], [`TokenEvent`], the
//! built-in [`TracingListener`], and the dispatcher that keeps slow or panicking
//! listeners away from refreshes.

use crate::{RefreshReason, Token, TokenInfo};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;

/// What happened to the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenEventKind {
    /// A new token came from a full [`fetch`](crate::TokenSource::fetch) (a login).
    Fetched,
    /// A new token came from a [`refresh`](crate::TokenSource::refresh).
    Refreshed,
    /// A token was given with [`set_tokens`](crate::TokenManager::set_tokens).
    Set,
    /// The token was removed by [`logout`](crate::TokenManager::logout).
    Cleared,
}

/// One change of a manager's token, after the new token was stored.
///
/// Carries [`TokenInfo`] (no secret). A listener that must persist or forward the
/// token itself asks for it with [`TokenEvent::token`].
#[derive(Clone)]
pub struct TokenEvent {
    kind: TokenEventKind,
    info: TokenInfo,
    token: Option<Arc<Token>>,
    reason: Option<RefreshReason>,
}

impl TokenEvent {
    pub(crate) fn new(
        kind: TokenEventKind,
        info: TokenInfo,
        token: Option<Arc<Token>>,
        reason: Option<RefreshReason>,
    ) -> Self {
        Self {
            kind,
            info,
            token,
            reason,
        }
    }

    /// Why the token was fetched or refreshed: ahead of its expiry, expired,
    /// rejected after a 401, forced, or the first use (`None` for `Set` and
    /// `Cleared`). Tells a background refresh from a 401 recovery.
    pub fn reason(&self) -> Option<RefreshReason> {
        self.reason
    }

    /// What happened.
    pub fn kind(&self) -> TokenEventKind {
        self.kind
    }

    /// The new token's public description (for `Cleared`, the state after clearing).
    pub fn info(&self) -> &TokenInfo {
        &self.info
    }

    /// The new token itself, secrets included (`None` for `Cleared`).
    ///
    /// # Security Warning
    ///
    /// This gives the listener the access and refresh tokens: store them encrypted
    /// and never log them.
    pub fn token(&self) -> Option<&Token> {
        self.token.as_deref()
    }
}

impl std::fmt::Debug for TokenEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEvent")
            .field("kind", &self.kind)
            .field("reason", &self.reason)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Told once about each new token (fetched, refreshed, set) and each logout.
///
/// Closures `Fn(&TokenEvent)` are listeners too.
///
/// Listeners run one event at a time, in order, on Tokio's blocking pool, after the
/// manager tried to store the token (a failed save is logged, and the token is still
/// served and announced): a slow listener delays only later events, never a refresh
/// or a caller, and a panicking one is logged and skipped. A token the manager finds
/// in its store (saved by another process, or an earlier run) is not announced: it
/// was announced where it was obtained.
///
/// ```
/// use tokenwarden::{TokenEvent, TokenListener};
///
/// #[derive(Debug)]
/// struct Audit;
///
/// impl TokenListener for Audit {
///     fn on_event(&self, event: &TokenEvent) {
///         println!("{:?}: expires in {:?}", event.kind(), event.info().expires_in);
///     }
/// }
/// ```
pub trait TokenListener: Send + Sync + 'static {
    /// Called with each event.
    fn on_event(&self, event: &TokenEvent);
}

impl<F> TokenListener for F
where
    F: Fn(&TokenEvent) + Send + Sync + 'static,
{
    fn on_event(&self, event: &TokenEvent) {
        self(event)
    }
}

/// Logs each event with `tracing` at INFO (fingerprint, expiry, source; no secret).
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingListener;

impl TokenListener for TracingListener {
    fn on_event(&self, event: &TokenEvent) {
        let info = event.info();
        tracing::info!(
            kind = ?event.kind(),
            source = %info.source,
            key = %info.key,
            fingerprint = info.fingerprint.as_deref().unwrap_or("-"),
            expires_in_secs = info.expires_in.map(|d| d.as_secs()),
            has_refresh_token = info.has_refresh_token,
            "token changed"
        );
    }
}

/// Sends events to the listeners from one task per manager, started with the first
/// event (so a manager can be built outside a Tokio runtime), and started again on
/// the runtime at hand if the one it ran on has ended.
#[derive(Default)]
pub(crate) struct Dispatcher {
    listeners: Vec<Arc<dyn TokenListener>>,
    queue: Mutex<Option<mpsc::UnboundedSender<TokenEvent>>>,
    progress: Arc<Progress>,
}

/// How many events were queued and how many the listeners are done with.
#[derive(Default)]
struct Progress {
    queued: AtomicU64,
    done: AtomicU64,
    changed: tokio::sync::Notify,
}

impl Progress {
    fn done(&self, events: u64) {
        self.done.fetch_add(events, SeqCst);
        self.changed.notify_waiters();
    }
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("listeners", &self.listeners.len())
            .field("started", &self.queue().is_some())
            .finish()
    }
}

impl Dispatcher {
    pub(crate) fn new(listeners: Vec<Arc<dyn TokenListener>>) -> Self {
        Self {
            listeners,
            queue: Mutex::new(None),
            progress: Arc::default(),
        }
    }

    /// Waits until the listeners are done with every event queued before.
    pub(crate) async fn idle(&self) {
        let target = self.progress.queued.load(SeqCst);
        loop {
            let changed = self.progress.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.progress.done.load(SeqCst) >= target {
                return;
            }
            changed.await;
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Option<mpsc::UnboundedSender<TokenEvent>>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    pub(crate) fn emit(&self, event: TokenEvent) {
        if self.listeners.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(kind = ?event.kind(), "no Tokio runtime here: token listeners not told");
            return;
        };
        let mut queue = self.queue();
        // Counted before it is sent, so that the delivery never runs ahead.
        self.progress.queued.fetch_add(1, SeqCst);
        let event = match queue.as_ref() {
            Some(queue) => match queue.send(event) {
                Ok(()) => return,
                // The delivery task is gone with the runtime it ran on.
                Err(mpsc::error::SendError(event)) => event,
            },
            None => event,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let progress = self.progress.clone();
        runtime.spawn(deliver(self.listeners.clone(), rx, progress));
        let _ = tx.send(event);
        *queue = Some(tx);
    }
}

/// Ends when the manager (which owns the sender) is dropped.
async fn deliver(
    listeners: Vec<Arc<dyn TokenListener>>,
    rx: mpsc::UnboundedReceiver<TokenEvent>,
    progress: Arc<Progress>,
) {
    let mut delivery = Delivery {
        rx,
        progress,
        in_flight: false,
    };
    while let Some(event) = delivery.rx.recv().await {
        delivery.in_flight = true;
        let listeners = listeners.clone();
        let kind = event.kind();
        let delivered = tokio::task::spawn_blocking(move || {
            for listener in &listeners {
                let call = std::panic::catch_unwind(AssertUnwindSafe(|| listener.on_event(&event)));
                if call.is_err() {
                    tracing::warn!(?kind, "a token listener panicked; event skipped for it");
                }
            }
        })
        .await;
        if delivered.is_err() {
            return; // the runtime is shutting down
        }
        delivery.in_flight = false;
        delivery.progress.done(1);
    }
}

/// The delivery task's queue. Dropped with the task (its runtime shut down),
/// it counts the events it will never deliver as done, so that nobody waits
/// for them.
struct Delivery {
    rx: mpsc::UnboundedReceiver<TokenEvent>,
    progress: Arc<Progress>,
    in_flight: bool,
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.rx.close();
        let mut lost = u64::from(self.in_flight);
        while self.rx.try_recv().is_ok() {
            lost += 1;
        }
        if lost > 0 {
            self.progress.done(lost);
        }
    }
}
