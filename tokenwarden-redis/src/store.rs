//! [`RedisStore`]: tokens as JSON (or sealed) under `<prefix>:{<key>}`, kept as long
//! as their refresh token can be used, and written under fenced leases.

use crate::connection::RedisConnection;
use crate::lease::RedisLease;
use async_trait::async_trait;
use redis::AsyncCommands as _;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokenwarden::store::{Lease, TokenStore};
use tokenwarden::{Clock, Error, Result, SystemClock, Token, TokenKey};

/// The longest any Redis command may take: 2 s.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a token with a refresh token is kept when the server did not say how
/// long the refresh token lives (`refresh_expires_in`): 30 days.
pub const DEFAULT_REFRESH_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Saves the token (KEYS[1]) if the key's fence (KEYS[2]) is still the writer's
/// lease's (ARGV[1]); keeps the fence at least as long as the token.
const SAVE: &str = r"
if redis.call('get', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('pexpire', KEYS[2], ARGV[3], 'GT')
return 1
";

/// Deletes the token (KEYS[1]) if the key's fence (KEYS[2]) is the writer's.
const DELETE: &str = r"
if redis.call('get', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('del', KEYS[1])
return 1
";

/// A token store in Redis, shared by every instance that uses the same prefix.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) connection: RedisConnection,
    prefix: String,
    pub(crate) name: String,
    pub(crate) timeout: Duration,
    clock: Arc<dyn Clock>,
    retention: Duration,
    #[cfg(feature = "encryption")]
    cipher: Option<tokenwarden::store::TokenCipher>,
}

/// Where a builder's connection comes from.
enum Target {
    Url(String),
    Connection(RedisConnection),
}

/// Builds a [`RedisStore`]. Made by [`RedisStore::builder`] or
/// [`RedisStore::with_connection`].
pub struct RedisStoreBuilder {
    target: Target,
    prefix: String,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    retention: Duration,
    #[cfg(feature = "encryption")]
    cipher: Option<tokenwarden::store::TokenCipher>,
}

impl RedisStore {
    /// Starts building a store on the Redis at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        Self::builder_for(Target::Url(url.into()))
    }

    /// Starts building a store on a connection you have: a
    /// [`ConnectionManager`](redis::aio::ConnectionManager) or a
    /// [`MultiplexedConnection`](redis::aio::MultiplexedConnection).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379/0")?;
    /// let connection = client.get_multiplexed_async_connection().await?;
    /// let store = tokenwarden_redis::RedisStore::with_connection(connection)
    ///     .prefix("billing")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn with_connection(connection: impl Into<RedisConnection>) -> RedisStoreBuilder {
        Self::builder_for(Target::Connection(connection.into()))
    }

    fn builder_for(target: Target) -> RedisStoreBuilder {
        RedisStoreBuilder {
            target,
            prefix: "tokenwarden".into(),
            timeout: DEFAULT_COMMAND_TIMEOUT,
            clock: Arc::new(SystemClock),
            retention: DEFAULT_REFRESH_RETENTION,
            #[cfg(feature = "encryption")]
            cipher: None,
        }
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

    /// The token in a stored value.
    fn decode(&self, name: &str, bytes: &[u8]) -> Result<Token> {
        #[cfg(feature = "encryption")]
        if let Some(cipher) = &self.inner.cipher {
            return cipher.open(name, bytes).map_err(|why| {
                Error::store(
                    &self.inner.name,
                    format!("`{name}` cannot be read: {why}; every instance sharing the prefix needs the same key"),
                )
            });
        }
        serde_json::from_slice(bytes).map_err(|_| {
            Error::store(
                &self.inner.name,
                format!("`{name}` holds no token (encrypted by an instance with a key, or another program's value?); it is ignored"),
            )
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

    /// Runs a fenced script (`SAVE` or `DELETE`) for `key` under `lease`.
    async fn fenced(
        &self,
        action: &str,
        script: &redis::Script,
        key: &TokenKey,
        lease: &Lease,
        args: (&[u8], u64),
    ) -> Result<()> {
        let Some(fence) = lease.fence() else {
            return Err(Error::lease_lost(
                &self.inner.name,
                format!("could not {action}: no lease was held"),
            ));
        };
        let mut connection = self.inner.connection.clone();
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.redis_key(key, ""))
            .key(self.redis_key(key, ":fence"))
            .arg(fence.to_string())
            .arg(args.0)
            .arg(args.1);
        let written: i64 = self
            .command(action, invocation.invoke_async(&mut connection))
            .await?;
        if written == 1 {
            return Ok(());
        }
        Err(Error::lease_lost(
            &self.inner.name,
            format!(
                "could not {action}: lease {fence} of `{}` was superseded by a newer one",
                self.redis_key(key, "")
            ),
        ))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn load(&self, key: &TokenKey) -> Result<Option<Token>> {
        let mut connection = self.inner.connection.clone();
        let name = self.redis_key(key, "");
        let value: Option<Vec<u8>> = self
            .command("read the token", connection.get(&name))
            .await?;
        value.map(|bytes| self.decode(&name, &bytes)).transpose()
    }

    async fn save(&self, key: &TokenKey, token: &Token) -> Result<()> {
        let mut connection = self.inner.connection.clone();
        let name = self.redis_key(key, "");
        let value = self.encode(&name, token)?;
        let ttl = self.ttl_ms(token);
        self.command(
            "save the token",
            connection.pset_ex::<_, _, ()>(&name, value, ttl),
        )
        .await
    }

    async fn delete(&self, key: &TokenKey) -> Result<()> {
        let mut connection = self.inner.connection.clone();
        self.command(
            "delete the token",
            connection.del::<_, ()>(self.redis_key(key, "")),
        )
        .await
    }

    async fn lease(&self, key: &TokenKey, ttl: Duration) -> Result<Lease> {
        RedisLease::take(self, key, ttl).await.map(Lease::new)
    }

    async fn save_leased(&self, key: &TokenKey, token: &Token, lease: &Lease) -> Result<()> {
        let value = self.encode(&self.redis_key(key, ""), token)?;
        let ttl = self.ttl_ms(token);
        static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SAVE));
        self.fenced("save the token", &SCRIPT, key, lease, (&value, ttl))
            .await
    }

    async fn delete_leased(&self, key: &TokenKey, lease: &Lease) -> Result<()> {
        static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(DELETE));
        self.fenced("delete the token", &SCRIPT, key, lease, (&[], 0))
            .await
    }

    fn name(&self) -> &str {
        &self.inner.name
    }
}

