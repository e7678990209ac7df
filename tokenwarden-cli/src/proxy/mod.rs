//! `tokenwarden proxy`: a local reverse proxy to a profile's `base_url` that puts
//! the profile's token on every request, so that curl, Python or any tool gets
//! valid tokens without code.
//!
//! What it does with each request:
//!
//! - **Target**: every method, path and query goes to `base_url` with the path
//!   appended to the base path (`base_url = "https://api/v1"` and
//!   `GET /users?x=1` give `https://api/v1/users?x=1`). A path that would leave
//!   the base path (`/../admin`) is refused with 400, and `CONNECT` with 405.
//! - **Headers**: hop-by-hop headers (`Connection` and the headers it names,
//!   `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`) and
//!   `Expect` are not forwarded, either way; `Host` is set to the upstream's. **Any
//!   `Authorization` header the client sends is replaced by the profile's token.**
//!   Responses, redirects included, come back as they are: redirects are not
//!   followed (a token never follows one to another host) and `Location` is not
//!   rewritten. Protocol upgrades (WebSocket) are not supported.
//! - **Rejected token** (401, or 403 with `error="invalid_token"`, as
//!   [`tokenwarden::http::rejects_token`] decides): the token is invalidated, a
//!   fresh one is got, and the request is replayed once, like `tokenwarden-reqwest`
//!   and the tower layer do.
//! - **Bodies** stream both ways, never held whole beyond 1 MiB. To be replayed,
//!   a request body must be kept: one of up to [`REPLAY_LIMIT`](body::REPLAY_LIMIT)
//!   (1 MiB, known from `Content-Length`, or read up to the limit when the length
//!   is unknown) is buffered and replayed; a larger one is sent streaming and, if
//!   its token is rejected, that response is returned as it is (the token is
//!   still invalidated, so the next request gets a fresh one).
//! - **Where it listens**: `127.0.0.1:8790` by default (`--listen`), or a Unix
//!   socket (`--unix-socket PATH`, made 0600: only this user can connect; the
//!   safest choice on a shared machine, e.g. `curl --unix-socket PATH`).
//! - **Who may use it** (see [`guard`]): only requests whose `Host` names the
//!   listening address (or a name given with `--allow-host`), and no browser
//!   request (`Origin`, `Sec-Fetch-Site`; allow a site's pages with
//!   `--allow-origin`): others get 403. The upstream must be
//!   https, or http on loopback, as for `tokenwarden curl` and the library's
//!   [`AllowedOrigins`](tokenwarden::http::AllowedOrigins); another is refused at
//!   start.
//! - **Framing** (RFC 9112 §6, request smuggling): a request with
//!   `Content-Length` values that differ, or a `Transfer-Encoding` that does not
//!   end in `chunked`, is refused with 400. One with both `Transfer-Encoding` and
//!   `Content-Length` is read by `Transfer-Encoding` alone (hyper drops the
//!   length; the check here refuses it should one ever come through), forwarded
//!   with one framing, and its connection closed after the answer. The upstream
//!   request is framed anew by the proxy's client.
//! - **Errors**: an upstream that cannot be reached gives 502, a token that cannot
//!   be had gives 503, each with a one-line text body and a `tracing` warning.
//!   Neither ever shows a token.
//!
//! - **For operators** (see [`observe`]): `/.tokenwarden/metrics` (Prometheus
//!   text) and `/.tokenwarden/healthz` on the same listener (paths under
//!   `/.tokenwarden/` are not forwarded), and with `--metrics-listen ADDR` as
//!   `/metrics` and `/healthz` on a listener of their own.
//!
//! Connections are kept alive on both sides: one `reqwest` client pools the
//! upstream connections, and the server keeps HTTP/1.1 client connections open.

mod body;
mod forward;
mod guard;
mod observe;

use crate::exit::{CliError, OK, UNAVAILABLE};
use axum::serve::ListenerExt as _;
use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::http::AllowedOrigins;
use tokenwarden::TokenManager;
use url::Url;

/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the proxy listens and who may use it.
#[derive(Debug)]
pub struct Access {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// A Unix socket to listen on instead (created 0600).
    pub unix_socket: Option<std::path::PathBuf>,
    /// More names for the proxy in `Host`.
    pub allow_hosts: Vec<String>,
    /// Web origins whose pages may use the proxy.
    pub allow_origins: Vec<String>,
    /// Where to serve `/metrics` and `/healthz` too, on a listener of their own.
    pub metrics_listen: Option<SocketAddr>,
    /// The profile's name (for the record `status` reads).
    pub profile: String,
    /// The client certificate the upstream client presents (mutual TLS), and a
    /// CA it trusts beside the platform's, as the profile names them.
    pub identity: Option<reqwest::Identity>,
    pub ca: Option<reqwest::Certificate>,
}

