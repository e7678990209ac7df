//! [`AuthClient`]: a reqwest client with a base URL whose requests carry the token.

use crate::middleware::Direct;
use crate::TokenMiddleware;
use http::Extensions;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Body, Method, Response};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::http::{AllowedOrigins, TokenPlacement};
use tokenwarden::{Error, Result, TokenManager, TokenRegistry};
use url::Url;

/// A client for one API: relative paths resolve against its base URL, and its
/// requests carry a valid token, exactly as with [`TokenMiddleware`] (which it
/// runs directly, without a middleware stack in between). Cheap to clone.
///
/// ```no_run
/// use tokenwarden::{source::from_fn, Token, TokenManager};
/// use tokenwarden_reqwest::AuthClient;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = TokenManager::builder(from_fn("api", || async { Ok(Token::new("t")) })).build()?;
/// let client = AuthClient::builder()
///     .base_url("https://api.example.com/v1/")
///     .token_manager(manager)
///     .build()?;
/// let users: serde_json::Value = client.get("users").send().await?.json().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AuthClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    middleware: TokenMiddleware,
    base_url: Url,
}

type PerKey = Box<dyn FnOnce(AllowedOrigins) -> TokenMiddleware + Send>;

/// Builds an [`AuthClient`]. Made by [`AuthClient::builder`].
#[derive(Default)]
pub struct AuthClientBuilder {
    base_url: Option<String>,
    manager: Option<TokenManager>,
    per_key: Option<PerKey>,
    origins: Option<AllowedOrigins>,
    placement: TokenPlacement,
    max_replays: Option<u32>,
    http: Option<reqwest::Client>,
    identity: Option<reqwest::Identity>,
    roots: Vec<reqwest::Certificate>,
}

/// A request being built by an [`AuthClient`]; [`send`](Self::send) sends it with
/// the token.
#[derive(Debug)]
#[must_use = "a request does nothing until sent"]
pub struct AuthRequestBuilder {
    client: AuthClient,
    request: reqwest::RequestBuilder,
    extensions: Extensions,
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
        let request = self
            .inner
            .http
            .request(method, resolve(&self.inner.base_url, path));
        AuthRequestBuilder {
            client: self.clone(),
            request,
            extensions: Extensions::new(),
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
    pub fn http_client(&self) -> &reqwest::Client {
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

    /// Attaches a value the token's middleware can read: the key of a per-key
    /// client ([`AuthClientBuilder::token_registry`]).
    pub fn with_extension<T: Clone + Send + Sync + 'static>(mut self, extension: T) -> Self {
        self.extensions.insert(extension);
        self
    }

    /// Sends the request with a valid token (if its origin is allowed); a rejected
    /// token is refreshed and the request replayed once when its body can be.
    ///
    /// The answer is a [`reqwest::Response`]; the error a
    /// [`reqwest_middleware::Error`]: the token's failure (a
    /// [`tokenwarden::Error`] inside its `Middleware` variant), or reqwest's.
    pub async fn send(self) -> Result<Response, reqwest_middleware::Error> {
        let inner = &self.client.inner;
        let request = self.request.build()?;
        let mut direct = Direct(&inner.http);
        if !inner.middleware.allows(&request) {
            return Ok(inner.http.execute(request).await?);
        }
        let manager = inner.middleware.pick(&self.extensions)?;
        inner
            .middleware
            .execute(request, &manager, &mut direct)
            .await
    }
}

impl AuthClientBuilder {
    /// The API's base URL. Required. Keep the trailing `/` of a base path
    /// (`https://host/v1/`), or relative paths replace its last segment.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The manager whose tokens the requests carry. Required, unless a registry is given.
    pub fn token_manager(mut self, manager: TokenManager) -> Self {
        self.manager = Some(manager);
        self
    }

