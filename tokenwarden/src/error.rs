//! The crate's one error type, [`Error`], and [`ErrorKind`] for matching on it.
//!
//! Messages never contain a secret: sources and stores build them from status codes,
//! OAuth2 error codes and short descriptions, never from token text.
//!
//! `Error` is one pointer wide (its details sit behind an `Arc`), so that
//! `Result<TokenRef>` stays as small as the token handle itself: the hit path moves
//! it on every call. Clones are cheap, and one failed refresh is reported to every
//! caller that waited for it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The underlying cause of an error.
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

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)?;
        if let Some(description) = &self.error_description {
            write!(f, " ({description})")?;
        }
        Ok(())
    }
}

/// The category of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The authorization server refused the request with an OAuth2 error
    /// ([`Error::oauth_error`] has it).
    OAuth,
    /// The token endpoint could not be reached, timed out, or answered with an
    /// unexpected status.
    Transport,
    /// The server answered, but not with a token this crate can use.
    InvalidResponse,
    /// The source could not produce a token (missing credentials, a failed custom
    /// login, a user who denied access...).
    Source,
    /// A token store failed to load, save, delete or lease.
    Store,
    /// A write to a store was refused because the lease it was made under had
    /// ended: another instance took the lease since (this one stalled, or the
    /// lease expired), so what that instance stored stays. Nothing is lost: the
    /// manager adopts the stored token. See [`Lease`](crate::store::Lease).
    LeaseLost,
    /// The configuration is invalid.
    Config,
    /// A person's sign-in (device code, browser) did not complete: nobody signed
    /// in before it expired. (A sign-in the person or the server refused is an
    /// [`OAuth`](Self::OAuth) error, `access_denied`.) Run the login again.
    SignIn,
    /// No valid token is left: the last one expired (or there was none) and getting
    /// a new one failed ([`Error::last_attempt`] says why).
    NoValidToken,
}

impl ErrorKind {
    /// Its name in snake case (`oauth`, `transport`, `invalid_response`,
    /// `source`, `store`, `lease_lost`, `config`, `sign_in`, `no_valid_token`),
    /// as metrics, spans and the CLI show it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::OAuth => "oauth",
            ErrorKind::Transport => "transport",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::Source => "source",
            ErrorKind::Store => "store",
            ErrorKind::LeaseLost => "lease_lost",
            ErrorKind::Config => "config",
            ErrorKind::SignIn => "sign_in",
            ErrorKind::NoValidToken => "no_valid_token",
        }
    }
}

/// Everything that can go wrong getting, storing or refreshing a token.
///
/// Match on [`kind`](Self::kind); read the details with the accessors. Build one in
/// your own [`TokenSource`](crate::TokenSource) or [`TokenStore`](crate::TokenStore)
/// with the constructors, e.g. [`Error::transport`], then the `with_*` methods.
#[derive(Clone)]
pub struct Error(Arc<Details>);

#[derive(Debug, Clone)]
struct Details {
    kind: ErrorKind,
    /// The source's name, or for store errors the store's.
    origin: String,
    message: String,
    status: Option<u16>,
    retry_after: Option<Duration>,
    transient: bool,
    oauth: Option<OAuthError>,
    last_attempt: Option<Error>,
    cause: Option<Cause>,
    /// Nothing of the request left this process (the connection could not be
    /// made), so the server cannot have acted on it. (Set and read by the OAuth2
    /// client only.)
    #[cfg_attr(not(feature = "oauth2"), allow(dead_code))]
    nothing_sent: bool,
    /// A store's write landed and was answered, but its durability is not
    /// confirmed ([`Error::unconfirmed_write`]).
    unconfirmed_write: bool,
    /// No answer came in time ([`Error::is_timeout`]).
    timed_out: bool,
}

