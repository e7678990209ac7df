//! [`OAuth2Client`]: one client registration at one authorization server: its
//! endpoints (given, or discovered from the issuer), its authentication, and the
//! HTTP calls every grant makes, with timeouts, retries and strict parsing.
//!
//! Retries are [`retry`]'s: see [`RetryPolicy`]. Within a manager's refresh, each
//! request's timeout is cut to the refresh's time left ([`time_left`]).

use super::auth::{ClientAuth, JwtSigner};
use super::certificate::ClientCertificate;
use super::discovery::{self, ProviderMetadata};
use super::response::{self, Answer};
pub(crate) use super::retry::Replay;
pub use super::retry::RetryPolicy;
use super::retry::{self, parse_retry_after};
use crate::dpop::{DpopAlgorithm, DpopKey, DpopNonces};
use crate::source::time_left;
use crate::{ClientSecret, Clock, Error, Result, SystemClock, Token, TokenKey};
use reqwest::header::{ACCEPT, AUTHORIZATION, RETRY_AFTER};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tracing::Instrument as _;
use url::Url;

/// The default timeout of one request to the authorization server: 10 s, a third of
/// a manager's default refresh timeout, so that a retry fits in one refresh.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The default timeout for connecting to the authorization server: 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response body read from the authorization server.
const MAX_BODY_BYTES: usize = 1 << 20;

/// A client registered at an authorization server. Cheap to clone; its grants
/// ([`client_credentials`](Self::client_credentials), [`password`](Self::password),
/// [`refresh_token`](Self::refresh_token)) are token sources for a
/// [`TokenManager`](crate::TokenManager).
///
/// ```no_run
/// use tokenwarden::source::oauth2::OAuth2Client;
/// use tokenwarden::TokenManager;
///
/// # fn main() -> tokenwarden::Result<()> {
/// let client = OAuth2Client::builder()
///     .issuer("https://auth.example.com") // endpoints from /.well-known/openid-configuration
///     .client_id("billing-service")
///     .client_secret(std::env::var("BILLING_SECRET").unwrap_or_default())
///     .build()?;
/// let manager = TokenManager::builder(client.client_credentials().scope("invoices:read")).build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OAuth2Client {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    client_id: String,
    auth: ClientAuth,
    issuer: Option<Url>,
    /// The issuer identifier exactly as configured (compared as a string).
    issuer_id: Option<String>,
    token_url: Option<Url>,
    revocation_url: Option<Url>,
    authorization_url: Option<Url>,
    device_authorization_url: Option<Url>,
    http: reqwest::Client,
    timeout: Duration,
    retry: RetryPolicy,
    assertion_audience: AssertionAudience,
    accept_narrower_scope: bool,
    clock: Arc<dyn Clock>,
    metadata: OnceCell<ProviderMetadata>,
    /// The issuer's published keys, for ID tokens.
    jwks: tokio::sync::Mutex<Option<Arc<jsonwebtoken::jwk::JwkSet>>>,
    /// DPoP: the algorithm of the keys its grants make, if it uses DPoP.
    dpop: Option<DpopAlgorithm>,
    /// Its TLS client certificate, if it has one (RFC 8705): then the
    /// server's mutual-TLS endpoint aliases are used.
    certificate: Option<ClientCertificate>,
    /// The nonces the authorization server gave for DPoP proofs.
    dpop_nonces: DpopNonces,
}

/// Builds an [`OAuth2Client`]. Made by [`OAuth2Client::builder`].
#[derive(Default)]
pub struct OAuth2ClientBuilder {
    name: Option<String>,
    client_id: Option<String>,
    auth: Option<ClientAuth>,
    issuer: Option<String>,
    token_url: Option<String>,
    revocation_url: Option<String>,
    authorization_url: Option<String>,
    device_authorization_url: Option<String>,
    http: Option<reqwest::Client>,
    timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    assertion_audience: AssertionAudience,
    accept_narrower_scope: bool,
    clock: Option<Arc<dyn Clock>>,
    dpop: Option<DpopAlgorithm>,
    certificate: Option<ClientCertificate>,
}

impl OAuth2Client {
    /// Starts building a client.
    pub fn builder() -> OAuth2ClientBuilder {
        OAuth2ClientBuilder::default()
    }

    /// The name used in logs, errors and token keys (defaults to the client id).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The server's metadata, fetched once from the issuer (OpenID discovery, or
    /// RFC 8414 metadata) and cached. `None` when the client was given endpoints
    /// and no issuer.
    pub async fn metadata(&self) -> Result<Option<&ProviderMetadata>> {
        let (Some(issuer), Some(issuer_id)) = (&self.inner.issuer, &self.inner.issuer_id) else {
            return Ok(None);
        };
        let metadata = self
            .inner
            .metadata
            .get_or_try_init(|| discovery::fetch(self, issuer, issuer_id))
            .await?;
        Ok(Some(metadata))
    }

