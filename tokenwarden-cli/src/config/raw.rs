//! The file as written (with positions), and its checking into a [`Profile`].

use super::{Config, Profile, StoreKind};
use crate::exit::CliError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub profiles: BTreeMap<String, Spanned<RawProfile>>,
}

type Text = Option<Spanned<String>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    issuer: Text,
    token_url: Text,
    device_authorization_url: Text,
    authorization_url: Text,
    revocation_url: Text,
    grant: Text,
    client_id: Text,
    client_secret: Text,
    client_auth: Text,
    private_key: Text,
    private_key_alg: Text,
    scope: Text,
    audience: Text,
    resource: Text,
    refresh_token: Text,
    username: Text,
    password: Text,
    subject: Text,
    subject_token: Text,
    login_url: Text,
    refresh_url: Text,
    store: Text,
    store_dir: Text,
    store_key: Text,
    redis_ca_file: Text,
    redis_client_cert: Text,
    redis_client_key: Text,
    redis_sentinel_password: Text,
    base_url: Text,
    redirect_port: Option<Spanned<u16>>,
    accept_narrower_scope: Option<Spanned<bool>>,
    /// More parameters of the token request (device authorization request).
    params: Option<BTreeMap<String, Spanned<String>>>,
    /// More parameters of the authorization URL (browser sign-in).
    auth_params: Option<BTreeMap<String, Spanned<String>>>,
    /// The grant type sent for `client_credentials`, where a provider names it
    /// its own way.
    grant_type: Text,
    /// Seconds a token without `expires_in` is taken to live.
    token_lifetime: Option<Spanned<u64>>,
    /// The username the git and docker helpers answer with.
    helper_username: Text,
    /// The container registry (host) the docker helper answers for.
    registry: Text,
    /// A file the agent keeps holding the current token.
    token_file: Text,
    /// DPoP-bound tokens: `true` (ES256), or the algorithm's name.
    dpop: Option<Spanned<Dpop>>,
    /// Mutual TLS (RFC 8705): the client certificate and its key (PEM files).
    client_cert: Text,
    client_key: Text,
    /// A CA (PEM) trusted beside the platform's, at the token endpoint and the API.
    ca_file: Text,
}

/// `dpop = true`, or `dpop = "EdDSA"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Dpop {
    On(bool),
    Algorithm(String),
}

/// How a profile gets its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    ClientCredentials,
    RefreshToken,
    Password,
    DeviceCode,
    AuthorizationCode,
    JwtBearer,
    TokenExchange,
    Custom,
}

impl Grant {
    const ALL: [(&'static str, Grant); 8] = [
        ("client_credentials", Grant::ClientCredentials),
        ("refresh_token", Grant::RefreshToken),
        ("password", Grant::Password),
        ("device_code", Grant::DeviceCode),
        ("authorization_code", Grant::AuthorizationCode),
        ("jwt_bearer", Grant::JwtBearer),
        ("token_exchange", Grant::TokenExchange),
        ("custom", Grant::Custom),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, g)| *g == self)
            .map_or("", |(n, _)| n)
    }

    /// Whether signing in involves the user (a browser or a code to enter).
    pub fn is_interactive(self) -> bool {
        matches!(self, Grant::DeviceCode | Grant::AuthorizationCode)
    }

    /// The fields this grant cannot do without (besides where the server is).
    fn required(self) -> &'static [&'static str] {
        match self {
            Grant::ClientCredentials | Grant::DeviceCode | Grant::AuthorizationCode => {
                &["client_id"]
            }
            Grant::RefreshToken => &["client_id", "refresh_token"],
            Grant::Password => &["client_id", "username", "password"],
            Grant::JwtBearer => &["client_id", "private_key", "subject"],
            Grant::TokenExchange => &["client_id", "subject_token"],
            Grant::Custom => &["login_url"],
        }
    }
}

