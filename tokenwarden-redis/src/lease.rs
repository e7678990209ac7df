//! The Redis lease: `SET NX PX` with a random owner, and with it a fencing
//! generation from an `INCR`, in one script; released by compare-and-delete.
//!
//! The lease is not renewed: the manager's refresh timeout is never longer than
//! the lease's TTL, so a live holder is done (or has given up) before its lease
//! ends; a holder that stalls past it (a pause, a partition) finds its late save
//! refused by the fence. See `docs/design/001-fenced-leases.md`.
//!
//! A waiter is woken by the release (see [`crate::wake`]) instead of polling; a
//! store without pub/sub polls every [`POLL`].

use crate::replicas::evalsha;
use crate::replicated::Replay;
use crate::store::RedisStore;
use crate::wake::{self, WaitFor, Waiter, FALLBACK};
use async_trait::async_trait;
use std::sync::LazyLock;
use std::time::Duration;
use tokenwarden::store::LeaseGuard;
use tokenwarden::{Error, Result, TokenKey};

/// The digest a watching take carries when this store does not know what is
/// stored: no SHA-1 is written so, so the take answers with the stored token.
const UNKNOWN: &str = "sha:unknown";

/// How often a waiting instance tries to take the lease when its store has no
/// pub/sub connection.
const POLL: Duration = Duration::from_millis(25);

/// Takes the lease (KEYS[1]) if it is free and returns the key's next fence
/// (KEYS[2]) with the stored token (KEYS[3]), read in the same step so that the
/// holder need not read it again. A fence that does not exist (new, or expired with
/// its token) starts from the server's clock in microseconds, so that it never
/// repeats a generation an old, stalled holder may still carry. KEYS[5] names
/// the fence's owner (ARGV[1]), for as long as the fence lives: fenced writes
/// check it too, as a fence can be handed out twice across a failover.
///
/// Already held by this owner (the same take sent again: a cluster client
/// resends a pipeline after an I/O error), it answers as the first take did.
///
/// Else, for a caller that watches the stored token (ARGV[5] is `sha:` and the
/// SHA-1 of the token it last saw, or nothing) and finds it changed, returns
/// `{-1, stored token}` (`{-1}`: none), without taking the lease even if it is
/// free, and takes the caller out of the queue: a due refresh takes the lease
/// without reading first, and one whose token another instance already refreshed
/// gets that token from this one command.
///
/// Else, if the lease is held, returns `{0, PTTL of the lease}`, and queues the
/// waiter's address (ARGV[4], when it has one) in KEYS[4], where it keeps its
/// place until it takes the lease (or a save wakes every waiter: see `SAVE`).
const TAKE: &str = r"
local stored = redis.call('get', KEYS[3])
local held = redis.call('get', KEYS[1])
if held == ARGV[1] then
  -- Written again: a WAIT after this answer (on a new connection) counts it.
  redis.call('set', KEYS[1], ARGV[1], 'KEEPTTL')
  return {tonumber(redis.call('get', KEYS[2])), stored}
end
local digest = ''
if stored then digest = redis.sha1hex(stored) end
if ARGV[5] ~= '' and ARGV[5] ~= 'sha:' .. digest then
  if ARGV[4] ~= '' then redis.call('zrem', KEYS[4], ARGV[4]) end
  if stored then return {-1, stored} end
  return {-1}
end
if held then
  if ARGV[4] ~= '' then
    local now = redis.call('time')
    redis.call('zadd', KEYS[4], 'NX', now[1] * 1000 + math.floor(now[2] / 1000), ARGV[4])
    redis.call('pexpire', KEYS[4], ARGV[2])
  end
  return {0, redis.call('pttl', KEYS[1])}
end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[4] ~= '' then
  redis.call('zrem', KEYS[4], ARGV[4])
end
if redis.call('exists', KEYS[2]) == 0 then
  local now = redis.call('time')
  redis.call('set', KEYS[2], now[1] .. string.format('%06d', tonumber(now[2])))
end
local fence = redis.call('incr', KEYS[2])
-- Longer only (PEXPIRE's GT would do this on Redis 7; this works on 6 too).
local left = redis.call('pttl', KEYS[2])
if left >= 0 and left < tonumber(ARGV[3]) or left == -1 then
  redis.call('pexpire', KEYS[2], ARGV[3])
end
redis.call('set', KEYS[5], ARGV[1], 'PX', math.max(redis.call('pttl', KEYS[2]), 1))
return {fence, stored}
";

/// Releases the lease (KEYS[1]) if ARGV[1] still holds it, and wakes the waiter
/// first in the queue (KEYS[2]).
const RELEASE: &str = concat!(
    "if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('del', KEYS[1])",
    wake::wake_next!(),
    "return 1"
);

static RELEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RELEASE));
static TAKE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(TAKE));