    /// Whether the client authenticates in the `Authorization` header (Basic),
    /// so that its id is not in a request's body.
    pub(crate) fn authenticates_in_header(&self) -> bool {
        matches!(self.inner.auth, ClientAuth::SecretBasic(_))
    }

    /// Whether a token granted less scope than asked for is kept.
    pub(crate) fn accepts_narrower_scope(&self) -> bool {
        self.inner.accept_narrower_scope
    }

    /// Whether the client discovers its endpoints from an issuer.
    pub(crate) fn has_issuer(&self) -> bool {
        self.inner.issuer_id.is_some()
    }

    /// The issuer's metadata if it was fetched already (no request).
    pub(crate) fn cached_metadata(&self) -> Option<&ProviderMetadata> {
        self.inner.metadata.get()
    }

    /// Where the issuer's keys are kept once read (see `id_token`).
    pub(crate) fn jwks_cache(&self) -> &tokio::sync::Mutex<Option<Arc<jsonwebtoken::jwk::JwkSet>>> {
        &self.inner.jwks
    }

    /// The token endpoint: given, or discovered.
    pub async fn token_url(&self) -> Result<Url> {
        if let Some(url) = &self.inner.token_url {
            return Ok(url.clone());
        }
        match self.metadata().await? {
            Some(metadata) => Ok((self.mtls_alias(|a| &a.token_endpoint))
                .unwrap_or(&metadata.token_endpoint)
                .clone()),
            None => Err(Error::config(
                "the client has neither a token_url nor an issuer",
            )),
        }
    }

    /// The revocation endpoint (RFC 7009), if given or advertised.
    pub async fn revocation_url(&self) -> Result<Option<Url>> {
        if let Some(url) = &self.inner.revocation_url {
            return Ok(Some(url.clone()));
        }
        let metadata = self.metadata().await?;
        let alias = self.mtls_alias(|a| &a.revocation_endpoint);
        Ok(metadata.and_then(|m| alias.or(m.revocation_endpoint.as_ref()).cloned()))
    }

    /// The authorization endpoint (authorization code grant), if given or advertised.
    pub async fn authorization_url(&self) -> Result<Option<Url>> {
        if let Some(url) = &self.inner.authorization_url {
            return Ok(Some(url.clone()));
        }
        Ok(self
            .metadata()
            .await?
            .and_then(|m| m.authorization_endpoint.clone()))
    }

    /// The device authorization endpoint (RFC 8628), if given or advertised.
    pub async fn device_authorization_url(&self) -> Result<Option<Url>> {
        if let Some(url) = &self.inner.device_authorization_url {
            return Ok(Some(url.clone()));
        }
        let metadata = self.metadata().await?;
        let alias = self.mtls_alias(|a| &a.device_authorization_endpoint);
        Ok(metadata.and_then(|m| alias.or(m.device_authorization_endpoint.as_ref()).cloned()))
    }

