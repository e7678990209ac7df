//! The ID token's validation (OpenID Connect Core §3.1.3.7 and §12.2): its
//! signature against the issuer's published keys (JWKS), `iss`, `aud`, `azp`,
//! `exp`, `iat`, and the `nonce` of the sign-in that asked for it.
//!
//! A new sign-in whose ID token does not validate is refused with a typed error.
//! A refresh whose ID token does not validate keeps its token (its refresh token
//! may have rotated: dropping it would lose the grant) without the ID token.

use super::client::OAuth2Client;
use super::response::excerpt;
use crate::{Error, Result, Token};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// How far the clocks of this machine and the server may differ, for `exp` and `iat`.
const LEEWAY_SECS: u64 = 60;

/// The signature algorithms an ID token may use (never `none`, never a shared key).
const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Validates the ID token of a new sign-in (`nonce`: the one the sign-in sent):
/// an error if it does not hold. Without an ID token, or without an issuer to
/// check it against (a client given endpoints only), nothing to do. One signed
/// with a shared key (HS256...), which a client cannot check against published
/// keys, is dropped (tokenwarden uses nothing in it).
pub(super) async fn check_new(
    client: &OAuth2Client,
    token: &mut Token,
    nonce: Option<&str>,
) -> Result<()> {
    match validate(client, token, nonce, Network::Allowed).await {
        Ok(_) => Ok(()),
        Err(Invalid::Unverifiable(why)) => {
            tracing::warn!(source = %client.name(), "the ID token is dropped: {why}");
            token.id_token = None;
            Ok(())
        }
        Err(Invalid::Refused(why)) => Err(Error::invalid_response(
            client.name(),
            format!("the ID token is refused: {why}"),
        )),
    }
}

/// Validates the ID token of a refresh, without a request: the server may have
/// rotated the refresh token, and nothing may stand between its answer and the
/// store (a request could be cut short by the refresh's deadline). One that does
/// not hold, cannot be checked with what is known already (the issuer's
/// metadata and keys), or names another user than `current`'s ID token, if
/// there is one (OpenID
/// Core §12.2: the same `iss` and `sub`, and the same `nonce` where it has one)
/// is dropped from the token with a warning; the token kept.
pub(super) async fn check_refreshed(
    client: &OAuth2Client,
    current: Option<&Token>,
    mut token: Token,
) -> Token {
    let why = match validate(client, &token, None, Network::None).await {
        Err(Invalid::Refused(why) | Invalid::Unverifiable(why)) => Some(why),
        Ok(Some(claims)) => current.and_then(|current| not_the_same_sign_in(current, &claims)),
        Ok(None) => None,
    };
    if let Some(why) = why {
        tracing::warn!(source = %client.name(), "the refreshed token's ID token is dropped: {why}");
        token.id_token = None;
    }
    token
}

/// Why the `claims` of a refreshed ID token do not continue the sign-in of the
/// `current` token's ID token (one it checked before it was stored), if not.
fn not_the_same_sign_in(current: &Token, claims: &Value) -> Option<String> {
    let before = crate::token::unverified_claims(current.id_token.as_ref()?.secret())?;
    for name in ["iss", "sub"] {
        if before.get(name) != claims.get(name) {
            return Some(format!("its `{name}` is not the signed-in user's"));
        }
    }
    match claims.get("nonce") {
        Some(nonce) if before.get("nonce") != Some(nonce) => {
            Some("its `nonce` is not the sign-in's".into())
        }
        _ => None,
    }
}

/// Whether a validation may read the issuer's metadata and keys over the network.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Network {
    Allowed,
    None,
}

/// Why an ID token is not taken.
enum Invalid {
    /// It is wrong: refuse the sign-in.
    Refused(String),
    /// It cannot be checked here (a shared-key signature; nothing known yet).
    Unverifiable(String),
}

impl From<String> for Invalid {
    fn from(why: String) -> Self {
        Invalid::Refused(why)
    }
}

impl From<&str> for Invalid {
    fn from(why: &str) -> Self {
        Invalid::Refused(why.to_owned())
    }
}

