//! `tokenwarden logout`: revoke where the server supports it, remove the tokens,
//! and say which of the two happened.

use super::Context;
use crate::exit::{CliError, OK};
use crate::profile::Interaction;

pub async fn run(ctx: &Context, profile: Option<&str>) -> Result<u8, CliError> {
    let profile = ctx.profile(profile)?;
    let manager = profile.manager_for_logout(Interaction::Refused).await?;
    let held = manager.info().await.fingerprint.is_some();
    // Asked before the logout, which revokes there (its own client asks too).
    let revocation = match held {
        true => profile.revocation().await,
        false => None,
    };
    manager.logout().await?;
    let name = &profile.name;
    match (held, revocation) {
        (false, _) => eprintln!("tokenwarden: profile `{name}` held no token; nothing to revoke"),
        (true, Some(Ok(Some(url)))) => eprintln!(
            "tokenwarden: logged out of profile `{name}`: the tokens were revoked at {} and removed from the store",
            url.host_str().unwrap_or_default()
        ),
        (true, Some(Ok(None))) => {
            eprintln!(
                "tokenwarden: logged out of profile `{name}` on this machine only: the tokens were removed from the store, but the server names no revocation endpoint, so they stay valid there until they expire"
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
