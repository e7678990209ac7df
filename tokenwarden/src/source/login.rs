//! [`LoginSource`]: a declarative source for proprietary login APIs (feature
//! `oauth2`, which brings the HTTP client): POST credentials, read the tokens from
//! JSON fields or `Set-Cookie` cookies, refresh by POSTing the refresh token.

use super::oauth2::{OAuth2Client, RetryPolicy};
use super::TokenSource;
use crate::{ClientSecret, Error, Result, Token, TokenKey};
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, COOKIE, SET_COOKIE};
use std::time::Duration;

/// Where a value is read from in a login or refresh response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// A top-level field of the JSON body (`a.b` for nested objects).
    Json(String),
    /// A cookie set by the response (`Set-Cookie`).
    Cookie(String),
}

impl Field {
    /// A JSON field; dots go into nested objects.
    pub fn json(name: impl Into<String>) -> Self {
        Field::Json(name.into())
    }

    /// A cookie from `Set-Cookie`.
    pub fn cookie(name: impl Into<String>) -> Self {
        Field::Cookie(name.into())
    }
}

/// How the refresh token is sent to the refresh URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placement {
    /// As a field of a JSON body.
    Json(String),
    /// As a field of a form body.
    Form(String),
    /// In a request header.
    Header(String),
    /// As a cookie.
    Cookie(String),
}

/// How the credentials are sent to the login URL.
#[derive(Clone)]
enum Credentials {
    Json(ClientSecret),
    Form(ClientSecret),
}

/// A source for login APIs that are not OAuth2. Made with [`LoginSource::builder`].
///
/// ```no_run
/// use tokenwarden::source::login::{Field, LoginSource, Placement};
///
/// # fn run() -> tokenwarden::Result<()> {
/// let source = LoginSource::builder("trading-api")
///     .login_url("https://api.example.com/login")
///     .credentials_json(serde_json::json!({"email": "me@example.com", "password": "hunter2"}))
///     .access_token(Field::cookie("auth-access-token"))
///     .refresh_token(Field::cookie("auth-refresh-token"))
///     .refresh_url("https://api.example.com/refresh-access-token")
///     .send_refresh_token(Placement::Cookie("auth-refresh-token".into()))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LoginSource {
    name: String,
    http: OAuth2Client,
    login_url: url::Url,
    credentials: Credentials,
    access_token: Field,
    refresh_token: Option<Field>,
    expires_in: Option<Field>,
    refresh: Option<(url::Url, Placement)>,
    rejected: Vec<u16>,
    subject: Option<String>,
}

/// Builds a [`LoginSource`].
#[derive(Default)]
pub struct LoginSourceBuilder {
    name: String,
    login_url: Option<String>,
    credentials: Option<Credentials>,
    access_token: Option<Field>,
    refresh_token: Option<Field>,
    expires_in: Option<Field>,
    refresh_url: Option<String>,
    placement: Option<Placement>,
    rejected: Option<Vec<u16>>,
    subject: Option<String>,
    http: Option<reqwest::Client>,
    timeout: Option<Duration>,
}

impl LoginSource {
    /// Starts building a source named `name`.
    pub fn builder(name: impl Into<String>) -> LoginSourceBuilder {
        LoginSourceBuilder {
            name: name.into(),
            ..LoginSourceBuilder::default()
        }
    }

    async fn post(
        &self,
        url: &url::Url,
        headers: HeaderMap,
        body: Option<(&'static str, String)>,
        replay: super::oauth2::Replay,
    ) -> Result<Token> {
        // What the request carried, never to be quoted back from an error page:
        // every value of its credentials (JSON strings or form fields) and its
        // headers (a refresh token sent in one).
        let mut sent: Vec<String> = headers
            .values()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        if let Some((_, text)) = &body {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(json) => strings(&json, &mut sent),
                Err(_) => sent.extend(
                    url::form_urlencoded::parse(text.as_bytes()).map(|(_, v)| v.into_owned()),
                ),
            }
        }
        let answer = self
            .http
            .post_raw(url, headers, body, &super::oauth2::as_echoed(sent), replay)
            .await?;
        if !(200..300).contains(&answer.status) {
            return Err(super::oauth2::status_error(&self.name, &answer));
        }
        self.read_token(&answer.headers, &answer.body)
    }

