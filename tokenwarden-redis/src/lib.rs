//! # tokenwarden-redis
//!
//! [`RedisStore`]: a [`TokenStore`](tokenwarden::TokenStore) in Redis, for a fleet
//! of instances sharing tokens, with a lease so that of N instances sharing a key
//! one refreshes per expiry and the others read its token.
//!
//! - Tokens live under `<prefix>:{<key>}` for as long as their refresh token can be
//!   used (the server's `refresh_expires_in`, else
//!   [`refresh_retention`](RedisStoreBuilder::refresh_retention), 30 days by
//!   default); the access token's own expiry still decides whether it is served.
//! - [`lease`](tokenwarden::TokenStore::lease) is `SET <prefix>:{<key>}:lease <owner> NX PX <ttl>`
//!   and an `INCR` of `<prefix>:{<key>}:fence` in one script: each lease carries a
//!   fencing generation. Saves and deletes under a lease are compare-and-set
//!   scripts against it, so a holder that stalled past its lease while another
//!   instance took over cannot overwrite the newer token (its save is refused
//!   with [`ErrorKind::LeaseLost`](tokenwarden::ErrorKind::LeaseLost), and its
//!   manager adopts what is stored). The lease is released by compare-and-delete.
//!   All keys of one token share a `{hash tag}`.
//! - Waiting for a lease costs no polling. An instance that finds the lease held
//!   is queued (`<prefix>:{<key>}:waiters`, in the same script) and sleeps. The
//!   holder's save wakes every queued instance with a `PUBLISH` on its channel
//!   (`<prefix>:{<key>}:wake:<store id>`), which carries the stored value when
//!   tokens are sealed (never a token in clear: pub/sub has ACLs of its own), so
//!   a waiter that any new token will do (a due refresh: the manager asks with
//!   [`lease_unless_changed`](tokenwarden::TokenStore::lease_unless_changed))
//!   takes it at once; the release wakes the instance that has waited
//!   longest, for waiters that need the lease itself, one at a time. Each store
//!   has one pub/sub connection, made on its first wait, shared by all its waiters
//!   and keys. As pub/sub may lose a message (a reconnect), a waiter also tries
//!   again when the holder's lease would have expired (read with the failed
//!   attempt: a holder that died sends nothing), after 1 s without a message, and
//!   at once when the pub/sub connection drops. A due refresh takes the lease
//!   without reading first ([`leases_see_changes`](tokenwarden::TokenStore::leases_see_changes)):
//!   the take returns the stored token to its winner, and answers an instance
//!   whose token another already refreshed with the new token, taking no lease.
//!   Per expiry, the holder sends 3 commands (the take, the save, the release)
//!   and every other instance 1 with sealed tokens (the take), 2 in clear (and
//!   the take that finds the new token), however many share the token.
//!   A store without pub/sub (made [`with_connection`](RedisStore::with_connection)
//!   and no [`pubsub`](RedisStoreBuilder::pubsub) client, or whose pub/sub
//!   connection cannot be made) polls every 25 ms instead.
//! - The manager re-reads the store after taking the lease and uses a token another
//!   instance stored meanwhile, so a rotating refresh token is never spent twice
//!   by instances that keep to their leases (the one case left, a holder paused
//!   after sending its refresh and before storing the answer for longer than the
//!   lease, is in `docs/design/001-fenced-leases.md`).
//! - The connection is a [`redis::aio::ConnectionManager`] made from the URL (it
//!   reconnects by itself), or one you give, manager or multiplexed
//!   ([`RedisStore::with_connection`]); every command has a timeout, and while Redis
//!   is away the manager keeps serving from its own cache and single-flight.
//!
//! ## Deployments
//!
//! | deployment | URL | what holds | cost |
//! |---|---|---|---|
//! | one server | `redis://host:6379/0`, `rediss://…` | every guarantee while it lives; a restart without persistence loses the tokens (instances log in again) | none; 18,700 refreshes/s for 1,000 keys on loopback (`--bench deployments`, 2 cores) |
//! | primary with replicas (a provider's failover) | as above | a lease, and a save of a token with a refresh token, return once a replica has them ([`ReplicaWait`], `Auto` by default), so a primary that dies right after or during a refresh leaves the lease and the rotated token on the replica promoted (docs/design/004); a replica that does not answer in [`replica_timeout`](RedisStoreBuilder::replica_timeout) leaves the save reported failed (the manager saves it again, under the lease it kept), and is not waited for while the primary shows it away; each `WAIT` goes in one pipeline with its write, on a connection of its own | one `WAIT` per lease and per save, in the write's pipeline, and one more connection: p50 165 µs against 147 µs per save on loopback (`--bench replica_wait`) |
//! | Sentinel | `redis+sentinel://[user:password@]host:26379,host:26380/master[/db]`, `rediss+sentinel://…` over TLS (sentinels and nodes; [`tls_ca`](RedisStoreBuilder::tls_ca)); the sentinels' own password with [`sentinel_credentials`](RedisStoreBuilder::sentinel_credentials) | as with replicas; after a failover the store asks the sentinels for the new primary on its next command (the commands in between fail, transient: the manager serves from its cache); wake-ups subscribe again on the new primary (waiters poll until they have); set the manager's [`lease_ttl`](tokenwarden::TokenManagerBuilder::lease_ttl) longer than a failover takes (`down-after-milliseconds` plus the election), or a refresh the primary dies in can have its refresh token spent again | the same; 5,800 refreshes/s for 1,000 keys with the waits (a blocked `WAIT` holds the writes behind it on the write connection), 12,000 without (`ReplicaWait::Off`) |
//! | Cluster | `redis+cluster://[user:password@]host:7000,host:7001` (some nodes; the rest are discovered), `rediss+cluster://…` over TLS | every guarantee of one server, per token: its keys share a hash tag, so the protocol's scripts run on the node of its slot, and a slot migration (`ASK`, `TRYAGAIN`, `MOVED`) is followed; wake-ups on cluster-wide pub/sub; where every primary has a replica, leases and saves wait for one as above, on the primary of their slot | 15,000 refreshes/s for 1,000 keys over 3 primaries; classic pub/sub reaches every node |
//! | Valkey 8 | any of the above | the same: the tests of this crate run against Valkey 8.0 too | the same |
//!
//! The figures are from a 2-core machine with every server on it
//! (`cargo bench -p tokenwarden-redis --features encryption --bench deployments`);
//! they vary by a third between runs there. Not tested: Cluster over TLS (built
//! on the `redis` crate's cluster TLS, as `rediss://` is on its client).
//!
//! ```no_run
//! use tokenwarden::{source::from_fn, Token, TokenManager};
//! use tokenwarden_redis::RedisStore;
//!
//! # async fn run() -> tokenwarden::Result<()> {
//! let store = RedisStore::builder("redis://127.0.0.1:6379/0").prefix("billing").build().await?;
//! let manager = TokenManager::builder(from_fn("api", || async { Ok(Token::new("t")) }))
//!     .store(store)
//!     .build()?;
//! # Ok(()) }
//! ```

// On docs.rs (and `RUSTDOCFLAGS="--cfg docsrs" cargo +nightly doc`), items
// behind a feature say which one.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod builder;
mod cluster;
mod connection;
mod last_seen;
mod lease;
mod leased_read;
mod replicas;
mod replicated;
mod scheme;
mod sentinel;
mod store;
mod wake;

pub use builder::{RedisStoreBuilder, DEFAULT_COMMAND_TIMEOUT, DEFAULT_REFRESH_RETENTION};
pub use connection::RedisConnection;
pub use replicas::{ReplicaWait, DEFAULT_REPLICA_TIMEOUT};
pub use sentinel::SentinelConnection;
pub use store::RedisStore;
