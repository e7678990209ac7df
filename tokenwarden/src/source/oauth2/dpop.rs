//! DPoP at the token endpoint (RFC 9449 §5, §8): the key of each token request,
//! its proof, the server's nonce, and the key kept with the token it gets.

use super::client::OAuth2Client;
use super::response::{self, Answer};
use crate::dpop::DpopKey;
use crate::{Result, Token};
use url::Url;

impl OAuth2Client {
    /// The key a token request proves possession of: `current`'s (a refresh
    /// keeps the key its grant made), else a new one (a new grant); `None`
    /// when the client does not use DPoP.
    pub(crate) fn dpop_key(&self, current: Option<&DpopKey>) -> Result<Option<DpopKey>> {
        match (self.dpop_algorithm(), current) {
            (None, _) => Ok(None),
            (Some(_), Some(current)) => Ok(Some(current.clone())),
            (Some(alg), None) => DpopKey::generate(alg).map(Some),
        }
    }

    /// The `DPoP` header of one request to `url` with `key`: a fresh proof,
    /// with the server's last nonce.
    pub(crate) fn dpop_header(
        &self,
        url: &Url,
        key: &DpopKey,
    ) -> Result<(reqwest::header::HeaderName, reqwest::header::HeaderValue)> {
        let nonce = self.dpop_nonces().get_for(url);
        let proof = key.proof(
            "POST",
            &crate::dpop::htu(url),
            None,
            nonce.as_deref(),
            self.clock().now(),
        )?;
        let mut value = reqwest::header::HeaderValue::try_from(proof)
            .map_err(|_| crate::Error::config("a DPoP proof that is not a header value"))?;
        value.set_sensitive(true);
        Ok((
            reqwest::header::HeaderName::from_static(crate::dpop::DPOP),
            value,
        ))
    }

    /// Remembers the nonce of the server's answer to a request to `url`;
    /// whether the answer refused the proof for lacking it (a
    /// `use_dpop_nonce` error with a new nonce): then the request was not
    /// processed, and is sent once more with the nonce.
    pub(crate) fn dpop_wants_nonce(&self, url: &Url, answer: &Answer) -> bool {
        let origin = url.origin().ascii_serialization();
        self.dpop_nonces().remember(&origin, &answer.headers)
            && answer.status == 400
            && answer
                .json()
                .as_ref()
                .and_then(response::oauth_error)
                .is_some_and(|e| e.error == crate::dpop::USE_DPOP_NONCE)
    }
}

/// Keeps `key` with the token the request that proved it got. A new grant
/// answered with a token that is not DPoP-bound (the server ignores DPoP, or a
/// downgrade) is refused: the client asked for tokens a thief cannot use. A
/// refresh answered so keeps its token (its refresh token may have rotated, the
/// old one spent), logged, and the key for the next refresh.
pub(crate) fn bind(source: &str, token: &mut Token, key: DpopKey, new_grant: bool) -> Result<()> {
    // A token exchange may issue what is no access token (RFC 8693 §2.2.1).
    if !token.is_dpop() && !token.token_type.eq_ignore_ascii_case("N_A") {
        if new_grant {
            return Err(crate::Error::invalid_response(
                source,
                format!(
                    "the server answered a DPoP token request with a `{}` token, not bound to \
                     the key: it does not do DPoP for this client (configure it to, or drop \
                     `dpop` here)",
                    super::response::printable(&token.token_type)
                ),
            ));
        }
        tracing::warn!(
            source,
            token_type = %super::response::printable(&token.token_type),
            "the server answered a DPoP refresh with a token that is not DPoP-bound"
        );
    }
    token.dpop_key = Some(key);
    Ok(())
}