    /// Tokens per user, tenant or service from `registry`: each request names its
    /// key with `.with_extension(key)` (see [`TokenMiddleware::per_key`]); a key
    /// of another type than `K` fails when the request is sent. Prefer
    /// [`build_keyed`](Self::build_keyed), whose requests take the key as an
    /// argument, checked by the compiler. Replaces
    /// [`token_manager`](Self::token_manager).
    pub fn token_registry<K>(mut self, registry: Arc<TokenRegistry<K>>) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
    {
        self.per_key = Some(Box::new(move |origins| {
            TokenMiddleware::per_key(registry, origins)
        }));
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

    /// Replays after a rejected token. Defaults to 1.
    pub fn max_replays(mut self, max_replays: u32) -> Self {
        self.max_replays = Some(max_replays);
        self
    }

    /// The reqwest client (proxies, TLS, timeouts). Defaults to `reqwest::Client::new()`,
    /// or with a token in a custom header, to a client whose redirects stay on one
    /// origin ([`same_origin_redirects`](crate::same_origin_redirects)); with such a
    /// placement, give yours that policy too.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The TLS client certificate its own HTTP client presents (mutual TLS):
    /// for tokens the server bound to a certificate (RFC 8705), the one the
    /// token endpoint saw
    /// (`tokenwarden::source::oauth2::ClientCertificate::identity`). A client
    /// given with [`http_client`](Self::http_client) presents its own.
    pub fn identity(mut self, identity: reqwest::Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// A CA its own HTTP client trusts beside the platform's roots (an API of a
    /// private PKI). A client given with [`http_client`](Self::http_client)
    /// trusts what it trusts.
    pub fn add_root_certificate(mut self, certificate: reqwest::Certificate) -> Self {
        self.roots.push(certificate);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<AuthClient> {
        let (base_url, origins) = base_and_origins(self.base_url, self.origins)?;
        let middleware = match (self.per_key, self.manager) {
            (Some(per_key), _) => per_key(origins),
            (None, Some(manager)) => TokenMiddleware::new(manager, origins),
            (None, None) => {
                return Err(Error::config(
                    "an AuthClient needs a token_manager or a token_registry",
                ))
            }
        };
        let own_client = self.http.is_none();
        tls_for_own_client_only(own_client, &self.identity, &self.roots)?;
        let http = match self.http {
            Some(http) => http,
            None => {
                let mut builder = reqwest::Client::builder()
                    .redirect(crate::redirect::policy_for(&self.placement));
                for root in self.roots {
                    builder = builder.add_root_certificate(root);
                }
                match self.identity {
                    Some(identity) => builder.identity(identity),
                    None => builder,
                }
            }
            .build()
            .map_err(|e| Error::config(format!("could not build the HTTP client: {e}")))?,
        };
        let mut middleware = middleware.placement(self.placement);
        if own_client {
            middleware = middleware.with_no_round_trips();
        }
        if let Some(max_replays) = self.max_replays {
            middleware = middleware.max_replays(max_replays);
        }
        Ok(AuthClient {
            inner: Arc::new(Inner {
                http,
                middleware,
                base_url,
            }),
        })
    }
}

impl std::fmt::Debug for AuthClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthClientBuilder")
            .field("base_url", &self.base_url)
            .field("manager", &self.manager)
            .field("per_key", &self.per_key.is_some())
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

/// `path` resolved against `base` (an absolute URL stays as it is); where it
/// cannot be, `path` itself: reqwest reports the bad URL when the request is sent.
pub(crate) fn resolve(base: &Url, path: &str) -> String {
    base.join(path)
        .map(String::from)
        .unwrap_or_else(|_| path.to_owned())
}

/// A client's base URL, and the origins that get the token: those given, else
/// the base URL's.
pub(crate) fn base_and_origins(
    base_url: Option<String>,
    origins: Option<AllowedOrigins>,
) -> Result<(Url, AllowedOrigins)> {
    let base = base_url.ok_or_else(|| Error::config("an AuthClient needs a base_url"))?;
    let base_url =
        Url::parse(&base).map_err(|e| Error::config(format!("the base_url is not a URL: {e}")))?;
    let origins = match origins {
        Some(origins) => origins,
        None => AllowedOrigins::of(base_url.as_str())?,
    };
    Ok((base_url, origins))
}

/// `identity` and `add_root_certificate` set up an `AuthClient`'s own HTTP
/// client (async or blocking): with a client of the caller's they would be
/// dropped, so they are a configuration error instead.
pub(crate) fn tls_for_own_client_only(
    own_client: bool,
    identity: &Option<reqwest::Identity>,
    roots: &[reqwest::Certificate],
) -> Result<()> {
    if own_client || (identity.is_none() && roots.is_empty()) {
        return Ok(());
    }
    Err(Error::config(
        "identity and add_root_certificate set up the AuthClient's own HTTP client: \
         give the one passed to http_client its certificate and roots instead",
    ))
}
