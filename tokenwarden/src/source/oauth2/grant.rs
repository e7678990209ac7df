//! What every OAuth2 grant source shares (refreshing with the refresh token,
//! revoking at the server, its name): each grant only says how it gets a new token.

use super::client::OAuth2Client;
use crate::{Error, OAuthError, Result, Token, TokenKey, TokenSource};
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

    /// The grant's name (`client_credentials`...): [`TokenSource::grant_name`].
    fn grant_name(&self) -> &str;

    /// A new token by this grant.
    async fn new_token(&self) -> Result<Token>;

    /// Whether [`new_token`](Self::new_token) checks the ID token itself (with
    /// the nonce its sign-in sent), so that it is not checked twice.
    fn checks_id_token(&self) -> bool {
        false
    }
}

#[async_trait]
impl<G: Grant> TokenSource for G {
    async fn fetch(&self) -> Result<Token> {
        let mut token = self.new_token().await?;
        // Before it is stored (the sign-in's nonce, where it sent one, is checked
        // in its own grant).
        if !self.checks_id_token() {
            super::id_token::check_new(self.client(), &mut token, None).await?;
        }
        // Refused unless the client accepts less: a caller that asked for more
        // is never served less (compared as `scope.rs` says providers answer).
        if let Some(missing) = granted(self, &mut token) {
            if !self.client().accepts_narrower_scope() {
                // Dropped, not revoked: RFC 7009 lets a server revoke the whole
                // grant with a token, and the refresh token that other instances
                // (or another login) hold would go with it.
                return Err(Error::oauth(
                    self.name(),
                    None,
                    OAuthError::new("invalid_scope").with_description(format!(
                        "the server granted `{}`, without `{missing}`, which was asked for; ask for what it grants, or accept a narrower grant (accept_narrower_scope)",
                        token.scope.as_deref().unwrap_or_default()
                    )),
                ));
            }
            tracing::warn!(source = %self.name(), "the server granted no `{missing}`, which was asked for; the token is kept (accept_narrower_scope)");
        }
        Ok(token)
    }

    async fn refresh(&self, current: &Token) -> Result<Token> {
        match &current.refresh_token {
            Some(refresh) => {
                let token = self
                    .client()
                    .refresh(
                        refresh.secret(),
                        &self.refresh_params(),
                        current.dpop_key.as_ref(),
                    )
                    .await?;
                let mut token =
                    super::id_token::check_refreshed(self.client(), Some(current), token).await;
                // Kept all the same: its refresh token may have rotated, and the
                // old one is spent (RFC 6749 §6 lets no server narrow a refresh
                // that repeats the scope; one that does is logged).
                if let Some(missing) = granted(self, &mut token) {
                    tracing::warn!(source = %self.name(), "the refreshed token has no `{missing}`, which was asked for");
                }
                Ok(token)
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

    fn grant_name(&self) -> &str {
        Grant::grant_name(self)
    }
}

/// Keeps the granted scope with `token` (the one asked for where the server
/// said none: RFC 6749 §5.1); the scope values asked for and not granted, if any.
fn granted<G: Grant + ?Sized>(grant: &G, token: &mut Token) -> Option<String> {
    let asked = grant
        .refresh_params()
        .into_iter()
        .find(|(name, _)| name == "scope")
        .map(|(_, scope)| scope)?;
    let granted = token.scope.get_or_insert_with(|| asked.clone());
    super::scope::missing(&asked, granted)
}
