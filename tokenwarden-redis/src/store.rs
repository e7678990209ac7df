//! [`RedisStore`]: tokens as JSON (or sealed) under `<prefix>:{<key>}`, kept as long
//! as their refresh token can be used, and written under fenced leases.

use crate::connection::RedisConnection;
use crate::lease::{RedisLease, Taken};
use crate::leased_read::LeasedReads;
use crate::replicas::{evalsha, Short};
use crate::replicated::Replay;
use crate::wake::WakeUps;
use async_trait::async_trait;
use redis::AsyncCommands as _;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokenwarden::store::{Lease, LeaseWait, TokenStore};
use tokenwarden::{Clock, Error, Result, Token, TokenKey};

/// Lua: wakes every waiter queued in KEYS[3] and empties the queue, telling each
/// what changed (`news`): `<owner> s<stored value>` after a save by a store that
/// seals its tokens (a waiter that any new token will do takes it from the
/// message, without another command), `<owner> c` after a save in clear (the token
/// is not sent over pub/sub, whose ACLs are not the keys': the waiter reads it
/// with its next attempt), `<owner> d` after a delete. A waiter that still needs
/// the lease queues again. Part of `SAVE` and `DELETE`.
macro_rules! wake_all {
    () => {
        r"
local waiting = redis.call('zrange', KEYS[3], 0, -1)
redis.call('del', KEYS[3])
for _, address in ipairs(waiting) do
  local channel, owner = string.match(address, '^(.*) ([^ ]+)$')
  if channel then redis.pcall('publish', channel, owner .. ' ' .. news) end
end
"
    };
}

/// Whether the key's fence (KEYS[2]) is still the writer's lease's (ARGV[1]),
/// given to its owner (ARGV[5]) as KEYS[4] names (a fence taken by an older
/// version names none): else the script returns 0. Part of `SAVE` and `DELETE`.
macro_rules! fenced {
    () => {
        r"
if redis.call('get', KEYS[2]) ~= ARGV[1] then
  return 0
end
local holder = redis.call('get', KEYS[4])
if holder and holder ~= ARGV[5] then
  return 0
end
"
    };
}

/// Saves the token (KEYS[1]) if the writer's lease is still the key's latest
/// (`fenced`); keeps the fence and its owner at least as long as the token.
const SAVE: &str = concat!(
    fenced!(),
    r"
redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
local left = redis.call('pttl', KEYS[2])
if left >= 0 and left < tonumber(ARGV[3]) then
  redis.call('pexpire', KEYS[2], ARGV[3])
  redis.call('pexpire', KEYS[4], ARGV[3])
end
local news = 'c'
if ARGV[4] == '1' then news = 's' .. ARGV[2] end",
    wake_all!(),
    "return 1"
);

/// Deletes the token (KEYS[1]) if the writer's lease is still the key's latest
/// (`fenced`).
const DELETE: &str = concat!(
    fenced!(),
    r"
redis.call('del', KEYS[1])
local news = 'd'",
    wake_all!(),
    "return 1"
);

static SAVE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SAVE));
static DELETE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(DELETE));

/// A token store in Redis, shared by every instance that uses the same prefix.
///
/// Its [`lease`](TokenStore::lease) waits without polling: a waiter is queued
/// and woken by pub/sub when the holder releases, or tries again when the
/// holder's lease would have expired or after 1 s without news; without a pub/sub
/// connection ([`RedisStoreBuilder::pubsub`](crate::RedisStoreBuilder::pubsub)) it polls every 25 ms. See the crate
/// docs.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) connection: RedisConnection,
    pub(crate) prefix: String,
    pub(crate) name: String,
    pub(crate) timeout: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) retention: Duration,
    #[cfg(feature = "encryption")]
    pub(crate) cipher: Option<tokenwarden::store::TokenCipher>,
    /// This store's part of its wake-up channels' names: random.
    pub(crate) id: String,
    pub(crate) wake_ups: WakeUps,
    pub(crate) leased_reads: LeasedReads,
    /// What this store last read or wrote under each key (a hint for the take).
    pub(crate) last_seen: crate::last_seen::LastSeen,
    /// The entries this instance last found holding a value it cannot read
    /// (sealed with another key, or not sealed when this one seals): it does
    /// not write over them.
    pub(crate) unreadable: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The connection of the writes that wait for replicas (a `WAIT` blocks
    /// its connection): a second one where the store made its connections.
    pub(crate) writes: RedisConnection,
    /// Replicas that their primary shows away, not waited for meanwhile.
    pub(crate) health: crate::replicas::ReplicaHealth,
    /// The replicas a save of a token with a refresh token waits for, and how long.
    pub(crate) replicas: u32,
    pub(crate) replica_timeout: Duration,
    /// Saves that reached fewer replicas than that in time.
    pub(crate) unreplicated: std::sync::atomic::AtomicU64,
}

