//! Reading token endpoint answers: token responses (RFC 6749 §5.1), parsed
//! strictly but tolerant of what real servers vary on, and error responses (§5.2).

use crate::{Error, OAuthError, Result, Token};
use serde_json::{Map, Value};
use std::time::Duration;

/// The most of an unreadable body quoted in an error.
const EXCERPT_CHARS: usize = 80;

/// What a token endpoint answered: its status, `Retry-After`, and body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Vec<u8>,
    /// What the request carried that must never be quoted back (secrets,
    /// passwords, assertions, codes, verifiers, refresh tokens), as sent and as
    /// form-encoded: a server's error page may echo the request.
    pub(crate) sent: Vec<String>,
}

impl Answer {
    /// The body as JSON: JSON as RFC 6749 §5.1 says, or a form-encoded body
    /// (`access_token=…&scope=repo%2Cgist`, as GitHub answers unless asked for
    /// JSON, and older servers always) as an object of its strings. `None` for
    /// anything else.
    pub(crate) fn json(&self) -> Option<Value> {
        if let Ok(json) = serde_json::from_slice(&self.body) {
            return Some(json);
        }
        let form_type = self
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let text = std::str::from_utf8(&self.body).ok()?.trim();
        let pairs: serde_json::Map<String, Value> = url::form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        // Without the content type, only a body that is plainly such a form.
        let plainly = ["access_token", "error"]
            .iter()
            .any(|k| pairs.contains_key(*k))
            && !text.contains(char::is_whitespace);
        (form_type || plainly).then_some(Value::Object(pairs))
    }

    /// `text` with every value of [`sent`](Self::sent) in it replaced.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.sent {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        text
    }

    /// An excerpt of the body, for an error message: see [`excerpt`]; never a
    /// value the request carried.
    pub(crate) fn quote(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        excerpt(self.scrub(&body).as_bytes())
    }
}

/// Turns an answer into a token, or into the error it is.
pub(crate) fn token_from(source: &str, answer: &Answer) -> Result<Token> {
    let json = answer.json();
    if let Some(error) = json.as_ref().and_then(oauth_error) {
        return Err(with_retry_after(
            Error::oauth(source, Some(answer.status), scrubbed(error, answer)),
            answer,
        ));
    }
    if !(200..300).contains(&answer.status) {
        return Err(status_error(source, answer));
    }
    match json {
        Some(Value::Object(fields)) => {
            parse_token(source, fields).map_err(|e| e.with_status(answer.status))
        }
        Some(_) => Err(
            Error::invalid_response(source, "the body is JSON but not an object")
                .with_status(answer.status),
        ),
        // `excerpt` refuses to quote a body that may hold a token in another format.
        None => Err(Error::invalid_response(
            source,
            format!(
                "the body is not JSON ({} bytes{}): {}",
                answer.body.len(),
                content_type(answer),
                answer.quote()
            ),
        )
        .with_status(answer.status)),
    }
}

/// `error` with the answer's `Retry-After`, if it had one.
pub(crate) fn with_retry_after(error: Error, answer: &Answer) -> Error {
    match answer.retry_after {
        Some(retry_after) => error.with_retry_after(retry_after),
        None => error,
    }
}

fn content_type(answer: &Answer) -> String {
    answer
        .headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(", {v}"))
        .unwrap_or_default()
}

/// An error for a non-2xx answer without an OAuth2 error body.
pub(crate) fn status_error(source: &str, answer: &Answer) -> Error {
    let transient = answer.status == 429 || answer.status >= 500;
    let error = Error::transport(
        source,
        format!(
            "unexpected HTTP status {}: {}",
            answer.status,
            answer.quote()
        ),
    )
    .with_status(answer.status)
    .with_transient(transient);
    with_retry_after(error, answer)
}

