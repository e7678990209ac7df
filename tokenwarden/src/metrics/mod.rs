//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): what the tokens are doing, for the exporter you already use
//! (Prometheus, OpenTelemetry, StatsD...).
//!
//! Nothing is recorded on the hit path: a manager counts its hits in its own
//! striped counters, and [`publish`] reads them (and sets the gauges that change
//! with time) when metrics are collected. Call it from your scrape handler, or
//! let [`publish_every`] do it: nothing else publishes them. Everything else is
//! recorded where it happens (a token request, a refresh, a wait, a store
//! operation), each next to I/O: without a recorder, a record builds its labels
//! (a few small allocations) and the facade drops it. Call [`describe`] once
//! after installing your recorder for descriptions and units.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> tokenwarden::Result<()> {
//! use std::time::Duration;
//! use tokenwarden::{source::from_fn, Token, TokenManager};
//!
//! // Install your recorder first, e.g. metrics_exporter_prometheus's.
//! tokenwarden::metrics::describe();
//! let manager = TokenManager::builder(from_fn("login", || async {
//!     Ok(Token::new("abc").with_expires_in(Duration::from_secs(3600)))
//! }))
//! .build()?;
//! manager.token().await?; // counted: one request, one refresh (first use)
//! tokenwarden::metrics::publish(); // hits and gauges, on each scrape
//! # Ok(()) }
//! ```
//!
//! ## The metrics
//!
//! Names follow OpenTelemetry's conventions: dotted, the unit given with the
//! description (a Prometheus exporter writes `tokenwarden_token_requests` and so
//! on). Durations are in seconds.
//!
//! | name | type | unit | labels | meaning |
//! |---|---|---|---|---|
//! | `tokenwarden.token.requests` | counter | requests | `tokenwarden.grant`, `tokenwarden.outcome` | requests to the token source: `grant` is `refresh_token` for a refresh, else the source's [`grant_name`](crate::TokenSource::grant_name); `outcome` is `success`, the OAuth2 error code (one of RFC 6749, 8628, 8693, 9449's, else `other_oauth_error`), `timeout`, `transport`, `invalid_response`, or the error's kind |
//! | `tokenwarden.token.request.duration` | histogram | s | as above | how long each token request took |
//! | `tokenwarden.refreshes` | counter | attempts | `tokenwarden.reason`, `tokenwarden.outcome` | attempts to get a token, by [`RefreshReason`](crate::RefreshReason) (`first_use`, `ahead_of_expiry`, `expired`, `invalidated`, `forced`, `store_check`) and [`RefreshOutcome`](crate::RefreshOutcome) (`fetched`, `refreshed`, `adopted_from_store`, `unchanged`, `failed`) |
//! | `tokenwarden.refresh.duration` | histogram | s | as above | how long each attempt took (store, lease, request, save) |
//! | `tokenwarden.wait.duration` | histogram | s | — | each wait of a caller for a refresh (the token was expiring or gone), and how long |
//! | `tokenwarden.failures` | counter | failures | `error.type` | failed attempts by [`ErrorKind`](crate::ErrorKind) (`oauth`, `transport`, `timeout`, `store`, `lease_lost`...) |
//! | `tokenwarden.backing_off` | gauge | managers | — | managers backing off after a failure (0 or 1 per manager) |
//! | `tokenwarden.lease.outcomes` | counter | leases | `tokenwarden.outcome` | each ask for the store's lease, and what became of it: `acquired` at once, `taken_over` after waiting out another holder (stores that say so: Redis, memory), `changed` (another instance's newer token was there, or came while waiting: taken instead), `lost` (it ended before the request was sent), `fenced` (a late save refused), `unavailable` (it could not be had) |
//! | `tokenwarden.store.operations` | counter | operations | `tokenwarden.store`, `tokenwarden.operation`, `tokenwarden.outcome` | store operations (`load`, `save`, `delete`, `lease`, `contains`) and how they ended (`ok`, the error's kind, or `cancelled` by the refresh timeout) |
//! | `tokenwarden.store.operation.duration` | histogram | s | as above | how long each took (a lease: including its wait) |
//! | `tokenwarden.unsaved` | gauge | managers | — | managers serving a token the store failed to save (retried until saved) |
//! | `tokenwarden.token.expires_in` | gauge | s | — | seconds until the current token expires, 0 once it has (with several managers under one set of labels: the soonest of the valid ones) |
//! | `tokenwarden.hits` | counter | calls | — | calls answered from the cache without waiting |
//! | `tokenwarden.registry.managers` | gauge | managers | — | managers held by [`TokenRegistry`](crate::TokenRegistry)s |
//!
//! ## Labels, and a million keys
//!
//! A manager built on its own labels every metric of its own with
//! `tokenwarden.key` (its [`TokenKey`](crate::TokenKey)) and `tokenwarden.source`
//! (its source's name): an application has a handful. The managers a
//! [`TokenRegistry`](crate::TokenRegistry) holds do not (it may hold a million):
//! theirs are added up under no key, unless the registry asks for them
//! ([`per_key_metrics`](crate::TokenRegistryBuilder::per_key_metrics)). Either can
//! be set on a manager's builder
//! ([`per_key_metrics`](crate::TokenManagerBuilder::per_key_metrics)). Every
//! other label takes a fixed set of values: an OAuth2 error code a server made up
//! is counted as `other_oauth_error`, so no server can mint series.

