//! A profile made real: its OAuth2 client, token source, store and manager.

use crate::config::{Grant, Profile, StoreKind};
use crate::exit::CliError;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::source::login::LoginSource;
use tokenwarden::source::oauth2::{
    ClientAuth, JwtSigner, OAuth2Client, OAuth2ClientBuilder, SigningAlgorithm,
};
use tokenwarden::store::{FileStore, KeyringStore, MemoryStore, TokenCipher};
use tokenwarden::{
    ClientSecret, Error, OAuthError, Result, Token, TokenKey, TokenManager, TokenManagerBuilder,
    TokenSource, TokenStore,
};
use url::Url;

/// [`Profile::store_recheck`] for a store on this machine.
const LOCAL_STORE_RECHECK: Duration = Duration::from_secs(1);

/// A grant builder with the profile's scope.
macro_rules! scoped {
    ($profile:expr, $grant:expr) => {{
        let mut grant = $grant;
        if let Some(scope) = $profile.scope.as_deref().filter(|s| !s.is_empty()) {
            grant = grant.scope(scope);
        }
        grant
    }};
}

/// A grant builder with the profile's scope, audience and resource.
macro_rules! shaped {
    ($profile:expr, $grant:expr) => {{
        let mut grant = scoped!($profile, $grant);
        if let Some(audience) = &$profile.audience {
            grant = grant.audience(audience);
        }
        if let Some(resource) = &$profile.resource {
            grant = grant.resource(resource);
        }
        grant
    }};
}

/// A grant builder with the profile's scope, audience, resource and `params`.
macro_rules! extended {
    ($profile:expr, $grant:expr) => {{
        let mut grant = shaped!($profile, $grant);
        for (name, value) in &$profile.params {
            grant = grant.param(name, value);
        }
        grant
    }};
}

/// What the grant may do when there is no token: sign the user in (the `login`
/// command) or refuse, so that a script never waits on a browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Allowed,
    Refused,
}

/// The application name of the stores' directories and keyring entries.
const APP: &str = "tokenwarden";

/// The environment variable with the key a Redis store seals tokens with.
const STORE_KEY_VAR: &str = "TOKENWARDEN_STORE_KEY";

impl Profile {
    /// The OAuth2 client of the profile.
    pub fn client(&self) -> Result<OAuth2Client> {
        let mut builder = OAuth2Client::builder().name(&self.name);
        if let Some(client_id) = &self.client_id {
            builder = builder.client_id(client_id);
        }
        type Setter = fn(OAuth2ClientBuilder, &str) -> OAuth2ClientBuilder;
        let urls: [(&Option<String>, Setter); 5] = [
            (&self.issuer, |b, url| b.issuer(url)),
            (&self.token_url, |b, url| b.token_url(url)),
            (&self.device_authorization_url, |b, url| {
                b.device_authorization_url(url)
            }),
            (&self.authorization_url, |b, url| b.authorization_url(url)),
            (&self.revocation_url, |b, url| b.revocation_url(url)),
        ];
        for (url, set) in urls {
            if let Some(url) = url {
                builder = set(builder, url);
            }
        }
        builder = builder
            .auth(self.client_auth()?)
            .accept_narrower_scope(self.accept_narrower_scope);
        if let Some(alg) = self.dpop {
            builder = builder.dpop(alg);
        }
        // Mutual TLS, or a private CA: a client of the profile's own that
        // presents the certificate and trusts the CA.
        if let Some(certificate) = crate::tls::certificate(self)? {
            builder = builder.client_certificate(certificate);
        }
        if self.client_cert.is_some() || self.ca_file.is_some() {
            let http = reqwest::Client::builder()
                .connect_timeout(tokenwarden::source::oauth2::DEFAULT_CONNECT_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none());
            let http = crate::tls::apply(self, http)?.build().map_err(|e| {
                Error::config(format!("profile `{}`: its TLS settings: {e}", self.name))
            })?;
            builder = builder.http_client(http);
        }
        builder.build()
    }

