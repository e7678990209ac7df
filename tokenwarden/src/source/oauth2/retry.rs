//! Retries of requests to the authorization server, by what a request spends
//! ([`Replay`]): one that spends a one-time credential (a refresh token, an
//! authorization code) is sent again only when the server surely did not process
//! it, and never when it could outlive the refresh's deadline ([`time_left`]).

use crate::source::time_left;
use crate::{Clock, Error, Result};
use std::time::{Duration, SystemTime};

/// The least time left in a refresh for a request that spends a one-time
/// credential to be sent (or retried): under it, the request is not sent.
pub(crate) const MIN_REQUEST_TIME: Duration = Duration::from_millis(500);
/// How a request that failed for a passing reason is tried again.
///
/// Which failures are retried depends on what the request spends:
///
/// - A request that spends nothing (the client credentials, password, JWT bearer
///   and token exchange grants; discovery, revocation, device authorization) is
///   retried after any transient failure: no connection, a connection reset or
///   closed, no answer within the timeout, 429, 5xx, `temporarily_unavailable`.
/// - A request that spends a one-time credential (the refresh grant, whose refresh
///   token the server may rotate, and the redemption of an authorization code) is
///   retried only when the server surely did not process it: the connection could
///   not be made (nothing was sent), 429 or 503 (RFC 6585 §4, RFC 9110 §15.6.4),
///   or `temporarily_unavailable`. After a timeout, a connection that broke before
///   the whole answer came, a 500, 502 or 504, or an answer that cannot be read,
///   the server may have rotated the refresh token (RFC 9700 §4.14) or redeemed the
///   code and sent an answer that was lost; sending the spent one again is what
///   servers with reuse detection (oidc-provider, Okta, Auth0, Keycloak) take for
///   a stolen token, and they revoke the whole grant (RFC 6749 §4.1.2, §10.4).
///   That error is returned at once, still transient, so that the
///   [`TokenManager`](crate::TokenManager) backs off and looks in its store first.
///
/// Within a manager's refresh, each request's timeout is cut to the refresh's
/// time left ([`time_left`]): no request outlives the manager's store lease, after
/// which another process may send the same refresh token. A request that spends a
/// one-time credential is not sent, nor retried, with less than half a second left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included. `1` means no retry.
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles, with jitter, for each next one.
    pub initial_delay: Duration,
    /// The longest wait. A server asking (`Retry-After`) for longer is not retried
    /// here: the error carries its `retry_after` and the manager backs off.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 200 ms then 400 ms (jittered), at most 5 s.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, `policy` ends, or a retry
/// could not finish before the refresh's deadline ([`time_left`]). `replay` says
/// which failures may be retried; `name` names the source in errors.
pub(crate) async fn run<T, F, Fut>(
    name: &str,
    policy: RetryPolicy,
    clock: &dyn Clock,
    replay: Replay,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    if replay == Replay::OnlyIfUnprocessed {
        if let Some(left) = time_left().filter(|left| *left < MIN_REQUEST_TIME) {
            return Err(Error::transport(
                name,
                format!(
                    "the refresh could not finish within its lease or refresh timeout \
                     ({} ms left): not sent",
                    left.as_millis(),
                ),
            ));
        }
    }
    let mut delay = policy.initial_delay;
    for tried in 1.. {
        let error = match attempt().await {
            Err(error) if error.is_transient() && tried < policy.max_attempts => error,
            outcome => return outcome,
        };
        if !replay.may_resend(&error) {
            tracing::debug!(%error, "not retried: the server may have processed the request and spent its one-time credential");
            return Err(error);
        }
        let wait = match error.retry_after() {
            Some(asked) if asked > policy.max_delay => return Err(error),
            Some(asked) => asked,
            None => delay / 2 + delay.mul_f64(fastrand::f64() / 2.0),
        };
        if time_left().is_some_and(|left| wait + MIN_REQUEST_TIME > left) {
            tracing::debug!(%error, "not retried: the retry could not finish before the refresh's deadline");
            return Err(error);
        }
        tracing::debug!(%error, attempt = tried, wait_ms = wait.as_millis() as u64, "retrying the token request");
        clock.sleep(wait).await;
        delay = (delay * 2).min(policy.max_delay);
    }
    unreachable!("the loop returns")
}

/// Whether a request that failed may be sent again: what it spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// It spends nothing: any transient failure is retried.
    Safe,
    /// It spends a one-time credential (a refresh token the server may rotate, an
    /// authorization code): retried only when the server surely did not process
    /// it, and not sent when it could outlive the refresh's deadline.
    OnlyIfUnprocessed,
}

impl Replay {
    /// What a token request with `params` spends: the refresh grant spends its
    /// refresh token, the authorization code grant its code.
    pub(crate) fn of_grant(params: &[(String, String)]) -> Self {
        let spends = params.iter().any(|(name, value)| {
            name == "grant_type" && matches!(value.as_str(), "refresh_token" | "authorization_code")
        });
        if spends {
            Self::OnlyIfUnprocessed
        } else {
            Self::Safe
        }
    }

    /// Whether a request that failed with the transient `error` may be sent again.
    fn may_resend(self, error: &Error) -> bool {
        match self {
            Self::Safe => true,
            // Nothing was sent, or the server said it did not handle the request.
            Self::OnlyIfUnprocessed => {
                error.nothing_sent()
                    || matches!(error.status(), Some(429 | 503))
                    || error
                        .oauth_error()
                        .is_some_and(|e| e.error == "temporarily_unavailable")
            }
        }
    }
}

/// `Retry-After` as seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn only_the_refresh_and_code_grants_spend_a_credential() {
        let grant = |name: &str| {
            vec![
                ("grant_type".to_owned(), name.to_owned()),
                ("scope".to_owned(), "refresh_token".to_owned()),
            ]
        };
        for spends in ["refresh_token", "authorization_code"] {
            assert_eq!(Replay::of_grant(&grant(spends)), Replay::OnlyIfUnprocessed);
        }
        for spends_nothing in [
            "client_credentials",
            "password",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "urn:ietf:params:oauth:grant-type:device_code",
        ] {
            assert_eq!(Replay::of_grant(&grant(spends_nothing)), Replay::Safe);
        }
    }
}
