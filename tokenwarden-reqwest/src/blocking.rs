//! [`AuthClient`] for `reqwest::blocking` (feature `blocking`): the same client
//! as the async [`crate::AuthClient`], with tokens from a
//! [`tokenwarden::blocking::TokenManager`], for code without a runtime.
//!
//! As the async one: the token goes only to allowed origins (by default the
//! base URL's), a 401 (or 403 `invalid_token`) to a request that carried it
//! invalidates it (many threads' 401s cause one refresh) and the request is
//! replayed once when its body can be cloned, and redirects are followed as
//! [`crate::AuthClient`] follows them.
//!
//! ```no_run
//! use std::time::Duration;
//! use tokenwarden::{blocking::TokenManager, source::from_fn, Token};
//! use tokenwarden_reqwest::blocking::AuthClient;
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = TokenManager::builder(from_fn("api", || async {
//!     Ok(Token::new("token").with_expires_in(Duration::from_secs(3600)))
//! }))
//! .build_blocking()?;
//! let client = AuthClient::builder()
//!     .base_url("https://api.example.com/v1/")
//!     .token_manager(manager)
//!     .build()?;
//! let users = client.get("users").send()?.text()?;
//! # Ok(()) }
//! ```

use crate::client::{base_and_origins, resolve};
use crate::redirect::{carried, policy_for};
use crate::DEFAULT_MAX_REPLAYS;
use reqwest::blocking::{Body, Response};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use reqwest_middleware::Error as SendError;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::blocking::TokenManager;
use tokenwarden::http::{rejects_token, AllowedOrigins, TokenPlacement};
use tokenwarden::{Error, Result};
use url::Url;

/// A blocking client for one API whose requests carry a valid token. Cheap to
/// clone; use it from any thread outside a Tokio runtime.
#[derive(Debug, Clone)]
pub struct AuthClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::blocking::Client,
    manager: TokenManager,
    origins: AllowedOrigins,
    placement: TokenPlacement,
    max_replays: u32,
    /// Whether the client is this crate's own (its redirects never come back to
    /// an origin they left).
    own_client: bool,
    base_url: Url,
}

/// Builds a blocking [`AuthClient`]. Made by [`AuthClient::builder`].
#[derive(Debug, Default)]
pub struct AuthClientBuilder {
    base_url: Option<String>,
    manager: Option<TokenManager>,
    origins: Option<AllowedOrigins>,
    placement: TokenPlacement,
    max_replays: Option<u32>,
    http: Option<reqwest::blocking::Client>,
    identity: Option<reqwest::Identity>,
    roots: Vec<reqwest::Certificate>,
}

/// A request being built by a blocking [`AuthClient`]; [`send`](Self::send)
/// sends it with the token.
#[derive(Debug)]
#[must_use = "a request does nothing until sent"]
pub struct AuthRequestBuilder {
    client: AuthClient,
    request: reqwest::blocking::RequestBuilder,
}

impl AuthClient {
    /// Starts building a client.
    pub fn builder() -> AuthClientBuilder {
        AuthClientBuilder::default()
    }

    /// The base URL relative paths resolve against.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// A request to `path`: relative to the base URL, or absolute (which gets the
    /// token only if its origin is allowed).
    pub fn request(&self, method: Method, path: &str) -> AuthRequestBuilder {
        let url = resolve(&self.inner.base_url, path);
        AuthRequestBuilder {
            client: self.clone(),
            request: self.inner.http.request(method, url),
        }
    }

    /// A GET to `path`.
    pub fn get(&self, path: &str) -> AuthRequestBuilder {
        self.request(Method::GET, path)
    }

    /// A POST to `path`.
    pub fn post(&self, path: &str) -> AuthRequestBuilder {
        self.request(Method::POST, path)
    }

    /// A PUT to `path`.
    pub fn put(&self, path: &str) -> AuthRequestBuilder {
        self.request(Method::PUT, path)
    }

    /// A PATCH to `path`.
    pub fn patch(&self, path: &str) -> AuthRequestBuilder {
        self.request(Method::PATCH, path)
    }

    /// A DELETE to `path`.
    pub fn delete(&self, path: &str) -> AuthRequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// The underlying reqwest client (without the token).
    pub fn http_client(&self) -> &reqwest::blocking::Client {
        &self.inner.http
    }
}

impl AuthRequestBuilder {
    /// Adds a header.
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.request = self.request.header(name, value);
        self
    }

    /// Adds headers.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.request = self.request.headers(headers);
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Body>) -> Self {
        self.request = self.request.body(body);
        self
    }

    /// Sets a JSON body.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, json: &T) -> Self {
        self.request = self.request.json(json);
        self
    }

    /// Sets a form body.
    pub fn form<T: serde::Serialize + ?Sized>(mut self, form: &T) -> Self {
        self.request = self.request.form(form);
        self
    }

    /// Adds query parameters.
    pub fn query<T: serde::Serialize + ?Sized>(mut self, query: &T) -> Self {
        self.request = self.request.query(query);
        self
    }

    /// Sets the timeout of this request.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.request = self.request.timeout(timeout);
        self
    }

    /// Sends the request with a valid token (if its origin is allowed); a
    /// rejected token is refreshed and the request replayed once when its body
    /// can be (a body from a reader cannot). The error is the token's failure (a
    /// [`tokenwarden::Error`] in the `Middleware` variant) or reqwest's, as with
    /// the async client.
    pub fn send(self) -> std::result::Result<Response, SendError> {
        tokenwarden::blocking::check_outside_runtime().map_err(SendError::middleware)?;
        let inner = &self.client.inner;
        let mut request = self.request.build()?;
        if !inner.origins.allows(request.url()) {
            return Ok(inner.http.execute(request)?);
        }
        let (mut replays, mut nonce_replays) = (0, 0);
        let manager = inner.manager.as_async();
        loop {
            let sent = inner.manager.header().map_err(SendError::middleware)?;
            // A DPoP-bound token may need one more copy, for the server's nonce.
            let nonce_may_be_asked = nonce_replays == 0 && sent.token().is_dpop();
            let replay = (replays < inner.max_replays || nonce_may_be_asked)
                .then(|| request.try_clone())
                .flatten();
            let (method, sent_url) = (request.method().clone(), request.url().clone());
            let headers = request.headers_mut();
            tokenwarden::http::authorize(
                &inner.placement,
                headers,
                &sent,
                &method,
                &sent_url,
                manager,
            )
            .map_err(SendError::middleware)?;
            let response = inner.http.execute(request)?;
            // A resource server that wants its DPoP nonce: one replay with it.
            let (status, headers) = (response.status(), response.headers());
            if response.url() == &sent_url
                && tokenwarden::http::wants_nonce(&sent, &sent_url, status, headers, manager)
            {
                let Some(again) = replay.filter(|_| nonce_replays == 0) else {
                    return Ok(response);
                };
                request = again;
                nonce_replays += 1;
                continue;
            }
            if !rejects_token(response.status(), response.headers())
                || crate::redirect::stale_proof(&sent, response.url(), &sent_url)
                || !carried(inner.own_client, response.url(), &sent_url)
            {
                return Ok(response);
            }
            inner.manager.invalidate(sent.token());
            let Some(again) = replay.filter(|_| replays < inner.max_replays) else {
                tracing::debug!(
                    status = response.status().as_u16(),
                    "token rejected; not replayed (a body from a reader, or replays used up)"
                );
                return Ok(response);
            };
            tracing::debug!(
                status = response.status().as_u16(),
                "token rejected; refreshed and replaying"
            );
            request = again;
            replays += 1;
        }
    }
}

