//! [`RedisStore`]: tokens as JSON under `<prefix>:<key>`, expiring with the token.

use crate::connection::RedisConnection;
use crate::lease::RedisLease;
use async_trait::async_trait;
use redis::AsyncCommands as _;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::store::{Lease, TokenStore};
use tokenwarden::{Clock, Error, Result, SystemClock, Token, TokenKey};

/// The longest any Redis command may take.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

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
            #[cfg(feature = "encryption")]
            cipher: None,
        }
    }

    /// The prefix of this store's Redis keys.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub(crate) fn redis_key(&self, key: &TokenKey, suffix: &str) -> String {
        format!("{}:{}{suffix}", self.inner.prefix, key.as_str())
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

    fn ttl_ms(&self, token: &Token) -> Option<u64> {
        let expires_at = token.expires_at?;
        let left = expires_at
            .duration_since(self.inner.clock.now())
            .unwrap_or_default();
        // At least a second, so that a token saved just before its end is not lost
        // to rounding; Redis drops it soon after anyway.
        Some(
            u64::try_from(left.as_millis())
                .unwrap_or(u64::MAX)
                .max(1_000),
        )
    }
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
        let json = self.encode(&name, token)?;
        match self.ttl_ms(token) {
            Some(ttl) => {
                self.command(
                    "save the token",
                    connection.pset_ex::<_, _, ()>(&name, json, ttl),
                )
                .await
            }
            None => {
                self.command("save the token", connection.set::<_, _, ()>(&name, json))
                    .await
            }
        }
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

    /// The clock that turns a token's expiry into a TTL (use the manager's).
    /// Defaults to the system clock.
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
