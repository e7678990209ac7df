//! Label sets and label values, each from a fixed set: no server, error message
//! or key count can make the number of series grow without bound.

use crate::Result;
use std::sync::Arc;

/// A manager's own labels (its key and source, or none): shared by every metric
/// it records, cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Labels(Arc<[::metrics::Label]>);

impl Labels {
    /// `tokenwarden.key` and `tokenwarden.source`.
    pub(crate) fn per_key(key: &str, source: &str) -> Self {
        Self(Arc::from([
            ::metrics::Label::new("tokenwarden.key", key.to_owned()),
            ::metrics::Label::new("tokenwarden.source", source.to_owned()),
        ]))
    }

    /// No labels: added up with every other manager that has none.
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// These labels and `more`.
    pub(crate) fn with(&self, more: &[(&'static str, &str)]) -> Vec<::metrics::Label> {
        let extra = more
            .iter()
            .map(|(name, value)| ::metrics::Label::new(*name, (*value).to_owned()));
        self.0.iter().cloned().chain(extra).collect()
    }

    /// These labels alone.
    pub(crate) fn to_vec(&self) -> Vec<::metrics::Label> {
        self.0.to_vec()
    }
}

/// The OAuth2 error codes the RFCs define (6749 §5.2 and §4.1.2.1, 8628 §3.5,
/// 8693 §2.2.2, 8707 §2, 9449 §5 and §8), and the provider spellings of a
/// rejected refresh token the manager knows: anything else is `other_oauth_error`.
const OAUTH_CODES: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
    "authorization_pending",
    "slow_down",
    "expired_token",
    "invalid_target",
    "invalid_dpop_proof",
    "use_dpop_nonce",
    "bad_refresh_token",
    "invalid_refresh_token",
    "authorization_declined",
];

/// The `tokenwarden.outcome` of a token request.
pub(crate) fn request_outcome<T>(outcome: &Result<T>) -> &'static str {
    let Err(error) = outcome else {
        return "success";
    };
    if error.is_timeout() {
        return "timeout";
    }
    match error.oauth_error() {
        Some(oauth) => OAUTH_CODES
            .iter()
            .find(|code| **code == oauth.error)
            .copied()
            .unwrap_or("other_oauth_error"),
        None => error.kind().as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, OAuthError};

    #[test]
    fn outcomes_come_from_a_fixed_set() {
        let oauth = |code: &str| Error::oauth("s", Some(400), OAuthError::new(code));
        assert_eq!(request_outcome(&Ok(())), "success");
        assert_eq!(
            request_outcome::<()>(&Err(oauth("invalid_grant"))),
            "invalid_grant"
        );
        assert_eq!(
            request_outcome::<()>(&Err(oauth("a_code_a_server_made_up"))),
            "other_oauth_error"
        );
        let timeout = Error::transport("s", "slow").with_timeout();
        assert_eq!(request_outcome::<()>(&Err(timeout.clone())), "timeout");
        assert_eq!(timeout.type_name(), "timeout");
        assert_eq!(
            request_outcome::<()>(&Err(Error::transport("s", "x"))),
            "transport"
        );
    }
}
