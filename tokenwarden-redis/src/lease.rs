//! The Redis lease: `SET NX PX` with a random owner, and with it a fencing
//! generation from an `INCR`, in one script; released by compare-and-delete.
//!
//! The lease is not renewed: the manager's refresh timeout is never longer than
//! the lease's TTL, so a live holder is done (or has given up) before its lease
//! ends; a holder that stalls past it (a pause, a partition) finds its late save
//! refused by the fence. See `docs/design/001-fenced-leases.md`.

use crate::store::RedisStore;
use async_trait::async_trait;
use std::sync::LazyLock;
use std::time::Duration;
use tokenwarden::store::LeaseGuard;
use tokenwarden::{Error, Result, TokenKey};

/// How often a waiting instance tries to take the lease.
const POLL: Duration = Duration::from_millis(25);

/// Takes the lease (KEYS[1]) if it is free and returns the key's next fence
/// (KEYS[2]), else `false`. A fence that does not exist (new, or expired with its
/// token) starts from the server's clock in microseconds, so that it never
/// repeats a generation an old, stalled holder may still carry.
const TAKE: &str = r"
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
if redis.call('exists', KEYS[2]) == 0 then
  local now = redis.call('time')
  redis.call('set', KEYS[2], now[1] .. string.format('%06d', tonumber(now[2])))
end
local fence = redis.call('incr', KEYS[2])
redis.call('pexpire', KEYS[2], ARGV[3], 'GT')
if redis.call('pttl', KEYS[2]) < 0 then
  redis.call('pexpire', KEYS[2], ARGV[3])
end
return fence
";

static RELEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end",
    )
});

/// A held lease.
#[derive(Debug)]
pub(crate) struct RedisLease {
    store: RedisStore,
    name: String,
    owner: String,
    fence: u64,
    /// When the lease surely ends, on the store clock's monotonic time: measured
    /// from before the `SET` was sent, so never later than Redis's own view.
    until: Duration,
    released: bool,
}

impl RedisLease {
    /// Waits until this instance holds the lease of `key`, or `ttl` passed (then
    /// the holder is stuck or Redis is away, and an error says so).
    pub(crate) async fn take(store: &RedisStore, key: &TokenKey, ttl: Duration) -> Result<Self> {
        let name = store.redis_key(key, ":lease");
        let fence_key = store.redis_key(key, ":fence");
        let owner = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(100);
        let fence_ttl_ms = store.fence_ttl_ms(ttl_ms);
        let clock = store.clock();
        let give_up_at = clock.monotonic() + ttl;
        static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(TAKE));
        let script = &*SCRIPT;
        loop {
            let asked_at = clock.monotonic();
            let mut connection = store.inner.connection.clone();
            let taken: Option<u64> = store
                .command(
                    "take the lease",
                    script
                        .key(&name)
                        .key(&fence_key)
                        .arg(&owner)
                        .arg(ttl_ms)
                        .arg(fence_ttl_ms)
                        .invoke_async(&mut connection),
                )
                .await?;
            if let Some(fence) = taken {
                return Ok(Self {
                    store: store.clone(),
                    name,
                    owner,
                    fence,
                    until: asked_at + Duration::from_millis(ttl_ms),
                    released: false,
                });
            }
            if clock.monotonic() >= give_up_at {
                return Err(store.error(
                    "take the lease",
                    format!("`{name}` stayed held for {ttl:?}: another instance is refreshing, or is stuck"),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn end(&mut self) -> Result<bool> {
        self.released = true;
        let mut connection = self.store.inner.connection.clone();
        let deleted: i64 = self
            .store
            .command(
                "release the lease",
                RELEASE_SCRIPT
                    .key(&self.name)
                    .arg(&self.owner)
                    .invoke_async(&mut connection),
            )
            .await?;
        Ok(deleted == 1)
    }
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        // A lease dropped unreleased (a refresh cut off by its timeout) is given up
        // at once where a runtime can do it, rather than left to expire.
        if self.released {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let mut lease = Self {
                store: self.store.clone(),
                name: std::mem::take(&mut self.name),
                owner: std::mem::take(&mut self.owner),
                fence: self.fence,
                until: self.until,
                released: false,
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
}
