//! The device authorization grant (RFC 8628), for CLIs and devices without a
//! browser: the user approves on another device while the source polls.

use super::client::{form, OAuth2Client, Replay};
use super::grant::Grant;
use super::response;
use crate::{Error, Result, Token, TokenKey};
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8628 §3.2: the polling interval when the server does not give one.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 8628 §3.5: `slow_down` adds five seconds to the interval.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// The longest wait between polls after transient failures (unless the server's
/// own interval is longer).
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// The longest a user code is waited for (a day), whatever the server says.
const MAX_CODE_LIFETIME_SECS: u64 = 24 * 60 * 60;

/// What the user must do: open `verification_uri` and enter `user_code`.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct DevicePrompt {
    /// The code the user enters.
    pub user_code: String,
    /// Where the user enters it (`verification_url` in Google's and Entra v1's
    /// answers).
    #[serde(alias = "verification_url")]
    pub verification_uri: String,
    /// The same page with the code filled in, if the server offers it (for a QR code).
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// How long the code is valid, in seconds.
    #[serde(deserialize_with = "whole_seconds")]
    pub expires_in: u64,
    /// The server's own instructions for the user, if it sends them (Entra's
    /// `message`), stripped of control characters.
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Authorization {
    device_code: String,
    #[serde(flatten)]
    prompt: DevicePrompt,
    #[serde(default, deserialize_with = "optional_seconds")]
    interval: Option<u64>,
}

/// Seconds as a number or a numeric string (as Entra's v1 endpoints write them).
fn whole_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    optional_seconds(deserializer)?
        .ok_or_else(|| serde::de::Error::custom("a number of seconds is missing"))
}

fn optional_seconds<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    use serde::de::Error as _;
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number of seconds"))),
        serde_json::Value::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom("not a whole number of seconds")),
        _ => Err(D::Error::custom("not a number of seconds")),
    }
}

type Prompt = Arc<dyn Fn(&DevicePrompt) + Send + Sync>;

/// The device authorization grant. Made by [`OAuth2Client::device_code`].
///
/// [`fetch`](crate::TokenSource::fetch) asks the server for a user code, shows it through
/// the prompt callback (by default, printed to stderr), then polls at the server's
/// interval, slowing down when told to, until the user approves, denies, or the
/// code expires. A fetch takes as long as the user does: give the manager a
/// [`refresh_timeout`](crate::TokenManagerBuilder::refresh_timeout) of minutes.
#[derive(Clone)]
pub struct DeviceCode {
    client: OAuth2Client,
    scope: Option<String>,
    /// More parameters of the device authorization request (audience, resource...).
    params: Vec<(String, String)>,
    prompt: Prompt,
    user: Option<String>,
}

impl OAuth2Client {
    /// The device authorization grant for this client.
    pub fn device_code(&self) -> DeviceCode {
        DeviceCode {
            client: self.clone(),
            scope: None,
            params: Vec::new(),
            user: None,
            prompt: Arc::new(|prompt: &DevicePrompt| {
                eprintln!(
                    "To sign in, open {} and enter the code {}",
                    prompt.verification_uri, prompt.user_code
                );
            }),
        }
    }
}

impl DeviceCode {
    /// Asks for this scope (add `offline_access` for a refresh token on OpenID servers).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The API the token is for, as the `audience` parameter of the device
    /// authorization request (Auth0: without it the token is for `/userinfo`
    /// only).
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.param("audience", audience)
    }

    /// The API the token is for, as an RFC 8707 `resource` (Entra's v1
    /// endpoints need one).
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.param("resource", resource)
    }

    /// Any other parameter of the device authorization request (Twitch takes
    /// its scopes as `scopes`). Part of the token's key.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Who signs in (any id of yours: a user name, an account number): part of
    /// the token's key, so that two users' sign-ins through one client never
    /// share a stored token. Without it, the key names the client and scope only:
    /// one user per client and scope.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Shows the user code with `prompt` instead of printing it to stderr.
    pub fn on_prompt(mut self, prompt: impl Fn(&DevicePrompt) + Send + Sync + 'static) -> Self {
        self.prompt = Arc::new(prompt);
        self
    }

    async fn authorize(&self) -> Result<Authorization> {
        let name = self.client.name();
        let url = self
            .client
            .device_authorization_url()
            .await?
            .ok_or_else(|| {
                Error::config(format!(
                "`{name}` has no device authorization endpoint: configure device_authorization_url \
                 or an issuer that advertises one"
            ))
            })?;
        let mut params = Vec::new();
        // RFC 8628 §3.1 names `client_id` among the request's parameters; some
        // servers (django-oauth-toolkit) want it there even from a client that
        // authenticates with Basic, where it is not in the body otherwise.
        if self.client.authenticates_in_header() {
            params.push(("client_id".to_owned(), self.client.client_id().to_owned()));
        }
        params.extend(self.scope.iter().map(|s| ("scope".to_owned(), s.clone())));
        params.extend(self.params.iter().cloned());
        // Read inside the retries: a 429 or 5xx answer is retried like a lost one.
        self.client
            .with_retries(Replay::Safe, || async {
                read_authorization(name, &self.client.post_form(&url, &params).await?)
            })
            .await
    }
}

