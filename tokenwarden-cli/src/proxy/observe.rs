//! The proxy's own endpoints, for operators: `metrics` (the library's metrics,
//! see `tokenwarden::metrics`, in the Prometheus text format) and `healthz`
//! (200 while a valid token can be served, else 503; a JSON body either way).
//! Served on the proxy's listener under [`PREFIX`] (nothing under it is
//! forwarded), and with `--metrics-listen ADDR` on a listener of their own as
//! `/metrics` and `/healthz`; both check callers as proxied requests are
//! (`Host`, no browser). Neither ever shows a secret.

use super::guard::Callers;
use crate::exit::{CliError, UNAVAILABLE};
use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use http::{header, HeaderValue, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokenwarden::TokenManager;

/// Where the endpoints are on the proxy's own listener: a path no API is likely
/// to use (requests under it are not forwarded).
pub(super) const PREFIX: &str = "/.tokenwarden";

/// How long `healthz` waits for a token.
const HEALTH_WAIT: Duration = Duration::from_secs(5);

/// Histogram buckets for the durations (seconds): a token request is tens of
/// milliseconds to seconds; a lease wait up to its TTL.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0,
];

/// What the endpoints read.
pub(super) struct Observer {
    handle: PrometheusHandle,
    manager: TokenManager,
    /// Who may call them.
    callers: Callers,
}

/// The process's Prometheus recorder, installed on first use.
fn recorder() -> Result<PrometheusHandle, CliError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .with_recommended_naming(true)
        .set_buckets(&BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| CliError::new(UNAVAILABLE, format!("cannot start the metrics: {e}")))?;
    tokenwarden::metrics::describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

impl Observer {
    pub(super) fn new(manager: TokenManager, callers: Callers) -> Result<Self, CliError> {
        Ok(Self {
            handle: recorder()?,
            manager,
            callers,
        })
    }
}

/// `metrics` and `healthz`.
pub(super) fn routes<S: Clone + Send + Sync + 'static>(observer: Arc<Observer>) -> axum::Router<S> {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        // Nothing else under the prefix goes upstream (with the token).
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such endpoint of tokenwarden's") })
        .with_state(observer)
}

fn refused(observer: &Observer, request: &Request) -> Option<Response> {
    let why = observer.callers.refuse(request.headers())?;
    tracing::warn!(reason = %why, "refused a request");
    Some((StatusCode::FORBIDDEN, why).into_response())
}

async fn metrics(State(observer): State<Arc<Observer>>, request: Request) -> Response {
    if let Some(refused) = refused(&observer, &request) {
        return refused;
    }
    // The hits and gauges, read now; then the exporter's own upkeep.
    tokenwarden::metrics::publish();
    observer.handle.run_upkeep();
    let mut response = observer.handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn healthz(State(observer): State<Arc<Observer>>, request: Request) -> Response {
    if let Some(refused) = refused(&observer, &request) {
        return refused;
    }
    let manager = &observer.manager;
    let token = tokio::time::timeout(HEALTH_WAIT, manager.token()).await;
    let (status, error) = match token {
        Ok(Ok(_)) => (StatusCode::OK, None),
        Ok(Err(error)) => (StatusCode::SERVICE_UNAVAILABLE, Some(error.to_string())),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(format!("no token within {HEALTH_WAIT:?}")),
        ),
    };
    let info = manager.info().await;
    let now = tokenwarden::Clock::now(&tokenwarden::SystemClock);
    let secs = |at: Option<std::time::SystemTime>| {
        at.map(|at| at.duration_since(now).unwrap_or_default().as_secs())
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ok" } else { "unavailable" },
        "error": error,
        "expires_in": info.expires_in.map(|d| d.as_secs()),
        "next_refresh_in": secs(info.refresh_at),
        "retry_in": secs(info.retry_at),
        "unsaved": info.unsaved,
        "last_refresh": crate::last_refresh::describe(manager).await,
        "fingerprint": info.fingerprint,
    });
    (status, axum::Json(body)).into_response()
}