/// Serves the proxy on `access.listen` (or its Unix socket) until Ctrl-C or
/// SIGTERM (then returns `OK`); a second signal stops it without waiting for the
/// requests still in flight. Prints one line to stderr once listening, with the
/// bound address (so `--listen 127.0.0.1:0` works). A listen address that cannot
/// be used is a usage error; so is an upstream the token may not go to.
pub async fn run(manager: TokenManager, base_url: Url, access: Access) -> Result<u8, CliError> {
    if !matches!(base_url.scheme(), "http" | "https") || base_url.host().is_none() {
        return Err(CliError::usage(format!(
            "the profile's base_url `{}` is not an http(s) URL",
            shown(&base_url)
        )));
    }
    // The same rule as `tokenwarden curl` and the library's adapters.
    let allowed = AllowedOrigins::of(shown(&base_url).as_str())?;
    let mut client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if let Some(identity) = access.identity.clone() {
        client = client.identity(identity);
    }
    if let Some(ca) = access.ca.clone() {
        client = client.add_root_certificate(ca);
    }
    let client = client
        .build()
        .map_err(|e| CliError::new(UNAVAILABLE, format!("cannot build the HTTP client: {e}")))?;
    // Ended with the proxy: the record `status` reads, and the metrics listener.
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::last_refresh::keep(
        access.profile.clone(),
        manager.clone(),
    ));
    if let Some(address) = access.metrics_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| bind_error(address, &e))?;
        let local = listener.local_addr().map_err(|e| bind_error(address, &e))?;
        // The same rules as the proxy's: its `Host` (or an --allow-host name),
        // and no web page (a rebound DNS name reads nothing here either).
        let callers = guard::Callers::new(local, &access.allow_hosts, &[]);
        let observer = Arc::new(observe::Observer::new(manager.clone(), callers)?);
        eprintln!("tokenwarden proxy: metrics on http://{local}/metrics, health on http://{local}/healthz");
        if !local.ip().is_loopback() {
            eprintln!(
                "tokenwarden proxy: warning: the metrics listener {local} is not a loopback address: \
                 give scrapers' names for it with --allow-host"
            );
        }
        tasks.spawn(async move {
            let _ = axum::serve(listener, observe::routes(observer)).await;
        });
    }
    let proxy = |callers: guard::Callers| {
        let observer = observe::Observer::new(manager.clone(), callers.clone())?;
        let proxy = Arc::new(forward::Proxy {
            manager: manager.clone(),
            client,
            base_url: base_url.clone(),
            allowed,
            callers,
        });
        Ok::<_, CliError>(
            axum::Router::new()
                .nest(observe::PREFIX, observe::routes(Arc::new(observer)))
                .fallback(forward::forward)
                .with_state(proxy),
        )
    };
    #[cfg(unix)]
    if let Some(path) = &access.unix_socket {
        let listener = crate::unix_socket::bind(path)?;
        eprintln!(
            "tokenwarden proxy: listening on unix:{}, forwarding to {}",
            path.display(),
            shown(&base_url)
        );
        let app = proxy(guard::Callers::unix(&access.allow_origins))?;
        let served = serve(listener, app).await;
        let _ = std::fs::remove_file(path);
        crate::last_refresh::save(&access.profile, &manager).await;
        return served;
    }
    let listen = access.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| bind_error(listen, &e))?;
    let local = listener.local_addr().map_err(|e| bind_error(listen, &e))?;
    eprintln!(
        "tokenwarden proxy: listening on http://{local}, forwarding to {}",
        shown(&base_url)
    );
    if !local.ip().is_loopback() {
        eprintln!(
            "tokenwarden proxy: warning: {local} is not a loopback address: anyone who can reach it \
             sends requests with your token, and browsers' requests to it cannot all be told apart"
        );
    }
    let app = proxy(guard::Callers::new(
        local,
        &access.allow_hosts,
        &access.allow_origins,
    ))?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let served = serve(listener, app).await;
    // The last attempt, as it stood when the proxy stopped.
    crate::last_refresh::save(&access.profile, &manager).await;
    served
}

/// Serves `app` on `listener` until the first signal (then lets the requests in
/// flight end), or the second.
async fn serve<L>(listener: L, app: axum::Router) -> Result<u8, CliError>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let stopping = Arc::new(tokio::sync::Notify::new());
    let first = stopping.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        signal().await;
        eprintln!("tokenwarden proxy: stopping (again to stop now)");
        first.notify_one();
    });
    let now = async {
        stopping.notified().await;
        signal().await;
    };
    tokio::select! {
        served = server.into_future() => served
            .map_err(|e| CliError::new(UNAVAILABLE, format!("the proxy failed: {e}")))?,
        () = now => {}
    }
    Ok(OK)
}

/// Ctrl-C or SIGTERM; never, for a signal whose handler cannot be installed.
async fn signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// A listen address that cannot be used: a usage error.
fn bind_error(listen: SocketAddr, error: &std::io::Error) -> CliError {
    if error.kind() == std::io::ErrorKind::AddrInUse {
        CliError::usage(format!("cannot listen on {listen}: the address is in use"))
            .hint("choose another port with --listen (127.0.0.1:0 picks a free one)")
    } else {
        CliError::usage(format!("cannot listen on {listen}: {error}"))
            .hint("check the --listen address (e.g. 127.0.0.1:8790)")
    }
}

/// The URL as it may be shown: without a password it might hold.
fn shown(url: &Url) -> Url {
    let mut url = url.clone();
    let _ = url.set_password(None);
    url
}
