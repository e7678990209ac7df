//! `tokenwarden git-credential -p P get|store|erase`: git's credential helper
//! (gitcredentials(7)), set with
//! `git config credential.https://git.example.com.helper "tokenwarden git-credential -p P"`.
//!
//! - `get` answers with the username (`helper_username`, else the one git gave,
//!   else `oauth2`), the token as the password, and `password_expiry_utc`, so
//!   that git never keeps it past its expiry. Only for the profile's `base_url`
//!   origin, over https (or http on loopback): for any other host, or a profile
//!   without `base_url`, it answers nothing, and git asks elsewhere.
//! - `erase` (git got the credential rejected): if the password is the current
//!   token, a new one is got now, so the next `get` answers with it.
//! - `store`, and anything else, is read and ignored: the tokens are kept by
//!   tokenwarden.

use super::Context;
use crate::exit::{CliError, OK, USAGE};
use crate::profile::Interaction;
use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use tokenwarden::http::AllowedOrigins;

/// The username answered when neither the profile nor git names one.
pub const DEFAULT_USERNAME: &str = "oauth2";

pub async fn run(ctx: &Context, profile: Option<&str>, operation: &str) -> Result<u8, CliError> {
    let asked = read_request()?;
    match operation {
        "get" => get(ctx, profile, &asked).await,
        "erase" => erase(ctx, profile, &asked).await,
        // `store`, and operations of later git versions: nothing to do.
        _ => Ok(OK),
    }
}

/// git's `key=value` lines, up to a blank line or the end.
fn read_request() -> Result<HashMap<String, String>, CliError> {
    let mut asked = HashMap::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| CliError::usage(format!("cannot read git's request: {e}")))?;
        if line.is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once('=') {
            asked.insert(key.to_owned(), value.to_owned());
        }
    }
    Ok(asked)
}

/// Whether the token may go where git is going.
fn allowed(profile: &crate::config::Profile, asked: &HashMap<String, String>) -> bool {
    let (Some(protocol), Some(host)) = (asked.get("protocol"), asked.get("host")) else {
        return false;
    };
    // A host git sends is a name and a port: nothing that a URL parser would
    // read otherwise (user info, a path) than git does.
    if host.contains(['@', '/', '?', '#', '\\']) || host.chars().any(char::is_whitespace) {
        return false;
    }
    let Ok(url) = url::Url::parse(&format!("{protocol}://{host}/")) else {
        return false;
    };
    // The token goes to the profile's origin only: no `base_url`, no answer.
    let Some(base) = &profile.base_url else {
        tracing::warn!("the profile has no base_url: git is given no credential");
        return false;
    };
    AllowedOrigins::of(base).is_ok_and(|origins| origins.allows(&url))
}

async fn get(
    ctx: &Context,
    profile: Option<&str>,
    asked: &HashMap<String, String>,
) -> Result<u8, CliError> {
    let profile = ctx.profile(profile)?;
    super::bearer_only(&profile, "git")?;
    if !allowed(&profile, asked) {
        tracing::warn!(
            host = asked.get("host").map(String::as_str),
            "not the profile's origin (or not https): no credential"
        );
        return Ok(OK);
    }
    let manager = profile.manager(Interaction::Refused).await?;
    let token = manager.token().await;
    crate::last_refresh::save(&profile.name, &manager).await;
    let token = token?;
    let username = (profile.helper_username.as_deref())
        .or(asked.get("username").map(String::as_str))
        .unwrap_or(DEFAULT_USERNAME);
    let mut answer = format!(
        "username={username}\npassword={}\n",
        token.access_token.secret()
    );
    if let Some(at) = token.expires_at {
        let secs = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        answer += &format!("password_expiry_utc={secs}\n");
    }
    std::io::stdout()
        .lock()
        .write_all(answer.as_bytes())
        .map_err(|e| CliError::new(USAGE, format!("cannot write to stdout: {e}")))?;
    Ok(OK)
}

async fn erase(
    ctx: &Context,
    profile: Option<&str>,
    asked: &HashMap<String, String>,
) -> Result<u8, CliError> {
    let profile = ctx.profile(profile)?;
    let Some(rejected) = asked.get("password") else {
        return Ok(OK);
    };
    if !allowed(&profile, asked) {
        return Ok(OK);
    }
    let manager = profile.manager(Interaction::Refused).await?;
    super::rejected::replace(&profile.name, &manager, rejected).await;
    Ok(OK)
}
