//! The Redis lease: `SET NX PX` with a random owner, renewed while held, released
//! by compare-and-delete, so that one instance of many refreshes a key.

use crate::connection::RedisConnection;
use crate::store::RedisStore;
use async_trait::async_trait;
use std::time::Duration;
use tokenwarden::store::LeaseGuard;
use tokenwarden::{Result, TokenKey};

/// How often a waiting instance tries to take the lease.
const POLL: Duration = Duration::from_millis(25);

const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// A held lease. Renewed every third of its TTL by a task that ends with it.
#[derive(Debug)]
pub(crate) struct RedisLease {
    connection: RedisConnection,
    name: String,
    owner: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl RedisLease {
    /// Waits until this instance holds the lease of `key` (or `ttl` passed: then the
    /// holder is presumed dead or stuck, and an error says so).
    pub(crate) async fn take(store: &RedisStore, key: &TokenKey, ttl: Duration) -> Result<Self> {
        let name = store.redis_key(key, ":lease");
        let owner = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(100);
        let mut polls_left = ttl.as_millis() / POLL.as_millis() + 1;
        loop {
            let mut connection = store.inner.connection.clone();
            let set = redis::cmd("SET")
                .arg(&name)
                .arg(&owner)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .to_owned();
            let taken: Option<String> = store
                .command("take the lease", set.query_async(&mut connection))
                .await?;
            if taken.is_some() {
                return Ok(Self::held(store, name, owner, ttl_ms));
            }
            if polls_left == 0 {
                return Err(store.error(
                    "take the lease",
                    format!("`{name}` stayed held for {ttl:?}; refreshing without it"),
                ));
            }
            polls_left -= 1;
            tokio::time::sleep(POLL).await;
        }
    }

    fn held(store: &RedisStore, name: String, owner: String, ttl_ms: u64) -> Self {
        let connection = store.inner.connection.clone();
        let renewal = {
            let (mut connection, name, owner) = (connection.clone(), name.clone(), owner.clone());
            tokio::spawn(async move {
                let script = redis::Script::new(RENEW);
                loop {
                    tokio::time::sleep(Duration::from_millis(ttl_ms / 3)).await;
                    let renewed: redis::RedisResult<i64> = script
                        .key(&name)
                        .arg(&owner)
                        .arg(ttl_ms)
                        .invoke_async(&mut connection)
                        .await;
                    if !matches!(renewed, Ok(1)) {
                        return; // lost (expired, or Redis away): stop renewing
                    }
                }
            })
        };
        Self {
            connection,
            name,
            owner,
            renewal,
        }
    }
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        // Without a release the lease simply expires: no renewals past this point.
        self.renewal.abort();
    }
}

#[async_trait]
impl LeaseGuard for RedisLease {
    async fn release(self: Box<Self>) -> Result<()> {
        self.renewal.abort();
        let mut connection = self.connection.clone();
        let released: redis::RedisResult<i64> = redis::Script::new(RELEASE)
            .key(&self.name)
            .arg(&self.owner)
            .invoke_async(&mut connection)
            .await;
        released.map(drop).map_err(|e| {
            tokenwarden::Error::store(
                "redis",
                format!(
                    "could not release the lease `{}`: {e}; it will expire",
                    self.name
                ),
            )
        })
    }
}
