//! The crate's one error type, [`Error`], with [`ErrorKind`] for matching on categories.
//!
//! Messages never contain a secret: sources and stores build them from status codes,
//! OAuth2 error codes and short descriptions, never from token text.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The underlying cause of an error, shared so that [`Error`] is `Clone` (one failed
/// refresh is reported to every caller that waited for it).
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// An OAuth2 error response (RFC 6749 §5.2), kept as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OAuthError {
    /// The error code, e.g. `invalid_grant`.
    pub error: String,
    /// The server's human-readable description, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// A page describing the error, if the server gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_uri: Option<String>,
}

impl OAuthError {
    /// An error with just a code.
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            error_description: None,
            error_uri: None,
        }
    }

    /// Adds the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.error_description = Some(description.into());
        self
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)?;
        if let Some(description) = &self.error_description {
            write!(f, " ({description})")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong getting, storing or refreshing a token.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The authorization server refused the request with an OAuth2 error.
    #[error("token source `{source_name}`: the server answered {}error `{error}`{}",
        status.map(|s| format!("HTTP {s} with ")).unwrap_or_default(),
        hint_for(&error.error))]
    OAuth {
        /// The source's name.
        source_name: String,
        /// The HTTP status, when the error came over HTTP.
        status: Option<u16>,
        /// The error as the server sent it.
        error: OAuthError,
    },

    /// The token endpoint could not be reached, timed out, or answered with an
    /// unexpected status.
    #[error("token source `{source_name}`: {message}{}",
        if *transient { "; this is usually temporary and will be retried" } else { "" })]
    Transport {
        /// The source's name.
        source_name: String,
        /// The HTTP status, if the server answered.
        status: Option<u16>,
        /// How long the server asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
        /// Whether trying again later may work (connection errors, timeouts, 429, 5xx).
        transient: bool,
        /// What happened, without any secret.
        message: String,
        /// The underlying error.
        #[source]
        cause: Option<Cause>,
    },

    /// The server answered, but not with a token this crate can use.
    #[error("token source `{source_name}`: invalid token response{}: {message}",
        status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    InvalidResponse {
        /// The source's name.
        source_name: String,
        /// The HTTP status of the response.
        status: Option<u16>,
        /// What was wrong with it, and a short excerpt of it where that is safe.
        message: String,
    },

    /// The source could not produce a token (missing credentials, a failed custom
    /// login, a user who denied access...).
    #[error("token source `{source_name}`: {message}")]
    Source {
        /// The source's name.
        source_name: String,
        /// What went wrong and what to do about it.
        message: String,
        /// Whether trying again later may work.
        transient: bool,
        /// The underlying error.
        #[source]
        cause: Option<Cause>,
    },

    /// A token store failed to load, save, delete or lease.
    #[error("token store `{store}`: {message}")]
    Store {
        /// The store's name (and location, where it has one).
        store: String,
        /// What went wrong and what to do about it.
        message: String,
        /// The underlying error.
        #[source]
        cause: Option<Cause>,
    },

    /// The configuration is invalid.
    #[error("invalid configuration: {message}")]
    Config {
        /// What is wrong and how to fix it.
        message: String,
    },

    /// No valid token is left: the last one expired (or there was none) and getting
    /// a new one failed with `cause`.
    #[error("no valid token from source `{source_name}`: {cause}")]
    NoValidToken {
        /// The source's name.
        source_name: String,
        /// Why the last attempt to get a token failed.
        #[source]
        cause: Arc<Error>,
    },
}

fn hint_for(code: &str) -> &'static str {
    match code {
        "invalid_grant" => "; the refresh token or grant was rejected: log in again",
        "invalid_client" => "; check the client id, secret or key",
        "unauthorized_client" => "; this client may not use this grant",
        "invalid_scope" => "; check the requested scope",
        "temporarily_unavailable" => "; the server is temporarily unavailable, will retry",
        _ => "",
    }
}

/// The category of an [`Error`], for matching without destructuring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::OAuth`].
    OAuth,
    /// [`Error::Transport`].
    Transport,
    /// [`Error::InvalidResponse`].
    InvalidResponse,
    /// [`Error::Source`].
    Source,
    /// [`Error::Store`].
    Store,
    /// [`Error::Config`].
    Config,
    /// [`Error::NoValidToken`].
    NoValidToken,
}

