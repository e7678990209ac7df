//! OAuth2 and OpenID Connect token sources (feature `oauth2`).
//!
//! An [`OAuth2Client`] is one client registration at one authorization server; its
//! grants are [`TokenSource`](crate::TokenSource)s for a
//! [`TokenManager`](crate::TokenManager). Every request has a timeout, transient
//! failures (connection errors, timeouts, 429, 5xx, `temporarily_unavailable`) are
//! retried with jittered backoff honouring `Retry-After`, rejected credentials are
//! not, endpoints must be https (loopback aside), and responses are parsed strictly
//! where it matters and tolerantly where real servers differ.
//!
//! A request that spends a one-time credential (a refresh, an authorization code
//! redemption) is retried only when the server surely did not process it: no
//! connection could be made, 429, 503, or `temporarily_unavailable`. After a
//! timeout, a broken connection, a 500, 502 or 504, the server may have rotated the
//! refresh token already (RFC 9700 §4.14), and servers with reuse detection revoke
//! the whole grant when a spent refresh token comes back; the error goes to the
//! manager instead, which backs off and looks in its store. Nor is such a request
//! sent when it could outlive the manager's refresh deadline
//! ([`time_left`](crate::source::time_left)). [`RetryPolicy`] has the details.
//!
//! ## Client credentials (RFC 6749 §4.4)
//!
//! ```no_run
//! use tokenwarden::source::oauth2::{ClientAuth, OAuth2Client};
//! use tokenwarden::{ClientSecret, TokenManager};
//!
//! # async fn run() -> tokenwarden::Result<()> {
//! let client = OAuth2Client::builder()
//!     .token_url("https://auth.example.com/oauth/token")
//!     .client_id("svc")
//!     .auth(ClientAuth::SecretPost(ClientSecret::new("s3cret"))) // or .client_secret(..) for Basic
//!     .build()?;
//! let source = client
//!     .client_credentials()
//!     .scope("read write")
//!     .audience("https://api.example.com");
//! let manager = TokenManager::builder(source).build()?;
//! let header = manager.header().await?;
//! # Ok(()) }
//! ```
//!
//! ## `private_key_jwt` (RFC 7523 §2.2)
//!
//! ```no_run
//! use tokenwarden::source::oauth2::{JwtSigner, OAuth2Client, SigningAlgorithm};
//!
//! # fn run() -> tokenwarden::Result<()> {
//! let pem = std::fs::read("keys/svc.pem").expect("the key file");
//! // The algorithm follows from the key: RSA → RS256, EC P-256 → ES256,
//! // EC P-384 → ES384, Ed25519 → EdDSA.
//! let client = OAuth2Client::builder()
//!     .issuer("https://auth.example.com")
//!     .client_id("svc")
//!     .private_key_jwt(JwtSigner::from_pem_key(&pem)?.with_key_id("key-1"))
//!     .build()?;
//! // Or named (a key of another kind is an error that says which to use).
//! let signer = JwtSigner::from_pem(&pem, SigningAlgorithm::Es256)?;
//! # Ok(()) }
//! ```
//!
//! ## Refresh token (RFC 6749 §6)
//!
//! Every source refreshes with the refresh token when it has one; a rotated refresh
//! token replaces the old one, a response without one keeps it, and a rejected one
//! (`invalid_grant`) makes the manager log in again. To start from a refresh token
//! obtained elsewhere:
//!
//! ```no_run
//! # fn run(client: tokenwarden::source::oauth2::OAuth2Client) -> tokenwarden::Result<()> {
//! let source = client.refresh_token(std::env::var("REFRESH_TOKEN").unwrap_or_default());
//! let manager = tokenwarden::TokenManager::builder(source).build()?;
//! # Ok(()) }
//! ```
//!
//! ## Device authorization grant (RFC 8628)
//!
//! For command-line tools: the user approves on another device; the source shows
//! the code and polls.
//!
//! ```no_run
//! # async fn run(client: tokenwarden::source::oauth2::OAuth2Client) -> tokenwarden::Result<()> {
//! use std::time::Duration;
//! let source = client.device_code().scope("openid offline_access").on_prompt(|prompt| {
//!     println!("Open {} and enter {}", prompt.verification_uri, prompt.user_code);
//! });
//! let manager = tokenwarden::TokenManager::builder(source)
//!     .refresh_timeout(Duration::from_secs(600)) // the user takes their time
//!     .build()?;
//! let token = manager.token().await?; // returns once the user approved
//! # Ok(()) }
//! ```
//!
//! ## Authorization code with PKCE (RFC 7636, RFC 8252)
//!
//! For desktop apps and CLIs: the browser signs the user in and redirects to a
//! loopback listener; `state` is checked and the code exchanged with the verifier.
//!
//! ```no_run
//! # async fn run(client: tokenwarden::source::oauth2::OAuth2Client) -> tokenwarden::Result<()> {
//! let source = client.authorization_code().scope("openid offline_access");
//! let manager = tokenwarden::TokenManager::builder(source)
//!     .refresh_timeout(std::time::Duration::from_secs(300))
//!     .build()?;
//! let token = manager.token().await?; // opens the browser (or prints the URL)
//! # Ok(()) }
//! ```
//!
//! ## Resource owner password (RFC 6749 §4.3) — legacy
//!
//! ```no_run
//! # fn run(client: tokenwarden::source::oauth2::OAuth2Client) -> tokenwarden::Result<()> {
//! let source = client.password("user@example.com", "hunter2").scope("profile");
//! # Ok(()) }
//! ```
//!
//! ## JWT bearer assertion (RFC 7523 §2.1) and token exchange (RFC 8693)
//!
//! ```no_run
//! # fn run(client: tokenwarden::source::oauth2::OAuth2Client, users_manager: tokenwarden::TokenManager) -> tokenwarden::Result<()> {
//! use tokenwarden::source::oauth2::{JwtSigner, SigningAlgorithm};
//! let pem = std::fs::read("keys/trusted-issuer.pem").expect("the key file");
//! let signer = JwtSigner::from_pem(&pem, SigningAlgorithm::Rs256)?;
//! // A token for user 42, vouched for by a signed assertion:
//! let as_user = client.jwt_bearer(signer, "my-service", "user-42").scope("read");
//! // The current token of another manager, exchanged for one for a downstream API:
//! let downstream = client.token_exchange_from(users_manager).audience("https://billing.example.com");
//! # Ok(()) }
//! ```
//!
//! ## Discovery and revocation
//!
//! With [`issuer`](OAuth2ClientBuilder::issuer), the endpoints come from the
//! server's metadata ([`ProviderMetadata`]), fetched once. When the server has a
//! revocation endpoint, [`TokenManager::logout`](crate::TokenManager::logout)
//! revokes the refresh and access tokens there (RFC 7009).
//!
//! ## What is checked in what a server sends
//!
//! - Discovery: the document's `issuer` is the very string configured; every
//!   endpoint is https (http only on loopback, and only for a loopback issuer).
//! - A browser sign-in's answer: this login's `state` (constant time), and its
//!   `iss` (RFC 9207: exact whenever present, required where advertised).
//! - A token response: JSON of at most 1 MiB with a non-empty `access_token`;
//!   `token_type` (Bearer, or kept as given), `expires_in` (a number or a numeric
//!   string; else the access token's JWT `exp`, read without verifying it, only
//!   to learn the lifetime; else the default lifetime; the manager refuses a token
//!   already expired on arrival, unless it brings a refresh token); `refresh_token` kept (the previous one when a refresh
//!   answer has none); `scope` kept as granted (the one asked for where the
//!   server said none). A new token granted less than was asked for is refused
//!   with `invalid_scope` (dropped, not revoked) unless the client
//!   [accepts a narrower scope](OAuth2ClientBuilder::accept_narrower_scope); a
//!   refreshed one is kept with a warning, since its refresh token may have
//!   rotated. Scopes are compared as providers write them: separated by spaces
//!   or commas, `email` granted as `…/userinfo.email`, `…/.default` granted as
//!   what it stands for, `openid` and `offline_access` never counted as missing.
//! - The ID token (with an issuer): signature against the issuer's keys, `iss`,
//!   `aud`, `azp`, `exp`, `iat`, and the browser sign-in's `nonce`; a refreshed
//!   one must name the same `iss` and `sub` as the sign-in's, or is dropped; see
//!   [`Token::id_token`](crate::Token::id_token).
//! - Not checked: the access token's contents (opaque to a client).
//! - Every server string that may reach a terminal or a log is stripped of
//!   control characters; no value a request carried is quoted back in an error.

