//! A command's tokens from the agent: a [`TokenSource`] that asks it, so that
//! the command's manager (and the adapters on it: `curl`'s replay after a 401)
//! works as with any source, and the agent's one manager per profile does the
//! fetching, refreshing and storing for every command at once.

use super::{client, AnswerError, Request};
use crate::config::Profile;
use async_trait::async_trait;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};
use tokenwarden::{Error, OAuthError, Result, Token, TokenKey, TokenManager, TokenSource};

/// The tokens of one profile, from the agent.
#[derive(Debug)]
pub struct AgentSource {
    profile: String,
    config: PathBuf,
    name: String,
    /// The last token the agent handed this process. Asked for another, the
    /// manager has dropped it: rejected by a server (a token without a refresh
    /// token is fetched again, not refreshed), or expired (then the agent holds
    /// a newer one already, and the mention changes nothing).
    last: std::sync::Mutex<Option<String>>,
}

impl AgentSource {
    async fn ask(&self) -> Result<Token> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let request = Request {
            op: "token".into(),
            profile: Some(self.profile.clone()),
            config: Some(self.config.clone()),
            rejected: last,
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
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(token.access_token.secret().to_owned());
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
/// serves `config` (the file this command reads).
pub async fn manager(profile: &Profile, config: PathBuf) -> Option<TokenManager> {
    let ping = Request {
        op: "ping".into(),
        profile: None,
        config: Some(config.clone()),
        rejected: None,
    };
    let answer = client::ask(&ping).await?;
    if !answer.ok {
        tracing::debug!(error = ?answer.error.map(|e| e.message), "the agent serves another configuration");
        return None;
    }
    let source = AgentSource {
        profile: profile.name.clone(),
        config,
        name: format!("agent:{}", profile.name),
        last: std::sync::Mutex::default(),
    };
    // No store, no refresh ahead: the agent keeps the tokens; this process
    // asks it again once its copy expires (or is rejected).
    TokenManager::builder(source)
        .refresh_ahead(Duration::ZERO)
        .build()
        .ok()
}