/// Reads `raw` into a profile: `${VAR}`s, types and what the grant needs.
pub(super) fn resolve(
    config: &Config,
    name: &str,
    raw: &Spanned<RawProfile>,
) -> Result<Profile, CliError> {
    let table_at = config.at(raw.span().start);
    let raw = raw.get_ref();
    let text = |key: &str, value: &Text| -> Result<Option<String>, CliError> {
        value
            .as_ref()
            .map(|v| {
                interpolate(v.get_ref()).map_err(|why| {
                    field_error(config, key, v, &why)
                        .hint("export the variable, or write the value into the file")
                })
            })
            .transpose()
    };
    let grant = match &raw.grant {
        None => Grant::ClientCredentials,
        Some(value) => Grant::ALL
            .iter()
            .find(|(n, _)| *n == value.get_ref())
            .map(|(_, g)| *g)
            .ok_or_else(|| {
                let names: Vec<_> = Grant::ALL.iter().map(|(n, _)| *n).collect();
                field_error(
                    config,
                    "grant",
                    value,
                    &format!(
                        "unknown grant `{}`; use one of {}",
                        value.get_ref(),
                        names.join(", ")
                    ),
                )
            })?,
    };
    let table = |key: &str,
                 values: &Option<BTreeMap<String, Spanned<String>>>|
     -> Result<Vec<(String, String)>, CliError> {
        let mut pairs = Vec::new();
        for (name, value) in values.iter().flatten() {
            let value = text(key, &Some(value.clone()))?.unwrap_or_default();
            pairs.push((name.clone(), value));
        }
        Ok(pairs)
    };
    let dir = config.path.parent().map(PathBuf::from).unwrap_or_default();
    let path = |key: &str, value: &Text| -> Result<Option<PathBuf>, CliError> {
        Ok(text(key, value)?.map(|p| dir.join(p)))
    };
    let store = match &raw.store {
        None => StoreKind::File,
        Some(value) => match interpolate(value.get_ref())
            .map_err(|why| field_error(config, "store", value, &why))?
            .as_str()
        {
            "file" => StoreKind::File,
            "memory" => StoreKind::Memory,
            "keyring" => StoreKind::Keyring,
            url if [
                "redis://",
                "rediss://",
                "redis+sentinel://",
                "rediss+sentinel://",
                "redis+cluster://",
                "rediss+cluster://",
            ]
            .iter()
            .any(|scheme| url.starts_with(scheme)) =>
            {
                StoreKind::Redis(url.to_owned())
            }
            other => {
                // A mistyped URL may carry a password (`${VAR}` expanded): only
                // its scheme is quoted.
                let shown = match other.split_once("://") {
                    Some((scheme, _)) => format!("{scheme}://…"),
                    None if other.contains(['@', ':', '/']) => "…".to_owned(),
                    None => other.to_owned(),
                };
                return Err(field_error(
                    config,
                    "store",
                    value,
                    &format!(
                        "unknown store `{shown}`; use file, memory, keyring, or a redis://, redis+sentinel:// or redis+cluster:// URL (rediss… over TLS)"
                    ),
                ));
            }
        },
    };
    let profile = Profile {
        name: name.to_owned(),
        config_path: config.path.clone(),
        grant,
        issuer: text("issuer", &raw.issuer)?,
        token_url: text("token_url", &raw.token_url)?,
        device_authorization_url: text("device_authorization_url", &raw.device_authorization_url)?,
        authorization_url: text("authorization_url", &raw.authorization_url)?,
        revocation_url: text("revocation_url", &raw.revocation_url)?,
        client_id: text("client_id", &raw.client_id)?,
        client_secret: text("client_secret", &raw.client_secret)?,
        client_auth: text("client_auth", &raw.client_auth)?,
        private_key: path("private_key", &raw.private_key)?,
        private_key_alg: text("private_key_alg", &raw.private_key_alg)?,
        scope: text("scope", &raw.scope)?,
        audience: text("audience", &raw.audience)?,
        resource: text("resource", &raw.resource)?,
        refresh_token: text("refresh_token", &raw.refresh_token)?,
        username: text("username", &raw.username)?,
        password: text("password", &raw.password)?,
        subject: text("subject", &raw.subject)?,
        subject_token: text("subject_token", &raw.subject_token)?,
        login_url: text("login_url", &raw.login_url)?,
        refresh_url: text("refresh_url", &raw.refresh_url)?,
        store,
        store_dir: path("store_dir", &raw.store_dir)?,
        store_key: text("store_key", &raw.store_key)?,
        redis_ca_file: path("redis_ca_file", &raw.redis_ca_file)?,
        redis_client_cert: path("redis_client_cert", &raw.redis_client_cert)?,
        redis_client_key: path("redis_client_key", &raw.redis_client_key)?,
        redis_sentinel_password: text("redis_sentinel_password", &raw.redis_sentinel_password)?,
        base_url: text("base_url", &raw.base_url)?,
        redirect_port: raw.redirect_port.as_ref().map(|p| *p.get_ref()),
        accept_narrower_scope: raw
            .accept_narrower_scope
            .as_ref()
            .is_some_and(|a| *a.get_ref()),
        login_timeout: None,
        params: table("params", &raw.params)?,
        auth_params: table("auth_params", &raw.auth_params)?,
        grant_type: text("grant_type", &raw.grant_type)?,
        token_lifetime: raw
            .token_lifetime
            .as_ref()
            .map(|s| std::time::Duration::from_secs(*s.get_ref())),
        helper_username: text("helper_username", &raw.helper_username)?,
        registry: text("registry", &raw.registry)?,
        token_file: path("token_file", &raw.token_file)?,
        client_cert: path("client_cert", &raw.client_cert)?,
        client_key: path("client_key", &raw.client_key)?,
        ca_file: path("ca_file", &raw.ca_file)?,
        dpop: match &raw.dpop {
            None => None,
            Some(value) => match value.get_ref() {
                Dpop::On(on) => on.then_some(tokenwarden::dpop::DpopAlgorithm::Es256),
                Dpop::Algorithm(name) => Some(name.parse().map_err(|e: tokenwarden::Error| {
                    let shown = Spanned::new(value.span(), name.clone());
                    field_error(config, "dpop", &shown, &e.to_string())
                })?),
            },
        },
    };
    let takes_params = !matches!(
        grant,
        Grant::TokenExchange | Grant::JwtBearer | Grant::AuthorizationCode | Grant::Custom
    );
    if !profile.params.is_empty() && !takes_params {
        return Err(CliError::usage(format!(
            "{table_at}: profile `{name}`: the {} grant sends no params",
            grant.name()
        ))
        .hint("a browser sign-in takes auth_params (for its authorization URL)"));
    }
    if !profile.auth_params.is_empty() && grant != Grant::AuthorizationCode {
        return Err(CliError::usage(format!(
            "{table_at}: profile `{name}`: auth_params go with the authorization_code grant only"
        ))
        .hint("other grants take params"));
    }
    const RESERVED: [&str; 8] = [
        "grant_type",
        "scope",
        "client_id",
        "client_secret",
        "refresh_token",
        "code",
        "username",
        "password",
    ];
    if let Some((reserved, _)) = profile
        .params
        .iter()
        .chain(&profile.auth_params)
        .find(|(k, _)| RESERVED.contains(&k.as_str()))
    {
        return Err(CliError::usage(format!(
            "{table_at}: profile `{name}`: `{reserved}` is not a parameter to add; the profile's own keys set it"
        ))
        .hint("use the profile key of that name (grant, scope, client_id...)"));
    }
    if profile.store_key.is_some() && !matches!(profile.store, StoreKind::Redis(_)) {
        return Err(CliError::usage(format!(
            "{table_at}: profile `{name}`: store_key seals a Redis store; the file store keeps its own key"
        ))
        .hint("remove store_key, or use a redis:// store"));
    }
    if profile.token_lifetime.is_some_and(|l| l.is_zero()) {
        return Err(CliError::usage(format!(
            "{table_at}: profile `{name}`: token_lifetime must be at least 1 second"
        ))
        .hint("token_lifetime = 3600"));
    }
    if profile.grant_type.is_some() && grant != Grant::ClientCredentials {
        return Err(CliError::usage(format!(
            "{table_at}: profile `{name}`: grant_type goes with the client_credentials grant only"
        ))
        .hint("remove grant_type, or use grant = \"client_credentials\""));
    }
    let missing: Vec<&str> = grant
        .required()
        .iter()
        .copied()
        .filter(|key| !profile.has(key))
        .collect();
    if !missing.is_empty() {
        return Err(CliError::usage(format!(
            "{table_at}: profile `{name}`: the {} grant needs {}",
            grant.name(),
            missing.join(", ")
        ))
        .hint("add the missing keys to the profile"));
    }
    if grant != Grant::Custom && profile.issuer.is_none() && profile.token_url.is_none() {
        return Err(CliError::usage(format!(
            "{table_at}: profile `{name}`: give issuer (discovery) or token_url"
        ))
        .hint("issuer = \"https://auth.example.com\""));
    }
    Ok(profile)
}

