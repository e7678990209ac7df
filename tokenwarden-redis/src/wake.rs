//! Lease wake-ups: a queue of waiting instances per key, and one pub/sub
//! connection per store on which the lease's releaser wakes the instance that has
//! waited longest, and a save (or delete) wakes every waiter (with what is stored
//! now, when the store seals its tokens), so that those any new token will do
//! take it at once.
//!
//! Why a release wakes one at a time: a waiter that needs the lease itself must
//! take it in turn, so a release that woke all N of them would have N-1 try in
//! vain, N times over: N²/2 attempts per expiry. A save is different: the waiters
//! that wait only for a new token (`TokenStore::lease_unless_changed`, which the
//! manager uses for every due refresh) are all done with it at once, so the save
//! script wakes every queued waiter and empties the queue: with the stored value
//! in the message where it is sealed (no command needed to read it), else with a
//! notice (the waiter's next attempt reads it: pub/sub channels have ACLs of their
//! own, and a token in clear is not sent there); a waiter that still needs the
//! lease queues again. The queue (a sorted set, `<prefix>:{<key>}:waiters`) holds
//! each waiter's address, `<its store's channel> <its owner>`; the release script
//! pops the oldest and `PUBLISH`es to that channel, skipping waiters that gave up
//! long ago and channels nobody listens to any more (a process that died). A store
//! that gets a wake-up none of its waiters wants (one gave up, or was cancelled)
//! passes it on to the next.
//!
//! Pub/sub is at most once (a reconnect loses messages), so a waiter also tries
//! again when the holder's lease would have expired (a holder that died releases
//! nothing) and after [`FALLBACK`]; when the pub/sub connection drops, every waiter
//! tries at once and subscribes again on a new one.

use crate::connection::RedisConnection;
use futures_util::StreamExt as _;
use redis::aio::{PubSubSink, PubSubStream};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;
use tokenwarden::Clock;
use tokio::sync::{oneshot, Notify};

/// How long a waiter waits without a message before it tries the lease again, in
/// case a wake-up was lost: 1 s.
pub(crate) const FALLBACK: Duration = Duration::from_secs(1);

/// How long after a failed attempt to connect or subscribe a store tries again;
/// its waiters poll meanwhile.
const RECONNECT_AFTER: Duration = Duration::from_secs(5);

/// Lua: wakes the oldest waiter of the queue KEYS[2] that may still be waiting (it
/// queued less than ARGV[2] ms ago) and is still listening. Part of the release
/// script and of [`PASS`].
macro_rules! wake_next {
    () => {
        r"
local now = redis.call('time')
local oldest = now[1] * 1000 + math.floor(now[2] / 1000) - tonumber(ARGV[2])
while true do
  local next = redis.call('zpopmin', KEYS[2])
  if not next[1] then break end
  local channel, owner = string.match(next[1], '^(.*) ([^ ]+)$')
  if channel and tonumber(next[2]) >= oldest then
    -- A channel this user may not publish on counts as nobody listening.
    local listening = redis.pcall('publish', channel, owner)
    if type(listening) == 'number' and listening > 0 then break end
  end
end
"
    };
}
pub(crate) use wake_next;

/// Passes on a wake-up nobody here wanted, if the lease (KEYS[1]) is free.
const PASS: &str = concat!(
    "if redis.call('exists', KEYS[1]) == 1 then return 0 end",
    wake_next!(),
    "return 1"
);

/// Where a store's pub/sub connections come from.
pub(crate) enum PubSubSource {
    /// Always the same server (or cluster node).
    Client(redis::Client),
    /// The primary the sentinels name when the connection is made: after a
    /// failover, the next one is made on the promoted replica.
    Sentinel(crate::sentinel::SentinelConnection),
}

impl PubSubSource {
    async fn connect(&self) -> redis::RedisResult<redis::aio::PubSub> {
        match self {
            PubSubSource::Client(client) => client.get_async_pubsub().await,
            PubSubSource::Sentinel(sentinels) => {
                sentinels.primary_client().await?.get_async_pubsub().await
            }
        }
    }
}

/// One store's wake-ups: its pub/sub connection (made on the first wait) and the
/// waiters registered on it.
pub(crate) struct WakeUps {
    /// Where pub/sub connections come from; without one, waiters poll.
    client: Option<PubSubSource>,
    /// For passing on unwanted wake-ups.
    connection: RedisConnection,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    waiters: Arc<Waiters>,
    link: tokio::sync::Mutex<Link>,
}

/// The pub/sub connection, if up, and when to try again after a failure.
#[derive(Default)]
struct Link {
    up: Option<Up>,
    retry_at: Duration,
}

struct Up {
    sink: PubSubSink,
    subscribed: HashSet<String>,
    /// False once the connection's stream ended.
    alive: Arc<AtomicBool>,
    /// Dropped with the store: ends the reading task and so the connection.
    _stop: oneshot::Sender<()>,
}