impl Error {
    fn new(
        kind: ErrorKind,
        origin: impl Into<String>,
        message: impl Into<String>,
        transient: bool,
    ) -> Self {
        Error(Arc::new(Details {
            kind,
            origin: origin.into(),
            message: message.into(),
            status: None,
            retry_after: None,
            transient,
            oauth: None,
            last_attempt: None,
            cause: None,
            nothing_sent: false,
            unconfirmed_write: false,
            timed_out: false,
        }))
    }

    /// The server answered with an OAuth2 error (over HTTP with `status`, if any).
    /// Transient for `temporarily_unavailable`, `server_error`, 429 and 5xx; never
    /// for the device flow's `authorization_pending` and `slow_down`, whatever the
    /// status (RFC 8628 §3.5: the grant waits its interval, nothing retries sooner).
    pub fn oauth(source_name: impl Into<String>, status: Option<u16>, error: OAuthError) -> Self {
        let polling = matches!(error.error.as_str(), "authorization_pending" | "slow_down");
        let transient = !polling
            && (matches!(
                error.error.as_str(),
                "temporarily_unavailable" | "server_error"
            ) || status.is_some_and(|s| s == 429 || s >= 500));
        let mut this = Self::new(ErrorKind::OAuth, source_name, String::new(), transient);
        let details = this.details();
        details.status = status;
        details.oauth = Some(error);
        this
    }

