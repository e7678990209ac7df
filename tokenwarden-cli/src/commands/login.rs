//! `tokenwarden login`: signs in (device code: the code to enter and a spinner;
//! authorization code: the browser, and the URL) or fetches a token now.

use super::Context;
use crate::exit::{CliError, OK};
use crate::profile::Interaction;
use std::sync::Mutex;
use std::time::Duration;
use tokenwarden::source::oauth2::DevicePrompt;

/// The spinner shown while the user signs in, stopped when done.
static SPINNER: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

pub async fn run(ctx: &Context, profile: Option<&str>, timeout: Duration) -> Result<u8, CliError> {
    let mut profile = ctx.profile(profile)?;
    profile.login_timeout = Some(timeout);
    let source = profile.source(Interaction::Allowed)?;
    let manager = profile.manager(Interaction::Allowed).await?;
    // A new sign-in, whatever is stored: that is what `login` is asked for.
    let token = source.fetch().await;
    stop_spinner();
    manager.set_tokens(token?).await?;
    let info = manager.info().await;
    eprintln!(
        "tokenwarden: profile `{}` signed in ({}), token {} expires in {}",
        profile.name,
        profile.grant.name(),
        info.fingerprint.as_deref().unwrap_or("-"),
        info.expires_in.map(human).unwrap_or_else(|| "-".into())
    );
    Ok(OK)
}

/// Shows the device code prompt, then a spinner while the server is polled.
pub fn show_device_prompt(prompt: &DevicePrompt) {
    eprintln!(
        "To sign in, open {} and enter the code {}",
        prompt.verification_uri, prompt.user_code
    );
    if let Some(complete) = &prompt.verification_uri_complete {
        eprintln!("(or open {complete})");
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!(
        "waiting for you to sign in (the code expires in {})",
        human(Duration::from_secs(prompt.expires_in))
    ));
    spinner.enable_steady_tick(Duration::from_millis(100));
    *SPINNER.lock().unwrap_or_else(|e| e.into_inner()) = Some(spinner);
}

/// Opens the browser at the authorization URL (unless `TOKENWARDEN_NO_BROWSER` is
/// set), and prints it for when it does not open.
pub fn show_authorization_url(url: &url::Url) {
    eprintln!("To sign in, open {url}");
    if std::env::var_os("TOKENWARDEN_NO_BROWSER").is_none()
        && open::that_detached(url.as_str()).is_ok()
    {
        eprintln!("(your browser was opened)");
    }
}

fn stop_spinner() {
    if let Some(spinner) = SPINNER.lock().unwrap_or_else(|e| e.into_inner()).take() {
        spinner.finish_and_clear();
    }
}

/// `1h 5m`, `42s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}
