//! Exit codes and the one-line error (plus a hint) the command prints on failure.

use tokenwarden::ErrorKind;

/// Success.
pub const OK: u8 = 0;
/// A usage or configuration error.
pub const USAGE: u8 = 2;
/// The authorization server rejected us (invalid client, invalid grant, denied).
pub const REJECTED: u8 = 3;
/// The token endpoint could not be reached or kept failing; no valid token left.
pub const UNAVAILABLE: u8 = 4;
/// A store error (corrupt file, permissions, Redis unreachable).
pub const STORE: u8 = 5;
/// A person's sign-in did not complete: nobody signed in in time, or it was denied.
pub const SIGN_IN: u8 = 6;
/// `curl --fail` and a status of 400 or more.
pub const HTTP_FAIL: u8 = 22;

/// A failed command: its exit code, one line saying what went wrong, and a hint.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    /// A usage or configuration error.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: USAGE,
            message: message.into(),
            hint: None,
        }
    }

    /// An error with this exit code.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prints the error to stderr (never a secret: tokenwarden's errors carry none).
    pub fn print(&self) {
        eprintln!("tokenwarden: {}", self.message);
        if let Some(hint) = &self.hint {
            eprintln!("hint: {hint}");
        }
    }
}

impl From<tokenwarden::Error> for CliError {
    fn from(error: tokenwarden::Error) -> Self {
        // "No valid token" says why through the last attempt.
        let mut cause = &error;
        while let Some(last) = cause.last_attempt() {
            cause = last;
        }
        // Our own refusal to sign in from a script: no server was asked.
        if let Some(refusal) = cause
            .oauth_error()
            .filter(|e| e.error == "login_required" && cause.status().is_none())
        {
            let (message, hint) = refusal
                .error_description
                .as_deref()
                .unwrap_or("not signed in; run `tokenwarden login`")
                .split_once("; ")
                .unwrap_or(("not signed in", "run `tokenwarden login`"));
            return Self {
                code: REJECTED,
                message: message.to_owned(),
                hint: Some(hint.to_owned()),
            };
        }
        // A sign-in nobody completed in time, or one that was denied.
        if error.is_unfinished_sign_in() {
            return Self {
                code: SIGN_IN,
                message: error.to_string(),
                hint: Some(
                    "the sign-in was not completed (it timed out or was denied); run `tokenwarden login` again and approve it"
                        .into(),
                ),
            };
        }
        // Our own refusal of a token granted less than the profile asks for.
        if cause
            .oauth_error()
            .is_some_and(|e| e.error == "invalid_scope" && cause.status().is_none())
        {
            return Self {
                code: REJECTED,
                message: error.to_string(),
                hint: Some(
                    "set the profile's `scope` to what the server grants, or `accept_narrower_scope = true` to keep such tokens".into(),
                ),
            };
        }
        let (code, hint) = match cause.kind() {
            ErrorKind::OAuth if cause.is_transient() => (
                UNAVAILABLE,
                "the authorization server is failing; try again later",
            ),
            ErrorKind::OAuth => (
                REJECTED,
                "check the profile's client, secret and grant, or run `tokenwarden login`",
            ),
            ErrorKind::Store => (
                STORE,
                "check the store (`tokenwarden status`): its files and permissions, its server, or its key (TOKENWARDEN_STORE_KEY, the same on every machine that shares it)",
            ),
            ErrorKind::LeaseLost => (
                UNAVAILABLE,
                "another process was refreshing the same token; run the command again",
            ),
            ErrorKind::Config => (USAGE, "fix the configuration named above"),
            _ if cause.is_invalid_grant() => (REJECTED, "run `tokenwarden login` again"),
            // A login API that refuses without an OAuth2 error body.
            _ if cause
                .status()
                .is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429) =>
            {
                (
                    REJECTED,
                    "the server refused the credentials; check the profile's username, password or client",
                )
            }
            _ => (
                UNAVAILABLE,
                "the token endpoint could not be reached; check the network and the profile's issuer or token_url",
            ),
        };
        Self {
            code,
            message: error.to_string(),
            hint: Some(hint.into()),
        }
    }
}
