//! The grants that need no user at the keyboard: client credentials (RFC 6749
//! §4.4), resource owner password (§4.3, legacy), and a refresh token given up
//! front (§6). Each is a [`TokenSource`].

use super::client::OAuth2Client;
use super::grant::Grant;
use crate::{ClientSecret, RefreshToken, Result, Token, TokenKey, TokenSource};
use async_trait::async_trait;
use std::sync::Mutex;

/// Parameters every grant may add: scope, audience, resources (RFC 8707), extras.
#[derive(Clone, Default)]
struct Request {
    scope: Option<String>,
    audience: Option<String>,
    resources: Vec<String>,
    extra: Vec<(String, String)>,
}

/// Extra parameters may be secrets: only their names are shown.
impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .field("resources", &self.resources)
            .field(
                "extra",
                &self.extra.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Request {
    /// The form of a `grant_type` request: the grant's own fields, then what every
    /// request of the grant repeats.
    fn form(&self, grant_type: &str, own: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut form = vec![("grant_type".to_owned(), grant_type.to_owned())];
        form.extend(own.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        form.extend(self.repeated());
        form
    }

    /// Scope, audience, resources and extras: what every request of the grant
    /// carries, refreshes included.
    fn repeated(&self) -> Vec<(String, String)> {
        let named = |name: &str, value: &String| (name.to_owned(), value.clone());
        let mut form: Vec<(String, String)> =
            self.scope.iter().map(|s| named("scope", s)).collect();
        form.extend(self.audience.iter().map(|a| named("audience", a)));
        form.extend(self.resources.iter().map(|r| named("resource", r)));
        form.extend(self.extra.iter().cloned());
        form
    }

    /// The token key of this request from `client` with `grant` and `more` parts.
    fn key(&self, client: &OAuth2Client, grant: &str, more: &[(&str, Option<&str>)]) -> TokenKey {
        let resources = self.resources.join(" ");
        // Extras shape the token too; the key hashes them, so no value shows.
        let extras: Vec<String> = self.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let extras = extras.join("&");
        let mut parts = vec![
            ("scope", self.scope.as_deref()),
            ("audience", self.audience.as_deref()),
            (
                "resource",
                Some(resources.as_str()).filter(|r| !r.is_empty()),
            ),
            ("extra", Some(extras.as_str()).filter(|e| !e.is_empty())),
        ];
        parts.extend_from_slice(more);
        client.key(grant, &parts)
    }
}

macro_rules! request_setters {
    () => {
        /// Asks for this scope (space-separated).
        pub fn scope(mut self, scope: impl Into<String>) -> Self {
            self.request.scope = Some(scope.into());
            self
        }

        /// Asks for a token for this audience (the `audience` parameter many
        /// servers use).
        pub fn audience(mut self, audience: impl Into<String>) -> Self {
            self.request.audience = Some(audience.into());
            self
        }

        /// Asks for a token for this resource (RFC 8707); may be given several times.
        pub fn resource(mut self, resource: impl Into<String>) -> Self {
            self.request.resources.push(resource.into());
            self
        }

        /// Adds a parameter to the token request.
        pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.request.extra.push((name.into(), value.into()));
            self
        }
    };
}

/// The client credentials grant (RFC 6749 §4.4): a service's own token. Made by
/// [`OAuth2Client::client_credentials`].
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    client: OAuth2Client,
    request: Request,
    /// The grant type sent, where a provider names it its own way.
    grant_type: String,
}

impl OAuth2Client {
    /// The client credentials grant for this client.
    pub fn client_credentials(&self) -> ClientCredentials {
        ClientCredentials {
            client: self.clone(),
            request: Request::default(),
            grant_type: "client_credentials".to_owned(),
        }
    }

    /// The resource owner password grant (RFC 6749 §4.3).
    ///
    /// **Legacy**: the OAuth 2.0 Security BCP forbids it; use it only for servers
    /// that offer nothing else.
    pub fn password(
        &self,
        username: impl Into<String>,
        password: impl Into<ClientSecret>,
    ) -> PasswordGrant {
        PasswordGrant {
            client: self.clone(),
            request: Request::default(),
            username: username.into(),
            password: password.into(),
        }
    }

    /// A source that starts from a refresh token obtained elsewhere (a previous
    /// login, `REFRESH_TOKEN`, a CLI profile), and follows its rotations.
    pub fn refresh_token(&self, refresh_token: impl Into<RefreshToken>) -> RefreshTokenGrant {
        let refresh_token = refresh_token.into();
        RefreshTokenGrant {
            client: self.clone(),
            request: Request::default(),
            subject: crate::token::fingerprint(refresh_token.secret()),
            latest: Mutex::new(refresh_token),
            latest_key: Mutex::new(None),
        }
    }
}

impl ClientCredentials {
    request_setters!();