    pub(crate) fn read_token(&self, headers: &HeaderMap, body: &[u8]) -> Result<Token> {
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let read = |field: &Field| -> Option<String> {
            match field {
                Field::Json(path) => {
                    let value = path
                        .split('.')
                        .try_fold(json.as_ref()?, |v, key| v.get(key))?;
                    match value {
                        serde_json::Value::String(s) => Some(s.clone()),
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    }
                }
                Field::Cookie(name) => set_cookie(headers, name),
            }
        };
        let access = read(&self.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::invalid_response(
                    &self.name,
                    format!(
                        "the response has no access token in {:?}",
                        self.access_token
                    ),
                )
            })?;
        let mut token = Token::new(access);
        if let Some(refresh) = self
            .refresh_token
            .as_ref()
            .and_then(read)
            .filter(|t| !t.is_empty())
        {
            token = token.with_refresh_token(refresh);
        }
        if let Some(field) = &self.expires_in {
            let secs = read(field)
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|s| (0.0..1e10).contains(s));
            match secs {
                Some(secs) => token = token.with_expires_in(Duration::from_secs(secs as u64)),
                None => {
                    return Err(Error::invalid_response(
                        &self.name,
                        format!("no number of seconds in {field:?}"),
                    ))
                }
            }
        }
        Ok(token)
    }
}

