//! [`FnSource`]: a token source made of your own async functions, for logins no
//! built-in source covers.

use super::TokenSource;
use crate::{Result, Token, TokenKey};
use async_trait::async_trait;
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use std::future::Future;
use std::sync::Arc;

type FetchFn = Arc<dyn Fn() -> BoxFuture<'static, Result<Token>> + Send + Sync>;
type WithTokenFn<T> = Arc<dyn Fn(Token) -> BoxFuture<'static, Result<T>> + Send + Sync>;

/// A source built from closures with [`from_fn`].
#[derive(Clone)]
pub struct FnSource {
    name: String,
    key: Option<TokenKey>,
    fetch: FetchFn,
    refresh: Option<WithTokenFn<Token>>,
    revoke: Option<WithTokenFn<()>>,
}

/// A source named `name` whose [`fetch`](TokenSource::fetch) is `fetch`.
///
/// Add a refresh with [`FnSource::with_refresh`] (it receives the current token,
/// refresh token included) and a revocation with [`FnSource::with_revoke`].
///
/// ```
/// use std::time::Duration;
/// use tokenwarden::{source::from_fn, Token, TokenManager};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tokenwarden::Result<()> {
/// let source = from_fn("legacy-login", || async {
///     // POST your credentials to the login endpoint here.
///     Ok(Token::new("fresh").with_refresh_token("r1").with_expires_in(Duration::from_secs(600)))
/// })
/// .with_refresh(|current: Token| async move {
///     let _refresh_token = current.refresh_token.as_ref().map(|r| r.secret().to_owned());
///     Ok(Token::new("refreshed").with_expires_in(Duration::from_secs(600)))
/// });
/// let manager = TokenManager::builder(source).build()?;
/// assert_eq!(manager.token().await?.access_token.secret(), "fresh");
/// # Ok(()) }
/// ```
pub fn from_fn<F, Fut>(name: impl Into<String>, fetch: F) -> FnSource
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token>> + Send + 'static,
{
    FnSource {
        name: name.into(),
        key: None,
        fetch: Arc::new(move || fetch().boxed()),
        refresh: None,
        revoke: None,
    }
}

impl FnSource {
    /// Refreshes with `refresh`, given the current token. Without it, a refresh is a
    /// new [`fetch`](TokenSource::fetch).
    pub fn with_refresh<F, Fut>(mut self, refresh: F) -> Self
    where
        F: Fn(Token) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Token>> + Send + 'static,
    {
        self.refresh = Some(Arc::new(move |token| refresh(token).boxed()));
        self
    }

    /// Revokes with `revoke` on [`logout`](crate::TokenManager::logout).
    pub fn with_revoke<F, Fut>(mut self, revoke: F) -> Self
    where
        F: Fn(Token) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.revoke = Some(Arc::new(move |token| revoke(token).boxed()));
        self
    }

    /// Uses `key` as the cache and store key. Defaults to a key of the name alone:
    /// set one that includes the user, scope or endpoint if these can change.
    pub fn with_key(mut self, key: TokenKey) -> Self {
        self.key = Some(key);
        self
    }
}

impl std::fmt::Debug for FnSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnSource")
            .field("name", &self.name)
            .field("refresh", &self.refresh.is_some())
            .field("revoke", &self.revoke.is_some())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenSource for FnSource {
    async fn fetch(&self) -> Result<Token> {
        (self.fetch)().await
    }

    async fn refresh(&self, current: &Token) -> Result<Token> {
        match &self.refresh {
            Some(refresh) => refresh(current.clone()).await,
            None => self.fetch().await,
        }
    }

    async fn revoke(&self, token: &Token) -> Result<()> {
        match &self.revoke {
            Some(revoke) => revoke(token.clone()).await,
            None => Ok(()),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn key(&self) -> TokenKey {
        self.key
            .clone()
            .unwrap_or_else(|| TokenKey::new(&self.name))
    }
}