impl RedisStoreBuilder {
    /// The prefix of every Redis key. Defaults to `tokenwarden`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The timeout of each command. Defaults to [`DEFAULT_COMMAND_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a token with a refresh token is kept when the server did not say
    /// how long its refresh token lives (`refresh_expires_in`). A stored token lives
    /// as long as its refresh token can be used, not as long as its access token,
    /// so that a new instance refreshes instead of logging in again. Defaults to
    /// [`DEFAULT_REFRESH_RETENTION`] (30 days).
    pub fn refresh_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The clock that turns a token's expiry into a TTL and times leases (use the
    /// manager's). Defaults to the system clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Seals tokens with `cipher` (XChaCha20-Poly1305, the file store's scheme, the
    /// Redis key bound in) so that Redis, its backups and its replicas hold no
    /// readable token. Every instance sharing the prefix needs the same key.
    ///
    /// ```no_run
    /// # async fn run() -> tokenwarden::Result<()> {
    /// use tokenwarden::store::TokenCipher;
    /// let key: [u8; 32] = [0; 32]; // from your secret manager
    /// let store = tokenwarden_redis::RedisStore::builder("redis://127.0.0.1:6379")
    ///     .cipher(TokenCipher::new(key))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "encryption")]
    pub fn cipher(mut self, cipher: tokenwarden::store::TokenCipher) -> Self {
        self.cipher = Some(cipher);
        self
    }

    /// Connects (a connection made from the URL then reconnects by itself).
    pub async fn build(self) -> Result<RedisStore> {
        let name = format!("redis:{}", self.prefix);
        let connection = match self.target {
            Target::Connection(connection) => connection,
            Target::Url(url) => connect(&url, &name, self.timeout).await?.into(),
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                connection,
                prefix: self.prefix,
                name,
                timeout: self.timeout,
                clock: self.clock,
                retention: self.retention,
                #[cfg(feature = "encryption")]
                cipher: self.cipher,
            }),
        })
    }
}

/// A connection manager for `url`, with `timeout` on connecting and on answers.
async fn connect(
    url: &str,
    name: &str,
    timeout: Duration,
) -> Result<redis::aio::ConnectionManager> {
    let client = redis::Client::open(url)
        .map_err(|e| Error::config(format!("the Redis URL is not valid: {e}")))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout))
        .set_connection_timeout(Some(timeout));
    tokio::time::timeout(timeout, client.get_connection_manager_with_config(config))
        .await
        .map_err(|_| Error::store(name, format!("no connection to Redis within {timeout:?}")))?
        .map_err(|e| Error::store(name, format!("could not connect to Redis: {e}")))
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}