/// The waiters of a store, by channel then owner.
#[derive(Default)]
struct Waiters {
    by_channel: Mutex<HashMap<String, Channel>>,
    /// Moves on when a pub/sub connection is lost, so that its waiters subscribe
    /// again on the next.
    generation: AtomicU64,
}

#[derive(Default)]
struct Channel {
    /// The lease and the queue of the key, to pass a wake-up on.
    keys: (String, String),
    max_wait_ms: u64,
    waiting: HashMap<String, Arc<Slot>>,
}

/// Where a waiter is woken, and what a save or delete told it.
#[derive(Default)]
struct Slot {
    notify: Notify,
    /// What is stored now, from the last save (`Some`) or delete (`None`) that
    /// woke it.
    news: Mutex<Option<Option<Vec<u8>>>>,
}

/// What a wake-up message says: the lease is free (`None`), or what is stored now.
type News = Option<Option<Vec<u8>>>;

/// Splits a message into its owner, whether it is a release's, and its news:
/// `<owner>` (a release), `<owner> s<stored value>` (a sealed save), `<owner> c`
/// (a save in clear: no news, the waiter reads), `<owner> d` (a delete).
fn parse(payload: &[u8]) -> (String, bool, News) {
    let Some(space) = payload.iter().position(|&b| b == b' ') else {
        return (String::from_utf8_lossy(payload).into_owned(), true, None);
    };
    let owner = String::from_utf8_lossy(&payload[..space]).into_owned();
    let news = match payload.get(space + 1) {
        Some(b's') => Some(Some(payload[space + 2..].to_vec())),
        Some(b'd') => Some(None),
        _ => None,
    };
    (owner, false, news)
}

/// Where a waiter is woken: its channel and owner. Registered while it lives.
pub(crate) struct Waiter {
    waiters: Arc<Waiters>,
    channel: String,
    owner: String,
    slot: Arc<Slot>,
    generation: u64,
}

/// A waiter's place in its key's queue.
pub(crate) struct WaitFor<'a> {
    /// The store's channel for this key.
    pub(crate) channel: &'a str,
    /// The lease waited for, and its key's queue.
    pub(crate) keys: (&'a str, &'a str),
    /// The waiter's lease owner.
    pub(crate) owner: &'a str,
    /// How long it waits at most.
    pub(crate) max_wait_ms: u64,
}

impl WakeUps {
    pub(crate) fn new(
        client: Option<PubSubSource>,
        connection: RedisConnection,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            connection,
            timeout,
            clock,
            waiters: Arc::default(),
            link: tokio::sync::Mutex::default(),
        }
    }

    /// A waiter on `wait.channel`, without a command, if the store is subscribed to
    /// it already.
    pub(crate) fn waiter_if_subscribed(&self, wait: &WaitFor<'_>) -> Option<Waiter> {
        let link = self.link.try_lock().ok()?;
        let up = link.up.as_ref()?;
        (up.alive.load(SeqCst) && up.subscribed.contains(wait.channel)).then(|| self.register(wait))
    }

    /// A waiter on `wait.channel`: connects and subscribes first if needed, each
    /// within the store's timeout. An error when there is no pub/sub to be had (no
    /// client, or the server refused or did not answer): the waiter then polls.
    pub(crate) async fn waiter(&self, wait: &WaitFor<'_>) -> Result<Waiter, String> {
        let Some(client) = &self.client else {
            return Err("the store has no client for pub/sub".into());
        };
        let mut link = tokio::time::timeout(self.timeout, self.link.lock())
            .await
            .map_err(|_| "another waiter is still connecting".to_owned())?;
        if link.up.as_ref().is_some_and(|up| !up.alive.load(SeqCst)) {
            link.up = None;
        }
        if link.up.is_none() {
            if self.clock.monotonic() < link.retry_at {
                return Err("the last attempt to connect failed a moment ago".into());
            }
            match tokio::time::timeout(self.timeout, client.connect()).await {
                Ok(Ok(pubsub)) => link.up = Some(self.start(pubsub)),
                failed => {
                    link.retry_at = self.clock.monotonic() + RECONNECT_AFTER;
                    return Err(match failed {
                        Ok(Err(e)) => format!("could not connect: {e}"),
                        _ => format!("no connection within {:?}", self.timeout),
                    });
                }
            }
        }
        let Some(up) = link.up.as_mut() else {
            return Err("no connection".into());
        };
        if !up.subscribed.contains(wait.channel) {
            match tokio::time::timeout(self.timeout, up.sink.subscribe(wait.channel)).await {
                Ok(Ok(())) => {
                    up.subscribed.insert(wait.channel.to_owned());
                }
                failed => {
                    // Refused (an ACL without this channel?) or no answer: the
                    // store's waiters poll for a while.
                    link.up = None;
                    link.retry_at = self.clock.monotonic() + RECONNECT_AFTER;
                    return Err(match failed {
                        Ok(Err(e)) => format!("could not subscribe: {e}"),
                        _ => format!("no answer to SUBSCRIBE within {:?}", self.timeout),
                    });
                }
            }
        }
        Ok(self.register(wait))
    }

    fn register(&self, wait: &WaitFor<'_>) -> Waiter {
        let slot = Arc::new(Slot::default());
        let mut channels = self.waiters.lock();
        let channel = channels.entry(wait.channel.to_owned()).or_default();
        channel.keys = (wait.keys.0.to_owned(), wait.keys.1.to_owned());
        channel.max_wait_ms = wait.max_wait_ms;
        channel.waiting.insert(wait.owner.to_owned(), slot.clone());
        Waiter {
            waiters: self.waiters.clone(),
            channel: wait.channel.to_owned(),
            owner: wait.owner.to_owned(),
            slot,
            generation: self.waiters.generation.load(SeqCst),
        }
    }

    /// Reads the messages of a new pub/sub connection in a task of its own, which
    /// ends when the connection does or the store is dropped.
    fn start(&self, pubsub: redis::aio::PubSub) -> Up {
        let (sink, stream) = pubsub.split();
        let (stop, stopped) = oneshot::channel();
        let alive = Arc::new(AtomicBool::new(true));
        tokio::spawn(read(
            stream,
            stopped,
            alive.clone(),
            self.waiters.clone(),
            (self.connection.clone(), self.timeout),
        ));
        Up {
            sink,
            subscribed: HashSet::new(),
            alive,
            _stop: stop,
        }
    }
}

