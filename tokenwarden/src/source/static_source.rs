//! [`StaticSource`]: a token given by the caller or read from the environment.

use super::TokenSource;
use crate::{Error, Result, Token};
use async_trait::async_trait;

/// A source that hands out one token it was given, for tokens obtained elsewhere
/// (a CI secret, `ACCESS_TOKEN`/`REFRESH_TOKEN` in the environment, a test).
///
/// Give the token an absolute expiry ([`Token::with_expires_at`]) if you know it: a
/// relative one ([`Token::with_expires_in`]) counts again from every fetch.
///
/// It cannot get a new token: once a token with a known expiry expires, the manager
/// reports [`ErrorKind::NoValidToken`](crate::ErrorKind::NoValidToken). A token
/// without any expiry gets the manager's default lifetime from each fetch, so it is
/// served until the API rejects it. To start from given tokens but refresh them
/// with a real source, build the manager over that source and call
/// [`TokenManager::set_tokens`](crate::TokenManager::set_tokens) instead.
///
/// ```
/// use tokenwarden::{source::StaticSource, Token, TokenManager};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokenwarden::Result<()> {
/// let manager = TokenManager::builder(StaticSource::new("ci", Token::new("abc"))).build()?;
/// assert_eq!(manager.token().await?.access_token.secret(), "abc");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StaticSource {
    name: String,
    token: Token,
}

impl StaticSource {
    /// A source named `name` that always returns `token`.
    pub fn new(name: impl Into<String>, token: Token) -> Self {
        Self {
            name: name.into(),
            token,
        }
    }

    /// A source named `env` with the token in `ACCESS_TOKEN` (and `REFRESH_TOKEN`).
    pub fn from_env() -> Result<Self> {
        Ok(Self::new("env", Token::from_env()?))
    }
}

#[async_trait]
impl TokenSource for StaticSource {
    async fn fetch(&self) -> Result<Token> {
        if self.token.access_token.is_empty() {
            return Err(Error::source_failed(
                &self.name,
                "this static source holds no access token and cannot get one; \
                 give the manager a source that can log in or refresh",
            ));
        }
        Ok(self.token.clone())
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn grant_name(&self) -> &str {
        "static"
    }
}