/// Releases the lease `name` (with its queue `waiters`) if `owner` holds it: 1
/// if it did.
async fn release_as(
    store: &RedisStore,
    connection: &crate::RedisConnection,
    (name, waiters): (&str, &str),
    owner: &str,
    ttl_ms: u64,
) -> Result<i64> {
    let mut connection = connection.clone();
    let mut script = RELEASE_SCRIPT.key(name);
    script.key(waiters).arg(owner).arg(ttl_ms);
    store
        .command("release the lease", script.invoke_async(&mut connection))
        .await
}

/// What the take script answered.
enum Answer {
    Taken {
        fence: u64,
        stored: Option<Vec<u8>>,
    },
    /// Held by another, for this long more if Redis said.
    Held(Option<Duration>),
    /// Held, and the stored token is no longer the one this waiter saw.
    Changed(Option<Vec<u8>>),
}

impl Answer {
    fn parse(value: redis::Value) -> Option<Self> {
        let redis::Value::Array(fields) = value else {
            return None;
        };
        let mut fields = fields.into_iter();
        let redis::Value::Int(first) = fields.next()? else {
            return None;
        };
        let bytes = |value: Option<redis::Value>| match value {
            None | Some(redis::Value::Nil) => Some(None),
            Some(redis::Value::BulkString(bytes)) => Some(Some(bytes)),
            Some(_) => None,
        };
        Some(match first {
            -1 => Answer::Changed(bytes(fields.next())?),
            0 => {
                let redis::Value::Int(pttl) = fields.next()? else {
                    return None;
                };
                Answer::Held(u64::try_from(pttl).ok().map(Duration::from_millis))
            }
            fence => Answer::Taken {
                fence: u64::try_from(fence).ok()?,
                stored: bytes(fields.next())?,
            },
        })
    }
}

/// How a wait for the lease ended.
pub(crate) enum Taken {
    Lease(RedisLease),
    /// The stored token changed while the waiter watched it: what is stored now.
    Changed(Option<Vec<u8>>),
}

/// A held lease.
#[derive(Debug)]
pub(crate) struct RedisLease {
    store: RedisStore,
    name: String,
    /// The key's queue of waiters, woken on release.
    waiters: String,
    owner: String,
    fence: u64,
    ttl_ms: u64,
    /// When the lease surely ends, on the store clock's monotonic time: measured
    /// from before the `SET` was sent, so never later than Redis's own view.
    until: Duration,
    released: bool,
    /// Granted after another instance's lease ended.
    contended: bool,
}