impl Error {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::OAuth { .. } => ErrorKind::OAuth,
            Error::Transport { .. } => ErrorKind::Transport,
            Error::InvalidResponse { .. } => ErrorKind::InvalidResponse,
            Error::Source { .. } => ErrorKind::Source,
            Error::Store { .. } => ErrorKind::Store,
            Error::Config { .. } => ErrorKind::Config,
            Error::NoValidToken { .. } => ErrorKind::NoValidToken,
        }
    }

    /// Whether trying again later may succeed (connection errors, timeouts, 429,
    /// 5xx, `temporarily_unavailable`); `false` for rejected credentials and bad
    /// configuration, which need a person to act.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::OAuth { status, error, .. } => {
                matches!(
                    error.error.as_str(),
                    "temporarily_unavailable" | "server_error"
                ) || status.is_some_and(|s| s == 429 || s >= 500)
            }
            Error::Transport { transient, .. } | Error::Source { transient, .. } => *transient,
            Error::InvalidResponse { status, .. } => status.is_some_and(|s| s >= 500),
            Error::Store { .. } => true,
            Error::Config { .. } => false,
            Error::NoValidToken { cause, .. } => cause.is_transient(),
        }
    }

    /// Whether the server rejected the grant (`invalid_grant`): the refresh token is
    /// spent, revoked or expired, and only a new login helps.
    pub fn is_invalid_grant(&self) -> bool {
        self.oauth_error()
            .is_some_and(|e| e.error == "invalid_grant")
    }

    /// The OAuth2 error the server sent, if this error (or its cause) is one.
    pub fn oauth_error(&self) -> Option<&OAuthError> {
        match self {
            Error::OAuth { error, .. } => Some(error),
            Error::NoValidToken { cause, .. } => cause.oauth_error(),
            _ => None,
        }
    }

    /// The name of the token source involved, if any.
    pub fn source_name(&self) -> Option<&str> {
        match self {
            Error::OAuth { source_name, .. }
            | Error::Transport { source_name, .. }
            | Error::InvalidResponse { source_name, .. }
            | Error::Source { source_name, .. }
            | Error::NoValidToken { source_name, .. } => Some(source_name),
            Error::Store { .. } | Error::Config { .. } => None,
        }
    }

    /// How long the server asked callers to wait before trying again, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Transport { retry_after, .. } => *retry_after,
            Error::NoValidToken { cause, .. } => cause.retry_after(),
            _ => None,
        }
    }

    /// A [`Error::Source`] error that trying again will not fix.
    pub fn source_failed(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Source {
            source_name: source_name.into(),
            message: message.into(),
            transient: false,
            cause: None,
        }
    }

    /// A [`Error::Store`] error.
    pub fn store(
        store: impl Into<String>,
        message: impl Into<String>,
        cause: Option<Cause>,
    ) -> Self {
        Error::Store {
            store: store.into(),
            message: message.into(),
            cause,
        }
    }

    /// A [`Error::Config`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn error_is_send_sync_static() {
        assert_send_sync::<Error>();
    }

    #[test]
    fn invalid_grant_is_permanent_and_says_what_to_do() {
        let err = Error::OAuth {
            source_name: "api".into(),
            status: Some(400),
            error: OAuthError::new("invalid_grant").with_description("token revoked"),
        };
        assert!(err.is_invalid_grant());
        assert!(!err.is_transient());
        assert_eq!(err.kind(), ErrorKind::OAuth);
        let text = err.to_string();
        assert!(
            text.contains("`api`") && text.contains("invalid_grant (token revoked)"),
            "{text}"
        );
        assert!(text.contains("log in again"), "{text}");
    }

    #[test]
    fn no_valid_token_names_source_and_cause() {
        let cause = Error::Transport {
            source_name: "api".into(),
            status: Some(503),
            retry_after: Some(Duration::from_secs(3)),
            transient: true,
            message: "HTTP 503 Service Unavailable".into(),
            cause: None,
        };
        let err = Error::NoValidToken {
            source_name: "api".into(),
            cause: Arc::new(cause),
        };
        assert!(err.is_transient());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(err.source_name(), Some("api"));
        assert!(err.to_string().contains("HTTP 503"), "{err}");
    }
}
