//! The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636) for native
//! apps and CLIs (RFC 8252): the browser signs the user in and redirects to a
//! listener on a loopback port this source opens for the purpose.

use super::client::{form, OAuth2Client};
use super::grant::Grant;
use super::loopback::{self, Expected, Issuer, CALLBACK_PATH};
use crate::{Error, Result, Token, TokenKey};
use async_trait::async_trait;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use url::Url;

/// How long the user has to sign in, by default: 5 min.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(300);

type OpenBrowser = Arc<dyn Fn(&Url) + Send + Sync>;

/// The authorization code grant with PKCE (S256). Made by
/// [`OAuth2Client::authorization_code`].
///
/// [`fetch`](crate::TokenSource::fetch) listens on `127.0.0.1` on a free port, opens the
/// authorization URL in the user's browser (or prints it when no browser can be
/// opened), checks the `state` of the redirect (in constant time) and its `iss`
/// (RFC 9207: compared exactly with the discovered issuer whenever present, and
/// required where the server advertises it, so that a response from another
/// server is never taken for this one's: the mix-up attack), and exchanges the
/// code with the PKCE verifier. Each login listens on a fresh port with a fresh
/// `state`. Register `http://127.0.0.1/callback` as a redirect URI; the
/// server must allow any port on loopback redirect URIs (RFC 8252 §7.3).
#[derive(Clone)]
pub struct AuthorizationCode {
    client: OAuth2Client,
    scope: Option<String>,
    port: u16,
    timeout: Duration,
    open: OpenBrowser,
    extra: Vec<(String, String)>,
    user: Option<String>,
}

impl OAuth2Client {
    /// The authorization code grant with PKCE for this client.
    pub fn authorization_code(&self) -> AuthorizationCode {
        AuthorizationCode {
            client: self.clone(),
            scope: None,
            port: 0,
            timeout: DEFAULT_LOGIN_TIMEOUT,
            open: Arc::new(open_browser),
            extra: Vec::new(),
            user: None,
        }
    }
}

/// Opens `url` in the browser, and prints it either way (the browser may be on
/// another screen, or there may be none).
fn open_browser(url: &Url) {
    eprintln!("To sign in, open this page in your browser:\n\n    {url}\n");
    if let Err(error) = open::that_detached(url.as_str()) {
        tracing::debug!(%error, "could not open a browser");
    }
}

impl AuthorizationCode {
    /// Asks for this scope.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Adds a parameter to the authorization request (`prompt=consent`,
    /// `login_hint`, `audience`...). OpenID providers issue a refresh token for
    /// `offline_access` only with `prompt=consent`.
    pub fn auth_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// Listens on this loopback port instead of a free one, for servers that
    /// require an exact redirect URI.
    pub fn redirect_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// How long the user has to sign in. Defaults to [`DEFAULT_LOGIN_TIMEOUT`].
    pub fn login_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Who signs in (any id of yours: a user name, an account number): part of
    /// the token's key, so that two users' sign-ins through one client never
    /// share a stored token. Without it, the key names the client and scope only:
    /// one user per client and scope.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Shows the authorization URL with `open` instead of opening the browser.
    pub fn on_open(mut self, open: impl Fn(&Url) + Send + Sync + 'static) -> Self {
        self.open = Arc::new(open);
        self
    }

    async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        challenge: &str,
    ) -> Result<Url> {
        let name = self.client.name();
        let endpoint = self
            .client
            .authorization_url()
            .await?
            .ok_or_else(|| {
                Error::config(format!(
                    "`{name}` has no authorization endpoint: configure authorization_url, or an issuer that advertises one"
                ))
            })?;
        let mut url = endpoint;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", self.client.client_id())
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(scope) = &self.scope {
            url.query_pairs_mut().append_pair("scope", scope);
        }
        for (name, value) in &self.extra {
            url.query_pairs_mut().append_pair(name, value);
        }
        Ok(url)
    }
}

/// `bytes` random bytes from the operating system, base64url-encoded.
fn random(bytes: usize, name: &str) -> Result<String> {
    let mut buffer = vec![0; bytes];
    getrandom::fill(&mut buffer).map_err(|e| {
        Error::source_failed(
            name,
            format!("no randomness from the operating system: {e}"),
        )
    })?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer))
}

#[async_trait]
impl Grant for AuthorizationCode {
    fn client(&self) -> &OAuth2Client {
        &self.client
    }

    fn refresh_params(&self) -> Vec<(String, String)> {
        self.scope
            .iter()
            .map(|s| ("scope".to_owned(), s.clone()))
            .collect()
    }

    fn checks_id_token(&self) -> bool {
        true
    }

    fn grant_name(&self) -> &str {
        "authorization_code"
    }

    fn grant_key(&self) -> TokenKey {
        self.client.key(
            "authorization_code",
            &[
                ("scope", self.scope.as_deref()),
                ("subject", self.user.as_deref()),
            ],
        )
    }

    async fn new_token(&self) -> Result<Token> {
        let name = self.client.name();
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .map_err(|e| {
                Error::source_failed(
                    name,
                    format!(
                        "could not listen on 127.0.0.1:{} for the redirect: {e}",
                        self.port
                    ),
                )
            })?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::source_failed(name, e.to_string()))?
            .port();
        let redirect_uri = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
        let state = random(16, name)?;
        let verifier = random(32, name)?; // 43 characters, RFC 7636 §4.1
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        // OpenID: a nonce binds the ID token to this sign-in (no replayed one).
        let openid = self
            .scope
            .as_deref()
            .is_some_and(|s| s.split_whitespace().any(|s| s == "openid"));
        let nonce = openid.then(|| random(16, name)).transpose()?;
        let mut url = self
            .authorization_url(&redirect_uri, &state, &challenge)
            .await?;
        if let Some(nonce) = &nonce {
            url.query_pairs_mut().append_pair("nonce", nonce);
        }
        let issuer = self.client.metadata().await?.map(|m| Issuer {
            id: m.issuer.clone(),
            required: m.authorization_response_iss_parameter_supported,
        });
        (self.open)(&url);
        let clock = self.client.clock();
        let deadline = clock.sleep_until(clock.now() + self.timeout);
        let expected = Expected { state, issuer };
        let (code, browser) =
            loopback::wait(listener, expected, deadline, self.timeout, name).await?;
        let code = match code {
            Ok(code) => code,
            Err(error) => {
                browser.finish(false).await;
                return Err(error);
            }
        };
        let params = form([
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &verifier),
        ]);
        // The browser is told only once the code was exchanged and the ID token
        // (with this sign-in's nonce) checked.
        let token = match self.client.token_request(&params).await {
            Ok(mut token) => super::id_token::check_new(&self.client, &mut token, nonce.as_deref())
                .await
                .map(|()| token),
            Err(error) => Err(error),
        };
        browser.finish(token.is_ok()).await;
        token
    }
}

impl std::fmt::Debug for AuthorizationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationCode")
            .field("client", &self.client)
            .field("scope", &self.scope)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}
