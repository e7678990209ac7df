//! What every OAuth2 grant source shares (refreshing with the refresh token,
//! revoking at the server, its name): each grant only says how it gets a new token.

use super::client::OAuth2Client;
use crate::{Result, Token, TokenKey, TokenSource};
use async_trait::async_trait;

/// A grant: how a new token is obtained. Every `Grant` is a [`TokenSource`].
/// Sealed: public in a private module, so only this crate implements it.
#[async_trait]
pub trait Grant: std::fmt::Debug + Send + Sync {
    /// The client the grant runs as.
    fn client(&self) -> &OAuth2Client;

    /// The parameters a refresh repeats (scope, audience, resources...), so that
    /// the refreshed token is for the same thing.
    fn refresh_params(&self) -> Vec<(String, String)>;

    /// The token key: the grant and everything that shaped the token.
    fn grant_key(&self) -> TokenKey;

    /// A new token by this grant.
    async fn new_token(&self) -> Result<Token>;
}

#[async_trait]
impl<G: Grant> TokenSource for G {
    async fn fetch(&self) -> Result<Token> {
        let token = self.new_token().await?;
        // Before it is stored (the sign-in's nonce, where it sent one, is checked
        // in its own grant).
        super::id_token::check_new(self.client(), &token, None).await?;
        Ok(token)
    }

    async fn refresh(&self, current: &Token) -> Result<Token> {
        match &current.refresh_token {
            Some(refresh) => {
                let token = self
                    .client()
                    .refresh(refresh.secret(), &self.refresh_params())
                    .await?;
                Ok(super::id_token::check_refreshed(self.client(), token).await)
            }
            None => self.fetch().await,
        }
    }

    async fn revoke(&self, token: &Token) -> Result<()> {
        self.client().revoke(token).await
    }

    fn name(&self) -> &str {
        self.client().name()
    }

    fn key(&self) -> TokenKey {
        self.grant_key()
    }
}