    /// For a client with a TLS certificate, the discovered mutual-TLS alias
    /// `pick` names (RFC 8705 §5), if the server gave one.
    fn mtls_alias(
        &self,
        pick: impl Fn(&super::MtlsEndpointAliases) -> &Option<Url>,
    ) -> Option<&Url> {
        self.inner.certificate.as_ref()?;
        pick(&self.cached_metadata()?.mtls_endpoint_aliases).as_ref()
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    /// The key of tokens from `grant` with `parts` (scope, audience...): the
    /// server, the client and the grant are always in it.
    pub(crate) fn key(&self, grant: &str, parts: &[(&str, Option<&str>)]) -> TokenKey {
        let server = self.inner.issuer.as_ref().or(self.inner.token_url.as_ref());
        let mut key = TokenKey::new(&self.inner.name)
            .with("server", server.map(Url::as_str).unwrap_or_default())
            .with("client_id", &self.inner.client_id)
            .with("grant", grant);
        for (part, value) in parts {
            key = key.with(*part, value.unwrap_or_default());
        }
        key
    }

    /// A token request with the client's authentication and `params`, retried as
    /// its grant allows ([`Replay::of_grant`]). With DPoP, a new grant: a new key.
    pub(crate) async fn token_request(&self, params: &[(String, String)]) -> Result<Token> {
        self.token_request_with(params, None).await
    }

    /// A token request as [`token_request`](Self::token_request) that, with
    /// DPoP, proves possession of `key` (the grant's) or of a new key. A
    /// `use_dpop_nonce` answer is sent once more at once, with the server's
    /// nonce (the server processed nothing); the key goes with the token.
    pub(crate) async fn token_request_with(
        &self,
        params: &[(String, String)],
        key: Option<&DpopKey>,
    ) -> Result<Token> {
        let url = self.token_url().await?;
        // A refresh (whatever key it proves) keeps what it gets: its refresh
        // token may have rotated, the old one spent.
        let new_grant = !(params.iter()).any(|(k, v)| k == "grant_type" && v == "refresh_token");
        let key = self.dpop_key(key)?;
        self.with_retries(Replay::of_grant(params), || async {
            let mut answer = self.post_token(&url, params, key.as_ref()).await?;
            if key.is_some() && self.dpop_wants_nonce(&url, &answer) {
                answer = self.post_token(&url, params, key.as_ref()).await?;
                self.dpop_wants_nonce(&url, &answer);
            }
            let mut token = response::token_from(&self.inner.name, &answer)?;
            if let Some(key) = &key {
                super::dpop::bind(&self.inner.name, &mut token, key.clone(), new_grant)?;
            }
            Ok(token)
        })
        .await
    }

    /// One POST of a token request, with a fresh DPoP proof of `key`.
    async fn post_token(
        &self,
        url: &Url,
        params: &[(String, String)],
        key: Option<&DpopKey>,
    ) -> Result<Answer> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = key {
            let (name, proof) = self.dpop_header(url, key)?;
            headers.insert(name, proof);
        }
        self.post_form_with(url, params, headers).await
    }

    /// The algorithm of the DPoP keys its grants make, if it uses DPoP.
    pub(crate) fn dpop_algorithm(&self) -> Option<DpopAlgorithm> {
        self.inner.dpop
    }

    /// The nonces the authorization server gave for DPoP proofs.
    pub(crate) fn dpop_nonces(&self) -> &DpopNonces {
        &self.inner.dpop_nonces
    }

    /// The refresh grant (RFC 6749 §6) with `refresh_token`, repeating the grant's
    /// own parameters (scope, audience, resources...) so that the new token is for
    /// the same thing as the old one.
    /// With DPoP, proves possession of the grant's key (`key`): a refresh
    /// token bound to it is usable with no other.
    pub(crate) async fn refresh(
        &self,
        refresh_token: &str,
        same_as: &[(String, String)],
        key: Option<&DpopKey>,
    ) -> Result<Token> {
        let mut params = form([
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ]);
        params.extend_from_slice(same_as);
        self.token_request_with(&params, key).await
    }

