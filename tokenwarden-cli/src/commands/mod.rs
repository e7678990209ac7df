//! The commands that work on a profile.

pub mod curl;
pub mod docker_credential;
pub mod exec;
pub mod git_credential;
pub mod kubectl;
pub mod login;
pub mod logout;
pub mod rejected;
pub mod status;
pub mod token;

use crate::config::{Config, Profile};
use crate::exit::CliError;
use std::path::PathBuf;

/// The configuration, loaded on first use.
#[derive(Debug)]
pub struct Context {
    pub config_flag: Option<PathBuf>,
}

impl Context {
    pub fn config(&self) -> Result<Config, CliError> {
        Config::load(&Config::path(self.config_flag.as_deref())?)
    }

    /// The profile chosen by `-p`, `$TOKENWARDEN_PROFILE` or `default`.
    pub fn profile(&self, flag: Option<&str>) -> Result<Profile, CliError> {
        self.config()?.profile(&Config::chosen_name(flag))
    }
}

/// Refuses a profile whose tokens are DPoP-bound for a command that hands the
/// token to another program (`tool`), which would send it without a proof of
/// possession and be refused.
pub fn bearer_only(profile: &Profile, tool: &str) -> Result<(), CliError> {
    if profile.dpop.is_none() {
        return Ok(());
    }
    Err(CliError::usage(format!(
        "profile `{}` gets DPoP-bound tokens (dpop), which {tool} would send without the \
         proof each request needs",
        profile.name
    ))
    .hint("use `tokenwarden curl` or `tokenwarden proxy`, which sign the proofs"))
}
