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
        // Kept, with a warning: providers name scopes their own way (Google answers
        // `email` with a URL, GitHub separates with commas, Entra expands
        // `.default`), so a missing word is not proof of a narrower grant.
        if let Some(missing) = granted(self, &mut token) {
            tracing::warn!(source = %self.name(), "the server granted no {missing}, which was asked for; `tokenwarden status` shows what was granted");
        }
        Ok(token)
    }

    async fn refresh(&self, current: &Token) -> Result<Token> {
        match &current.refresh_token {
            Some(refresh) => {
                let token = self
                    .client()
                    .refresh(refresh.secret(), &self.refresh_params())
                    .await?;
                let mut token = super::id_token::check_refreshed(self.client(), token).await;
                // Kept all the same: its refresh token may have rotated.
                if let Some(missing) = granted(self, &mut token) {
                    tracing::warn!(source = %self.name(), "the refreshed token has no {missing}, which was asked for");
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
    let granted: Vec<&str> = granted.split_whitespace().collect();
    // `openid` and `offline_access` ask for an ID token and a refresh token, not
    // for access: servers differ on whether they echo them.
    let missing: Vec<&str> = asked
        .split_whitespace()
        .filter(|s| !granted.contains(s) && !matches!(*s, "openid" | "offline_access"))
        .collect();
    (!missing.is_empty()).then(|| format!("`{}`", missing.join(" ")))
}
