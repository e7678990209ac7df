//! The configuration file: named profiles in TOML, `${VAR}` read from the
//! environment, every error naming the file, line and key.

mod raw;

pub use raw::Grant;

use crate::exit::CliError;
use raw::{RawFile, RawProfile};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A loaded configuration file.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    text: String,
    profiles: BTreeMap<String, Spanned<RawProfile>>,
}

/// Where a store keeps tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    File,
    Memory,
    Keyring,
    Redis(String),
}

/// One profile, every value read (environment included) and checked for its grant.
/// Its `Debug` shows no value that may be a secret.
#[derive(Clone)]
pub struct Profile {
    pub name: String,
    /// The configuration file it was read from.
    pub config_path: PathBuf,
    pub grant: Grant,
    pub issuer: Option<String>,
    pub token_url: Option<String>,
    pub device_authorization_url: Option<String>,
    pub authorization_url: Option<String>,
    pub revocation_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_auth: Option<String>,
    pub private_key: Option<PathBuf>,
    pub private_key_alg: Option<String>,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub refresh_token: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub subject: Option<String>,
    pub subject_token: Option<String>,
    pub login_url: Option<String>,
    pub refresh_url: Option<String>,
    pub store: StoreKind,
    pub store_dir: Option<PathBuf>,
    /// The key a Redis store seals tokens with (base64 of 32 bytes); else
    /// `$TOKENWARDEN_STORE_KEY`.
    pub store_key: Option<String>,
    /// For a `rediss://` store: the CA to trust instead of the platform's roots,
    /// and a client certificate and key (PEM files).
    pub redis_ca_file: Option<PathBuf>,
    pub redis_client_cert: Option<PathBuf>,
    pub redis_client_key: Option<PathBuf>,
    /// For a `redis+sentinel://` store: the password the sentinels ask for
    /// (their `requirepass`); the URL's credentials are the nodes'.
    pub redis_sentinel_password: Option<String>,
    pub base_url: Option<String>,
    pub redirect_port: Option<u16>,
    /// Keep a new token granted less scope than asked for (refused otherwise).
    pub accept_narrower_scope: bool,
    /// How long a browser sign-in waits (`login --timeout`; not a profile key).
    pub login_timeout: Option<std::time::Duration>,
    /// More parameters of the token request (the device authorization request
    /// for the device flow): `params = { account_id = "…" }`.
    pub params: Vec<(String, String)>,
    /// More parameters of the browser sign-in's authorization URL:
    /// `auth_params = { access_type = "offline" }`.
    pub auth_params: Vec<(String, String)>,
    /// The grant type a `client_credentials` profile sends, where a provider
    /// names it its own way (Zoom: `account_credentials`).
    pub grant_type: Option<String>,
    /// How long a token without `expires_in` is taken to live (else the
    /// library's default, an hour).
    pub token_lifetime: Option<std::time::Duration>,
    /// The username the git and docker credential helpers answer with (the
    /// token is the password); see [`Profile::helper_username`].
    pub helper_username: Option<String>,
    /// The container registry host the docker credential helper answers for.
    pub registry: Option<String>,
    /// A file the agent keeps holding the profile's current token (0600,
    /// replaced whole ahead of each expiry), for programs that read one.
    pub token_file: Option<PathBuf>,
    /// DPoP-bound tokens (RFC 9449) with keys of this algorithm: `dpop = true`
    /// (ES256) or `dpop = "EdDSA"`.
    pub dpop: Option<tokenwarden::dpop::DpopAlgorithm>,
    /// Mutual TLS (RFC 8705): the client certificate (PEM) presented to the
    /// token endpoint and to the API, and its key.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// A CA certificate (PEM) trusted beside the platform's roots, at the token
    /// endpoint and at the API (a private PKI).
    pub ca_file: Option<PathBuf>,
}

