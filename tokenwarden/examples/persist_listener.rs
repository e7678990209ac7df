//! Seed 002's "handler" pattern: store the token elsewhere whenever it changes.
//!
//! A [`TokenListener`] hands each event to one task that writes the token, sealed
//! with [`TokenCipher`], to a PostgreSQL table, and deletes the row on logout;
//! [`fetch`] reads it back (the FileSystem handler's "fetch").
//!
//! ```text
//! cargo run -p tokenwarden --example persist_listener --features encryption
//! ```
//!
//! It connects to `$TOKENWARDEN_PG`, or `host=127.0.0.1 user=postgres dbname=test`.
//!
//! A listener is for side effects: a copy for another system, an audit trail, a
//! message to other services. To keep tokens across restarts, give the manager a
//! [`TokenStore`](tokenwarden::TokenStore) instead (`FileStore`, `RedisStore` or
//! your own with `load`/`save`/`delete`): the manager saves each new token there
//! before any caller sees it, and loads it at start, which is the whole of the
//! FileSystem handler's store-and-fetch, with crash safety and leases on top.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokenwarden::source::from_fn;
use tokenwarden::store::TokenCipher;
use tokenwarden::{Token, TokenEvent, TokenEventKind, TokenListener, TokenManager};
use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;

/// The table, created if missing. The token is sealed: the table holds no token in
/// clear, and a row copied under another key does not open.
const TABLE: &str = "CREATE TABLE IF NOT EXISTS tokenwarden_tokens (
    key text PRIMARY KEY,
    source text NOT NULL,
    sealed bytea NOT NULL,
    expires_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
)";

/// Forwards every event to the writer task; never blocks the manager.
#[derive(Debug)]
pub struct PostgresListener {
    events: mpsc::UnboundedSender<TokenEvent>,
}

impl TokenListener for PostgresListener {
    fn on_event(&self, event: &TokenEvent) {
        // The writer ends only with the runtime; then there is nothing to do.
        let _ = self.events.send(event.clone());
    }
}

impl PostgresListener {
    /// Creates the table and starts the writer. The returned receiver counts the
    /// events written so far.
    pub async fn start(
        client: Arc<Client>,
        cipher: TokenCipher,
    ) -> Result<(Self, watch::Receiver<u64>), tokio_postgres::Error> {
        client.batch_execute(TABLE).await?;
        let (events, mut queue) = mpsc::unbounded_channel::<TokenEvent>();
        let (written, counter) = watch::channel(0);
        tokio::spawn(async move {
            while let Some(event) = queue.recv().await {
                if let Err(error) = write(&client, &cipher, &event).await {
                    // The error names the statement, never the token.
                    eprintln!("could not persist the {:?} token: {error}", event.kind());
                }
                written.send_modify(|n| *n += 1);
            }
        });
        Ok((Self { events }, counter))
    }
}

async fn write(client: &Client, cipher: &TokenCipher, event: &TokenEvent) -> Result<(), String> {
    let info = event.info();
    match (event.kind(), event.token()) {
        (TokenEventKind::Cleared, _) | (_, None) => client
            .execute(
                "DELETE FROM tokenwarden_tokens WHERE key = $1",
                &[&info.key],
            )
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        (_, Some(token)) => {
            let sealed = cipher.seal(&info.key, token).map_err(|e| e.to_string())?;
            client
                .execute(
                    "INSERT INTO tokenwarden_tokens (key, source, sealed, expires_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (key) DO UPDATE
                     SET source = $2, sealed = $3, expires_at = $4, updated_at = now()",
                    &[&info.key, &info.source, &sealed, &token.expires_at],
                )
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }
}

/// The token persisted under `key`, if any (seed 002's `fetch`).
pub async fn fetch(
    client: &Client,
    cipher: &TokenCipher,
    key: &str,
) -> Result<Option<Token>, String> {
    let row = client
        .query_opt(
            "SELECT sealed FROM tokenwarden_tokens WHERE key = $1",
            &[&key],
        )
        .await
        .map_err(|e| e.to_string())?;
    row.map(|row| {
        cipher
            .open(key, row.get::<_, &[u8]>(0))
            .map_err(|e| format!("the row of {key} cannot be read: {e}"))
    })
    .transpose()
}

/// Connects to PostgreSQL (`$TOKENWARDEN_PG`, or the local test database).
pub async fn connect() -> Result<Arc<Client>, tokio_postgres::Error> {
    let config = std::env::var("TOKENWARDEN_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test connect_timeout=5".into());
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(Arc::new(client))
}

#[allow(dead_code)] // the tests use this file as a module, without `main`
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = connect().await?;
    // In production the 32 bytes come from your secret manager.
    let cipher = TokenCipher::new(*b"demo key: use your secret store!");
    let (listener, mut written) = PostgresListener::start(client.clone(), cipher.clone()).await?;

    let issued = Arc::new(AtomicUsize::new(0));
    let manager = TokenManager::builder(from_fn("billing-api", move || {
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            Ok(Token::new(format!("demo-token-{n}"))
                .with_refresh_token(format!("demo-refresh-{n}"))
                .with_expires_in(Duration::from_secs(3600)))
        }
    }))
    .listener(listener)
    .build()?;
    let key = manager.key().as_str().to_owned();

    let token = manager.token().await?;
    println!("got token {} (a login)", token.fingerprint());
    let token = manager.force_refresh().await?;
    println!("got token {} (a refresh)", token.fingerprint());
    written.wait_for(|n| *n >= 2).await?;
    let persisted = fetch(&client, &cipher, &key).await?.expect("written");
    let left = persisted
        .expires_at
        .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok());
    println!(
        "persisted in tokenwarden_tokens: {} (expires at unix {:?} s), sealed in the row",
        persisted.fingerprint(),
        left.map(|d| d.as_secs())
    );

    manager.logout().await?;
    written.wait_for(|n| *n >= 3).await?;
    println!(
        "after logout the row is {}",
        match fetch(&client, &cipher, &key).await? {
            Some(_) => "still there (unexpected)",
            None => "gone",
        }
    );
    Ok(())
}