    fn client_auth(&self) -> Result<ClientAuth> {
        let secret = self.client_secret.clone().map(ClientSecret::new);
        Ok(match (self.client_auth.as_deref(), secret) {
            (Some("private_key_jwt"), _) => ClientAuth::PrivateKeyJwt(self.signer()?),
            (Some("client_secret_post"), Some(secret)) => ClientAuth::SecretPost(secret),
            (Some("client_secret_basic") | None, Some(secret)) => ClientAuth::SecretBasic(secret),
            (Some("none") | None, None) => ClientAuth::None,
            (Some("tls_client_auth"), _) => ClientAuth::TlsClientAuth,
            (Some("self_signed_tls_client_auth"), _) => ClientAuth::SelfSignedTlsClientAuth,
            (Some(method @ ("client_secret_post" | "client_secret_basic")), None) => {
                return Err(Error::config(format!(
                    "profile `{}`: client_auth = {method} needs client_secret",
                    self.name
                )))
            }
            (Some(other), _) => {
                return Err(Error::config(format!(
                    "profile `{}`: unknown client_auth `{other}`; use client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth, self_signed_tls_client_auth or none",
                    self.name
                )))
            }
        })
    }

    fn signer(&self) -> Result<JwtSigner> {
        let path = self.private_key.as_ref().ok_or_else(|| {
            Error::config(format!(
                "profile `{}`: private_key_jwt needs private_key",
                self.name
            ))
        })?;
        let pem = std::fs::read(path).map_err(|e| {
            Error::config(format!(
                "profile `{}`: cannot read the private key {}: {e}",
                self.name,
                path.display()
            ))
        })?;
        let in_profile = |error: Error| {
            Error::config(format!(
                "profile `{}`: {}: {}",
                self.name,
                path.display(),
                error
                    .to_string()
                    .trim_start_matches("invalid configuration: ")
            ))
        };
        // The algorithm follows from the key; `private_key_alg` only overrides.
        let algorithm = match self.private_key_alg.as_deref() {
            None => return JwtSigner::from_pem_key(&pem).map_err(in_profile),
            Some("RS256") => SigningAlgorithm::Rs256,
            Some("ES256") => SigningAlgorithm::Es256,
            Some("ES384") => SigningAlgorithm::Es384,
            Some("EdDSA") => SigningAlgorithm::EdDsa,
            Some(other) => {
                return Err(Error::config(format!(
                    "profile `{}`: unknown private_key_alg `{other}`; use RS256, ES256, ES384 or EdDSA, or leave it out (it follows from the key)",
                    self.name
                )))
            }
        };
        let asked = self.private_key_alg.as_deref().unwrap_or_default();
        JwtSigner::from_pem(&pem, algorithm).map_err(|error| {
            let error = in_profile(error).to_string();
            Error::config(format!(
                "{} (the profile sets private_key_alg = \"{asked}\": change it, or remove it)",
                error.trim_start_matches("invalid configuration: ")
            ))
        })
    }

