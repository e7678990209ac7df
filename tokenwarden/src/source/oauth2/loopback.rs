//! The loopback listener of a browser sign-in (RFC 8252 §7.3): it serves every
//! connection at once under the login's one deadline (an idle connection holds up
//! nothing), takes the redirect that carries this login's `state` (compared in
//! constant time) and names the right issuer (RFC 9207), and tells the browser
//! the outcome only once the code has been exchanged.

use super::response::{excerpt, printable};
use crate::{Error, Result};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

pub(super) const CALLBACK_PATH: &str = "/callback";

/// How long one connection may take to send its request line.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The authorization server a login was started with, as its authorization
/// responses must name it (RFC 9207, mix-up defence: RFC 9700 §4.4).
#[derive(Debug)]
pub(super) struct Issuer {
    /// Its issuer identifier, compared exactly.
    pub(super) id: String,
    /// Whether it advertises `iss` in its responses: then one without it is refused.
    pub(super) required: bool,
}

/// What this login waits for.
pub(super) struct Expected {
    pub(super) state: String,
    pub(super) issuer: Option<Issuer>,
}

/// The browser's connection whose redirect carried this login's answer; it is
/// told the outcome with [`Browser::finish`].
pub(super) struct Browser(TcpStream);

impl Browser {
    /// Shows the outcome of the sign-in in the browser.
    pub(super) async fn finish(mut self, signed_in: bool) {
        let page = match signed_in {
            true => "Signed in. You can close this window.",
            false => "Sign-in failed. Return to the application for details.",
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
            page.len()
        );
        let _ = self.0.write_all(response.as_bytes()).await;
    }
}

/// Waits, until `deadline`, for the redirect that answers this login: its code
/// (or the server's error) and the browser's connection. Every connection is
/// served at once; anything else (a favicon, a redirect with another `state`,
/// which anyone on this machine could send) is refused and the real one still
/// awaited.
pub(super) async fn wait(
    listener: TcpListener,
    expected: Expected,
    deadline: crate::clock::Sleep,
    timeout: Duration,
    name: &str,
) -> Result<(Result<String>, Browser)> {
    let expected = Arc::new(expected);
    let (found, mut answers) = tokio::sync::mpsc::channel(1);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            biased;
            Some(answer) = answers.recv() => return Ok(answer),
            accepted = listener.accept() => {
                let (stream, _) = accepted.map_err(|e| {
                    Error::source_failed(name, format!("the loopback listener failed: {e}"))
                        .with_transient(true)
                })?;
                let (expected, found, name) = (expected.clone(), found.clone(), name.to_owned());
                connections.spawn(async move {
                    if let Some(answer) = read(stream, &expected, &name).await {
                        let _ = found.send(answer).await;
                    }
                });
            }
            () = &mut deadline => {
                return Err(Error::sign_in_expired(
                    name,
                    format!("nobody signed in within {timeout:?}; run the login again"),
                ));
            }
        }
    }
}

/// Reads one request: the login's answer and its connection, or `None` (then the
/// request was refused) for anything else.
async fn read(
    mut stream: TcpStream,
    expected: &Expected,
    name: &str,
) -> Option<(Result<String>, Browser)> {
    // One request line is all we need: a hand-written read beats a server framework
    // here. The short timeout ends an idle browser preconnect.
    let mut buffer = vec![0; 8192];
    let read = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buffer))
        .await
        .ok()?
        .ok()?;
    let Some(outcome) = answer(&buffer[..read], expected, name) else {
        let refusal = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let _ = stream.write_all(refusal.as_bytes()).await;
        return None;
    };
    Some((outcome, Browser(stream)))
}