    /// Revokes the token's refresh token and access token (RFC 7009), if the
    /// server has a revocation endpoint; does nothing otherwise.
    pub async fn revoke(&self, token: &Token) -> Result<()> {
        let Some(url) = self.revocation_url().await? else {
            tracing::debug!(client = %self.inner.name, "no revocation endpoint: nothing to revoke");
            return Ok(());
        };
        let refresh = token
            .refresh_token
            .as_ref()
            .map(|r| (r.secret(), "refresh_token"));
        let access =
            Some((token.access_token.secret(), "access_token")).filter(|(t, _)| !t.is_empty());
        let mut first_error = None;
        for (secret, hint) in refresh.into_iter().chain(access) {
            let params = form([("token", secret), ("token_type_hint", hint)]);
            let outcome = self
                .with_retries(Replay::Safe, || async {
                    let answer = self.post_form(&url, &params).await?;
                    match answer.status {
                        200..=299 => Ok(()),
                        _ => match answer.json().as_ref().and_then(response::oauth_error) {
                            // RFC 7009 §2.2.1: the server cannot revoke this kind of token.
                            Some(error) if error.error == "unsupported_token_type" => Ok(()),
                            Some(error) => Err(response::with_retry_after(
                                Error::oauth(
                                    &self.inner.name,
                                    Some(answer.status),
                                    response::scrubbed(error, &answer),
                                ),
                                &answer,
                            )),
                            None => Err(response::status_error(&self.inner.name, &answer)),
                        },
                    }
                })
                .await;
            if let Err(error) = outcome {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// POSTs a form with the client's authentication.
    pub(crate) async fn post_form(&self, url: &Url, params: &[(String, String)]) -> Result<Answer> {
        self.post_form_with(url, params, reqwest::header::HeaderMap::new())
            .await
    }

    /// POSTs a form with the client's authentication and `headers`.
    async fn post_form_with(
        &self,
        url: &Url,
        params: &[(String, String)],
        headers: reqwest::header::HeaderMap,
    ) -> Result<Answer> {
        let inner = &self.inner;
        // A client assertion is addressed to the authorization server's issuer
        // identifier (RFC 7523bis), whichever endpoint it is sent to: an endpoint of
        // another server (named by a hostile discovery document) can use it nowhere
        // else. Without an issuer, to the token endpoint. A fresh one (new `jti`)
        // per request, retries included.
        let audience = match (&inner.auth, &inner.issuer_id, inner.assertion_audience) {
            (ClientAuth::PrivateKeyJwt(_), Some(issuer), AssertionAudience::Issuer) => {
                issuer.clone()
            }
            (ClientAuth::PrivateKeyJwt(_), Some(issuer), AssertionAudience::Endpoint) => {
                // Such an assertion is good at whatever server runs that endpoint:
                // only the issuer's own are sent one.
                let own = Url::parse(issuer).is_ok_and(|i| i.origin() == url.origin());
                if !own {
                    return Err(Error::config(format!(
                        "{} is not on the issuer's origin ({issuer}): no client assertion \
                         addressed to it is sent (AssertionAudience::Endpoint)",
                        display_url(url)
                    )));
                }
                url.to_string()
            }
            (ClientAuth::PrivateKeyJwt(_), None, _) => self.token_url().await?.to_string(),
            _ => url.to_string(),
        };
        let (authorization, credentials) =
            inner
                .auth
                .credentials(&inner.client_id, &audience, &*inner.clock)?;
        let mut form: Vec<(String, String)> = credentials
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        form.extend_from_slice(params);
        let mut request = inner
            .http
            .post(url.clone())
            .timeout(self.request_timeout())
            .header(ACCEPT, "application/json")
            .headers(headers)
            .form(&form);
        let sent = never_quoted(&form, authorization.as_deref(), &inner.auth);
        if let Some(authorization) = authorization {
            let mut value = reqwest::header::HeaderValue::try_from(authorization)
                .map_err(|_| Error::config("the client id or secret cannot be sent in a header"))?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let mut answer = self.send(request).await?;
        answer.sent = sent;
        Ok(answer)
    }

    /// POSTs `body` (content type, text) with `headers` and no client
    /// authentication, for non-OAuth2 login APIs, retrying as `replay` allows
    /// (a login spends nothing: 429 and 5xx answers are retried too; a refresh
    /// spends its refresh token: only what the server surely did not process).
    /// `sent` are the secret values it carries
    /// ([`as_echoed`](response::as_echoed)), never quoted in an error.
    pub(crate) async fn post_raw(
        &self,
        url: &Url,
        headers: reqwest::header::HeaderMap,
        body: Option<(&'static str, String)>,
        sent: &[String],
        replay: Replay,
    ) -> Result<Answer> {
        self.with_retries(replay, || async {
            let mut request = self
                .inner
                .http
                .post(url.clone())
                .timeout(self.request_timeout())
                .header(ACCEPT, "application/json")
                .headers(headers.clone());
            if let Some((content_type, text)) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, *content_type)
                    .body(text.clone());
            }
            let mut answer = self.send(request).await?;
            answer.sent = sent.to_vec();
            match replay {
                Replay::Safe => response::retry_on_status(&self.inner.name, answer),
                // A 5xx after the server may have rotated the refresh token is
                // returned, never sent again (the caller reads it as an error).
                Replay::OnlyIfUnprocessed => Ok(answer),
            }
        })
        .await
    }

    /// GETs `url` (discovery, keys), retrying transient failures, 429 and 5xx
    /// answers included.
    pub(crate) async fn get_retried(&self, url: &Url) -> Result<Answer> {
        self.with_retries(Replay::Safe, || async {
            let request = self
                .inner
                .http
                .get(url.clone())
                .timeout(self.request_timeout())
                .header(ACCEPT, "application/json");
            response::retry_on_status(&self.inner.name, self.send(request).await?)
        })
        .await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer> {
        let name = &self.inner.name;
        let (client, request) = request.build_split();
        let timeout = self.request_timeout();
        let request = request.map_err(|e| transport_error(name, e, timeout))?;
        let asked = request.url().clone();
        // The request to the authorization server, with OpenTelemetry's fields.
        let span = crate::http::request_span(request.method(), &asked);
        let sent = client.execute(request).instrument(span.clone()).await;
        let outcome = sent.as_ref().map(reqwest::Response::status);
        crate::http::record_outcome(&span, outcome.map_err(|_| "transport"));
        let mut response = sent.map_err(|e| transport_error(name, e, timeout))?;
        if response.url() != &asked {
            // Only a user-supplied client follows redirects, and credentials went along.
            return Err(Error::transport(
                name,
                format!(
                    "the server redirected to {}; configure an HTTP client that does not follow redirects",
                    display_url(response.url())
                ),
            )
            .with_transient(false));
        }
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.inner.clock.now()));
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(name, e, timeout))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Error::invalid_response(
                    name,
                    format!(
                        "the response is larger than {} KiB; refusing to read it",
                        MAX_BODY_BYTES / 1024
                    ),
                )
                .with_status(status));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            retry_after,
            body,
            sent: Vec::new(),
        })
    }

    /// The timeout of a request sent now: the client's, cut to the time left of the
    /// refresh in progress ([`time_left`]), so that no request outlives the
    /// manager's lease.
    fn request_timeout(&self) -> Duration {
        let timeout = self.inner.timeout;
        time_left().map_or(timeout, |left| timeout.min(left))
    }

    /// Runs `attempt` under the client's [`RetryPolicy`]; see [`retry::run`].
    pub(crate) async fn with_retries<T, F, Fut>(&self, replay: Replay, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let inner = &self.inner;
        retry::run(&inner.name, inner.retry, &*inner.clock, replay, attempt).await
    }
}