mod collect;
mod labels;
mod store;

pub(crate) use collect::{register, relabel, retire, Reading, Watched};
pub(crate) use labels::{request_outcome, Labels};
pub(crate) use store::Metered;

use metrics::Unit;
use std::time::Duration;

/// Requests to the token source (counter).
pub const TOKEN_REQUESTS: &str = "tokenwarden.token.requests";
/// How long each token request took (histogram, seconds).
pub const TOKEN_REQUEST_DURATION: &str = "tokenwarden.token.request.duration";
/// Attempts to get a token, by reason and outcome (counter).
pub const REFRESHES: &str = "tokenwarden.refreshes";
/// How long each attempt took (histogram, seconds).
pub const REFRESH_DURATION: &str = "tokenwarden.refresh.duration";
/// How long callers waited for a refresh (histogram, seconds).
pub const WAIT_DURATION: &str = "tokenwarden.wait.duration";
/// Failed attempts, by error kind (counter).
pub const FAILURES: &str = "tokenwarden.failures";
/// Managers backing off after a failure (gauge).
pub const BACKING_OFF: &str = "tokenwarden.backing_off";
/// What became of the store's lease (counter).
pub const LEASE_OUTCOMES: &str = "tokenwarden.lease.outcomes";
/// Store operations, by store, operation and outcome (counter).
pub const STORE_OPERATIONS: &str = "tokenwarden.store.operations";
/// How long each store operation took (histogram, seconds).
pub const STORE_OPERATION_DURATION: &str = "tokenwarden.store.operation.duration";
/// Managers serving a token not saved yet (gauge).
pub const UNSAVED: &str = "tokenwarden.unsaved";
/// Seconds until the current token expires (gauge).
pub const TOKEN_EXPIRES_IN: &str = "tokenwarden.token.expires_in";
/// Calls answered from the cache (counter, added to by [`publish`]).
pub const HITS: &str = "tokenwarden.hits";
/// Managers held by registries (gauge).
pub const REGISTRY_MANAGERS: &str = "tokenwarden.registry.managers";

/// Gives the installed recorder each metric's description and unit. Call it once
/// after installing the recorder (exporters show them, e.g. as Prometheus's
/// `# HELP` lines).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(TOKEN_REQUESTS, Unit::Count, "Requests to the token source");
    describe_histogram!(
        TOKEN_REQUEST_DURATION,
        Unit::Seconds,
        "How long each token request took"
    );
    describe_counter!(REFRESHES, Unit::Count, "Attempts to get a token");
    describe_histogram!(
        REFRESH_DURATION,
        Unit::Seconds,
        "How long each attempt took"
    );
    describe_histogram!(
        WAIT_DURATION,
        Unit::Seconds,
        "How long callers waited for a refresh"
    );
    describe_counter!(FAILURES, Unit::Count, "Failed attempts to get a token");
    describe_gauge!(
        BACKING_OFF,
        Unit::Count,
        "Managers backing off after a failure"
    );
    describe_counter!(
        LEASE_OUTCOMES,
        Unit::Count,
        "What became of the store's lease"
    );
    describe_counter!(STORE_OPERATIONS, Unit::Count, "Token store operations");
    describe_histogram!(
        STORE_OPERATION_DURATION,
        Unit::Seconds,
        "How long each store operation took"
    );
    describe_gauge!(
        UNSAVED,
        Unit::Count,
        "Managers serving a token not saved yet"
    );
    describe_gauge!(
        TOKEN_EXPIRES_IN,
        Unit::Seconds,
        "Seconds until the current token expires"
    );
    describe_counter!(HITS, Unit::Count, "Calls answered from the cache");
    describe_gauge!(
        REGISTRY_MANAGERS,
        Unit::Count,
        "Managers held by registries"
    );
}

/// Reads every live manager's hits, expiry, backoff and unsaved state, and every
/// registry's size, into the installed recorder. Cheap enough for each scrape:
/// one pass over the live managers, nothing on their hit paths.
pub fn publish() {
    collect::publish();
}

/// Calls [`publish`] every `period` on the current Tokio runtime, for exporters
/// that serve scrapes themselves (no handler of yours to call it from). Abort
/// the returned task to stop.
///
/// # Panics
///
/// Outside a Tokio runtime.
pub fn publish_every(period: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            publish();
        }
    })
}
