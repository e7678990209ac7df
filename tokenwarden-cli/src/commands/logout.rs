//! `tokenwarden logout`: revoke where the server supports it, remove the tokens,
//! and say which of the two happened.

use super::Context;
use crate::exit::{CliError, OK};

pub async fn run(ctx: &Context, profile: Option<&str>, force: bool) -> Result<u8, CliError> {
    let profile = ctx.profile(profile)?;
    let (manager, unreadable) = profile.manager_for_logout().await?;
    let name = &profile.name;
    if let Some(why) = unreadable {
        // Not ours to read, so not ours to revoke: removed only when asked.
        if !force {
            return Err(CliError::new(
                crate::exit::STORE,
                format!("the stored token of profile `{name}` cannot be read here, so it stays: {why}"),
            )
            .hint("check TOKENWARDEN_STORE_KEY; `tokenwarden logout --force` removes the entry without revoking it"));
        }
        manager.logout().await?;
        eprintln!("tokenwarden: removed the stored token of profile `{name}`, which could not be read here; it was not revoked at the server");
        return Ok(OK);
    }
    let held = manager.info().await.fingerprint.is_some();
    // Asked before the logout, which revokes there (its own client asks too).
    let revocation = match held {
        true => profile.revocation().await,
        false => None,
    };
    manager.logout().await?;
    match (held, revocation) {
        (false, _) => eprintln!("tokenwarden: profile `{name}` held no token; nothing to revoke"),
        (true, Some(Ok(Some(url)))) => eprintln!(
            "tokenwarden: logged out of profile `{name}`: the tokens were revoked at {} and removed from the store",
            url.host_str().unwrap_or_default()
        ),
        (true, Some(Ok(None))) => {
            eprintln!(
                "tokenwarden: logged out of profile `{name}` on this machine only: the tokens were removed from the store, but {}, so they stay valid there until they expire",
                profile.no_revocation_endpoint()
            );
            eprintln!("hint: if the server has one, set `revocation_url` in the profile");
        }
        // The logout revoked (or its error was returned above); the profile's
        // own lookup failed in between.
        (true, Some(Err(_))) | (true, None) => {
            eprintln!("tokenwarden: logged out of profile `{name}`")
        }
    }
    Ok(OK)
}