/// Form fields from name/value pairs.
pub(crate) fn form<const N: usize>(pairs: [(&str, &str); N]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn transport_error(source: &str, error: reqwest::Error, timeout: Duration) -> Error {
    // The URL may hold a query with secrets: it stays out of messages.
    let error = error.without_url();
    // A connect error (refused, unreachable, TLS handshake) comes before the
    // request is written: the server cannot have acted on it.
    let nothing_sent = error.is_connect();
    let timed_out = error.is_timeout();
    let message = if timed_out {
        format!("no answer within {timeout:?}")
    } else if error.is_connect() {
        "could not connect to the authorization server".to_owned()
    } else {
        format!("the request failed: {}", error_chain(&error))
    };
    let mut error = Error::transport(source, message);
    if timed_out {
        error = error.with_timeout();
    }
    if nothing_sent {
        error.with_nothing_sent()
    } else {
        error
    }
}

/// The error and its causes.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// `url` for messages: scheme, host, port and path; no user, password or query.
pub(crate) use crate::http::loggable_url as display_url;

/// What the `aud` of a `private_key_jwt` client assertion names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssertionAudience {
    /// The issuer identifier (the update of RFC 7523 recommends it): an
    /// assertion that reaches another server's endpoint is good nowhere else.
    #[default]
    Issuer,
    /// The endpoint each request goes to, for servers that require it (Okta);
    /// then only endpoints on the issuer's origin are sent an assertion.
    Endpoint,
}

/// The form fields whose values are secrets of the request.
const SECRET_FIELDS: &[&str] = &[
    "client_secret",
    "client_assertion",
    "password",
    "code",
    "code_verifier",
    "refresh_token",
    "device_code",
    "assertion",
    "subject_token",
    "actor_token",
    "token",
];

/// What a request carries that an error must never quote: the values of its
/// secret fields and its client secret, as sent and form-encoded (an error page
/// may echo the raw body), and its `Authorization` header's credentials.
fn never_quoted(
    form: &[(String, String)],
    authorization: Option<&str>,
    auth: &ClientAuth,
) -> Vec<String> {
    let mut values: Vec<String> = form
        .iter()
        .filter(|(name, _)| SECRET_FIELDS.contains(&name.as_str()))
        .map(|(_, value)| value.clone())
        .collect();
    if let ClientAuth::SecretBasic(secret) | ClientAuth::SecretPost(secret) = auth {
        values.push(secret.secret().to_owned());
    }
    values.extend(
        authorization
            .and_then(|a| a.strip_prefix("Basic "))
            .map(str::to_owned),
    );
    response::as_echoed(values)
}

