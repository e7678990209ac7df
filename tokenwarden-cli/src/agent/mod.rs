//! `tokenwarden agent`: one long-running process per user that holds the
//! managers of the configured profiles (refreshing ahead of expiry) and hands
//! their tokens to the other commands over a Unix socket, so that every
//! command, helper and script of the user shares one cache and one refresh per
//! expiry (docs/design/007-agent.md).
//!
//! The socket is `$TOKENWARDEN_AGENT_SOCK`, else `$XDG_RUNTIME_DIR/tokenwarden/agent.sock`
//! (else a directory of the user's own in the temporary directory): made 0600
//! in a 0700 directory the user owns, and the agent answers only peers of the
//! same user (their credentials, checked by the kernel). The commands ask it
//! when it runs, and do as they did without it when it does not (nothing
//! listening, another configuration, an error of the agent's own).
//!
//! The protocol: one JSON request per line, one JSON answer per line.

pub mod client;
// The peer's credentials of a blocking socket: SO_PEERCRED, Linux's.
#[cfg(target_os = "linux")]
pub mod fast;
mod managers;
mod server;
mod socket;
pub mod source;

pub use server::run;

use serde::{Deserialize, Serialize};

/// What a command asks the agent. No `Debug`: it may hold a token.
#[derive(Clone, Serialize, Deserialize)]
pub struct Request {
    /// `token`, `status` or `ping`.
    pub op: String,
    /// The profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// The configuration file the command reads (its canonical path): the
    /// agent answers only for its own (another file's profiles are not its
    /// profiles).
    #[serde(default)]
    pub config: Option<std::path::PathBuf>,
    /// [`Profile::digest`](crate::config::Profile::digest) of the profile as
    /// the command resolved it: the agent answers only where its own resolves
    /// to the same (another environment, or an edit since, make another profile).
    #[serde(default)]
    pub digest: Option<String>,
    /// A token the command's server rejected: if it is the profile's current
    /// one, a new one is got first (after a 401, or git's `erase`).
    #[serde(default)]
    pub rejected: Option<String>,
}

/// The agent's answer: a token, a status, or an error. No `Debug`: it may
/// hold a token.
#[derive(Default, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    /// The access token (`token`). Never a refresh token: they stay with the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// When the token expires (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `status`: what `tokenwarden status --json` shows of the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
    /// The error, if not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AnswerError>,
}

/// The [`AnswerError::kind`] of a request for another profile than the
/// agent's of that name: the command does without the agent.
pub const OTHER_PROFILE: &str = "other_profile";

impl Request {
    /// A request about `profile` as this command resolved it.
    pub fn about(op: &str, profile: &crate::config::Profile) -> Self {
        Self {
            op: op.into(),
            profile: Some(profile.name.clone()),
            config: Some(canonical(&profile.config_path)),
            digest: Some(profile.digest()),
            rejected: None,
        }
    }
}

/// `path` made absolute and resolved, as the agent compares it (a relative
/// path means another file in another directory).
pub fn canonical(path: &std::path::Path) -> std::path::PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// An error the agent met, as the command reports it (its kind sets the exit code).
#[derive(Debug, Serialize, Deserialize)]
pub struct AnswerError {
    /// [`tokenwarden::ErrorKind::as_str`], or `usage` for the agent's own refusals.
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub status: Option<u16>,
    /// The OAuth2 error code and description, for `oauth`.
    #[serde(default)]
    pub oauth_error: Option<(String, Option<String>)>,
    #[serde(default)]
    pub transient: bool,
}