    /// Why no revocation endpoint is known, where none is: the server's
    /// metadata names none, or the profile gives no issuer to ask.
    pub fn no_revocation_endpoint(&self) -> &'static str {
        match self.issuer {
            Some(_) => "the server names no revocation endpoint",
            None => "the profile names neither an issuer nor a revocation_url",
        }
    }

    /// Where the profile's tokens are revoked (RFC 7009): the configured
    /// `revocation_url`, else the one the issuer's metadata names (a request);
    /// `None` for a custom grant, which has no OAuth2 client.
    pub async fn revocation(&self) -> Option<Result<Option<Url>>> {
        if self.grant == Grant::Custom {
            return None;
        }
        Some(match self.client() {
            Ok(client) => client.revocation_url().await,
            Err(error) => Err(error),
        })
    }

    /// The token source of the profile's grant.
    pub fn source(&self, interaction: Interaction) -> Result<Arc<dyn TokenSource>> {
        let client = || self.client();
        let scope = self.scope.clone().unwrap_or_default();
        let source: Arc<dyn TokenSource> = match self.grant {
            Grant::ClientCredentials => {
                let mut grant = client()?.client_credentials();
                if let Some(grant_type) = &self.grant_type {
                    grant = grant.grant_type(grant_type);
                }
                Arc::new(extended!(self, grant))
            }
            Grant::RefreshToken => Arc::new(extended!(
                self,
                client()?
                    .refresh_token(self.refresh_token.clone().unwrap_or_default())
                    // The profile (in the key already) is the user: its refresh
                    // token is rotated, and the key stays the one earlier versions
                    // stored under.
                    .user("")
            )),
            Grant::Password => Arc::new(extended!(
                self,
                client()?.password(
                    self.username.clone().unwrap_or_default(),
                    self.password.clone().unwrap_or_default(),
                )
            )),
            Grant::TokenExchange => Arc::new(shaped!(
                self,
                client()?.token_exchange(self.subject_token.clone().unwrap_or_default())
            )),
            Grant::DeviceCode => Arc::new(extended!(
                self,
                client()?
                    .device_code()
                    .on_prompt(crate::commands::login::show_device_prompt)
            )),
            Grant::AuthorizationCode => {
                let mut grant = scoped!(
                    self,
                    client()?
                        .authorization_code()
                        .on_open(crate::commands::login::show_authorization_url)
                );
                // OpenID Connect gives a refresh token for offline_access only
                // with consent asked (Core §11).
                let own_prompt = self.auth_params.iter().any(|(name, _)| name == "prompt");
                if scope.split(' ').any(|s| s == "offline_access") && !own_prompt {
                    grant = grant.auth_param("prompt", "consent");
                }
                if let Some(port) = self.redirect_port {
                    grant = grant.redirect_port(port);
                }
                if let Some(timeout) = self.login_timeout {
                    grant = grant.login_timeout(timeout);
                }
                // The API the token is for, and the provider's own parameters
                // (Auth0's and Atlassian's `audience`, Google's `access_type`,
                // Dropbox's `token_access_type`), go on the authorization URL.
                let named = [("audience", &self.audience), ("resource", &self.resource)];
                for (name, value) in named {
                    if let Some(value) = value {
                        grant = grant.auth_param(name, value);
                    }
                }
                for (name, value) in &self.auth_params {
                    grant = grant.auth_param(name, value);
                }
                Arc::new(grant)
            }
            Grant::JwtBearer => {
                let issuer = self.client_id.clone().unwrap_or_default();
                let subject = self.subject.clone().unwrap_or_default();
                Arc::new(scoped!(
                    self,
                    client()?.jwt_bearer(self.signer()?, issuer, subject)
                ))
            }
            Grant::Custom => {
                let mut builder = LoginSource::builder(&self.name)
                    .login_url(self.login_url.clone().unwrap_or_default())
                    .credentials_json(serde_json::json!({
                        "username": self.username.clone().unwrap_or_default(),
                        "password": self.password.clone().unwrap_or_default(),
                    }));
                if let Some(url) = &self.refresh_url {
                    builder = builder.refresh_url(url);
                }
                Arc::new(builder.build()?)
            }
        };
        Ok(match interaction {
            Interaction::Refused if self.grant.is_interactive() => {
                Arc::new(NoLogin(source, self.name.clone()))
            }
            _ => source,
        })
    }

    /// The profile's store.
    pub async fn store(&self) -> Result<Arc<dyn TokenStore>> {
        Ok(match &self.store {
            StoreKind::Memory => Arc::new(MemoryStore::new()),
            StoreKind::Keyring => Arc::new(KeyringStore::new(APP)),
            StoreKind::File => {
                let mut builder = FileStore::builder(APP);
                if let Some(dir) = &self.store_dir {
                    builder = builder.dir(dir);
                }
                Arc::new(builder.build()?)
            }
            StoreKind::Redis(url) => {
                let mut builder = tokenwarden_redis::RedisStore::builder(url.as_str())
                    .prefix(APP)
                    .cipher(self.store_cipher()?);
                if let Some(ca) = &self.redis_ca_file {
                    builder = builder.tls_ca(self.read_pem("redis_ca_file", ca)?);
                }
                if let Some(password) = &self.redis_sentinel_password {
                    builder = builder.sentinel_credentials("", password.as_str());
                }
                match (&self.redis_client_cert, &self.redis_client_key) {
                    (Some(cert), Some(key)) => {
                        builder = builder.tls_client_cert(
                            self.read_pem("redis_client_cert", cert)?,
                            self.read_pem("redis_client_key", key)?,
                        );
                    }
                    (None, None) => {}
                    _ => {
                        return Err(Error::config(format!(
                            "profile `{}`: redis_client_cert and redis_client_key go together",
                            self.name
                        )))
                    }
                }
                Arc::new(builder.build().await?)
            }
        })
    }

    /// The PEM file at `path`, named by the profile's `key`.
    /// The cipher a shared store seals tokens with: the profile's `store_key`,
    /// else `$TOKENWARDEN_STORE_KEY`; 32 bytes in base64. Anyone who can read
    /// Redis could otherwise read the tokens, so there is no store without it.
    fn store_cipher(&self) -> Result<TokenCipher> {
        let name = &self.name;
        let key = match &self.store_key {
            Some(key) => key.clone(),
            None => std::env::var(STORE_KEY_VAR).map_err(|_| {
                Error::config(format!(
                    "profile `{name}`: a Redis store seals its tokens and needs a key: \
                     export {STORE_KEY_VAR}=\"$(openssl rand -base64 32)\" (or set store_key in the profile, \
                     which comes first), the same key on every machine that shares the store"
                ))
            })?,
        };
        use base64::Engine as _;
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
        ];
        let trimmed = key.trim().trim_end_matches('=');
        let bytes = engines.iter().find_map(|engine| {
            let padded = format!("{trimmed}{}", "=".repeat((4 - trimmed.len() % 4) % 4));
            engine.decode(padded).ok()
        });
        let key: [u8; 32] = bytes
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                Error::config(format!(
                    "profile `{name}`: the store key ({STORE_KEY_VAR} or store_key) is not 32 bytes in base64; \
                     make one with `openssl rand -base64 32`"
                ))
            })?;
        Ok(TokenCipher::new(key))
    }

    fn read_pem(&self, key: &str, path: &std::path::Path) -> Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| {
            Error::config(format!(
                "profile `{}`: cannot read {key} {}: {e}",
                self.name,
                path.display()
            ))
        })
    }

    /// Where the store keeps tokens, for `status`.
    pub fn store_location(&self) -> String {
        match &self.store {
            StoreKind::Memory => "memory (this process only)".into(),
            StoreKind::Keyring => format!("OS keyring, service `{APP}`"),
            StoreKind::File => match &self.store_dir {
                Some(dir) => format!("file, {}", dir.display()),
                None => directories::ProjectDirs::from("", "", APP)
                    .map(|d| format!("file, {}", d.data_dir().join("tokens").display()))
                    .unwrap_or_else(|| "file".into()),
            },
            StoreKind::Redis(url) if url.contains("+sentinel://") => {
                format!("redis, the primary Sentinel names, {}", redacted_url(url))
            }
            StoreKind::Redis(url) if url.contains("+cluster://") => {
                format!("redis cluster, {}", redacted_url(url))
            }
            StoreKind::Redis(url) => format!("redis, {}", redacted_url(url)),
        }
    }

    /// The profile's manager for one command: its source, under a key that names
    /// the profile too, on its store. No refresh ahead of time: the process ends
    /// right after, and a refresh cut off then could spend a rotating refresh token
    /// without saving the new one; callers wait for the refresh when the token is
    /// expiring instead.
    ///
    /// Where an agent of the user's serves this configuration, and no person is
    /// there to sign in, the tokens come from the agent instead.
    pub async fn manager(&self, interaction: Interaction) -> Result<TokenManager> {
        // A DPoP-bound token is of no use without its key, which the agent
        // keeps to itself: such a profile does without it.
        #[cfg(unix)]
        if interaction == Interaction::Refused
            && crate::agent::client::enabled()
            && self.dpop.is_none()
        {
            if let Some(manager) = crate::agent::source::manager(self).await {
                return Ok(manager);
            }
        }
        let (builder, store, key) = self.manager_builder(interaction).await?;
        self.check_store(&*store, &key).await?;
        builder.refresh_ahead(Duration::ZERO).build()
    }

    /// [`manager`](Self::manager) for `logout`, and why the stored token cannot
    /// be read, if it cannot (an entry sealed with another key, or left in clear
    /// by an earlier build): `logout --force` removes it, unrevoked.
    pub async fn manager_for_logout(&self) -> Result<(TokenManager, Option<Error>)> {
        let (builder, store, key) = self.manager_builder(Interaction::Refused).await?;
        let unreadable = store.load(&key).await.err();
        Ok((builder.refresh_ahead(Duration::ZERO).build()?, unreadable))
    }

    /// The profile's manager in the agent: tokens are refreshed ahead of their
    /// expiry in the background, for every command that asks the agent.
    pub async fn agent_manager(&self) -> Result<TokenManager> {
        let (builder, store, key) = self.manager_builder(Interaction::Refused).await?;
        self.check_store(&*store, &key).await?;
        builder.background_refresh(true).build()
    }

    /// The profile's manager for a long-running command (the proxy): tokens are
    /// refreshed ahead of their expiry, in the background.
    pub async fn service_manager(&self) -> Result<TokenManager> {
        let (builder, store, key) = self.manager_builder(Interaction::Refused).await?;
        self.check_store(&*store, &key).await?;
        builder.build()
    }

    /// Reads the stored token once before the command, to say what the library
    /// only logs. In a shared store, a token this machine cannot read (another
    /// key) is an error to fix here, not a reason to sign in again beside it:
    /// the library would serve a new token and keep the stored one for the
    /// machines that can read it (docs/design/003). A token file that cannot be
    /// read is moved aside by that read: one line on stderr names both files,
    /// and the command goes on (signing in again where it may).
    async fn check_store(&self, store: &dyn TokenStore, key: &TokenKey) -> Result<()> {
        match &self.store {
            StoreKind::Redis(_) => {
                store.load(key).await?;
            }
            StoreKind::File => {
                if let Err(error) = store.load(key).await {
                    eprintln!("tokenwarden: warning: {error}");
                }
            }
            StoreKind::Memory | StoreKind::Keyring => {}
        }
        Ok(())
    }

    /// The manager's builder, its store and its key.
    async fn manager_builder(
        &self,
        interaction: Interaction,
    ) -> Result<(TokenManagerBuilder, Arc<dyn TokenStore>, TokenKey)> {
        let source = self.source(interaction)?;
        let key = source.key().with("profile", &self.name);
        let store = self.store().await?;
        let builder = TokenManager::builder(source)
            .key(key.clone())
            .store(store.clone())
            .store_recheck(self.store_recheck());
        let builder = match self.token_lifetime {
            Some(lifetime) => builder.default_lifetime(lifetime),
            None => builder,
        };
        Ok((builder, store, key))
    }

    /// How long a process serves its copy of the stored token before reading the
    /// store again, which is how long `logout` waits after deleting it. Stores
    /// on this machine are shared by its own processes (`proxy`, the commands)
    /// only, for which a second is cheap; a Redis store may be shared with a fleet
    /// of library users, which use the library's default.
    fn store_recheck(&self) -> Option<Duration> {
        match &self.store {
            StoreKind::Memory => None,
            StoreKind::Keyring | StoreKind::File => Some(LOCAL_STORE_RECHECK),
            StoreKind::Redis(_) => Some(tokenwarden::DEFAULT_STORE_RECHECK),
        }
    }

    /// The profile's base URL, checked.
    pub fn base_url(&self) -> std::result::Result<Option<Url>, CliError> {
        self.base_url
            .as_deref()
            .map(|url| {
                Url::parse(url).map_err(|e| {
                    CliError::usage(format!(
                        "profile `{}`: base_url `{url}` is not a URL: {e}",
                        self.name
                    ))
                })
            })
            .transpose()
    }
}