pub(crate) fn secure_url(url: &str, what: &str) -> Result<Url> {
    let parsed =
        Url::parse(url).map_err(|e| Error::config(format!("{what} is not a valid URL: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if crate::http::is_loopback(&parsed) => Ok(parsed),
        _ => Err(Error::config(format!(
            "{what} `{}` must use https (plain http is allowed only on loopback hosts), \
             or tokens and secrets would travel in clear",
            display_url(&parsed)
        ))),
    }
}

impl OAuth2ClientBuilder {
    /// The client id. Required.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Authenticates with this secret by HTTP Basic (`client_secret_basic`).
    /// Use [`auth`](Self::auth) for `client_secret_post`.
    pub fn client_secret(mut self, secret: impl Into<ClientSecret>) -> Self {
        self.auth = Some(ClientAuth::SecretBasic(secret.into()));
        self
    }

    /// Authenticates with a JWT signed by this key (`private_key_jwt`).
    pub fn private_key_jwt(mut self, signer: JwtSigner) -> Self {
        self.auth = Some(ClientAuth::PrivateKeyJwt(signer));
        self
    }

    /// What the `aud` of a `private_key_jwt` client assertion names. Defaults to
    /// [`AssertionAudience::Issuer`].
    pub fn assertion_audience(mut self, audience: AssertionAudience) -> Self {
        self.assertion_audience = audience;
        self
    }

    /// Whether a new token whose granted scope lacks some of the scope asked for
    /// is kept (with a warning). Defaults to `false`: such a token is refused
    /// with an `invalid_scope` error (dropped, not revoked: a server may revoke
    /// the whole grant with it), so that
    /// a caller that asked for more is never served less. Turn it on for servers
    /// that grant less on purpose (a user who unticked a permission) where the
    /// program can work with what it got; [`Token::scope`](crate::Token::scope)
    /// says what was granted. See the module docs ("What is checked") for how
    /// scopes are compared.
    pub fn accept_narrower_scope(mut self, accept: bool) -> Self {
        self.accept_narrower_scope = accept;
        self
    }

    /// How the client authenticates. Defaults to [`ClientAuth::None`] (a public
    /// client) unless a secret or key was given.
    pub fn auth(mut self, auth: ClientAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The issuer, whose endpoints are discovered from its metadata. Either this or
    /// [`token_url`](Self::token_url) is required.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The token endpoint (takes precedence over a discovered one).
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    /// The revocation endpoint (RFC 7009), if not discovered.
    pub fn revocation_url(mut self, url: impl Into<String>) -> Self {
        self.revocation_url = Some(url.into());
        self
    }

    /// The authorization endpoint (authorization code grant), if not discovered.
    pub fn authorization_url(mut self, url: impl Into<String>) -> Self {
        self.authorization_url = Some(url.into());
        self
    }

    /// The device authorization endpoint (RFC 8628), if not discovered.
    pub fn device_authorization_url(mut self, url: impl Into<String>) -> Self {
        self.device_authorization_url = Some(url.into());
        self
    }

    /// The name in logs, errors and token keys. Defaults to the client id.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The HTTP client, with your proxy and TLS settings. Defaults to one with
    /// rustls, a [`DEFAULT_CONNECT_TIMEOUT`] and no redirects. Give yours
    /// `redirect(Policy::none())` too: an answer that comes from a redirect is
    /// refused, since the credentials went along with it.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The timeout of each request. Defaults to [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How transient failures are retried. Defaults to [`RetryPolicy::default`].
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sender-constrained tokens with DPoP (RFC 9449), with keys of `alg`
    /// ([`DpopAlgorithm::Es256`] unless the server takes only another): each
    /// new grant makes a key, every token request proves possession of it
    /// (with the server's nonce where it asks for one), and the key is kept
    /// with the token (see [`dpop`](crate::dpop)). Every adapter then sends
    /// the token with a fresh proof.
    ///
    /// ```no_run
    /// use tokenwarden::dpop::DpopAlgorithm;
    /// use tokenwarden::source::oauth2::OAuth2Client;
    ///
    /// # fn run() -> tokenwarden::Result<()> {
    /// let client = OAuth2Client::builder()
    ///     .issuer("https://auth.example.com")
    ///     .client_id("svc")
    ///     .client_secret("s3cret")
    ///     .dpop(DpopAlgorithm::Es256)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn dpop(mut self, alg: DpopAlgorithm) -> Self {
        self.dpop = Some(alg);
        self
    }

    /// The client's TLS certificate (RFC 8705), for
    /// [`ClientAuth::TlsClientAuth`] or [`ClientAuth::SelfSignedTlsClientAuth`],
    /// or for access tokens the server binds to it. Its default HTTP client
    /// presents it, and the server's `mtls_endpoint_aliases` are used; a client
    /// given with [`http_client`](Self::http_client) must present it itself
    /// (`reqwest::ClientBuilder::identity(certificate.identity())`).
    pub fn client_certificate(mut self, certificate: ClientCertificate) -> Self {
        self.certificate = Some(certificate);
        self
    }

    /// The clock for assertions and retry waits. Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Builds the client; fails with a configuration error on a missing client id,
    /// no endpoint, or an endpoint that is not https (loopback aside).
    pub fn build(self) -> Result<OAuth2Client> {
        let client_id = self
            .client_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Error::config("an OAuth2 client needs a client_id"))?;
        let optional =
            |url: Option<String>, what: &str| url.map(|u| secure_url(&u, what)).transpose();
        let issuer_id = self.issuer.clone();
        let issuer = optional(self.issuer, "the issuer")?;
        let token_url = optional(self.token_url, "the token_url")?;
        if issuer.is_none() && token_url.is_none() {
            return Err(Error::config(
                "an OAuth2 client needs an issuer (for discovery) or a token_url",
            ));
        }
        let auth = self.auth.unwrap_or(ClientAuth::None);
        if auth.is_mutual_tls() && self.certificate.is_none() {
            return Err(Error::config(format!(
                "{} needs the client certificate: give it with `client_certificate`",
                auth.method()
            )));
        }
        let http = match self.http {
            Some(http) => http,
            None => super::certificate::presenting(
                reqwest::Client::builder()
                    .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none()),
                self.certificate.as_ref(),
            )
            .build()
            .map_err(|e| {
                // reqwest says "builder error"; its causes say what (a
                // certificate file that cannot be read, say).
                Error::config(format!(
                    "could not build the HTTP client: {}",
                    error_chain(&e)
                ))
            })?,
        };
        Ok(OAuth2Client {
            inner: Arc::new(Inner {
                name: self.name.unwrap_or_else(|| client_id.clone()),
                client_id,
                auth,
                issuer,
                issuer_id,
                token_url,
                revocation_url: optional(self.revocation_url, "the revocation_url")?,
                authorization_url: optional(self.authorization_url, "the authorization_url")?,
                device_authorization_url: optional(
                    self.device_authorization_url,
                    "the device_authorization_url",
                )?,
                http,
                timeout: self.timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
                retry: self.retry.unwrap_or_default(),
                assertion_audience: self.assertion_audience,
                accept_narrower_scope: self.accept_narrower_scope,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                metadata: OnceCell::new(),
                jwks: tokio::sync::Mutex::default(),
                dpop: self.dpop,
                dpop_nonces: DpopNonces::default(),
                certificate: self.certificate,
            }),
        })
    }
}