impl AuthClientBuilder {
    /// The API's base URL. Required. Keep the trailing `/` of a base path.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The manager whose tokens the requests carry. Required.
    pub fn token_manager(mut self, manager: TokenManager) -> Self {
        self.manager = Some(manager);
        self
    }

    /// The origins that get the token. Defaults to the base URL's origin only.
    pub fn allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.origins = Some(origins);
        self
    }

    /// Where the token goes. Defaults to `Authorization: <type> <token>`.
    pub fn placement(mut self, placement: TokenPlacement) -> Self {
        self.placement = placement;
        self
    }

    /// Replays after a rejected token. Defaults to [`DEFAULT_MAX_REPLAYS`] (1).
    pub fn max_replays(mut self, max_replays: u32) -> Self {
        self.max_replays = Some(max_replays);
        self
    }

    /// The reqwest client (proxies, TLS, timeouts). Defaults to one made as the
    /// async client's is; with a token in a custom header, give yours
    /// [`same_origin_redirects`](crate::same_origin_redirects).
    pub fn http_client(mut self, http: reqwest::blocking::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The TLS client certificate its own HTTP client presents, as
    /// [`crate::AuthClientBuilder::identity`].
    pub fn identity(mut self, identity: reqwest::Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// A CA its own HTTP client trusts, as
    /// [`crate::AuthClientBuilder::add_root_certificate`].
    pub fn add_root_certificate(mut self, certificate: reqwest::Certificate) -> Self {
        self.roots.push(certificate);
        self
    }

    /// Builds the client. Outside a Tokio runtime, as `reqwest::blocking` needs:
    /// inside one it is an [`ErrorKind::Config`](tokenwarden::ErrorKind::Config)
    /// error (reqwest would panic); use [`crate::AuthClient`] there.
    pub fn build(self) -> Result<AuthClient> {
        tokenwarden::blocking::check_outside_runtime()?;
        let (base_url, origins) = base_and_origins(self.base_url, self.origins)?;
        let manager = self
            .manager
            .ok_or_else(|| Error::config("an AuthClient needs a token_manager"))?;
        let own_client = self.http.is_none();
        crate::client::tls_for_own_client_only(own_client, &self.identity, &self.roots)?;
        let http = match self.http {
            Some(http) => http,
            None => {
                let mut builder =
                    reqwest::blocking::Client::builder().redirect(policy_for(&self.placement));
                for root in self.roots {
                    builder = builder.add_root_certificate(root);
                }
                if let Some(identity) = self.identity {
                    builder = builder.identity(identity);
                }
                builder
            }
            .build()
            .map_err(|e| Error::config(format!("could not build the HTTP client: {e}")))?,
        };
        Ok(AuthClient {
            inner: Arc::new(Inner {
                http,
                manager,
                origins,
                placement: self.placement,
                max_replays: self.max_replays.unwrap_or(DEFAULT_MAX_REPLAYS),
                own_client,
                base_url,
            }),
        })
    }
}
