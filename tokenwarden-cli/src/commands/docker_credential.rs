//! `docker-credential-tokenwarden get|store|erase|list` (or `tokenwarden
//! docker-credential ...`): Docker's credential helper protocol, for registries
//! that take OAuth2 tokens. Set it per registry in `~/.docker/config.json`:
//! `{"credHelpers": {"registry.example.com": "tokenwarden"}}`, with a profile
//! whose `registry = "registry.example.com"`.
//!
//! - `get`: the server URL on stdin; `{"ServerURL", "Username", "Secret"}` on
//!   stdout, the token as the secret, from the profile whose `registry` is that
//!   host. None: `credentials not found in native keychain` (what Docker takes
//!   as "no credentials") and exit 1.
//! - `list`: `{"<registry>": "<username>"}` of every profile with a `registry`.
//! - `store` (`docker login`) and `erase` (`docker logout`) are read and
//!   ignored: tokenwarden keeps the tokens (`tokenwarden logout` removes them).

use super::Context;
use crate::config::Profile;
use crate::exit::{CliError, OK, USAGE};
use crate::profile::Interaction;
use serde_json::{json, Map, Value};
use std::io::{Read as _, Write as _};

/// What Docker recognises as "no credentials for this server".
const NOT_FOUND: &str = "credentials not found in native keychain";

pub async fn run(ctx: &Context, operation: &str) -> Result<u8, CliError> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| CliError::usage(format!("cannot read docker's request: {e}")))?;
    match operation {
        "get" => get(ctx, input.trim()).await,
        "list" => list(ctx),
        "store" | "erase" => Ok(OK),
        other => Err(
            CliError::usage(format!("unknown docker credential operation `{other}`"))
                .hint("docker asks for get, store, erase or list"),
        ),
    }
}

/// The registry host of a server URL as Docker gives it (`https://host/v1/`,
/// `host`, `host:5000`).
fn host(server: &str) -> String {
    let rest = server.split_once("://").map_or(server, |(_, rest)| rest);
    rest.split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The profiles that answer for a registry, with their registry host.
fn registries(ctx: &Context) -> Result<Vec<(String, Profile)>, CliError> {
    let config = ctx.config()?;
    let mut found = Vec::new();
    for name in config.names() {
        // A profile that does not load is no registry's: the others still answer.
        match config.profile(name) {
            Ok(profile) => {
                if let Some(registry) = profile.registry.clone() {
                    found.push((host(&registry), profile));
                }
            }
            Err(error) => tracing::warn!(profile = name, error = %error.message, "skipped"),
        }
    }
    Ok(found)
}

fn print(text: &str) -> Result<(), CliError> {
    writeln!(std::io::stdout().lock(), "{text}")
        .map_err(|e| CliError::new(USAGE, format!("cannot write to stdout: {e}")))
}

async fn get(ctx: &Context, server: &str) -> Result<u8, CliError> {
    let wanted = host(server);
    let mut found = registries(ctx)?.into_iter().filter(|(h, _)| *h == wanted);
    let Some((_, profile)) = found.next() else {
        print(NOT_FOUND)?;
        return Ok(1);
    };
    // Two profiles for one registry: which token is meant is not ours to guess.
    if let Some((_, other)) = found.next() {
        return Err(CliError::usage(format!(
            "profiles `{}` and `{}` both name registry `{wanted}`",
            profile.name, other.name
        ))
        .hint("keep `registry` in one profile"));
    }
    super::bearer_only(&profile, "Docker")?;
    let manager = profile.manager(Interaction::Refused).await?;
    let token = manager.token().await;
    crate::last_refresh::save(&profile.name, &manager).await;
    let token = token?;
    let username =
        (profile.helper_username.as_deref()).unwrap_or(super::git_credential::DEFAULT_USERNAME);
    let answer = json!({
        "ServerURL": server,
        "Username": username,
        "Secret": token.access_token.secret(),
    });
    print(&answer.to_string())?;
    Ok(OK)
}

fn list(ctx: &Context) -> Result<u8, CliError> {
    let mut all = Map::new();
    for (host, profile) in registries(ctx)? {
        let username =
            (profile.helper_username.as_deref()).unwrap_or(super::git_credential::DEFAULT_USERNAME);
        all.insert(host, Value::from(username));
    }
    print(&Value::Object(all).to_string())?;
    Ok(OK)
}
