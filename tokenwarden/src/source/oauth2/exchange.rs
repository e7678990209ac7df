//! Grants that trade one credential for a token: the JWT bearer assertion (RFC
//! 7523 §2.1) and token exchange (RFC 8693).

use super::auth::JwtSigner;
use super::client::OAuth2Client;
use super::grant::Grant;
use crate::{AccessToken, Result, Token, TokenKey, TokenManager};
use async_trait::async_trait;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type of an OAuth2 access token (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The JWT bearer grant: a JWT signed with a key the server trusts stands for
/// `subject`. Made by [`OAuth2Client::jwt_bearer`].
#[derive(Debug, Clone)]
pub struct JwtBearer {
    client: OAuth2Client,
    signer: JwtSigner,
    issuer: String,
    subject: String,
    scope: Option<String>,
}

/// The token exchange grant: trades a subject token (for instance the token of
/// the user calling this service) for a token for another audience. Made by
/// [`OAuth2Client::token_exchange`].
#[derive(Debug, Clone)]
pub struct TokenExchange {
    client: OAuth2Client,
    subject: Subject,
    subject_token_type: String,
    actor: Option<(AccessToken, String)>,
    requested_token_type: Option<String>,
    audience: Option<String>,
    resource: Option<String>,
    scope: Option<String>,
}

/// Where the token to exchange comes from.
#[derive(Debug, Clone)]
enum Subject {
    Fixed(AccessToken),
    /// The current token of another manager, fetched at each exchange.
    Manager(TokenManager),
}

impl OAuth2Client {
    /// The JWT bearer grant (RFC 7523 §2.1): assertions with `iss` = `issuer` and
    /// `sub` = `subject`, signed by `signer`, addressed to the token endpoint.
    pub fn jwt_bearer(
        &self,
        signer: JwtSigner,
        issuer: impl Into<String>,
        subject: impl Into<String>,
    ) -> JwtBearer {
        JwtBearer {
            client: self.clone(),
            signer,
            issuer: issuer.into(),
            subject: subject.into(),
            scope: None,
        }
    }

    /// Token exchange (RFC 8693) of a fixed access token.
    pub fn token_exchange(&self, subject_token: impl Into<AccessToken>) -> TokenExchange {
        self.exchange(Subject::Fixed(subject_token.into()))
    }

    /// Token exchange (RFC 8693) of whatever token `subject` currently holds: a
    /// service that calls downstream APIs on behalf of its own token.
    pub fn token_exchange_from(&self, subject: TokenManager) -> TokenExchange {
        self.exchange(Subject::Manager(subject))
    }

    fn exchange(&self, subject: Subject) -> TokenExchange {
        TokenExchange {
            client: self.clone(),
            subject,
            subject_token_type: ACCESS_TOKEN_TYPE.to_owned(),
            actor: None,
            requested_token_type: None,
            audience: None,
            resource: None,
            scope: None,
        }
    }
}

impl JwtBearer {
    /// Asks for this scope.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

#[async_trait]
impl Grant for JwtBearer {
    fn client(&self) -> &OAuth2Client {
        &self.client
    }

    fn refresh_params(&self) -> Vec<(String, String)> {
        self.scope
            .iter()
            .map(|s| ("scope".to_owned(), s.clone()))
            .collect()
    }

    fn grant_name(&self) -> &str {
        "jwt_bearer"
    }

    fn grant_key(&self) -> TokenKey {
        self.client.key(
            "jwt_bearer",
            &[
                ("issuer", Some(&self.issuer)),
                ("subject", Some(&self.subject)),
                ("scope", self.scope.as_deref()),
            ],
        )
    }

    async fn new_token(&self) -> Result<Token> {
        let audience = self.client.token_url().await?;
        let assertion = self.signer.assertion(
            &self.issuer,
            &self.subject,
            audience.as_str(),
            self.client.clock(),
        )?;
        let mut params = vec![
            ("grant_type".to_owned(), JWT_BEARER.to_owned()),
            ("assertion".to_owned(), assertion),
        ];
        params.extend(self.scope.iter().map(|s| ("scope".to_owned(), s.clone())));
        self.client.token_request(&params).await
    }
}

impl TokenExchange {
    /// The type of the subject token. Defaults to [`ACCESS_TOKEN_TYPE`].
    pub fn subject_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.subject_token_type = token_type.into();
        self
    }

    /// Acts on behalf of the subject as this actor (delegation, RFC 8693 §1.1).
    pub fn actor(
        mut self,
        actor_token: impl Into<AccessToken>,
        token_type: impl Into<String>,
    ) -> Self {
        self.actor = Some((actor_token.into(), token_type.into()));
        self
    }

    /// The type of token wanted back.
    pub fn requested_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.requested_token_type = Some(token_type.into());
        self
    }

    /// The audience of the new token.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The resource of the new token (RFC 8707).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// The scope of the new token.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

#[async_trait]
impl Grant for TokenExchange {
    fn client(&self) -> &OAuth2Client {
        &self.client
    }

    fn refresh_params(&self) -> Vec<(String, String)> {
        let repeated = [
            ("audience", &self.audience),
            ("resource", &self.resource),
            ("scope", &self.scope),
        ];
        repeated
            .into_iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.to_owned(), v)))
            .collect()
    }

    fn grant_name(&self) -> &str {
        "token_exchange"
    }

    fn grant_key(&self) -> TokenKey {
        // The subject is part of what shaped the token: a manager's key, or the
        // fingerprint of a fixed token (never the token).
        let subject = match &self.subject {
            Subject::Fixed(token) => crate::token::fingerprint(token.secret()),
            Subject::Manager(manager) => manager.key().to_string(),
        };
        let actor = self
            .actor
            .as_ref()
            .map(|(token, _)| crate::token::fingerprint(token.secret()));
        self.client.key(
            "token_exchange",
            &[
                ("subject", Some(&subject)),
                ("actor", actor.as_deref()),
                ("audience", self.audience.as_deref()),
                ("resource", self.resource.as_deref()),
                ("scope", self.scope.as_deref()),
                ("requested_token_type", self.requested_token_type.as_deref()),
            ],
        )
    }

    async fn new_token(&self) -> Result<Token> {
        let subject = match &self.subject {
            Subject::Fixed(token) => token.secret().to_owned(),
            Subject::Manager(manager) => manager.token().await?.access_token.secret().to_owned(),
        };
        let mut params = vec![
            ("grant_type".to_owned(), TOKEN_EXCHANGE.to_owned()),
            ("subject_token".to_owned(), subject),
            (
                "subject_token_type".to_owned(),
                self.subject_token_type.clone(),
            ),
        ];
        if let Some((actor, actor_type)) = &self.actor {
            params.push(("actor_token".to_owned(), actor.secret().to_owned()));
            params.push(("actor_token_type".to_owned(), actor_type.clone()));
        }
        let optional = [
            ("requested_token_type", &self.requested_token_type),
            ("audience", &self.audience),
            ("resource", &self.resource),
            ("scope", &self.scope),
        ];
        params.extend(
            optional
                .into_iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k.to_owned(), v))),
        );
        self.client.token_request(&params).await
    }
}