    /// The token endpoint could not be reached or answered unexpectedly. Transient
    /// by default (connection errors, timeouts); say otherwise with
    /// [`with_transient`](Self::with_transient).
    pub fn transport(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transport, source_name, message, true)
    }

    /// The server's answer is not a usable token.
    pub fn invalid_response(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidResponse, source_name, message, false)
    }

    /// The source could not produce a token, and trying again will not help
    /// unless [`with_transient`](Self::with_transient) says so.
    pub fn source_failed(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Source, source_name, message, false)
    }

    /// A store failed. Transient: the next attempt may work.
    pub fn store(store: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Store, store, message, true)
    }

    /// A store's write landed and was answered, but the store could not confirm
    /// it durable (a Redis save that its replicas did not acknowledge in time):
    /// the manager treats it as failed (it saves again), and knows that no late
    /// copy of this write can land after a later one. Transient.
    pub fn unconfirmed_write(store: impl Into<String>, message: impl Into<String>) -> Self {
        let mut error = Self::new(ErrorKind::Store, store, message, true);
        error.details().unconfirmed_write = true;
        error
    }

    /// A write made under a store lease was refused: the lease ended (expired, or
    /// another instance took it since). Transient: the next attempt takes a new lease.
    pub fn lease_lost(store: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::LeaseLost, store, message, true)
    }

    /// A person's sign-in did not complete in time; `message` says which and
    /// what to do (run the login again). Not transient: it needs the person.
    pub fn sign_in_expired(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::SignIn, source_name, message, false)
    }

    /// The configuration is invalid; `message` says what to fix.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, String::new(), message, false)
    }

    /// No valid token is left for `source_name`; `last_attempt` says why.
    pub fn no_valid_token(source_name: impl Into<String>, last_attempt: Error) -> Self {
        if last_attempt.kind() == ErrorKind::NoValidToken {
            return last_attempt;
        }
        let mut this = Self::new(ErrorKind::NoValidToken, source_name, String::new(), false);
        this.details().last_attempt = Some(last_attempt);
        this
    }

    fn details(&mut self) -> &mut Details {
        Arc::make_mut(&mut self.0)
    }

    /// Adds the HTTP status of the response.
    pub fn with_status(mut self, status: u16) -> Self {
        self.details().status = Some(status);
        self
    }

    /// Adds how long the server asked callers to wait (`Retry-After`).
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.details().retry_after = Some(retry_after);
        self
    }

    /// Sets whether trying again later may work.
    pub fn with_transient(mut self, transient: bool) -> Self {
        self.details().transient = transient;
        self
    }

    /// Adds the underlying error (its text must hold no secret).
    pub fn with_cause(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.details().cause = Some(Arc::new(cause));
        self
    }

    /// Marks an error as a timeout: no answer came in time ([`is_timeout`](Self::is_timeout)).
    pub fn with_timeout(mut self) -> Self {
        self.details().timed_out = true;
        self
    }

    /// Whether no answer came in time, for this error or its last attempt: the
    /// OAuth2 client's request timeout, or the manager's refresh timeout (which
    /// also ends a store or lease that hangs). Metrics count these apart.
    pub fn is_timeout(&self) -> bool {
        self.0.timed_out || self.last_attempt().is_some_and(Error::is_timeout)
    }

    /// The `error.type` of metrics and spans: `timeout`, else the kind's name
    /// ([`ErrorKind::as_str`]).
    pub(crate) fn type_name(&self) -> &'static str {
        match self.is_timeout() {
            true => "timeout",
            false => self.kind().as_str(),
        }
    }

    /// Marks a transport error that came before any of the request was sent.
    #[cfg_attr(not(feature = "oauth2"), allow(dead_code))]
    pub(crate) fn with_nothing_sent(mut self) -> Self {
        self.details().nothing_sent = true;
        self
    }

    /// Whether the request failed before any of it was sent (the connection could
    /// not be made): the server cannot have acted on it.
    #[cfg_attr(not(feature = "oauth2"), allow(dead_code))]
    pub(crate) fn nothing_sent(&self) -> bool {
        self.0.nothing_sent
    }

    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// Whether trying again later may succeed (connection errors, timeouts, 429,
    /// 5xx, `temporarily_unavailable`); `false` for rejected credentials and bad
    /// configuration, which need a person to act.
    pub fn is_transient(&self) -> bool {
        match &self.0.last_attempt {
            Some(last) => last.is_transient(),
            None => self.0.transient,
        }
    }

    /// Whether the server rejected the grant (`invalid_grant`, or a provider's
    /// own name for it: GitHub's `bad_refresh_token`, Slack's
    /// `invalid_refresh_token`): the refresh token is spent, revoked or expired,
    /// and only a new login helps.
    pub fn is_invalid_grant(&self) -> bool {
        self.oauth_error().is_some_and(|e| {
            matches!(
                e.error.as_str(),
                "invalid_grant" | "bad_refresh_token" | "invalid_refresh_token"
            )
        })
    }

    /// Whether a person's sign-in ended without a token: it was denied (the
    /// server's `access_denied`, Entra's `authorization_declined`) or not
    /// completed in time (`expired_token`, [`ErrorKind::SignIn`]). Only the
    /// person can help: sign in again.
    pub fn is_unfinished_sign_in(&self) -> bool {
        let denied = self.oauth_error().is_some_and(|e| {
            matches!(
                e.error.as_str(),
                "access_denied" | "authorization_declined" | "expired_token"
            )
        });
        let last = self.last_attempt().unwrap_or(self);
        denied || last.kind() == ErrorKind::SignIn || self.kind() == ErrorKind::SignIn
    }

    /// The OAuth2 error the server sent, if this error (or its last attempt) is one.
    pub fn oauth_error(&self) -> Option<&OAuthError> {
        self.0
            .oauth
            .as_ref()
            .or_else(|| self.last_attempt()?.oauth_error())
    }

    /// The name of the token source involved, if any.
    pub fn source_name(&self) -> Option<&str> {
        match self.0.kind {
            ErrorKind::Store | ErrorKind::LeaseLost | ErrorKind::Config => None,
            _ => Some(&self.0.origin),
        }
    }

    /// The name of the store involved, for [`ErrorKind::Store`] and
    /// [`ErrorKind::LeaseLost`].
    pub fn store_name(&self) -> Option<&str> {
        matches!(self.0.kind, ErrorKind::Store | ErrorKind::LeaseLost)
            .then_some(self.0.origin.as_str())
    }

    /// Whether a store's write landed but was not confirmed durable
    /// ([`unconfirmed_write`](Self::unconfirmed_write)).
    pub fn is_unconfirmed_write(&self) -> bool {
        self.0.unconfirmed_write
    }

    /// Whether a write was refused because its store lease had ended
    /// ([`ErrorKind::LeaseLost`]).
    pub fn is_lease_lost(&self) -> bool {
        self.0.kind == ErrorKind::LeaseLost
    }

    /// The HTTP status, when the error came over HTTP.
    pub fn status(&self) -> Option<u16> {
        self.0.status.or_else(|| self.last_attempt()?.status())
    }

    /// How long the server asked callers to wait before trying again, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0
            .retry_after
            .or_else(|| self.last_attempt()?.retry_after())
    }

    /// For [`ErrorKind::NoValidToken`], why the last attempt to get a token failed.
    pub fn last_attempt(&self) -> Option<&Error> {
        self.0.last_attempt.as_ref()
    }
}

