//! `tokenwarden logout`: revoke where the server supports it, remove the tokens.

use super::Context;
use crate::exit::{CliError, OK};
use crate::profile::Interaction;

pub async fn run(ctx: &Context, profile: Option<&str>) -> Result<u8, CliError> {
    let profile = ctx.profile(profile)?;
    let manager = profile.manager(Interaction::Refused).await?;
    manager.logout().await?;
    eprintln!("tokenwarden: logged out of profile `{}`", profile.name);
    Ok(OK)
}
