//! The two embedded servers, each on its own loopback port: an OAuth2
//! authorization server (`POST /token`, RFC 6749) and an API
//! (`GET /api/items/{n}`) that accepts only live tokens of that server.

use super::authority::{Authority, Issue};
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::json;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The running servers; dropping this stops them.
#[derive(Debug)]
pub struct Servers {
    /// The token endpoint, `http://127.0.0.1:<port>/token`.
    pub token_url: String,
    /// The API's base URL, `http://127.0.0.1:<port>/api/`.
    pub api_url: String,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the authorization server and the API of `authority` on loopback ports.
pub async fn start(authority: Arc<Authority>) -> std::io::Result<Servers> {
    let auth = Router::new()
        .route("/token", post(token))
        .with_state(authority.clone());
    let api = Router::new()
        .route("/api/items/{n}", get(item))
        .with_state(authority);
    let (auth_addr, auth_task) = serve(auth).await?;
    let (api_addr, api_task) = serve(api).await?;
    Ok(Servers {
        token_url: format!("http://{auth_addr}/token"),
        api_url: format!("http://{api_addr}/api/"),
        tasks: vec![auth_task, api_task],
    })
}

/// Serves `app` on a free loopback port.
async fn serve(app: Router) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "a demo server stopped");
        }
    });
    Ok((addr, task))
}

/// The token endpoint: `client_credentials` and `refresh_token` grants for the
/// demo client authenticated by `client_secret_basic`.
async fn token(
    State(authority): State<Arc<Authority>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !authority.is_client(headers.get(AUTHORIZATION)) {
        let challenge = [(WWW_AUTHENTICATE, "Basic realm=\"tokenwarden-demo\"")];
        let error = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "wrong client");
        return (challenge, error).into_response();
    }
    let issue = match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => authority.login(),
        Some("refresh_token") => match form.get("refresh_token").and_then(|r| authority.refresh(r))
        {
            Some(issue) => issue,
            None => {
                let why = "unknown or used refresh token";
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why);
            }
        },
        _ => {
            let why = "client_credentials or refresh_token";
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", why);
        }
    };
    token_response(issue)
}

/// A successful token response (RFC 6749 §5.1), never cached.
fn token_response(issue: Issue) -> Response {
    let body = json!({
        "access_token": issue.access_token,
        "token_type": "Bearer",
        "expires_in": issue.expires_in,
        "refresh_token": issue.refresh_token,
    });
    let headers = [(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")];
    (headers, Json(body)).into_response()
}

/// An error response (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({ "error": error, "error_description": description });
    (status, [(CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// `GET /api/items/{n}`: the item for a live bearer token, else a 401 with the
/// challenge of RFC 6750 §3.
async fn item(
    State(authority): State<Arc<Authority>>,
    Path(n): Path<u64>,
    headers: HeaderMap,
) -> Response {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let challenge = match bearer {
        Some(token) if authority.accepts(token) => {
            return Json(json!({ "id": n, "name": format!("item {n}") })).into_response();
        }
        Some(_) => {
            "Bearer realm=\"tokenwarden-demo\", error=\"invalid_token\", \
             error_description=\"unknown, expired or revoked token\""
        }
        None => "Bearer realm=\"tokenwarden-demo\"",
    };
    authority.counts.unauthorized.fetch_add(1, Relaxed);
    (
        StatusCode::UNAUTHORIZED,
        [(WWW_AUTHENTICATE, challenge)],
        "unauthorized",
    )
        .into_response()
}
