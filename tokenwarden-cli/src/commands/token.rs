//! `tokenwarden token`: a valid access token on stdout.

use super::Context;
use crate::exit::{CliError, OK};
use crate::profile::Interaction;
use std::io::Write as _;

pub async fn run(ctx: &Context, profile: Option<&str>, json: bool) -> Result<u8, CliError> {
    let profile = ctx.profile(profile)?;
    let manager = profile.manager(Interaction::Refused).await?;
    let token = manager.token().await;
    crate::last_refresh::save(&profile.name, &manager).await;
    let token = token?;
    let mut out = std::io::stdout().lock();
    let written = if json {
        let mut value = crate::describe::describe_manager(&profile, &manager).await;
        // The one place a secret is printed: asked for, on stdout.
        value["access_token"] = token.access_token.secret().into();
        writeln!(out, "{value:#}")
    } else {
        writeln!(out, "{}", token.access_token.secret())
    };
    written
        .map_err(|e| CliError::new(crate::exit::USAGE, format!("cannot write to stdout: {e}")))?;
    Ok(OK)
}