    /// Sends another `grant_type` than `client_credentials`, for a provider
    /// whose service-account grant is the same request under its own name:
    /// Zoom's server-to-server tokens are
    /// `.grant_type("account_credentials").param("account_id", id)`. Part of the
    /// token's key.
    pub fn grant_type(mut self, grant_type: impl Into<String>) -> Self {
        self.grant_type = grant_type.into();
        self
    }
}

#[async_trait]
impl Grant for ClientCredentials {
    fn client(&self) -> &OAuth2Client {
        &self.client
    }

    fn refresh_params(&self) -> Vec<(String, String)> {
        self.request.repeated()
    }

    fn grant_name(&self) -> &str {
        &self.grant_type
    }

    fn grant_key(&self) -> TokenKey {
        self.request.key(&self.client, &self.grant_type, &[])
    }

    async fn new_token(&self) -> Result<Token> {
        let form = self.request.form(&self.grant_type, &[]);
        self.client.token_request(&form).await
    }
}

/// The resource owner password grant. Made by [`OAuth2Client::password`].
#[derive(Debug, Clone)]
pub struct PasswordGrant {
    client: OAuth2Client,
    request: Request,
    username: String,
    password: ClientSecret,
}

impl PasswordGrant {
    request_setters!();
}

#[async_trait]
impl Grant for PasswordGrant {
    fn client(&self) -> &OAuth2Client {
        &self.client
    }

    fn refresh_params(&self) -> Vec<(String, String)> {
        self.request.repeated()
    }

    fn grant_name(&self) -> &str {
        "password"
    }

    fn grant_key(&self) -> TokenKey {
        self.request.key(
            &self.client,
            "password",
            &[("subject", Some(&self.username))],
        )
    }

    async fn new_token(&self) -> Result<Token> {
        let own = [
            ("username", self.username.as_str()),
            ("password", self.password.secret()),
        ];
        let form = self.request.form("password", &own);
        self.client.token_request(&form).await
    }
}

/// A source that only refreshes, starting from a given refresh token. Made by
/// [`OAuth2Client::refresh_token`].
///
/// It remembers the newest refresh token it received, so after a rotation a
/// [`fetch`](crate::TokenSource::fetch) (the manager's fallback) uses the live one. When
/// the server rejects it (`invalid_grant`), only a new login helps.
#[derive(Debug)]
pub struct RefreshTokenGrant {
    client: OAuth2Client,
    request: Request,
    latest: Mutex<RefreshToken>,
    /// With DPoP, the key the latest refresh proved (a public client's refresh
    /// token is bound to it), for a `fetch` that has no current token.
    latest_key: Mutex<Option<crate::dpop::DpopKey>>,
    /// Whose grant it is, for the key: the fingerprint of the refresh token it
    /// was made with (two users' tokens never share a key; rotations keep it).
    subject: String,
}

impl RefreshTokenGrant {
    request_setters!();

    /// Whose grant it is (any id of yours), for the token's key, in place of the
    /// default: the fingerprint of the refresh token it was made with. Give one
    /// where that refresh token changes between runs (read from the environment,
    /// or seeded once and rotated since) but the user does not; an empty one
    /// leaves the user out of the key, where the key names the user already (the
    /// CLI's profile) or one user per client is all there is (the key of earlier
    /// versions).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.subject = user.into();
        self
    }

    /// A refresh with `refresh_token`, continuing the sign-in of `current`.
    async fn refresh_with(
        &self,
        refresh_token: &RefreshToken,
        current: Option<&Token>,
    ) -> Result<Token> {
        let form = self.request.form(
            "refresh_token",
            &[("refresh_token", refresh_token.secret())],
        );
        // With DPoP, the key its refresh token is bound to.
        let latest_key = || {
            (self.latest_key.lock())
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        };
        let key = current.and_then(|t| t.dpop_key.clone()).or_else(latest_key);
        let token = self.client.token_request_with(&form, key.as_ref()).await?;
        if token.dpop_key.is_some() {
            *self
                .latest_key
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = token.dpop_key.clone();
        }
        let mut token = super::id_token::check_refreshed(&self.client, current, token).await;
        if token.refresh_token.is_none() {
            token.refresh_token = Some(refresh_token.clone());
        }
        if let Some(rotated) = &token.refresh_token {
            *self
                .latest
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = rotated.clone();
        }
        Ok(token)
    }
}

#[async_trait]
impl TokenSource for RefreshTokenGrant {
    async fn fetch(&self) -> Result<Token> {
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.refresh_with(&latest, None).await
    }

    async fn refresh(&self, current: &Token) -> Result<Token> {
        match &current.refresh_token {
            Some(refresh) => self.refresh_with(refresh, Some(current)).await,
            None => self.fetch().await,
        }
    }

    async fn revoke(&self, token: &Token) -> Result<()> {
        self.client.revoke(token).await
    }

    fn name(&self) -> &str {
        self.client.name()
    }

    fn grant_name(&self) -> &str {
        "refresh_token"
    }

    fn key(&self) -> TokenKey {
        self.request.key(
            &self.client,
            "refresh_token",
            &[("subject", Some(&self.subject))],
        )
    }
}
