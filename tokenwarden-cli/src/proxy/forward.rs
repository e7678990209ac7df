//! The handler: forwards one request upstream with the token, and replays it
//! once after a rejected token when its body was kept.

use super::body::Outgoing;
use super::guard::Callers;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use std::sync::Arc;
use tokenwarden::http::{rejects_token, AllowedOrigins};
use tokenwarden::TokenManager;
use url::Url;

/// What every request shares.
pub(super) struct Proxy {
    pub(super) manager: TokenManager,
    /// One client: its pool keeps the upstream connections alive.
    pub(super) client: reqwest::Client,
    pub(super) base_url: Url,
    /// Where the token may go (the base URL's origin, https or loopback).
    pub(super) allowed: AllowedOrigins,
    /// Who may use the proxy.
    pub(super) callers: Callers,
}

/// Headers that concern one connection only, never forwarded.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Forwards `request` to the upstream (the router's fallback: every method and path).
pub(super) async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Some(why) = proxy.callers.refuse(&parts.headers) {
        tracing::warn!(reason = %why, "refused a request");
        return text(StatusCode::FORBIDDEN, &why);
    }
    if let Some(why) = ambiguous_framing(&parts.headers) {
        return text(StatusCode::BAD_REQUEST, why);
    }
    if parts.method == Method::CONNECT {
        return text(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported");
    }
    let Some(url) = target(&proxy.base_url, &parts.uri).filter(|url| proxy.allowed.allows(url))
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "the path leaves the base_url's path",
        );
    };
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(header::EXPECT);
    if let Ok(host) =
        HeaderValue::from_str(&url[url::Position::BeforeHost..url::Position::AfterPort])
    {
        headers.insert(header::HOST, host);
    }
    // The body to send, and the bytes to send again after a rejected token
    // (or a resource server's DPoP nonce challenge).
    let (mut body, kept) = match Outgoing::read(body).await {
        Ok(Outgoing::Buffered(bytes)) => (buffered(&bytes), Some(bytes)),
        Ok(Outgoing::Streaming(body)) => (Some(body), None),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the request body");
            return text(StatusCode::BAD_REQUEST, "could not read the request body");
        }
    };
    let (mut replays, mut nonce_replays) = (0, 0);
    loop {
        let token = match proxy.manager.header().await {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(error = %e, "no access token for the request");
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("no access token: {e}"),
                );
            }
        };
        // The token, and a fresh DPoP proof for a DPoP-bound one (a caller's
        // own `DPoP` header never goes upstream).
        let placement = tokenwarden::http::TokenPlacement::Authorization;
        let method = &parts.method;
        let manager = &proxy.manager;
        if let Err(e) =
            tokenwarden::http::authorize(&placement, &mut headers, &token, method, &url, manager)
        {
            tracing::warn!(error = %e, "could not attach the token");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("no access token: {e}"),
            );
        }
        let mut upstream = reqwest::Request::new(parts.method.clone(), url.clone());
        *upstream.headers_mut() = headers.clone();
        *upstream.body_mut() = body.take();
        let response = match proxy.client.execute(upstream).await {
            Ok(response) => response,
            Err(e) => {
                let e = causes(&e.without_url());
                tracing::warn!(error = %e, "the upstream request failed");
                return text(
                    StatusCode::BAD_GATEWAY,
                    &format!("the upstream request failed: {e}"),
                );
            }
        };
        let (status, answer) = (response.status(), response.headers());
        if tokenwarden::http::wants_nonce(&token, &url, status, answer, manager) {
            // The token is fine: once more, with the server's nonce.
            let Some(again) = kept.as_ref().filter(|_| nonce_replays == 0) else {
                return respond(response);
            };
            nonce_replays += 1;
            body = buffered(again);
            continue;
        }
        if !rejects_token(response.status(), response.headers()) {
            return respond(response);
        }
        proxy.manager.invalidate(token.token());
        let Some(again) = kept.as_ref().filter(|_| replays == 0) else {
            tracing::debug!(
                fingerprint = token.fingerprint(),
                status = response.status().as_u16(),
                "token rejected; not replayed (a streamed body, or replayed already)"
            );
            return respond(response);
        };
        tracing::debug!(
            fingerprint = token.fingerprint(),
            status = response.status().as_u16(),
            "token rejected; replaying with a fresh one"
        );
        replays += 1;
        body = buffered(again);
    }
}

/// Why a request's framing is ambiguous (RFC 9112 §6.3), if it is: both
/// `Transfer-Encoding` and `Content-Length` (a proxy and its upstream could read
/// different bodies: request smuggling), or `Content-Length` values that differ.
fn ambiguous_framing(headers: &HeaderMap) -> Option<&'static str> {
    let lengths: Vec<&[u8]> = headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    if headers.contains_key(header::TRANSFER_ENCODING) && !lengths.is_empty() {
        return Some("a request with both Transfer-Encoding and Content-Length is refused");
    }
    if lengths.windows(2).any(|w| w[0] != w[1]) {
        return Some("a request with Content-Length values that differ is refused");
    }
    None
}

/// A kept body, to send: none if empty (so that a GET gets no `Content-Length`).
fn buffered(bytes: &Bytes) -> Option<reqwest::Body> {
    (!bytes.is_empty()).then(|| bytes.clone().into())
}

/// The upstream URL for `uri`: its path under the base path, and its query.
/// `None` for a path that is not absolute or that leaves the base path.
fn target(base_url: &Url, uri: &Uri) -> Option<Url> {
    if !uri.path().starts_with('/') {
        return None;
    }
    let prefix = base_url.path().trim_end_matches('/');
    let mut url = base_url.clone();
    url.set_path(&format!("{prefix}{}", uri.path()));
    url.set_query(uri.query());
    url.set_fragment(None);
    let under = url
        .path()
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    under.then_some(url)
}

/// Removes the hop-by-hop headers, and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// The upstream's response, its body streamed.
fn respond(upstream: reqwest::Response) -> Response {
    let upstream = http::Response::<reqwest::Body>::from(upstream);
    let (parts, body) = upstream.into_parts();
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = parts.status;
    *response.headers_mut() = parts.headers;
    strip_hop_by_hop(response.headers_mut());
    response
}

/// A response of the proxy's own: one line of text.
fn text(status: StatusCode, message: &str) -> Response {
    (status, format!("tokenwarden proxy: {message}\n")).into_response()
}

/// An error and its causes, on one line.
fn causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_under_the_base_path() {
        let to = |base: &str, uri: &str| {
            target(&Url::parse(base).unwrap(), &uri.parse().unwrap()).map(String::from)
        };
        let api = "http://127.0.0.1:9/api";
        assert_eq!(
            to(api, "/x/y?q=1&r=%20").as_deref(),
            Some("http://127.0.0.1:9/api/x/y?q=1&r=%20")
        );
        assert_eq!(
            to("http://127.0.0.1:9/api/", "/x").as_deref(),
            Some("http://127.0.0.1:9/api/x")
        );
        assert_eq!(to(api, "/").as_deref(), Some("http://127.0.0.1:9/api/"));
        assert_eq!(to("https://h/", "/x").as_deref(), Some("https://h/x"));
        assert_eq!(to(api, "/../admin"), None);
        assert_eq!(to(api, "/%2e%2e/admin"), None);
        assert_eq!(to(api, "/../api2/x"), None);
        assert_eq!(to(api, "*"), None);
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic abc"),
            ("upgrade", "websocket"),
            ("x-kept", "1"),
            ("content-length", "3"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "x-kept"]);
    }
}