/// An answer that says "try again later" (429, 5xx) as the transient error it
/// is (the server's OAuth2 error where it sent one), so that the retry loop the
/// request runs in tries it again; any other answer as it came.
pub(crate) fn retry_on_status(name: &str, answer: Answer) -> Result<Answer> {
    if answer.status != 429 && answer.status < 500 {
        return Ok(answer);
    }
    Err(match answer.json().as_ref().and_then(oauth_error) {
        Some(error) => with_retry_after(
            Error::oauth(name, Some(answer.status), scrubbed(error, &answer)),
            &answer,
        ),
        None => status_error(name, &answer),
    })
}

/// The secret `values` a request carried, in every form an echo of the request
/// may show them: as sent, form-encoded (`+` or `%20` for spaces), and inside a
/// JSON string (escaped); longest first, so that a value inside another is not
/// left half-replaced. Short values (a 3-digit code) are common words in error
/// pages too, and are left out.
pub(crate) fn as_echoed(mut values: Vec<String>) -> Vec<String> {
    let encoded: Vec<String> = values
        .iter()
        .flat_map(|v| {
            let form: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
            let percent = form.replace('+', "%20");
            let json = serde_json::to_string(v).unwrap_or_default();
            let json = json.trim_matches('"').to_owned();
            // An echo of the unencoded value read back as a form turns `+` into
            // a space.
            let decoded = v.replace('+', " ");
            [form, percent, json, decoded]
        })
        .collect();
    values.extend(encoded);
    values.retain(|v| v.len() >= 4);
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.dedup();
    values
}

/// `error` without a value the request carried in its texts (a server may echo
/// the request into its `error_description`).
pub(crate) fn scrubbed(mut error: OAuthError, answer: &Answer) -> OAuthError {
    // Not the error code: it decides what the error means (`invalid_grant`...).
    error.error_description = error.error_description.map(|d| answer.scrub(&d));
    error.error_uri = error.error_uri.map(|u| answer.scrub(&u));
    error
}

/// The RFC 6749 §5.2 error in a JSON body, if it is one; also the shapes
/// providers use instead (`tests/fixtures/providers/`):
///
/// - the description in `reason` (Zoom) or `message` (Twitch) when there is no
///   `error_description`;
/// - no `error`, and a `message` that is an error code (Twitch's device flow:
///   `{"status":400,"message":"authorization_pending"}`);
/// - no `error`, and an `errors` list of `{resource, field, code}` (Strava): an
///   invalid refresh token or authorization code is `invalid_grant`, anything
///   else `invalid_request`, described by the list.
pub(crate) fn oauth_error(json: &Value) -> Option<OAuthError> {
    let text = |name: &str| json.get(name).and_then(Value::as_str).map(printable);
    let is_code =
        |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    // The providers' own shapes only where no token came (a token answer may
    // carry a `message` or an empty `errors` of its own).
    let token = json.get("access_token").is_some();
    let (code, described) = match (text("error"), text("message"), json.get("errors")) {
        (Some(code), _, _) => (code, false),
        (None, Some(message), _) if is_code(&message) && !token => (message, true),
        (None, message, Some(Value::Array(errors))) if !errors.is_empty() && !token => {
            let (code, said) = listed_errors(errors);
            let mut error = OAuthError::new(code);
            error.error_description = Some(match message {
                Some(message) => format!("{message}: {said}"),
                None => said,
            });
            return Some(error);
        }
        _ => return None,
    };
    let mut error = OAuthError::new(code);
    error.error_description = text("error_description")
        .or_else(|| text("reason"))
        .or_else(|| text("message").filter(|_| !described));
    error.error_uri = text("error_uri");
    Some(error)
}

/// Strava's `errors` list: the code it amounts to, and the list in words.
fn listed_errors(errors: &[Value]) -> (&'static str, String) {
    let field = |e: &Value, name: &str| e.get(name).and_then(Value::as_str).map(printable);
    let mut code = "invalid_request";
    let said: Vec<String> = errors
        .iter()
        .map(|e| {
            let resource = field(e, "resource").unwrap_or_default();
            let what = field(e, "code").unwrap_or_default();
            if matches!(resource.as_str(), "RefreshToken" | "AuthorizationCode")
                && what == "invalid"
            {
                code = "invalid_grant";
            }
            format!(
                "{resource} {} {what}",
                field(e, "field").unwrap_or_default()
            )
        })
        .collect();
    (code, said.join("; "))
}

