//! What the HTTP adapters and the OAuth2 client tell `tracing` about each
//! request: a span with OpenTelemetry's HTTP client fields, and URLs without
//! what may hold a secret.

use url::Url;

/// A URL as logs, spans and errors show it (OpenTelemetry's `url.full`, less
/// what may hold a secret): scheme, host, port and path; never user info, query
/// or fragment.
pub fn loggable_url(url: &Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.path()
    )
}

/// The span the HTTP adapters open around each request they put a token on
/// (`tokenwarden.request`, at DEBUG), with OpenTelemetry's HTTP client fields:
/// `otel.kind`, `http.request.method`, `server.address`, `server.port`,
/// `url.full` ([`loggable_url`]), and, once known, `http.response.status_code`
/// and `error.type` ([`record_outcome`]); and the token's `fingerprint` and the
/// number of `replays`, recorded by the adapter.
pub fn request_span(method: &http::Method, url: &Url) -> tracing::Span {
    tracing::debug_span!(
        "tokenwarden.request",
        otel.kind = "client",
        otel.name = %method,
        http.request.method = %method,
        server.address = url.host_str().unwrap_or_default(),
        server.port = url.port_or_known_default(),
        url.full = loggable_url(url),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        fingerprint = tracing::field::Empty,
        replays = 0u32,
    )
}

/// Records how a request of [`request_span`] ended on `span`: its status
/// (`error.type` is the status code from 400 on, as OpenTelemetry has it), or,
/// without a response, the kind of error.
pub fn record_outcome(span: &tracing::Span, outcome: std::result::Result<http::StatusCode, &str>) {
    if span.is_disabled() {
        return;
    }
    match outcome {
        Ok(status) => {
            span.record("http.response.status_code", status.as_u16());
            if status.as_u16() >= 400 {
                span.record("error.type", status.as_str());
            }
        }
        Err(kind) => {
            span.record("error.type", kind);
        }
    }
}