impl RedisLease {
    /// Waits until this instance holds the lease of `key`, or `ttl` passed (then
    /// the holder is stuck or Redis is away, and an error says so).
    ///
    /// A failed attempt queues this waiter; it tries again when woken (the holder
    /// released, or stored a token), when the holder's lease would have expired,
    /// after [`FALLBACK`] (a wake-up lost), or, without pub/sub, every [`POLL`].
    /// With `watch`, the wait also ends when the stored token is no longer the one
    /// the first attempt saw.
    pub(crate) async fn take(
        store: &RedisStore,
        key: &TokenKey,
        ttl: Duration,
        watch: bool,
    ) -> Result<Taken> {
        let name = store.redis_key(key, ":lease");
        let fence_key = store.redis_key(key, ":fence");
        let token_key = store.redis_key(key, "");
        let waiters = store.redis_key(key, ":waiters");
        let channel = store.wake_channel(key);
        let owner = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(100);
        let fence_ttl_ms = store.fence_ttl_ms(ttl_ms);
        let wait = WaitFor {
            channel: &channel,
            keys: (&name, &waiters),
            owner: &owner,
            max_wait_ms: ttl_ms,
        };
        let wake_ups = store.wake_ups();
        let clock = store.clock();
        let give_up_at = clock.monotonic() + ttl;
        // Registered before the first attempt when that costs no command.
        let mut waiter: Option<Waiter> = wake_ups.waiter_if_subscribed(&wait);
        let mut polling = false;
        // Whether another instance held the lease when this one asked.
        let mut contended = false;
        // What the caller last saw stored (`sha:<digest>`): what this store last
        // read or wrote. Not known (a new store, or a write whose outcome is not):
        // a digest that matches nothing, so that the take answers with what is
        // stored, as a read would, and takes no lease on a guess.
        let seen = match watch {
            true => (store.inner.last_seen.get(&token_key)).unwrap_or_else(|| UNKNOWN.to_owned()),
            false => String::new(),
        };
        loop {
            let asked_at = clock.monotonic();
            let address = waiter.as_ref().map(Waiter::address).unwrap_or_default();
            let holder = store.redis_key(key, ":holder");
            let keys = [&name, &fence_key, &token_key, &waiters, &holder];
            let mut take = evalsha(&TAKE_SCRIPT, &keys.map(String::as_str));
            take.arg(&owner)
                .arg(ttl_ms)
                .arg(fence_ttl_ms)
                .arg(address)
                .arg(&seen);
            // The lease reaches the replicas before its refresh is sent: a
            // primary that dies in the refresh leaves it (and its fence) on the
            // replica promoted, so that no other instance spends the same
            // refresh token meanwhile (docs/design/004). One that does not reach
            // them in time is used all the same (counted and logged: the replica
            // is away, and not one a failover would pick). A failed wait may have
            // taken the lease: it is given up.
            let taken = store
                .write_and_wait(
                    "take the lease",
                    &name,
                    (take, Some(TAKE), Replay::Allowed),
                    true,
                )
                .await;
            let (answer, short): (redis::Value, _) = match taken {
                Ok(taken) => taken,
                Err(error) => {
                    // On the write connection, behind the take: a release sent
                    // on the other one could run before a take still queued.
                    let writes = &store.inner.writes;
                    let _ = release_as(store, writes, (&name, &waiters), &owner, ttl_ms).await;
                    return Err(error);
                }
            };
            let held_for = match Answer::parse(answer) {
                Some(Answer::Taken { fence, stored }) => {
                    if let Some(short) = short {
                        store.fell_short(&name, "lease", &short);
                    }
                    let until = asked_at + Duration::from_millis(ttl_ms);
                    store.remember_read(&token_key, &owner, until, stored);
                    let lease = Self {
                        store: store.clone(),
                        name,
                        waiters,
                        owner,
                        fence,
                        ttl_ms,
                        until,
                        released: false,
                        contended,
                    };
                    return Ok(Taken::Lease(lease));
                }
                Some(Answer::Changed(stored)) => return Ok(Taken::Changed(stored)),
                Some(Answer::Held(held_for)) => {
                    contended = true;
                    held_for
                }
                None => {
                    return Err(store.error("take the lease", "unexpected answer from the script"))
                }
            };
            let now = clock.monotonic();
            if now >= give_up_at {
                return Err(store.error(
                    "take the lease",
                    format!("`{name}` stayed held for {ttl:?}: another instance is refreshing, or is stuck"),
                ));
            }
            if waiter.as_ref().is_some_and(|w| !w.is_live()) {
                // Its pub/sub connection was lost: subscribe again on a new one.
                waiter = None;
            }
            if waiter.is_none() && !polling {
                match wake_ups.waiter(&wait).await {
                    Ok(registered) => {
                        // Queued by the next attempt, made at once.
                        waiter = Some(registered);
                        continue;
                    }
                    Err(why) => {
                        tracing::debug!(store = %store.inner.name, %why, "no lease wake-ups: polling");
                        polling = true;
                    }
                }
            }
            let left = give_up_at.saturating_sub(clock.monotonic());
            match &waiter {
                Some(waiter) => {
                    // The holder's lease ends at the latest `held_for` after the
                    // answer came; a holder that died releases nothing.
                    let expiry = held_for.map_or(FALLBACK, |d| {
                        (now + d + Duration::from_millis(1)).saturating_sub(clock.monotonic())
                    });
                    tokio::select! {
                        () = waiter.woken() => {
                            // A save or delete said what is stored now.
                            if let Some(stored) = waiter.news().filter(|_| watch) {
                                return Ok(Taken::Changed(stored));
                            }
                        }
                        () = tokio::time::sleep(expiry.min(FALLBACK).min(left)) => {}
                    }
                }
                None => tokio::time::sleep(POLL.min(left)).await,
            }
        }
    }

    async fn end(&mut self) -> Result<bool> {
        self.released = true;
        self.store.forget_read(&self.owner);
        let (store, keys) = (&self.store, (self.name.as_str(), self.waiters.as_str()));
        let release = release_as(
            store,
            &store.inner.connection,
            keys,
            &self.owner,
            self.ttl_ms,
        );
        Ok(release.await? == 1)
    }
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        // A lease dropped unreleased (a refresh cut off by its timeout) is given up
        // at once where a runtime can do it, rather than left to expire.
        if self.released {
            return;
        }
        self.store.forget_read(&self.owner);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let mut lease = Self {
                store: self.store.clone(),
                name: std::mem::take(&mut self.name),
                waiters: std::mem::take(&mut self.waiters),
                owner: std::mem::take(&mut self.owner),
                fence: self.fence,
                ttl_ms: self.ttl_ms,
                until: self.until,
                // Released by the task; and if the task is dropped unrun (its
                // runtime shutting down), not spawned again from this drop, which
                // would recurse until the stack overflows. It then expires.
                released: true,
                contended: self.contended,
            };
            runtime.spawn(async move {
                let _ = lease.end().await;
            });
        }
    }
}

#[async_trait]
impl LeaseGuard for RedisLease {
    async fn release(mut self: Box<Self>) -> Result<()> {
        if self.end().await? {
            Ok(())
        } else {
            Err(Error::lease_lost(
                tokenwarden::TokenStore::name(&self.store),
                format!(
                    "lease {} of `{}` had expired before it was released",
                    self.fence, self.name
                ),
            ))
        }
    }

    fn fence(&self) -> u64 {
        self.fence
    }

    fn held_for(&self) -> Option<Duration> {
        Some(self.until.saturating_sub(self.store.clock().monotonic()))
    }

    fn holder(&self) -> Option<&str> {
        Some(&self.owner)
    }

    fn contended(&self) -> bool {
        self.contended
    }
}