fn hint_for(code: &str) -> &'static str {
    match code {
        "invalid_grant" => "; the refresh token or grant was rejected: log in again",
        "invalid_client" => "; check the client id, secret or key",
        "unauthorized_client" => "; this client may not use this grant",
        "invalid_scope" => "; check the requested scope",
        "temporarily_unavailable" => "; the server is temporarily unavailable; try again later",
        "access_denied" | "authorization_declined" => "; the sign-in was denied",
        "expired_token" => "; the sign-in was not completed in time",
        _ => "",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &*self.0;
        let status = |f: &mut fmt::Formatter<'_>| match d.status {
            Some(status) => write!(f, " (HTTP {status})"),
            None => Ok(()),
        };
        match d.kind {
            ErrorKind::OAuth => {
                let oauth = d
                    .oauth
                    .as_ref()
                    .map(|e| (e.to_string(), hint_for(&e.error)));
                let (error, hint) = oauth.unwrap_or_default();
                write!(
                    f,
                    "token source `{}`: the server answered error `{error}`",
                    d.origin
                )?;
                status(f)?;
                f.write_str(hint)
            }
            ErrorKind::Transport => {
                write!(f, "token source `{}`: {}", d.origin, d.message)?;
                status(f)?;
                if d.transient {
                    f.write_str("; this is usually temporary: try again later")?;
                }
                Ok(())
            }
            ErrorKind::InvalidResponse => {
                write!(f, "token source `{}`: invalid token response", d.origin)?;
                status(f)?;
                write!(f, ": {}", d.message)
            }
            ErrorKind::Source | ErrorKind::SignIn => {
                write!(f, "token source `{}`: {}", d.origin, d.message)
            }
            ErrorKind::Store => write!(f, "token store `{}`: {}", d.origin, d.message),
            ErrorKind::LeaseLost => write!(
                f,
                "token store `{}`: {}; the lease had ended and another instance took over, so the stored token was kept",
                d.origin, d.message
            ),
            ErrorKind::Config => write!(f, "invalid configuration: {}", d.message),
            // The last attempt names the source itself: said once.
            ErrorKind::NoValidToken => match &d.last_attempt {
                Some(last) => write!(f, "no valid token: {last}"),
                None => write!(f, "no valid token from source `{}`", d.origin),
            },
        }
    }
}

/// `{:?}` reads as a report, as `anyhow`'s does, since that is what `?` in `main`
/// prints: the sentence, then each cause under `Caused by:`. `{:#?}` shows the
/// fields.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !f.alternate() {
            write!(f, "{self}")?;
            let mut cause = std::error::Error::source(self);
            if cause.is_some() {
                f.write_str("\n\nCaused by:")?;
            }
            while let Some(error) = cause {
                write!(f, "\n    {error}")?;
                cause = error.source();
            }
            return Ok(());
        }
        let d = &*self.0;
        let mut s = f.debug_struct("Error");
        s.field("kind", &d.kind).field("origin", &d.origin);
        if !d.message.is_empty() {
            s.field("message", &d.message);
        }
        if let Some(status) = d.status {
            s.field("status", &status);
        }
        if let Some(oauth) = &d.oauth {
            s.field("oauth", oauth);
        }
        if let Some(retry_after) = d.retry_after {
            s.field("retry_after", &retry_after);
        }
        s.field("transient", &self.is_transient());
        if let Some(last) = &d.last_attempt {
            s.field("last_attempt", last);
        }
        if let Some(cause) = &d.cause {
            s.field("cause", cause);
        }
        s.finish()
    }
}