impl std::fmt::Debug for OAuth2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &self.inner;
        f.debug_struct("OAuth2Client")
            .field("name", &inner.name)
            .field("client_id", &inner.client_id)
            .field("auth", &inner.auth)
            .field("issuer", &inner.issuer.as_ref().map(Url::as_str))
            .field("token_url", &inner.token_url.as_ref().map(Url::as_str))
            .field("dpop", &inner.dpop)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for OAuth2ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2ClientBuilder")
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .field("issuer", &self.issuer)
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback() {
        assert!(secure_url("https://auth.example.com/token", "x").is_ok());
        assert!(secure_url("http://127.0.0.1:8080/token", "x").is_ok());
        assert!(secure_url("http://[::1]/token", "x").is_ok());
        assert!(secure_url("http://localhost/token", "x").is_ok());
        let error = secure_url("http://auth.example.com/token", "the token_url").unwrap_err();
        assert!(error.to_string().contains("must use https"), "{error}");
        assert!(secure_url("ftp://127.0.0.1/x", "x").is_err());
        assert!(secure_url("not a url", "x").is_err());
    }

    #[cfg(feature = "test-util")]
    mod deadlines {
        use super::super::retry::MIN_REQUEST_TIME;
        use super::*;
        use crate::source::{deadline::scope, Deadline};
        use crate::{ManualClock, OAuthError};
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

        const TIMEOUT: Duration = Duration::from_secs(10);

        fn client(clock: &ManualClock, token_url: &str) -> OAuth2Client {
            let retry = RetryPolicy {
                max_attempts: 3,
                ..RetryPolicy::default()
            };
            OAuth2Client::builder()
                .client_id("deadlines")
                .token_url(token_url)
                .timeout(TIMEOUT)
                .retry(retry)
                .clock(clock.clone())
                .build()
                .unwrap()
        }

        /// How many times `with_retries` ran an attempt that failed with `error`
        /// (asking for no wait, so the manual clock need not move) and moved the
        /// clock by `step`, within a refresh with `left` to go (or outside one).
        async fn attempts(
            replay: Replay,
            left: Option<Duration>,
            step: Duration,
            error: Error,
        ) -> (usize, Error) {
            let clock = ManualClock::default();
            let client = client(&clock, "http://127.0.0.1:9/token");
            let tried = AtomicUsize::new(0);
            let error = error.with_retry_after(Duration::ZERO);
            let run = client.with_retries(replay, || {
                tried.fetch_add(1, SeqCst);
                clock.advance(step);
                let error = error.clone();
                async move { Err::<(), _>(error) }
            });
            let outcome = match left {
                Some(left) => scope(Deadline::after(Arc::new(clock.clone()), left), run).await,
                None => run.await,
            };
            (tried.load(SeqCst), outcome.unwrap_err())
        }

        #[tokio::test]
        async fn no_retry_starts_that_could_outlive_the_deadline() {
            let down = || Error::transport("t", "no answer");
            let zero = Duration::ZERO;
            let secs = Duration::from_secs;
            let ms = Duration::from_millis;
            for (replay, left, step, expected) in [
                (Replay::Safe, None, secs(100), 3),
                (Replay::Safe, Some(secs(60)), zero, 3),
                // Under half a second left after the first try: no retry.
                (Replay::Safe, Some(ms(400)), zero, 1),
                // 1.5 s: 0.9 s left after the first try, 0.3 s after the second.
                (Replay::Safe, Some(ms(1_500)), ms(600), 2),
            ] {
                let (tried, error) = attempts(replay, left, step, down()).await;
                assert_eq!(tried, expected, "{replay:?} with {left:?} left");
                assert!(error.is_transient());
            }
        }

        #[tokio::test]
        async fn a_spending_request_is_not_started_when_it_could_outlive_the_deadline() {
            let (tried, error) = attempts(
                Replay::OnlyIfUnprocessed,
                Some(MIN_REQUEST_TIME - Duration::from_millis(1)),
                Duration::ZERO,
                Error::transport("t", "down").with_nothing_sent(),
            )
            .await;
            assert_eq!(tried, 0);
            assert!(error.is_transient());
            assert!(error.to_string().contains("not sent"), "{error}");

            // Through a refresh on a real socket: no connection is even made.
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let clock = ManualClock::default();
            let client = client(
                &clock,
                &format!("http://{}/token", listener.local_addr().unwrap()),
            );
            let soon = Deadline::after(Arc::new(clock.clone()), MIN_REQUEST_TIME / 2);
            let error = scope(soon, client.refresh("TOPSECRET-rt", &[], None))
                .await
                .unwrap_err();
            assert!(error.is_transient());
            assert!(error.to_string().contains("not sent"), "{error}");
            assert_eq!(
                listener.accept().unwrap_err().kind(),
                std::io::ErrorKind::WouldBlock,
                "the refresh token was sent"
            );

            // With time enough, the same refresh is sent.
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let later = Deadline::after(Arc::new(clock.clone()), TIMEOUT * 2);
            let refresh = tokio::spawn(async move {
                scope(later, client.refresh("TOPSECRET-rt", &[], None)).await
            });
            let (socket, _) = listener.accept().await.unwrap();
            drop(socket);
            assert!(refresh.await.unwrap().is_err());
        }

        #[tokio::test]
        async fn a_request_never_outlives_the_refresh() {
            let clock = ManualClock::default();
            let client = client(&clock, "http://127.0.0.1:9/token");
            assert_eq!(client.request_timeout(), TIMEOUT, "outside a refresh");
            let left = Duration::from_secs(2);
            let within = scope(Deadline::after(Arc::new(clock.clone()), left), async {
                client.request_timeout()
            })
            .await;
            assert_eq!(within, left, "cut to the time left");
        }

        #[tokio::test]
        async fn a_spending_request_is_retried_only_when_surely_unprocessed() {
            let left = Some(Duration::from_secs(60));
            let unprocessed = [
                Error::transport("t", "could not connect").with_nothing_sent(),
                Error::transport("t", "busy").with_status(429),
                Error::transport("t", "down").with_status(503),
                Error::oauth("t", Some(400), OAuthError::new("temporarily_unavailable")),
            ];
            for error in unprocessed {
                let (tried, _) = attempts(
                    Replay::OnlyIfUnprocessed,
                    left,
                    Duration::ZERO,
                    error.clone(),
                )
                .await;
                assert_eq!(tried, 3, "{error:?}");
            }
            let maybe_processed = [
                Error::transport("t", "no answer within 10s"),
                Error::transport("t", "connection reset"),
                Error::transport("t", "bad gateway").with_status(502),
                Error::oauth("t", Some(500), OAuthError::new("server_error")),
            ];
            for error in maybe_processed {
                let (tried, returned) = attempts(
                    Replay::OnlyIfUnprocessed,
                    left,
                    Duration::ZERO,
                    error.clone(),
                )
                .await;
                assert_eq!(tried, 1, "{error:?}");
                assert!(returned.is_transient(), "{error:?}");
                let (tried, _) = attempts(Replay::Safe, left, Duration::ZERO, error.clone()).await;
                assert_eq!(tried, 3, "{error:?}");
            }
        }
    }
}