/// How a sealed token starts (`TokenCipher`'s format).
#[cfg(feature = "encryption")]
const SEALED_MAGIC: &[u8] = b"TWTK";

impl RedisStore {
    /// How many writes reached fewer replicas than they waited for
    /// ([`RedisStoreBuilder::replicas`](crate::RedisStoreBuilder::replicas)): saves
    /// (each was kept on the primary and failed, so that the manager saves it
    /// again) and leases taken (each was used: its holder refreshed).
    pub fn unreplicated_saves(&self) -> u64 {
        self.inner
            .unreplicated
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// An error for a save of `name` whose wait for the replicas fell `short`.
    fn unreplicated(&self, name: &str, short: Option<Short>) -> Result<()> {
        let Some(short) = short else {
            return Ok(());
        };
        self.fell_short(name, "saved token", &short);
        Err(Error::unconfirmed_write(
            &self.inner.name,
            format!(
                "`{name}` was saved on the primary but {short}: kept, and saved again until they \
                 have it (a failover before then could bring back the refresh token it replaced)"
            ),
        ))
    }

    /// The prefix of this store's Redis keys.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The Redis key of `key`'s token (`suffix` empty), lease or fence. The token
    /// key is a hash tag, so that all of them live in one Redis Cluster slot and
    /// the scripts that touch several of them can run there.
    pub(crate) fn redis_key(&self, key: &TokenKey, suffix: &str) -> String {
        format!("{}:{{{}}}{suffix}", self.inner.prefix, key.as_str())
    }

    /// The channel on which this store's waiters for `key` are woken. It carries
    /// the key's hash tag, so that sharded pub/sub (`SPUBLISH`) can deliver it on
    /// Redis Cluster, and this store's id, so that a release wakes one instance.
    pub(crate) fn wake_channel(&self, key: &TokenKey) -> String {
        self.redis_key(key, &format!(":wake:{}", self.inner.id))
    }

    pub(crate) fn wake_ups(&self) -> &WakeUps {
        &self.inner.wake_ups
    }

    /// Keeps the value read with `owner`'s new lease for the next
    /// [`load`](TokenStore::load), and notes whether this instance can read it:
    /// a save under the lease (`set_tokens` saves without loading first) must not
    /// write over a value it cannot read, whatever this instance read before.
    pub(crate) fn remember_read(
        &self,
        name: &str,
        owner: &str,
        until: Duration,
        stored: Option<Vec<u8>>,
    ) {
        match &stored {
            Some(bytes) => {
                let _ = self.decode(name, bytes);
            }
            None => self.forget_unreadable(name),
        }
        self.inner.last_seen.note(name, stored.as_deref());
        self.inner.leased_reads.remember(name, owner, until, stored);
    }

    /// Forgets the value read with `owner`'s lease, which ends.
    pub(crate) fn forget_read(&self, owner: &str) {
        self.inner.leased_reads.forget_lease(owner);
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    /// How long a fence outlives a lease: as long as a token may be kept, so that a
    /// fence never restarts under a holder that stalled.
    pub(crate) fn fence_ttl_ms(&self, lease_ttl_ms: u64) -> u64 {
        millis(self.inner.retention).saturating_add(lease_ttl_ms)
    }

    pub(crate) fn error(&self, action: &str, error: impl std::fmt::Display) -> Error {
        Error::store(
            &self.inner.name,
            format!("could not {action}: {error}; is Redis up?"),
        )
    }

    /// Runs a Redis command with the store's timeout.
    pub(crate) async fn command<T>(
        &self,
        action: &str,
        command: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.inner.timeout, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(action, e)),
            Err(_) => Err(self.error(action, format!("no answer within {:?}", self.inner.timeout))),
        }
    }

    /// The stored form of `token`: sealed when the store has a cipher, else JSON.
    fn encode(&self, name: &str, token: &Token) -> Result<Vec<u8>> {
        #[cfg(feature = "encryption")]
        if let Some(cipher) = &self.inner.cipher {
            return cipher.seal(name, token);
        }
        let _ = name;
        serde_json::to_vec(token).map_err(|e| self.error("encode the token", e))
    }