/// The device authorization response (RFC 8628 §3.2), or the error it is.
pub(crate) fn read_authorization(name: &str, answer: &response::Answer) -> Result<Authorization> {
    let json = answer.json();
    if let Some(error) = json.as_ref().and_then(response::oauth_error) {
        let error = response::scrubbed(error, answer);
        return Err(Error::oauth(name, Some(answer.status), error));
    }
    if !(200..300).contains(&answer.status) {
        return Err(response::status_error(name, answer));
    }
    let body = json.unwrap_or_default();
    let mut authorization: Authorization = serde_json::from_value(body).map_err(|e| {
        Error::invalid_response(
            name,
            format!("the device authorization response is incomplete: {e}"),
        )
        .with_status(answer.status)
    })?;
    // Shown to the user as they are: never an escape sequence from the server.
    let prompt = &mut authorization.prompt;
    prompt.user_code = response::printable(&prompt.user_code);
    prompt.verification_uri = response::printable(&prompt.verification_uri);
    prompt.verification_uri_complete = prompt
        .verification_uri_complete
        .as_deref()
        .map(response::printable);
    prompt.message = prompt.message.as_deref().map(response::printable);
    Ok(authorization)
}

#[async_trait]
impl Grant for DeviceCode {
    fn client(&self) -> &OAuth2Client {
        &self.client
    }

    fn refresh_params(&self) -> Vec<(String, String)> {
        self.scope
            .iter()
            .map(|s| ("scope".to_owned(), s.clone()))
            .collect()
    }

    fn grant_name(&self) -> &str {
        "device_code"
    }

    fn grant_key(&self) -> TokenKey {
        // Without parameters, the key of earlier versions.
        let params = (!self.params.is_empty()).then(|| {
            let pairs: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            pairs.join("&")
        });
        self.client.key(
            "device_code",
            &[
                ("scope", self.scope.as_deref()),
                ("params", params.as_deref()),
                ("subject", self.user.as_deref()),
            ],
        )
    }

    async fn new_token(&self) -> Result<Token> {
        let authorization = self.authorize().await?;
        (self.prompt)(&authorization.prompt);
        let clock = self.client.clock();
        // Server numbers are bounded, so that no arithmetic on them can overflow
        // and a zero interval cannot make a busy loop.
        let lifetime =
            Duration::from_secs(authorization.prompt.expires_in.min(MAX_CODE_LIFETIME_SECS));
        let deadline = clock.now() + lifetime;
        // At least the server's interval (RFC 8628 §3.5), however long.
        let mut interval = authorization.interval.map_or(DEFAULT_INTERVAL, |secs| {
            Duration::from_secs(secs.clamp(1, MAX_CODE_LIFETIME_SECS))
        });
        let longest = interval.max(MAX_INTERVAL);
        let params = form([
            ("grant_type", GRANT_TYPE),
            ("device_code", &authorization.device_code),
        ]);
        loop {
            // Not past the code's expiry: then there is nothing left to wait for.
            clock
                .sleep_until((clock.now() + interval).min(deadline))
                .await;
            match self.client.token_request(&params).await {
                Ok(token) => return Ok(token),
                Err(error) => match error.oauth_error().map(|e| e.error.as_str()) {
                    Some("authorization_pending") => {}
                    // "by 5 seconds for this and all subsequent requests"
                    Some("slow_down") => interval += SLOW_DOWN_STEP,
                    // RFC 8628 §3.5: on a connection problem, back off and keep polling.
                    _ if error.is_transient() => {
                        tracing::debug!(%error, "device polling failed for now; slowing down");
                        // Never below what the server asked for (slow_down included).
                        interval = (interval * 2).min(longest.max(interval));
                    }
                    // access_denied, expired_token, and everything else end the wait.
                    _ => return Err(error),
                },
            }
            if clock.now() >= deadline {
                return Err(Error::sign_in_expired(
                    self.client.name(),
                    "the user code expired before the user approved it; run the login again",
                ));
            }
        }
    }
}

impl std::fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCode")
            .field("client", &self.client)
            .field("scope", &self.scope)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}