/// The chain says each thing once: a "no valid token" error's own sentence
/// holds its last attempt's, so its source is what caused that attempt.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0.last_attempt {
            Some(last) => std::error::Error::source(last),
            None => self
                .0
                .cause
                .as_deref()
                .map(|c| c as &(dyn std::error::Error + 'static)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    /// Issue 17: a "no valid token" error names its source once, its `Debug`
    /// (what `?` in `main` prints) reads as a report, and its chain repeats no
    /// sentence.
    #[test]
    fn a_no_valid_token_error_says_each_thing_once() {
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let last = Error::source_failed("svc", "could not connect to the token endpoint")
            .with_cause(refused);
        let error = Error::no_valid_token("svc", last);
        let display = error.to_string();
        assert_eq!(
            display,
            "no valid token: token source `svc`: could not connect to the token endpoint"
        );
        let mut chain = vec![display.clone()];
        let mut cause = std::error::Error::source(&error);
        while let Some(next) = cause {
            chain.push(next.to_string());
            cause = next.source();
        }
        assert_eq!(chain, [display.as_str(), "connection refused"]);
        assert_eq!(
            format!("{error:?}"),
            format!("{display}\n\nCaused by:\n    connection refused")
        );
        assert!(format!("{error:#?}").contains("NoValidToken"));
    }

    #[test]
    fn error_is_small_send_sync_static() {
        assert_send_sync::<Error>();
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn invalid_grant_is_permanent_and_says_what_to_do() {
        let err = Error::oauth(
            "api",
            Some(400),
            OAuthError::new("invalid_grant").with_description("token revoked"),
        );
        assert!(err.is_invalid_grant());
        assert!(!err.is_transient());
        assert_eq!(err.kind(), ErrorKind::OAuth);
        assert_eq!(err.status(), Some(400));
        let text = err.to_string();
        assert!(
            text.contains("`api`") && text.contains("invalid_grant (token revoked)"),
            "{text}"
        );
        assert!(text.contains("log in again"), "{text}");
    }

    #[test]
    fn no_valid_token_names_source_and_last_attempt() {
        let last = Error::transport("api", "connection refused")
            .with_status(503)
            .with_retry_after(Duration::from_secs(3));
        let err = Error::no_valid_token("api", last);
        assert_eq!(err.kind(), ErrorKind::NoValidToken);
        assert!(err.is_transient());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(err.source_name(), Some("api"));
        assert!(
            err.to_string().contains("connection refused (HTTP 503)"),
            "{err}"
        );
        // Its last attempt's text is in its own (`last_attempt` gives the
        // error): the chain goes on with what caused that attempt, here nothing.
        assert!(std::error::Error::source(&err).is_none());
        let again = Error::no_valid_token("api", err.clone());
        assert_eq!(
            again.last_attempt().unwrap().kind(),
            ErrorKind::Transport,
            "not nested twice"
        );
    }

    #[test]
    fn oauth_errors_from_overloaded_servers_are_transient() {
        assert!(
            Error::oauth("a", Some(400), OAuthError::new("temporarily_unavailable")).is_transient()
        );
        assert!(Error::oauth("a", Some(503), OAuthError::new("whatever")).is_transient());
        assert!(!Error::oauth("a", Some(401), OAuthError::new("invalid_client")).is_transient());
        assert_eq!(Error::store("file", "disk full").store_name(), Some("file"));
        assert_eq!(Error::config("x").source_name(), None);
    }
}