    /// The token in a stored value; an entry whose value cannot be read is
    /// remembered, so that no save of this instance replaces it.
    fn decode(&self, name: &str, bytes: &[u8]) -> Result<Token> {
        let decoded = self.decode_value(name, bytes);
        // A value that is not sealed at all, where this store seals (written in
        // clear by an earlier build, or an instance without the key), is no
        // one's protected token: sealing over it is the migration.
        #[cfg(feature = "encryption")]
        let unsealed = self.inner.cipher.is_some() && !bytes.starts_with(SEALED_MAGIC);
        #[cfg(not(feature = "encryption"))]
        let unsealed = false;
        let mut unreadable = self
            .inner
            .unreadable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match decoded.is_ok() || unsealed {
            true => unreadable.remove(name),
            false => unreadable.insert(name.to_owned()),
        };
        decoded
    }

    /// Refuses to write over `name` if it holds a value this instance could not
    /// read when it last looked (and still cannot): another instance's token,
    /// sealed with a key this one lacks. Overwriting it would take the token (and
    /// its refresh token) from every instance that can read it, for one that is
    /// misconfigured. Free unless such a value was seen: then one read.
    async fn keep_unreadable(&self, name: &str) -> Result<()> {
        let seen = self
            .inner
            .unreadable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(name);
        if !seen {
            return Ok(());
        }
        let mut connection = self.inner.connection.clone();
        let current = self
            .command("read the token", connection.get::<_, Option<Vec<u8>>>(name))
            .await?;
        match current.map(|bytes| self.decode(name, &bytes)) {
            Some(Err(why)) => Err(Error::store(
                &self.inner.name,
                format!(
                    "not saved: `{name}` holds a token this instance cannot read, and it is kept for \
                     those that can ({why}); if every instance now has a new key, remove the entry \
                     (`tokenwarden logout --force`, or DEL it)"
                ),
            )
            .with_transient(false)),
            _ => {
                self.forget_unreadable(name);
                Ok(())
            }
        }
    }

    fn forget_unreadable(&self, name: &str) {
        self.inner
            .unreadable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
    }

    fn decode_value(&self, name: &str, bytes: &[u8]) -> Result<Token> {
        #[cfg(feature = "encryption")]
        if let Some(cipher) = &self.inner.cipher {
            return cipher.open(name, bytes).map_err(|why| {
                Error::store(
                    &self.inner.name,
                    format!("`{name}` cannot be read: {why}; every instance sharing the prefix needs the same key"),
                )
                .with_transient(false)
            });
        }
        serde_json::from_slice(bytes).map_err(|_| {
            Error::store(
                &self.inner.name,
                format!("`{name}` holds no token (encrypted by an instance with a key, or another program's value?); it is ignored"),
            )
            .with_transient(false)
        })
    }

    /// How long Redis keeps `token`: as long as its refresh token can be used
    /// (what the server said, else the retention), or without one as long as the
    /// access token. At least a second, so that a token saved just before its end
    /// is not lost to rounding.
    fn ttl_ms(&self, token: &Token) -> u64 {
        let now = self.inner.clock.now();
        let left = |until: std::time::SystemTime| until.duration_since(now).unwrap_or_default();
        let access = token.expires_at.map(left);
        let keep = match &token.refresh_token {
            Some(_) => {
                let refresh = token
                    .refresh_expires_at()
                    .map_or(self.inner.retention, left);
                refresh.max(access.unwrap_or_default())
            }
            None => access.unwrap_or(self.inner.retention),
        };
        millis(keep).max(1_000)
    }

    /// Runs a fenced script (`SAVE` or `DELETE`) for `key` under `lease`, and
    /// waits for the replicas if `wait`: how that fell short, if it did.
    async fn fenced(
        &self,
        action: &str,
        (script, source): (&redis::Script, &str),
        key: &TokenKey,
        lease: &Lease,
        (value, ttl, wait): (&[u8], u64, bool),
    ) -> Result<Option<Short>> {
        let Some(fence) = lease.fence() else {
            return Err(Error::lease_lost(
                &self.inner.name,
                format!("could not {action}: no lease was held"),
            ));
        };
        let name = self.redis_key(key, "");
        self.inner.leased_reads.forget(&name);
        self.inner.last_seen.forget(&name);
        let keys = [":fence", ":waiters", ":holder"].map(|suffix| self.redis_key(key, suffix));
        let mut write = evalsha(script, &[&name, &keys[0], &keys[1], &keys[2]]);
        let Some(owner) = lease.holder() else {
            return Err(Error::lease_lost(
                &self.inner.name,
                format!("could not {action}: the lease is not one of a Redis store"),
            ));
        };
        write
            .arg(fence.to_string())
            .arg(value)
            .arg(ttl)
            .arg(if self.seals() { "1" } else { "0" })
            .arg(owner);
        let (written, short): (i64, _) = self
            .write_and_wait(action, &name, (write, Some(source), Replay::Once), wait)
            .await?;
        if written == 1 {
            // A delete writes nothing: `value` is empty.
            let written = Some(value).filter(|v| !v.is_empty());
            self.inner.last_seen.note(&name, written);
            return Ok(short);
        }
        Err(Error::lease_lost(
            &self.inner.name,
            format!("could not {action}: lease {fence} of `{name}` was superseded by a newer one"),
        ))
    }
}