impl Config {
    /// The file named by `--config`, else `$TOKENWARDEN_CONFIG`, else the platform
    /// config directory's `tokenwarden/config.toml`.
    pub fn path(flag: Option<&Path>) -> Result<PathBuf, CliError> {
        if let Some(path) = flag {
            return Ok(path.to_owned());
        }
        if let Some(path) = std::env::var_os("TOKENWARDEN_CONFIG") {
            return Ok(PathBuf::from(path));
        }
        directories::ProjectDirs::from("", "", "tokenwarden")
            .map(|dirs| dirs.config_dir().join("config.toml"))
            .ok_or_else(|| {
                CliError::usage("no home directory to find the configuration in")
                    .hint("give one with --config FILE or TOKENWARDEN_CONFIG")
            })
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(format!("cannot read the configuration {}: {e}", path.display()))
                .hint(
                    "create it with a [profiles.NAME] table, or point --config or TOKENWARDEN_CONFIG at yours; see the README",
                )
        })?;
        Self::parse(path, text)
    }

    /// Parses `text`, the contents of the file at `path`.
    pub fn parse(path: &Path, text: String) -> Result<Self, CliError> {
        let raw: RawFile = toml::from_str(&text).map_err(|e| {
            let at = e.span().map(|span| line_col(&text, span.start));
            CliError::usage(format!(
                "{}{}: {}",
                path.display(),
                at.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default(),
                e.message().trim()
            ))
            .hint("fix the configuration file")
        })?;
        Ok(Self {
            path: path.to_owned(),
            text,
            profiles: raw.profiles,
        })
    }

    /// The names of the profiles, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    /// The profile `-p NAME`, else `$TOKENWARDEN_PROFILE`, else `default`.
    pub fn chosen_name(flag: Option<&str>) -> String {
        flag.map(str::to_owned)
            .or_else(|| std::env::var("TOKENWARDEN_PROFILE").ok())
            .unwrap_or_else(|| "default".into())
    }

    /// The profile `name`, read and checked.
    pub fn profile(&self, name: &str) -> Result<Profile, CliError> {
        let Some(raw) = self.profiles.get(name) else {
            let known: Vec<_> = self.names().collect();
            return Err(
                CliError::usage(format!("{}: no profile `{name}`", self.path.display())).hint(
                    if known.is_empty() {
                        "add a [profiles.NAME] table".to_owned()
                    } else {
                        format!("the profiles are: {}; choose one with -p", known.join(", "))
                    },
                ),
            );
        };
        raw::resolve(self, name, raw)
    }

    /// `file:line:col` of a byte offset, for errors.
    pub(crate) fn at(&self, offset: usize) -> String {
        let (line, col) = line_col(&self.text, offset);
        format!("{}:{line}:{col}", self.path.display())
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

impl Profile {
    /// A digest of everything the profile resolved to (environment variables
    /// filled in, secrets included), by which a command and the agent tell they
    /// mean the same profile: the same name in the same file can differ by the
    /// environment each read it in, or by an edit since. SHA-256: no value can
    /// be read back from it.
    pub fn digest(&self) -> String {
        use sha2::{Digest as _, Sha256};
        // The key a Redis store seals with, where the profile names none.
        let store_key = std::env::var("TOKENWARDEN_STORE_KEY").ok();
        let fields = format!(
            "{:?}",
            (
                (&self.name, self.grant, &self.issuer, &self.token_url),
                (&self.device_authorization_url, &self.authorization_url),
                (&self.revocation_url, &self.client_id, &self.client_secret),
                (&self.client_auth, &self.private_key, &self.private_key_alg),
                (
                    &self.scope,
                    &self.audience,
                    &self.resource,
                    &self.refresh_token
                ),
                (
                    &self.username,
                    &self.password,
                    &self.subject,
                    &self.subject_token
                ),
                (
                    &self.login_url,
                    &self.refresh_url,
                    &self.store,
                    &self.store_dir
                ),
                (
                    &self.store_key,
                    &self.redis_ca_file,
                    &self.redis_client_cert
                ),
                (
                    &self.redis_client_key,
                    &self.redis_sentinel_password,
                    (&self.client_cert, &self.client_key, &self.ca_file)
                ),
                (
                    &self.base_url,
                    self.redirect_port,
                    self.accept_narrower_scope
                ),
                (
                    &self.params,
                    &self.auth_params,
                    &self.grant_type,
                    self.token_lifetime
                ),
                (
                    &self.helper_username,
                    &self.registry,
                    &self.token_file,
                    store_key,
                    self.dpop
                ),
            )
        );
        let digest = Sha256::digest(fields.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets (client_secret, password, refresh_token, store_key, the
        // sentinels' password, a store URL's password) are left out.
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}
