//! A command's tokens from the agent: a [`TokenSource`] that asks it, so that
//! the command's manager (and the adapters on it: `curl`'s replay after a 401)
//! works as with any source, and the agent's one manager per profile does the
//! fetching, refreshing and storing for every command at once.

use super::{client, AnswerError, Request};
use crate::config::Profile;
use async_trait::async_trait;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokenwarden::{Error, OAuthError, Result, Token, TokenKey, TokenManager, TokenSource};

/// The tokens of one profile, from the agent.
pub struct AgentSource {
    /// What every request says of the profile (`token`, no rejected token).
    about: Request,
    name: String,
    /// The last token the agent handed this process, and when it expires.
    /// Asked for another while it is still valid, the manager has dropped it:
    /// a server rejected it (a token without a refresh token is fetched again,
    /// not refreshed); the agent is told, so that it replaces it.
    last: Mutex<Option<(String, Option<SystemTime>)>>,
}

/// Names only: the last token stays out.
impl std::fmt::Debug for AgentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AgentSource {
    async fn ask(&self) -> Result<Token> {
        let now = tokenwarden::Clock::now(&tokenwarden::SystemClock);
        let rejected = (self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
        .filter(|(_, expires_at)| expires_at.is_none_or(|at| at > now))
        .map(|(token, _)| token);
        let request = Request {
            rejected,
            ..self.about.clone()
        };
        let answer = client::ask(&request).await.ok_or_else(|| {
            Error::transport(&self.name, "the agent stopped answering").with_transient(true)
        })?;
        if let Some(error) = answer.error {
            return Err(rebuilt(&self.name, error));
        }
        let access = answer.access_token.ok_or_else(|| {
            Error::invalid_response(&self.name, "the agent answered without a token")
        })?;
        let mut token = Token::new(access);
        if let Some(kind) = answer.token_type {
            token = token.with_token_type(kind);
        }
        if let Some(at) = answer.expires_at {
            token = token.with_expires_at(UNIX_EPOCH + Duration::from_millis(at));
        }
        if let Some(scope) = answer.scope {
            token = token.with_scope(scope);
        }
        let kept = (token.access_token.secret().to_owned(), token.expires_at);
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(kept);
        Ok(token)
    }
}

/// The agent's error, as the command's own (its kind sets the exit code).
fn rebuilt(name: &str, error: AnswerError) -> Error {
    let message = error.message;
    let built = match error.kind.as_str() {
        "oauth" => {
            let (code, description) = error.oauth_error.unwrap_or(("server_error".into(), None));
            let mut oauth = OAuthError::new(code);
            if let Some(description) = description {
                oauth = oauth.with_description(description);
            }
            Error::oauth(name, error.status, oauth)
        }
        "transport" => Error::transport(name, message),
        "invalid_response" => Error::invalid_response(name, message),
        "store" | "lease_lost" => Error::store(name, message),
        "config" | "usage" => Error::config(message),
        "sign_in" => Error::sign_in_expired(name, message),
        _ => Error::source_failed(name, message),
    };
    built.with_transient(error.transient)
}

#[async_trait]
impl TokenSource for AgentSource {
    async fn fetch(&self) -> Result<Token> {
        self.ask().await
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn key(&self) -> TokenKey {
        TokenKey::new(&self.name)
    }
}

/// A manager of `profile`'s tokens through the agent, if one of this user's
/// serves it: the same configuration file, resolved to the same profile.
pub async fn manager(profile: &Profile) -> Option<TokenManager> {
    let answer = client::ask(&Request::about("ping", profile)).await?;
    if !answer.ok {
        let why = answer.error.map(|e| e.message).unwrap_or_default();
        tracing::debug!(%why, "the agent serves another profile: doing without it");
        return None;
    }
    let source = AgentSource {
        about: Request::about("token", profile),
        name: format!("agent:{}", profile.name),
        last: Mutex::default(),
    };
    // No store, no refresh ahead: the agent keeps the tokens; this process
    // asks it again once its copy expires (or is rejected).
    TokenManager::builder(source)
        .refresh_ahead(Duration::ZERO)
        .build()
        .ok()
}
