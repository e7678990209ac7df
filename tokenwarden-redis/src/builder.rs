//! [`RedisStoreBuilder`]: where a [`RedisStore`] connects (a URL, `redis://` or
//! `rediss://` for TLS, or a connection you have, and a client for pub/sub), its
//! TLS trust, its prefix, timeouts, retention and cipher.

use crate::connection::RedisConnection;
use crate::leased_read::LeasedReads;
use crate::replicas::{ReplicaWait, DEFAULT_REPLICA_TIMEOUT};
use crate::sentinel::SentinelConnection;
use crate::store::{Inner, RedisStore};
use crate::wake::{PubSubSource, WakeUps};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::{Clock, Error, Result, SystemClock};

/// The longest any Redis command may take: 2 s.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a token with a refresh token is kept when the server did not say how
/// long the refresh token lives (`refresh_expires_in`): 30 days.
pub const DEFAULT_REFRESH_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

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
    pubsub: Option<redis::Client>,
    /// For a `rediss://` URL: the CA to trust instead of the platform's roots,
    /// and a client certificate and key (all PEM).
    tls_ca: Option<Vec<u8>>,
    tls_client: Option<(Vec<u8>, Vec<u8>)>,
    replica_wait: ReplicaWait,
    replica_timeout: Duration,
    /// The sentinels' own user (empty: the default one) and password.
    sentinel_credentials: Option<(String, String)>,
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
    /// Give it a [`pubsub`](RedisStoreBuilder::pubsub) client too, or its instances
    /// waiting for a lease poll Redis every 25 ms instead of being woken.
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
            pubsub: None,
            tls_ca: None,
            tls_client: None,
            replica_wait: ReplicaWait::Auto,
            replica_timeout: DEFAULT_REPLICA_TIMEOUT,
            sentinel_credentials: None,
        }
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

    /// How many replicas a save of a token with a refresh token waits for
    /// (`WAIT`) before it returns, so that a rotated refresh token survives the
    /// primary's failover. Defaults to [`ReplicaWait::Auto`]: one where the
    /// primary has replicas when the store is built. A save whose replicas do
    /// not answer within [`replica_timeout`](Self::replica_timeout) keeps the
    /// token on the primary and fails (transient): the manager serves the token,
    /// reports it unsaved, and saves it again until the replicas have it.
    pub fn replicas(mut self, wait: ReplicaWait) -> Self {
        self.replica_wait = wait;
        self
    }

    /// How long a save waits for its replicas. Defaults to
    /// [`DEFAULT_REPLICA_TIMEOUT`] (1 s). The wait holds the connection of its
    /// write (Redis answers a client's commands in order): a store built from a
    /// URL makes a second one for the writes that wait, so that reads and lease
    /// waits go on meanwhile; on a connection you give, they queue behind it. A
    /// replica that its primary shows away (not acknowledging for 3 s or more)
    /// is not waited for until it answers again.
    pub fn replica_timeout(mut self, timeout: Duration) -> Self {
        self.replica_timeout = timeout;
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
    /// Needs this crate's `encryption` feature
    /// (`tokenwarden-redis = { version = "0.1", features = ["encryption"] }`).
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

    /// The client the store opens its one pub/sub connection with (on the first
    /// wait for a lease; it subscribes once per key it waits on), so that an
    /// instance waiting for a lease is woken when the holder releases it. Defaults
    /// to the URL's client for [`RedisStore::builder`]; a store made
    /// [`with_connection`](RedisStore::with_connection) has none unless given one,
    /// and its waiters poll every 25 ms, as do those of a store whose pub/sub
    /// connection cannot be made (tried again 5 s later).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379/0")?;
    /// let connection = client.get_connection_manager().await?;
    /// let store = tokenwarden_redis::RedisStore::with_connection(connection)
    ///     .pubsub(client)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn pubsub(mut self, client: redis::Client) -> Self {
        self.pubsub = Some(client);
        self
    }

    /// For a `rediss://` URL (Redis over TLS, with rustls): trusts the server
    /// certificates issued by the CA certificate(s) in `ca_pem` (PEM), instead of
    /// the platform's roots. The server's certificate must be valid for the URL's
    /// host name either way.
    ///
    /// The platform's roots are the system's certificate store, or the PEM file
    /// or directory that `SSL_CERT_FILE` or `SSL_CERT_DIR` names, where set (read
    /// by the redis crate with rustls-native-certs on each connection). They are
    /// read even with `tls_ca`: a `SSL_CERT_FILE` that cannot be read fails every
    /// `rediss://` connection.
    ///
    /// An ACL user and password go in the URL, `rediss://user:password@host`
    /// (percent-encoded where they hold a character reserved in URLs, such as
    /// `@`, `:`, `/` or `%`); they never show in an error or a `Debug` string.
    /// Here the password comes from the environment:
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let password = std::env::var("REDIS_PASSWORD")?;
    /// let url = format!("rediss://tw:{password}@redis.internal:6380/0");
    /// let store = tokenwarden_redis::RedisStore::builder(url)
    ///     .tls_ca(std::fs::read("/etc/redis/ca.pem")?)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn tls_ca(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca = Some(ca_pem.into());
        self
    }

    /// For a `rediss://` URL: presents this client certificate and private key
    /// (PEM) to a Redis that asks for one (`tls-auth-clients yes`).
    pub fn tls_client_cert(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_client = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// For a `redis+sentinel://` URL: the user and password the sentinels
    /// themselves ask for (their `requirepass`: user `""`, or an ACL user). The
    /// URL's own credentials are the Redis nodes'; sentinels are often secured
    /// apart from them.
    ///
    /// ```no_run
    /// # async fn run() -> tokenwarden::Result<()> {
    /// let store = tokenwarden_redis::RedisStore::builder(
    ///     "rediss+sentinel://tw:node-password@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/tokens",
    /// )
    /// .sentinel_credentials("", "sentinel-password")
    /// .build()
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn sentinel_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.sentinel_credentials = Some((user.into(), password.into()));
        self
    }

    /// Connects (a connection made from the URL then reconnects by itself).
    pub async fn build(self) -> Result<RedisStore> {
        let name = format!("redis:{}", self.prefix);
        let tls = match (self.tls_ca, self.tls_client) {
            (None, None) => None,
            (root_cert, client) => Some(redis::TlsCertificates {
                client_tls: client.map(|(client_cert, client_key)| redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
                root_cert,
            }),
        };
        // The writes that wait for replicas get a connection of their own where
        // the store makes its connections (a `WAIT` blocks its connection).
        let mut second = None;
        let (connection, pubsub) = match self.target {
            Target::Connection(connection) => (connection, self.pubsub.map(PubSubSource::Client)),
            Target::Url(url) if url.contains("+cluster://") => {
                let answers = self.timeout + self.replica_timeout;
                let parts = crate::cluster::parse(&url).map_err(|why| {
                    Error::config(format!("the Redis Cluster URL is not valid: {why}"))
                })?;
                let tls = secured(parts.tls, tls)?;
                let (first, connection, writes) =
                    crate::cluster::connect(&parts, tls, &name, self.timeout, answers).await?;
                second = Some(RedisConnection::Cluster(writes));
                // Pub/sub is cluster-wide: a message published on any node
                // reaches a subscriber on any other.
                let client = self.pubsub.unwrap_or(first);
                (
                    RedisConnection::Cluster(connection),
                    Some(PubSubSource::Client(client)),
                )
            }
            Target::Url(url) if url.contains("+sentinel://") => {
                let answers = self.timeout + self.replica_timeout;
                let security = crate::sentinel::Security {
                    sentinel_credentials: self.sentinel_credentials,
                    certificates: tls,
                };
                let connection = sentinel(&url, security, &name, self.timeout, answers).await?;
                second = Some(RedisConnection::Sentinel(connection.another()));
                // Wake-ups subscribe on the primary of the moment: after a
                // failover, the next pub/sub connection is made on the new one
                // (waiters poll until it is).
                let source = match self.pubsub {
                    Some(client) => PubSubSource::Client(client),
                    None => PubSubSource::Sentinel(connection.clone()),
                };
                (RedisConnection::Sentinel(connection), Some(source))
            }
            Target::Url(url) => {
                // A replica wait may take its own timeout on top of an answer's.
                let answers = self.timeout + self.replica_timeout;
                let (client, connection) =
                    connect(&url, tls.clone(), &name, self.timeout, answers).await?;
                if self.replica_wait != ReplicaWait::Off {
                    let (_, writes) = connect(&url, tls, &name, self.timeout, answers).await?;
                    second = Some(writes.into());
                }
                let client = self.pubsub.unwrap_or(client);
                (connection.into(), Some(PubSubSource::Client(client)))
            }
        };
        let wake_ups = WakeUps::new(pubsub, connection.clone(), self.timeout, self.clock.clone());
        let replicas = crate::replicas::resolve(self.replica_wait, &connection).await;
        let writes = second
            .filter(|_| replicas > 0)
            .unwrap_or_else(|| connection.clone());
        Ok(RedisStore {
            inner: Arc::new(Inner {
                connection,
                writes,
                health: crate::replicas::ReplicaHealth::default(),
                prefix: self.prefix,
                name,
                timeout: self.timeout,
                clock: self.clock,
                retention: self.retention,
                #[cfg(feature = "encryption")]
                cipher: self.cipher,
                id: format!("{:016x}", fastrand::u64(..)),
                wake_ups,
                leased_reads: LeasedReads::default(),
                last_seen: crate::last_seen::LastSeen::default(),
                unreadable: std::sync::Mutex::default(),
                replicas,
                replica_timeout: self.replica_timeout,
                unreplicated: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }
}

/// The primary that the sentinels of a `redis+sentinel://` URL name, answering
/// a `PING` within `timeout`; its connections wait `answers` for an answer.
async fn sentinel(
    url: &str,
    mut security: crate::sentinel::Security,
    name: &str,
    timeout: Duration,
    answers: Duration,
) -> Result<SentinelConnection> {
    let parts = crate::sentinel::parse(url)
        .map_err(|why| Error::config(format!("the Redis Sentinel URL is not valid: {why}")))?;
    security.certificates = secured(parts.tls, security.certificates)?;
    let connection = SentinelConnection::new(parts, security, (timeout, answers))
        .map_err(|e| Error::config(format!("the Redis Sentinel URL is not valid: {e}")))?;
    let mut pinging = connection.clone();
    let ping = redis::cmd("PING");
    match tokio::time::timeout(timeout, ping.query_async::<String>(&mut pinging)).await {
        Ok(Ok(_)) => Ok(connection),
        Ok(Err(e)) => Err(Error::store(
            name,
            format!("the sentinels name no primary that answers: {e}"),
        )),
        Err(_) => Err(Error::store(
            name,
            format!("the sentinels or their primary did not answer within {timeout:?}"),
        )),
    }
}

/// The TLS settings given, if the URL is one over TLS (`secure`); an error if
/// they were given for a URL without TLS.
fn secured(
    secure: bool,
    tls: Option<redis::TlsCertificates>,
) -> Result<Option<redis::TlsCertificates>> {
    match tls {
        Some(_) if !secure => Err(Error::config(
            "TLS settings (tls_ca, tls_client_cert) need a URL over TLS: rediss://, rediss+sentinel:// or rediss+cluster://",
        )),
        tls => Ok(tls),
    }
}

/// A client for `url` and a connection manager made with it, with `timeout` on
/// connecting and on answers.
async fn connect(
    url: &str,
    tls: Option<redis::TlsCertificates>,
    name: &str,
    timeout: Duration,
    answers: Duration,
) -> Result<(redis::Client, redis::aio::ConnectionManager)> {
    let invalid = |e: redis::RedisError| Error::config(format!("the Redis URL is not valid: {e}"));
    let secure = url.starts_with("rediss://");
    let client = match secured(secure, tls)? {
        Some(tls) => redis::Client::build_with_tls(url, tls).map_err(invalid)?,
        None => redis::Client::open(url).map_err(invalid)?,
    };
    let failed = |e: redis::RedisError| {
        let hint = if secure {
            "; over TLS, check that the server's certificate is issued by a CA this client trusts (the platform's, or tls_ca) and valid for the URL's host name, and give a client certificate (tls_client_cert) if the server asks for one"
        } else {
            ""
        };
        Error::store(name, format!("could not connect to Redis: {e}{hint}"))
    };
    let no_answer = || Error::store(name, format!("no connection to Redis within {timeout:?}"));
    // One attempt first, for its error: the connection manager retries a refused
    // handshake (a certificate, a password) until the timeout, and says only that.
    tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| no_answer())?
        .map_err(failed)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(answers))
        .set_connection_timeout(Some(timeout));
    let connection =
        tokio::time::timeout(timeout, client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| no_answer())?
            .map_err(failed)?;
    Ok((client, connection))
}

impl std::fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}
