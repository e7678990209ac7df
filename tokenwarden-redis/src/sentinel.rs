//! A connection to the primary that Redis Sentinel names, found again after a
//! failover: the store's commands go to the current primary; a command that
//! fails because that primary is gone or was demoted (I/O errors, a refused or
//! dropped connection, `READONLY`, `MASTERDOWN`) fails, as the store's commands
//! do when Redis is down (the manager serves from its cache and tries again),
//! and the next command asks the sentinels for the primary anew.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};
use std::sync::Arc;
use tokio::sync::Mutex;

/// A primary found through Sentinel. Cheap to clone: clones share the
/// sentinels and the current connection.
#[derive(Clone)]
pub struct SentinelConnection {
    sentinels: Arc<Mutex<SentinelClient>>,
    /// The connection to the primary, and the `dropped` count it was made at.
    current: Arc<Mutex<Option<(u64, MultiplexedConnection)>>>,
    /// How many times a connection of these sentinels' primary was dropped:
    /// shared by [`another`](Self::another) connection, so that a failover one
    /// of them finds, the other does not find again with a failed command.
    dropped: Arc<std::sync::atomic::AtomicU64>,
    /// How long a connection to a node may take, and an answer.
    config: redis::AsyncConnectionConfig,
}

impl std::fmt::Debug for SentinelConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelConnection").finish_non_exhaustive()
    }
}