mod auth;
mod authorization_code;
mod certificate;
mod client;
mod device;
mod discovery;
mod dpop;
mod exchange;
mod grant;
mod grants;
mod id_token;
mod key_kind;
mod loopback;
mod response;
mod retry;
mod scope;

pub use auth::{ClientAuth, JwtSigner, SigningAlgorithm};
pub use authorization_code::{AuthorizationCode, DEFAULT_LOGIN_TIMEOUT};
pub use certificate::ClientCertificate;
pub(crate) use client::{secure_url, Replay};
pub use client::{
    AssertionAudience, OAuth2Client, OAuth2ClientBuilder, RetryPolicy, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
};
pub use device::{DeviceCode, DevicePrompt};
pub use discovery::{MtlsEndpointAliases, ProviderMetadata};
pub use exchange::{JwtBearer, TokenExchange, ACCESS_TOKEN_TYPE};
pub use grants::{ClientCredentials, PasswordGrant, RefreshTokenGrant};
pub(crate) use response::{as_echoed, status_error};

/// What `crate::fuzzing` reaches inside this module.
#[cfg(fuzzing)]
pub(crate) mod fuzz {
    pub(crate) use super::device::read_authorization;
    pub(crate) use super::discovery::check;
    pub(crate) use super::key_kind::check_private_key as private_key_pem;
    pub(crate) use super::response::{oauth_error, status_error, token_from, Answer};
    pub(crate) use super::retry::parse_retry_after;

    /// The state and issuer of the login whose answers the
    /// `loopback_answer` target reads.
    pub(crate) const STATE: &str = "a-state-of-22-chars-xy";
    pub(crate) const ISSUER: &str = "https://as.example";

    /// What `request` answers to a login with [`STATE`] at [`ISSUER`], which
    /// advertises RFC 9207 (`required`) or not.
    pub(crate) fn loopback_answer(request: &[u8], required: bool) -> Option<crate::Result<String>> {
        let expected = super::loopback::Expected {
            state: STATE.into(),
            issuer: Some(super::loopback::Issuer {
                id: ISSUER.into(),
                required,
            }),
        };
        super::loopback::answer(request, &expected, "fuzz")
    }
}