/// What a request (its first bytes) answers: `None` if it is not this login's
/// redirect (another path, or not this login's `state`); else the code, or why
/// there is none (the server's error, or an answer from another issuer).
pub(super) fn answer(request: &[u8], expected: &Expected, name: &str) -> Option<Result<String>> {
    let request = String::from_utf8_lossy(request);
    let target = request.lines().next()?.split_whitespace().nth(1)?;
    let url = Url::parse(&format!("http://127.0.0.1{target}")).ok()?;
    let param = |key: &str| {
        url.query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    // Compared in constant time: the state is this login's secret.
    let state_matches = param("state")
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.state.as_bytes())));
    if url.path() != CALLBACK_PATH || !state_matches {
        if url.path() == CALLBACK_PATH {
            tracing::warn!("refused a redirect whose `state` is not this login's");
        }
        return None;
    }
    let (iss, error) = (param("iss"), param("error"));
    // An error without `iss` is reported even where the server advertises it
    // (django-oauth-toolkit leaves it out of its errors): it carries no code, so
    // it cannot be used against another server. One that names another issuer is
    // refused like a code.
    let wrong = match (&error, &iss) {
        (Some(_), None) => None,
        _ => wrong_issuer(expected.issuer.as_ref(), iss.as_deref()),
    };
    Some(if let Some(why) = wrong {
        tracing::warn!("{why}");
        Err(Error::invalid_response(name, why))
    } else if let Some(error) = error {
        let mut oauth = crate::OAuthError::new(printable(&error));
        // Without the `iss` its server advertises, anyone who learnt the state
        // could have sent it: its own words are not shown.
        let unverified = iss.is_none() && expected.issuer.as_ref().is_some_and(|i| i.required);
        oauth.error_description = match unverified {
            true => {
                Some("the answer did not name its issuer, so its description is not shown".into())
            }
            false => param("error_description").as_deref().map(printable),
        };
        Err(Error::oauth(name, None, oauth))
    } else {
        param("code").ok_or_else(|| Error::invalid_response(name, "the redirect carries no `code`"))
    })
}

/// Why an authorization response's `iss` is refused, if it is.
fn wrong_issuer(expected: Option<&Issuer>, iss: Option<&str>) -> Option<String> {
    match (expected, iss) {
        (Some(expected), Some(iss)) if iss != expected.id => Some(format!(
            "the sign-in answer names issuer {}, not {}, the server this login was started with: \
             a mix-up attack, or a misconfigured server; the code was not used",
            excerpt(iss.as_bytes()),
            expected.id
        )),
        (Some(expected), None) if expected.required => Some(format!(
            "the sign-in answer does not name its issuer, although {} says it always does \
             (RFC 9207): refused, the code was not used",
            expected.id
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn outcome(query: &str) -> Option<std::result::Result<String, ErrorKind>> {
        let expected = Expected {
            state: "s".into(),
            issuer: Some(Issuer {
                id: "https://as.example".into(),
                required: true,
            }),
        };
        let request = format!("GET /callback?state=s&{query} HTTP/1.1\r\n\r\n");
        answer(request.as_bytes(), &expected, "t").map(|r| r.map_err(|e| e.kind()))
    }

    /// RFC 9207 at an issuer that advertises it: a code only with its `iss`; an
    /// error without `iss` reported (it carries no code), one naming another
    /// issuer refused like a code.
    #[test]
    fn the_issuer_decides_what_is_taken() {
        let iss = "iss=https%3A%2F%2Fas.example";
        let other = "iss=https%3A%2F%2Fhonest.example";
        assert_eq!(outcome(&format!("code=c&{iss}")), Some(Ok("c".into())));
        assert_eq!(outcome("code=c"), Some(Err(ErrorKind::InvalidResponse)));
        assert_eq!(
            outcome(&format!("code=c&{other}")),
            Some(Err(ErrorKind::InvalidResponse))
        );
        assert_eq!(outcome("error=access_denied"), Some(Err(ErrorKind::OAuth)));
        assert_eq!(
            outcome(&format!("error=access_denied&{iss}")),
            Some(Err(ErrorKind::OAuth))
        );
        assert_eq!(
            outcome(&format!("error=access_denied&{other}")),
            Some(Err(ErrorKind::InvalidResponse))
        );
        let wrong_state = answer(
            b"GET /callback?state=x&code=c HTTP/1.1\r\n\r\n",
            &Expected {
                state: "s".into(),
                issuer: None,
            },
            "t",
        );
        assert!(wrong_state.is_none());
    }
}