/// A Redis URL without its password.
fn redacted_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("[redacted]"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // Not a URL the `url` crate reads (a Sentinel URL names several hosts):
        // whatever stands between `user:` and `@` goes.
        Err(_) => match url.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((credentials, hosts)) => {
                    let user = credentials.split_once(':').map_or(credentials, |(u, _)| u);
                    format!("{scheme}://{user}:[redacted]@{hosts}")
                }
                None => url.to_owned(),
            },
            None => "[a URL that does not parse]".to_owned(),
        },
    }
}

/// Refuses to sign the user in (a script must not wait on a browser): the token
/// comes from the store, or from a refresh, or `tokenwarden login` is needed.
#[derive(Debug)]
struct NoLogin(Arc<dyn TokenSource>, String);

#[async_trait]
impl TokenSource for NoLogin {
    async fn fetch(&self) -> Result<Token> {
        Err(Error::oauth(
            self.0.name(),
            None,
            OAuthError::new("login_required").with_description(format!(
                "profile `{}` is not signed in; run `tokenwarden login -p {}`",
                self.1, self.1
            )),
        ))
    }

    async fn refresh(&self, current: &Token) -> Result<Token> {
        self.0.refresh(current).await
    }

    async fn revoke(&self, token: &Token) -> Result<()> {
        self.0.revoke(token).await
    }

    fn name(&self) -> &str {
        self.0.name()
    }

    fn key(&self) -> TokenKey {
        self.0.key()
    }
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn store_urls_are_shown_without_their_password() {
        let single = redacted_url("redis://tw:s3cret@host:6379/0");
        assert!(
            !single.contains("s3cret") && single.contains("redacted"),
            "{single}"
        );
        let sentinel = redacted_url("redis+sentinel://tw:s3cret@h1:26379,h2:26379/mymaster");
        assert!(!sentinel.contains("s3cret"), "{sentinel}");
        assert!(
            sentinel.contains("h1:26379,h2:26379/mymaster"),
            "{sentinel}"
        );
        assert_eq!(redacted_url("redis://host:6379/0"), "redis://host:6379/0");
    }
}