impl SentinelConnection {
    /// The primary of the service `master` that `sentinels` (their addresses)
    /// name, with `credentials` (user, password) for the Redis nodes and `db`.
    pub(crate) fn new(
        url: SentinelUrl,
        security: Security,
        (connecting, answers): (std::time::Duration, std::time::Duration),
    ) -> RedisResult<Self> {
        let mut builder =
            SentinelClientBuilder::new(url.sentinels, url.master, SentinelServerType::Master)?
                .set_client_to_redis_db(url.db);
        if let Some(user) = url.credentials.0 {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = url.credentials.1 {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some((user, password)) = security.sentinel_credentials {
            if !user.is_empty() {
                builder = builder.set_client_to_sentinel_username(user);
            }
            builder = builder.set_client_to_sentinel_password(password);
        }
        if url.tls {
            // The sentinels and the nodes alike, with the same trust.
            builder = builder
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure);
            if let Some(certificates) = security.certificates {
                builder = builder
                    .set_client_to_sentinel_certificates(certificates.clone())
                    .set_client_to_redis_certificates(certificates);
            }
        }
        Ok(Self {
            sentinels: Arc::new(Mutex::new(builder.build()?)),
            current: Arc::default(),
            dropped: Arc::default(),
            config: redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connecting))
                .set_response_timeout(Some(answers)),
        })
    }

    /// Another connection to the same primary, found through the same sentinels.
    pub(crate) fn another(&self) -> Self {
        Self {
            sentinels: self.sentinels.clone(),
            current: Arc::default(),
            dropped: self.dropped.clone(),
            config: self.config.clone(),
        }
    }

    /// A client of the current primary (for the store's pub/sub connection).
    pub(crate) async fn primary_client(&self) -> RedisResult<redis::Client> {
        self.sentinels.lock().await.async_get_client().await
    }

    /// The connection to the current primary, asking the sentinels for it if
    /// there is none.
    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let mut current = self.current.lock().await;
        let dropped = self.dropped.load(std::sync::atomic::Ordering::SeqCst);
        match current.as_ref() {
            Some((made_at, connection)) if *made_at == dropped => return Ok(connection.clone()),
            _ => {}
        }
        let client = self.primary_client().await?;
        let connection = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *current = Some((dropped, connection.clone()));
        Ok(connection)
    }

    /// Drops the connection after `error`, if it says the primary is gone or
    /// is no longer the primary.
    async fn after(&self, error: &RedisError) {
        let gone = error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_timeout()
            || matches!(
                error.kind(),
                ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
            );
        if gone {
            *self.current.lock().await = None;
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let answer = connection.req_packed_command(cmd).await;
            if let Err(error) = &answer {
                self.after(error).await;
            }
            answer
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let answer = connection.req_packed_commands(cmd, offset, count).await;
            if let Err(error) = &answer {
                self.after(error).await;
            }
            answer
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// What secures a Sentinel deployment beyond its URL: the sentinels' own
/// credentials (user, empty for the default one; password) and, over TLS, the
/// certificates to trust and present (the platform's roots without them).
#[derive(Default)]
pub(crate) struct Security {
    pub(crate) sentinel_credentials: Option<(String, String)>,
    pub(crate) certificates: Option<redis::TlsCertificates>,
}

/// The parts of a `redis+sentinel://[user:password@]host:port[,host:port...]/master[/db]`
/// URL (`rediss+sentinel://` over TLS): the sentinels, the master's name, the
/// nodes' credentials and database.
pub(crate) struct SentinelUrl {
    pub(crate) sentinels: Vec<redis::ConnectionAddr>,
    pub(crate) master: String,
    pub(crate) credentials: (Option<String>, Option<String>),
    pub(crate) db: i64,
    pub(crate) tls: bool,
}

/// Reads a `redis+sentinel://` URL, or says what is wrong with it (never
/// quoting its password).
pub(crate) fn parse(url: &str) -> Result<SentinelUrl, String> {
    let (tls, rest) = crate::scheme::split(url, "sentinel", "Sentinel")?;
    // Credentials first: a password may hold `/` (base64 does), and no part
    // of one may reach an error.
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => {
            let decode = |s: &str| Some(percent_decoded(s)).filter(|v| !v.is_empty());
            let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
            ((decode(user), decode(password)), rest)
        }
        None => ((None, None), rest),
    };
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let sentinels = hosts
        .split(',')
        .map(|host| {
            let (name, port) = host_and_port(host)?;
            let port = port
                .parse()
                .map_err(|_| format!("`{port}` is not a port (in `{name}:{port}`)"))?;
            if name.is_empty() {
                return Err("a sentinel without a host".to_owned());
            }
            Ok(match tls {
                true => redis::ConnectionAddr::TcpTls {
                    host: name.to_owned(),
                    port,
                    insecure: false,
                    tls_params: None,
                },
                false => redis::ConnectionAddr::Tcp(name.to_owned(), port),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let master = parts
        .next()
        .ok_or("the URL names no master: redis+sentinel://host:26379/mymaster")?
        .to_owned();
    let db = match parts.next() {
        Some(db) => db
            .parse()
            .map_err(|_| format!("`{db}` is not a database number"))?,
        None => 0,
    };
    Ok(SentinelUrl {
        sentinels,
        master,
        credentials,
        db,
        tls,
    })
}

/// A sentinel's host and port (26379 if none): `host:port`, `host`,
/// `[v6]:port` or `[v6]` (the brackets dropped).
fn host_and_port(host: &str) -> Result<(&str, &str), String> {
    if let Some(bracketed) = host.strip_prefix('[') {
        let (name, rest) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("`{host}` has no closing `]`"))?;
        return match rest {
            "" => Ok((name, "26379")),
            _ => match rest.strip_prefix(':') {
                Some(port) => Ok((name, port)),
                None => Err(format!("`{host}`: a port goes after `]:`")),
            },
        };
    }
    Ok(host.rsplit_once(':').unwrap_or((host, "26379")))
}

/// `%XX` escapes decoded, as in a URL's user and password. By hand: the one
/// function this crate needs of a URL library.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn sentinel_urls_name_the_sentinels_the_master_and_the_database() {
        let url = parse("redis+sentinel://tw:p%40ss@10.0.0.1:26379,10.0.0.2/mymaster/2").unwrap();
        assert_eq!(url.sentinels.len(), 2);
        assert_eq!(url.master, "mymaster");
        assert_eq!(url.db, 2);
        assert_eq!(url.credentials, (Some("tw".into()), Some("p@ss".into())));
        let error = parse("redis+sentinel://tw:secret@h:x/m").err().unwrap();
        assert!(!error.contains("secret"), "{error}");
        // IPv6 sentinels, with or without a port.
        let v6 = parse("redis+sentinel://[::1]:26380,[fe80::1]/m").unwrap();
        let hosts: Vec<String> = v6.sentinels.iter().map(|a| a.to_string()).collect();
        assert_eq!(hosts, ["::1:26380", "fe80::1:26379"]);
        assert!(parse("redis+sentinel://[::1:26379/m").is_err());
        // A password with `/` in it (base64) is a password, not a path.
        let slashed = parse("redis+sentinel://tw:ab/cd%2Bef@h:26379/m").unwrap();
        assert_eq!(slashed.credentials.1.as_deref(), Some("ab/cd+ef"));
        assert_eq!(slashed.master, "m");
        let error = parse("redis+sentinel://tw:se/cret@h:x/m").err().unwrap();
        assert!(!error.contains("cret"), "{error}");
        assert!(parse("redis+sentinel://h:26379").is_err(), "no master");
        assert!(!url.tls);
        assert!(parse("rediss+sentinel://h:26379/m").unwrap().tls);
        assert!(parse("redis://h:26379/m").is_err());
    }
}
