//! `tokenwarden demo`: the library at work, with no configuration and no network.
//!
//! It starts an OAuth2 authorization server and an API on loopback
//! ([`servers`]) whose tokens live a few seconds, points the real pieces at them
//! (an [`OAuth2Client`] with the client credentials grant, a [`TokenManager`], an
//! [`AuthClient`]), runs concurrent [`workers`] for a while with a live progress
//! line, revokes the live token now and then, and prints a summary ([`report`]):
//! requests, token requests, 401s replayed, failures (which should be 0).

mod authority;
mod opaque;
mod report;
mod servers;
mod workers;

use crate::exit::{CliError, OK, UNAVAILABLE};
use authority::{Authority, CLIENT_ID};
use report::{Figures, Progress};
use servers::Servers;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::source::oauth2::{ClientAuth, OAuth2Client};
use tokenwarden::{ClientSecret, Clock, SystemClock, TokenManager};
use tokenwarden_reqwest::AuthClient;
use workers::Tally;

/// How long the demo server's tokens live.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3);
/// How long before expiry the manager refreshes (in the background, once).
const REFRESH_AHEAD: Duration = Duration::from_secs(1);
/// How long before expiry callers wait for the refresh instead.
const MIN_VALID: Duration = Duration::from_millis(250);
/// How often the progress line is updated (and revocations looked at).
const TICK: Duration = Duration::from_millis(100);
/// The tick of the first revocation (2 s in), then one every `REVOKE_EVERY` ticks (4 s).
const REVOKE_FIRST: u64 = 20;
const REVOKE_EVERY: u64 = 40;
/// The most workers the demo runs.
const MAX_WORKERS: usize = 1024;

/// Runs the demo for `seconds` with `workers` concurrent workers; prints the
/// summary on stdout. `Ok(OK)` when every request succeeded.
pub async fn run(seconds: u64, workers: usize) -> Result<u8, CliError> {
    if seconds == 0 || !(1..=MAX_WORKERS).contains(&workers) {
        return Err(CliError::usage(format!(
            "the demo needs --seconds of at least 1 and --workers from 1 to {MAX_WORKERS}"
        )));
    }
    let authority = Arc::new(Authority::new(TOKEN_LIFETIME));
    let servers = servers::start(authority.clone()).await.map_err(|e| {
        CliError::new(
            UNAVAILABLE,
            format!("could not start the demo servers on loopback: {e}"),
        )
    })?;
    let (client, manager) = connect(&servers, &authority)?;
    println!(
        "{}",
        report::intro(
            workers,
            seconds,
            &servers.token_url,
            &servers.api_url,
            TOKEN_LIFETIME
        )
    );

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let start = SystemClock.now();
    let elapsed = || SystemClock.now().duration_since(start).unwrap_or_default();
    let tasks: Vec<_> = (0..workers)
        .map(|id| {
            tokio::spawn(workers::work(
                id,
                client.clone(),
                tally.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let progress = Progress::new(seconds);
    let mut ticker = tokio::time::interval(TICK);
    ticker.tick().await; // the first tick is immediate
                         // Ctrl-C ends the run early, with its summary.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut listening = true;
    for tick in 1..=seconds.saturating_mul(10) {
        tokio::select! {
            _ = ticker.tick() => {}
            signal = &mut interrupted, if listening => match signal {
                Ok(()) => break,
                Err(_) => listening = false, // no signal handler: run to the end
            },
        }
        if tick >= REVOKE_FIRST && (tick - REVOKE_FIRST).is_multiple_of(REVOKE_EVERY) {
            authority.revoke_latest();
        }
        let mut now = figures(&authority, &tally, workers, elapsed());
        now.fingerprint = manager.info().await.fingerprint;
        progress.update(&now);
    }

    stop.store(true, Relaxed);
    for task in tasks {
        if let Err(error) = task.await {
            tally.fail(|| format!("a worker stopped: {error}"));
        }
    }
    progress.finish();
    let end = figures(&authority, &tally, workers, elapsed());
    drop(servers);
    println!("{}", report::summary(&end));
    if end.failures == 0 {
        return Ok(OK);
    }
    let first = tally.first_failure().unwrap_or_default();
    Err(CliError::new(
        UNAVAILABLE,
        format!("{} of {} demo requests failed", end.failures, end.requests),
    )
    .hint(format!("the first: {first}")))
}

/// The client side, as an application would build it: an OAuth2 client with the
/// client credentials grant, a manager, and an `AuthClient` for the API.
fn connect(
    servers: &Servers,
    authority: &Authority,
) -> Result<(AuthClient, TokenManager), CliError> {
    // Loopback only: no system proxy may see the demo's traffic.
    let http = |redirects| {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(redirects)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| {
                CliError::new(UNAVAILABLE, format!("could not build the HTTP client: {e}"))
            })
    };
    let oauth2 = OAuth2Client::builder()
        .token_url(&servers.token_url)
        .client_id(CLIENT_ID)
        .auth(ClientAuth::SecretBasic(ClientSecret::new(
            authority.secret(),
        )))
        .http_client(http(reqwest::redirect::Policy::none())?)
        .build()?;
    let manager = TokenManager::builder(oauth2.client_credentials())
        .refresh_ahead(REFRESH_AHEAD)
        .min_valid(MIN_VALID)
        .build()?;
    let client = AuthClient::builder()
        .base_url(&servers.api_url)
        .token_manager(manager.clone())
        .http_client(http(reqwest::redirect::Policy::default())?)
        .build()?;
    Ok((client, manager))
}

/// The figures now, from the servers' counters and the workers' tally.
fn figures(authority: &Authority, tally: &Tally, workers: usize, elapsed: Duration) -> Figures {
    let counts = &authority.counts;
    let unauthorized = counts.unauthorized.load(Relaxed);
    Figures {
        elapsed,
        workers,
        lifetime: authority.lifetime(),
        requests: tally.requests.load(Relaxed),
        logins: counts.logins.load(Relaxed),
        refreshes: counts.refreshes.load(Relaxed),
        // A 401 the worker got as the final answer was not replayed.
        replayed: unauthorized.saturating_sub(tally.final_401s.load(Relaxed)),
        revoked: counts.revoked.load(Relaxed),
        failures: tally.failures.load(Relaxed),
        fingerprint: None,
    }
}