/// The value of cookie `name` among the `Set-Cookie` headers. Only `name=value`
/// before the first `;` matters here, which is why no cookie crate is used.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(SET_COOKIE).iter().find_map(|header| {
        let pair = header.to_str().ok()?.split(';').next()?;
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// Every string in `json`, into `out`.
fn strings(json: &serde_json::Value, out: &mut Vec<String>) {
    match json {
        serde_json::Value::String(text) => out.push(text.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(fields) => fields.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[async_trait]
impl TokenSource for LoginSource {
    async fn fetch(&self) -> Result<Token> {
        let body = match &self.credentials {
            Credentials::Json(json) => ("application/json", json.secret().to_owned()),
            Credentials::Form(form) => (
                "application/x-www-form-urlencoded",
                form.secret().to_owned(),
            ),
        };
        let replay = super::oauth2::Replay::Safe;
        self.post(&self.login_url, HeaderMap::new(), Some(body), replay)
            .await
    }

    async fn refresh(&self, current: &Token) -> Result<Token> {
        let (Some((url, placement)), Some(refresh)) = (&self.refresh, &current.refresh_token)
        else {
            return self.fetch().await;
        };
        let secret = refresh.secret();
        let mut headers = HeaderMap::new();
        let mut body = None;
        let header = |value: String| {
            let mut value = HeaderValue::try_from(value).map_err(|_| {
                Error::invalid_response(&self.name, "the refresh token cannot be sent in a header")
            })?;
            value.set_sensitive(true);
            Ok::<_, Error>(value)
        };
        match placement {
            Placement::Json(field) => {
                body = Some((
                    "application/json",
                    serde_json::json!({ field: secret }).to_string(),
                ))
            }
            Placement::Form(field) => {
                let encoded = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair(field, secret)
                    .finish();
                body = Some(("application/x-www-form-urlencoded", encoded));
            }
            Placement::Header(name) => {
                let name = HeaderName::try_from(name.as_str())
                    .map_err(|_| Error::config(format!("`{name}` is not a header name")))?;
                headers.insert(name, header(secret.to_owned())?);
            }
            Placement::Cookie(name) => {
                headers.insert(COOKIE, header(format!("{name}={secret}"))?);
            }
        }
        // The refresh token may rotate: a refresh is never sent again once
        // the server may have processed it.
        let replay = super::oauth2::Replay::OnlyIfUnprocessed;
        match self.post(url, headers, body, replay).await {
            // The API's way of saying the refresh token is no good: log in again.
            Err(error) if error.status().is_some_and(|s| self.rejected.contains(&s)) => {
                Err(Error::oauth(
                    &self.name,
                    error.status(),
                    crate::OAuthError::new("invalid_grant")
                        .with_description("the refresh URL rejected the refresh token"),
                ))
            }
            other => other,
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn grant_name(&self) -> &str {
        "login"
    }

    fn key(&self) -> TokenKey {
        // Never a hash of the credentials: a key name is no place for a password,
        // even hashed. Who logs in is the subject the caller names.
        TokenKey::new(&self.name)
            .with("login_url", self.login_url.as_str())
            .with("subject", self.subject.clone().unwrap_or_default())
    }
}

impl LoginSourceBuilder {
    /// Where credentials are POSTed. Required.
    pub fn login_url(mut self, url: impl Into<String>) -> Self {
        self.login_url = Some(url.into());
        self
    }

    /// Who logs in (a user name or account id, never a password): part of the
    /// token key, so that sources for different users never share a token.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sends these credentials as a JSON body. They are kept as a secret.
    pub fn credentials_json(mut self, credentials: serde_json::Value) -> Self {
        self.credentials = Some(Credentials::Json(ClientSecret::new(
            credentials.to_string(),
        )));
        self
    }

    /// Sends these credentials as a form body. They are kept as a secret.
    pub fn credentials_form<'a>(
        mut self,
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.credentials = Some(Credentials::Form(ClientSecret::new(encoded)));
        self
    }

    /// Where the access token is in the response. Defaults to the JSON field
    /// `access_token`.
    pub fn access_token(mut self, field: Field) -> Self {
        self.access_token = Some(field);
        self
    }

    /// Where the refresh token is in the response, if the API issues one.
    pub fn refresh_token(mut self, field: Field) -> Self {
        self.refresh_token = Some(field);
        self
    }

    /// Where the lifetime in seconds is, if the API says. Without it, the token's
    /// JWT `exp` or the manager's default lifetime applies.
    pub fn expires_in(mut self, field: Field) -> Self {
        self.expires_in = Some(field);
        self
    }

    /// Where the refresh token is POSTed. Without it, a refresh logs in again.
    pub fn refresh_url(mut self, url: impl Into<String>) -> Self {
        self.refresh_url = Some(url.into());
        self
    }

    /// How the refresh token is sent. Defaults to the JSON field `refresh_token`.
    pub fn send_refresh_token(mut self, placement: Placement) -> Self {
        self.placement = Some(placement);
        self
    }

    /// The statuses of the refresh URL that mean "log in again". Defaults to 400,
    /// 401 and 403.
    pub fn refresh_rejected_on(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.rejected = Some(statuses.into_iter().collect());
        self
    }

    /// The HTTP client. Defaults to one with rustls and timeouts.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The timeout of each request. Defaults to 30 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Builds the source; the URLs must be https (loopback aside).
    pub fn build(self) -> Result<LoginSource> {
        let login_url = self
            .login_url
            .ok_or_else(|| Error::config("a login source needs a login_url"))?;
        let mut http = OAuth2Client::builder()
            .token_url(&login_url)
            .client_id(&self.name)
            .name(&self.name);
        if let Some(client) = self.http {
            http = http.http_client(client);
        }
        if let Some(timeout) = self.timeout {
            http = http.timeout(timeout);
        }
        let http = http.retry(RetryPolicy::default()).build()?;
        let secure = |url: &str, what: &str| super::oauth2::secure_url(url, what);
        let refresh = match self.refresh_url {
            Some(url) => Some((
                secure(&url, "the refresh_url")?,
                self.placement
                    .unwrap_or_else(|| Placement::Json("refresh_token".into())),
            )),
            None => None,
        };
        Ok(LoginSource {
            login_url: secure(&login_url, "the login_url")?,
            name: self.name,
            http,
            credentials: self.credentials.ok_or_else(|| {
                Error::config(
                    "a login source needs credentials (credentials_json or credentials_form)",
                )
            })?,
            access_token: self
                .access_token
                .unwrap_or_else(|| Field::json("access_token")),
            refresh_token: self.refresh_token,
            expires_in: self.expires_in,
            refresh,
            rejected: self.rejected.unwrap_or_else(|| vec![400, 401, 403]),
            subject: self.subject,
        })
    }
}

impl std::fmt::Debug for LoginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginSource")
            .field("name", &self.name)
            .field("login_url", &self.login_url.as_str())
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field(
                "refresh",
                &self.refresh.as_ref().map(|(u, p)| (u.as_str(), p)),
            )
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LoginSourceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginSourceBuilder")
            .field("name", &self.name)
            .field("login_url", &self.login_url)
            .finish_non_exhaustive()
    }
}
