//! Where tokens come from: the [`TokenSource`] trait and the sources that need no
//! network client: [`StaticSource`] (tokens given by the caller or the environment)
//! and [`FnSource`] (your own login code, see [`from_fn`]).

mod deadline;
mod func;
#[cfg(feature = "oauth2")]
pub mod login;
#[cfg(feature = "oauth2")]
pub mod oauth2;
mod static_source;

pub use deadline::time_left;
pub(crate) use deadline::{scope, Deadline};
pub use func::{from_fn, FnSource};
pub use static_source::StaticSource;

use crate::{Result, Token, TokenKey};
use async_trait::async_trait;
use std::sync::Arc;

/// A provider of tokens: logs in, refreshes, and revokes.
///
/// Object safe: managers hold sources as `Arc<dyn TokenSource>`, so a third-party
/// source needs nothing but this crate.
///
/// ```
/// use async_trait::async_trait;
/// use std::time::Duration;
/// use tokenwarden::{Result, Token, TokenSource};
///
/// #[derive(Debug)]
/// struct ApiKeyLogin;
///
/// #[async_trait]
/// impl TokenSource for ApiKeyLogin {
///     async fn fetch(&self) -> Result<Token> {
///         // Call your login endpoint here.
///         Ok(Token::new("token-from-login").with_expires_in(Duration::from_secs(3600)))
///     }
///
///     fn name(&self) -> &str {
///         "api-key-login"
///     }
/// }
/// ```
#[async_trait]
pub trait TokenSource: std::fmt::Debug + Send + Sync {
    /// Gets a new token from scratch (a full login).
    async fn fetch(&self) -> Result<Token>;

    /// Gets a new token given the current one, typically with its refresh token.
    /// Defaults to [`fetch`](Self::fetch).
    ///
    /// Report a rejected refresh token as an OAuth2 `invalid_grant` error
    /// ([`Error::oauth`](crate::Error::oauth)) so the manager falls back to `fetch`.
    /// A returned token without a refresh token keeps the current one.
    async fn refresh(&self, current: &Token) -> Result<Token> {
        let _ = current;
        self.fetch().await
    }

    /// Revokes the token at the server, where the source can. Called by
    /// [`TokenManager::logout`](crate::TokenManager::logout). Defaults to doing nothing.
    async fn revoke(&self, token: &Token) -> Result<()> {
        let _ = token;
        Ok(())
    }

    /// A short name for logs, errors and [`TokenInfo`](crate::TokenInfo).
    fn name(&self) -> &str;

    /// How [`fetch`](Self::fetch) gets a token, for metrics (the `tokenwarden.grant`
    /// label of token requests): the OAuth2 grant (`client_credentials`,
    /// `authorization_code`, `device_code`...) for the built-in sources. Keep it
    /// to a fixed set of values. Defaults to `custom`.
    fn grant_name(&self) -> &str {
        "custom"
    }

    /// The key this source's tokens are cached and stored under: everything that
    /// shapes the token (endpoint, client, grant, scope, audience, user). Defaults
    /// to a key made of [`name`](Self::name) alone; sources with settings override it.
    fn key(&self) -> TokenKey {
        TokenKey::new(self.name())
    }
}

#[async_trait]
impl<S: TokenSource + ?Sized> TokenSource for Arc<S> {
    async fn fetch(&self) -> Result<Token> {
        (**self).fetch().await
    }

    async fn refresh(&self, current: &Token) -> Result<Token> {
        (**self).refresh(current).await
    }

    async fn revoke(&self, token: &Token) -> Result<()> {
        (**self).revoke(token).await
    }

    fn name(&self) -> &str {
        (**self).name()
    }

    fn grant_name(&self) -> &str {
        (**self).grant_name()
    }

    fn key(&self) -> TokenKey {
        (**self).key()
    }
}