/// Wakes the waiter each message names; passes on a wake-up for a waiter that is
/// gone. When the connection ends or is given up, wakes every waiter (messages may
/// have been lost).
async fn read(
    mut stream: PubSubStream,
    mut stopped: oneshot::Receiver<()>,
    alive: Arc<AtomicBool>,
    waiters: Arc<Waiters>,
    (connection, timeout): (RedisConnection, Duration),
) {
    loop {
        let message = tokio::select! {
            // Dropped (the store is gone, or the link was given up on).
            _ = &mut stopped => None,
            message = stream.next() => message,
        };
        let Some(message) = message else { break };
        let (owner, release, news) = parse(message.get_payload_bytes());
        let gone = waiters.wake(message.get_channel_name(), &owner, news);
        // A release's wake-up is passed on (the next waiter must take the lease);
        // a save's or delete's reached every waiter, and the queue was emptied.
        if let Some((keys, max_wait_ms)) = gone.filter(|_| release) {
            let mut connection = connection.clone();
            tokio::spawn(async move {
                static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(PASS));
                let mut pass = SCRIPT.prepare_invoke();
                pass.key(&keys.0).key(&keys.1).arg("").arg(max_wait_ms);
                // Lost, the waiters behind it try again after FALLBACK.
                let _ =
                    tokio::time::timeout(timeout, pass.invoke_async::<i64>(&mut connection)).await;
            });
        }
    }
    alive.store(false, SeqCst);
    waiters.generation.fetch_add(1, SeqCst);
    tracing::debug!("the pub/sub connection for lease wake-ups ended; waiters try again");
    for channel in waiters.lock().values() {
        channel.waiting.values().for_each(|s| s.notify.notify_one());
    }
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        // Every change is one step: a panic elsewhere leaves no half-made entry.
        self.by_channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes `owner`, waiting on `channel`; if it is not waiting any more, the keys
    /// and wait limit to pass the wake-up on with.
    fn wake(&self, channel: &str, owner: &str, news: News) -> Option<((String, String), u64)> {
        let channels = self.lock();
        let channel = channels.get(channel)?;
        match channel.waiting.get(owner) {
            Some(slot) => {
                if let Some(news) = news {
                    *slot.news.lock().unwrap_or_else(PoisonError::into_inner) = Some(news);
                }
                slot.notify.notify_one();
                None
            }
            None => Some((channel.keys.clone(), channel.max_wait_ms)),
        }
    }
}

impl Waiter {
    /// Its address in the key's queue: where and whom to wake.
    pub(crate) fn address(&self) -> String {
        format!("{} {}", self.channel, self.owner)
    }

    /// Until a wake-up arrives (at once if one came since the last).
    pub(crate) async fn woken(&self) {
        self.slot.notify.notified().await;
    }

    /// What the last save or delete that woke this waiter said is stored now
    /// (`Some(None)`: deleted), taken.
    pub(crate) fn news(&self) -> News {
        self.slot
            .news
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Whether the connection it was registered on is still up.
    pub(crate) fn is_live(&self) -> bool {
        self.waiters.generation.load(SeqCst) == self.generation
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(channel) = self.waiters.lock().get_mut(&self.channel) {
            // Unless a newer registration of the same owner replaced this one.
            if channel
                .waiting
                .get(&self.owner)
                .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
            {
                channel.waiting.remove(&self.owner);
            }
        }
    }
}

impl std::fmt::Debug for WakeUps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeUps")
            .field("pubsub", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}