impl RedisStore {
    /// Whether tokens are sealed before they are stored (a cipher is set).
    fn seals(&self) -> bool {
        #[cfg(feature = "encryption")]
        return self.inner.cipher.is_some();
        #[cfg(not(feature = "encryption"))]
        false
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn load(&self, key: &TokenKey) -> Result<Option<Token>> {
        let name = self.redis_key(key, "");
        let now = self.inner.clock.monotonic();
        let value = match self.inner.leased_reads.take(&name, now) {
            Some(read_with_the_lease) => read_with_the_lease,
            None => {
                let mut connection = self.inner.connection.clone();
                self.command(
                    "read the token",
                    connection.get::<_, Option<Vec<u8>>>(&name),
                )
                .await?
            }
        };
        if value.is_none() {
            self.forget_unreadable(&name);
        }
        self.inner.last_seen.note(&name, value.as_deref());
        value.map(|bytes| self.decode(&name, &bytes)).transpose()
    }

    async fn save(&self, key: &TokenKey, token: &Token) -> Result<()> {
        let name = self.redis_key(key, "");
        self.inner.leased_reads.forget(&name);
        self.keep_unreadable(&name).await?;
        let value = self.encode(&name, token)?;
        let mut write = redis::cmd("PSETEX");
        write.arg(&name).arg(self.ttl_ms(token)).arg(&value);
        let wait = token.refresh_token.is_some();
        self.inner.last_seen.forget(&name);
        let ((), short) = self
            .write_and_wait("save the token", &name, (write, None, Replay::Once), wait)
            .await?;
        self.inner.last_seen.note(&name, Some(&value));
        self.unreplicated(&name, short)
    }

    async fn delete(&self, key: &TokenKey) -> Result<()> {
        let mut connection = self.inner.connection.clone();
        let name = self.redis_key(key, "");
        self.inner.leased_reads.forget(&name);
        self.inner.last_seen.forget(&name);
        self.command("delete the token", connection.del::<_, ()>(&name))
            .await?;
        self.inner.last_seen.note(&name, None);
        Ok(())
    }

    async fn lease(&self, key: &TokenKey, ttl: Duration) -> Result<Lease> {
        match RedisLease::take(self, key, ttl, false).await? {
            Taken::Lease(lease) => Ok(Lease::new(lease)),
            Taken::Changed(_) => {
                Err(self.error("take the lease", "unexpected answer from the script"))
            }
        }
    }

    async fn lease_unless_changed(&self, key: &TokenKey, ttl: Duration) -> Result<LeaseWait> {
        match RedisLease::take(self, key, ttl, true).await? {
            Taken::Lease(lease) => Ok(LeaseWait::Held(Lease::new(lease))),
            Taken::Changed(stored) => {
                let name = self.redis_key(key, "");
                self.inner.last_seen.note(&name, stored.as_deref());
                match stored.map(|bytes| self.decode(&name, &bytes)).transpose() {
                    Ok(token) => Ok(LeaseWait::Changed(token)),
                    // What cannot be read is for the lease's holder to handle,
                    // as if no change had been seen.
                    Err(_) => self.lease(key, ttl).await.map(LeaseWait::Held),
                }
            }
        }
    }

    /// `true`: a take answers with the stored token, without the lease, when it is
    /// not the one this store last read or wrote (see `last_seen`).
    fn leases_see_changes(&self) -> bool {
        true
    }

    async fn save_leased(&self, key: &TokenKey, token: &Token, lease: &Lease) -> Result<()> {
        self.keep_unreadable(&self.redis_key(key, "")).await?;
        let value = self.encode(&self.redis_key(key, ""), token)?;
        let (ttl, wait) = (self.ttl_ms(token), token.refresh_token.is_some());
        let short = self
            .fenced(
                "save the token",
                (&SAVE_SCRIPT, SAVE),
                key,
                lease,
                (&value, ttl, wait),
            )
            .await?;
        self.unreplicated(&self.redis_key(key, ""), short)
    }

    async fn delete_leased(&self, key: &TokenKey, lease: &Lease) -> Result<()> {
        self.fenced(
            "delete the token",
            (&DELETE_SCRIPT, DELETE),
            key,
            lease,
            (&[], 0, false),
        )
        .await
        .map(drop)
    }

    fn name(&self) -> &str {
        &self.inner.name
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}