async fn validate(
    client: &OAuth2Client,
    token: &Token,
    nonce: Option<&str>,
    network: Network,
) -> Result<Option<Value>, Invalid> {
    let Some(id_token) = &token.id_token else {
        return Ok(None);
    };
    let metadata = match network {
        Network::Allowed => client.metadata().await.map_err(|e| e.to_string())?,
        Network::None if !client.has_issuer() => None,
        Network::None => Some(client.cached_metadata().ok_or_else(|| {
            Invalid::Unverifiable("the issuer's metadata is not known yet".into())
        })?),
    };
    let Some(metadata) = metadata else {
        return Ok(None);
    };
    let id_token = id_token.secret();
    let header = jsonwebtoken::decode_header(id_token).map_err(|_| "it is not a JWT".to_owned())?;
    if matches!(
        header.alg,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return Err(Invalid::Unverifiable(format!(
            "it is signed with a shared key ({:?}), not one the issuer publishes",
            header.alg
        )));
    }
    if !ALGORITHMS.contains(&header.alg) {
        return Err(format!("it is signed with {:?}, which is not accepted", header.alg).into());
    }
    let jwks_uri = metadata
        .jwks_uri
        .as_ref()
        .ok_or("the issuer publishes no keys (jwks_uri) to check its signature with")?;
    let mut validation = Validation::new(header.alg);
    // Checked below against the manager's clock and with the exact rules of OpenID.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let verify = |keys: &JwkSet| -> Result<Value, String> {
        let key = find(keys, header.kid.as_deref()).ok_or("no key of the issuer's matches it")?;
        jsonwebtoken::decode::<Value>(id_token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| format!("its signature does not verify ({e})"))
    };
    let known = match network {
        Network::Allowed => Some(client.jwks(jwks_uri, false).await?),
        Network::None => client.cached_jwks().await,
    };
    let claims = match (known.as_deref().map(verify), network) {
        (Some(Ok(claims)), _) => claims,
        // Keys the issuer rotated in since they were read: read them again, once.
        (_, Network::Allowed) => verify(&*client.jwks(jwks_uri, true).await?)?,
        (None, Network::None) => {
            return Err(Invalid::Unverifiable(
                "the issuer's keys are not known yet".into(),
            ))
        }
        (Some(Err(why)), Network::None) => return Err(Invalid::Unverifiable(why)),
    };
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let number = |name: &str| claims.get(name).and_then(Value::as_u64);
    if text("iss") != Some(metadata.issuer.as_str()) {
        return Err(format!("its `iss` is not {}", metadata.issuer).into());
    }
    let client_id = client.client_id();
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&client_id) {
        return Err(format!("its `aud` does not name this client ({client_id})").into());
    }
    match text("azp") {
        Some(azp) if azp != client_id => return Err("its `azp` is another client".into()),
        None if audiences.len() > 1 => return Err("it names several audiences and no `azp`".into()),
        _ => {}
    }
    let now = client
        .clock()
        .now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    match number("exp") {
        Some(exp) if exp.saturating_add(LEEWAY_SECS) > now => {}
        Some(_) => return Err("it has expired (`exp`); check this machine's clock".into()),
        None => return Err("it has no `exp`".into()),
    }
    match number("iat") {
        Some(iat) if iat <= now.saturating_add(LEEWAY_SECS) => {}
        Some(_) => {
            return Err("it was issued in the future (`iat`); check this machine's clock".into())
        }
        None => return Err("it has no `iat`".into()),
    }
    if let Some(nonce) = nonce {
        if text("nonce") != Some(nonce) {
            return Err(
                "its `nonce` is not the one this sign-in sent (a replayed ID token?)".into(),
            );
        }
    }
    Ok(Some(claims))
}

/// The key of `keys` with `kid` (or the only signing key, without a `kid`).
fn find(keys: &JwkSet, kid: Option<&str>) -> Option<DecodingKey> {
    let jwk = match kid {
        Some(kid) => keys.find(kid)?,
        None if keys.keys.len() == 1 => &keys.keys[0],
        None => return None,
    };
    DecodingKey::from_jwk(jwk).ok()
}

impl OAuth2Client {
    /// The issuer's keys if they were read already.
    async fn cached_jwks(&self) -> Option<Arc<JwkSet>> {
        self.jwks_cache().lock().await.clone()
    }

    /// The issuer's published keys, read once (and again with `again`).
    pub(super) async fn jwks(&self, url: &url::Url, again: bool) -> Result<Arc<JwkSet>, String> {
        let mut cached = self.jwks_cache().lock().await;
        if let (Some(keys), false) = (cached.as_ref(), again) {
            return Ok(keys.clone());
        }
        let answer = self
            .get_retried(url)
            .await
            .map_err(|e| format!("its keys could not be read: {e}"))?;
        if !(200..300).contains(&answer.status) {
            return Err(format!(
                "its keys could not be read (HTTP {})",
                answer.status
            ));
        }
        let keys: JwkSet = serde_json::from_slice(&answer.body).map_err(|e| {
            format!(
                "the issuer's keys are not a JWK set ({e}): {}",
                excerpt(&answer.body)
            )
        })?;
        let keys = Arc::new(keys);
        *cached = Some(keys.clone());
        Ok(keys)
    }
}