impl Profile {
    fn has(&self, key: &str) -> bool {
        match key {
            "client_id" => self.client_id.is_some(),
            "refresh_token" => self.refresh_token.is_some(),
            "username" => self.username.is_some(),
            "password" => self.password.is_some(),
            "private_key" => self.private_key.is_some(),
            "subject" => self.subject.is_some(),
            "subject_token" => self.subject_token.is_some(),
            "login_url" => self.login_url.is_some(),
            _ => false,
        }
    }
}

fn field_error(config: &Config, key: &str, value: &Spanned<String>, why: &str) -> CliError {
    CliError::usage(format!("{}: `{key}`: {why}", config.at(value.span().start)))
        .hint("fix the configuration file")
}

/// Replaces each `${VAR}` with the environment variable; a missing one is an error
/// naming it. `$$` is a literal `$`.
fn interpolate(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| "an unclosed `${`".to_owned())?;
            let var = &inner[..end];
            let found = std::env::var(var)
                .map_err(|_| format!("the environment variable {var} is not set"))?;
            out.push_str(&found);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::interpolate;

    #[test]
    fn variables_are_read_and_a_missing_one_is_named() {
        std::env::set_var("TW_CONFIG_TEST_VAR", "value");
        assert_eq!(
            interpolate("a-${TW_CONFIG_TEST_VAR}-b").unwrap(),
            "a-value-b"
        );
        assert_eq!(interpolate("cost $$5, $x").unwrap(), "cost $5, $x");
        let error = interpolate("${TW_CONFIG_TEST_MISSING}").unwrap_err();
        assert!(error.contains("TW_CONFIG_TEST_MISSING"), "{error}");
        assert!(interpolate("${OPEN").is_err());
    }
}