/// A server's text as it may reach a terminal or a log: without control
/// characters (so without escape sequences, which could rewrite what the user
/// sees or run terminal commands) and without the bidirectional-text controls
/// that reorder what is shown.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            !c.is_control()
                && !matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

fn parse_token(source: &str, mut fields: Map<String, Value>) -> Result<Token> {
    let invalid = |message: String| Error::invalid_response(source, message);
    let access_token = match fields.remove("access_token") {
        Some(Value::String(token)) if !token.is_empty() => token,
        Some(Value::String(_)) => return Err(invalid("`access_token` is empty".into())),
        Some(_) => return Err(invalid("`access_token` is not a string".into())),
        // Slack: an app that asked for user scopes only gets a user token there.
        None if fields
            .get("authed_user")
            .is_some_and(|u| u.get("access_token").is_some()) =>
        {
            return Err(invalid(
                "the response has no `access_token` at its top level, only a user token in \
                 `authed_user.access_token` (Slack, for user scopes): ask for a bot scope too, \
                 or read that answer with a source of your own"
                    .into(),
            ))
        }
        None => return Err(invalid("the response has no `access_token`".into())),
    };
    let mut token = Token::new(access_token);
    match fields.remove("token_type") {
        // Servers vary in case ("bearer", "Bearer"); RFC 6749 says it is case-insensitive.
        Some(Value::String(kind)) if kind.is_empty() || kind.eq_ignore_ascii_case("bearer") => {}
        // Slack says whose token it is (`bot`, `user`); it is sent as a bearer token.
        Some(Value::String(kind)) if matches!(kind.as_str(), "bot" | "user") => {}
        Some(Value::String(kind)) => token.token_type = kind,
        Some(Value::Null) | None => {}
        Some(_) => return Err(invalid("`token_type` is not a string".into())),
    }
    if let Some(value) = fields.remove("expires_in") {
        match seconds(&value) {
            Some(secs) => token = token.with_expires_in(Duration::from_secs(secs)),
            None if value.is_null() => {}
            None => {
                return Err(invalid(format!(
                    "`expires_in` is not a number of seconds: {value}"
                )))
            }
        }
    }
    match fields.remove("refresh_token") {
        Some(Value::String(refresh)) if !refresh.is_empty() => {
            token = token.with_refresh_token(refresh)
        }
        Some(Value::String(_)) | Some(Value::Null) | None => {}
        Some(_) => return Err(invalid("`refresh_token` is not a string".into())),
    }
    match fields.remove("scope") {
        // Space-separated, as RFC 6749 writes it (GitHub and Slack use commas).
        Some(Value::String(scope)) => {
            let words: Vec<&str> = scope
                .split(|c: char| c == ',' || c.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .collect();
            token.scope = Some(words.join(" "));
        }
        // Some servers send the scope as a list.
        Some(Value::Array(items)) => {
            let scopes: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            token.scope = Some(scopes.join(" "));
        }
        Some(Value::Null) | None => {}
        Some(_) => return Err(invalid("`scope` is not a string".into())),
    }
    match fields.remove("id_token") {
        Some(Value::String(id)) => token = token.with_id_token(id),
        Some(Value::Null) | None => {}
        Some(_) => return Err(invalid("`id_token` is not a string".into())),
    }
    token.extra = fields;
    Ok(token)
}

/// `expires_in` as a whole number of seconds: a number, or a numeric string.
fn seconds(value: &Value) -> Option<u64> {
    let secs = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (0.0..1e10).contains(&secs).then_some(secs as u64)
}

/// The start of an unreadable body, printable, for an error message. Never used on
/// a body that parsed as a token response, so it cannot quote a token.
pub(crate) fn excerpt(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".into();
    }
    let text = String::from_utf8_lossy(body);
    if ["access_token", "refresh_token", "id_token", "assertion"]
        .iter()
        .any(|f| text.contains(f))
    {
        return format!("({} bytes, not quoted: they may hold a token)", body.len());
    }
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    format!("{:?}", out.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            sent: Vec::new(),
            status,
            headers: Default::default(),
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn tolerant_where_servers_differ() {
        let token = token_from(
            "s",
            &answer(
                200,
                r#"{"access_token":"a","token_type":"bearer","expires_in":"3600","scope":["read","write"],"ext":1}"#,
            ),
        )
        .unwrap();
        assert_eq!(token.token_type, "Bearer");
        assert_eq!(token.lifetime, Some(Duration::from_secs(3600)));
        assert_eq!(token.scope.as_deref(), Some("read write"));
        assert_eq!(token.extra.get("ext"), Some(&serde_json::json!(1)));
        let dpop = token_from(
            "s",
            &answer(200, r#"{"access_token":"a","token_type":"DPoP"}"#),
        )
        .unwrap();
        assert_eq!(dpop.token_type, "DPoP");
    }

    #[test]
    fn strict_on_what_matters() {
        for (body, expected) in [
            (r#"{"token_type":"Bearer"}"#, "no `access_token`"),
            (r#"{"access_token":42}"#, "not a string"),
            (r#"{"access_token":""}"#, "empty"),
            (
                r#"{"access_token":"a","expires_in":"soon"}"#,
                "not a number of seconds",
            ),
            (
                r#"{"access_token":"a","expires_in":-5}"#,
                "not a number of seconds",
            ),
            (r#"["a"]"#, "not an object"),
            ("<html>Bad gateway</html>", "not JSON (24 bytes)"),
            ("", "not JSON (0 bytes)"),
            ("a text with access_token=x in it", "not JSON (32 bytes)"),
        ] {
            let error = token_from("s", &answer(200, body)).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidResponse, "{body}");
            assert!(error.to_string().contains(expected), "{body}: {error}");
        }
    }

    /// GitHub answers form-encoded unless asked for JSON, as older servers do
    /// always: read as the same fields, as strings.
    #[test]
    fn form_encoded_answers_are_read() {
        let mut form = answer(
            200,
            "access_token=gho_TOPSECRET&expires_in=28800&refresh_token=ghr_TOPSECRET\
             &refresh_token_expires_in=15811200&scope=repo%2Cgist&token_type=bearer",
        );
        form.headers.insert(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        let token = token_from("s", &form).unwrap();
        assert_eq!(token.access_token.secret(), "gho_TOPSECRET");
        assert_eq!(token.refresh_token.unwrap().secret(), "ghr_TOPSECRET");
        assert_eq!(token.scope.as_deref(), Some("repo gist"));
        assert_eq!(token.lifetime, Some(Duration::from_secs(28800)));
        // Without the content type, a body that is plainly such a form.
        let plain = token_from("s", &answer(200, "access_token=a&token_type=bearer")).unwrap();
        assert_eq!(plain.access_token.secret(), "a");
        // An error in a form (GitHub: HTTP 200) is the OAuth2 error it is.
        let error = token_from(
            "s",
            &answer(
                200,
                "error=bad_verification_code&error_description=The+code+is+wrong",
            ),
        )
        .unwrap_err();
        assert_eq!(error.oauth_error().unwrap().error, "bad_verification_code");
    }

    #[test]
    fn oauth_errors_on_any_status() {
        for status in [200, 400, 401] {
            let error = token_from(
                "s",
                &answer(
                    status,
                    r#"{"error":"invalid_grant","error_description":"spent"}"#,
                ),
            )
            .unwrap_err();
            assert!(error.is_invalid_grant(), "{status}");
            assert_eq!(error.status(), Some(status));
        }
    }

    #[test]
    fn server_trouble_is_transient_with_retry_after() {
        let mut busy = answer(503, "upstream down");
        busy.retry_after = Some(Duration::from_secs(7));
        let error = token_from("s", &busy).unwrap_err();
        assert!(error.is_transient());
        assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
        assert!(!token_from("s", &answer(404, "not found"))
            .unwrap_err()
            .is_transient());
        let long = "x".repeat(500);
        assert!(excerpt(long.as_bytes()).chars().count() < 90);
    }
}
