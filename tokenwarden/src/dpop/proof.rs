//! DPoP proofs (RFC 9449 §4.2): a JWT signed with the token's key for one
//! request, never reused.

use super::DpopKey;
use crate::Result;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::time::SystemTime;

/// The claims of a proof.
#[derive(Serialize)]
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

impl DpopKey {
    /// A fresh proof of possession of this key for one request (a `dpop+jwt`
    /// JWT with the public key in its header): `htm` the method, `htu` the
    /// target URI without query and fragment (see [`htu`]), `iat` the time, a
    /// random `jti`; `ath` the access token's hash (see [`ath`]) for a
    /// request to a resource server; `nonce` where the server asked for one.
    ///
    /// ```
    /// use tokenwarden::dpop::{htu, DpopAlgorithm, DpopKey};
    ///
    /// let key = DpopKey::generate(DpopAlgorithm::Es256)?;
    /// let url = url::Url::parse("https://auth.example.com/token?x=1").unwrap();
    /// let now = tokenwarden::Clock::now(&tokenwarden::SystemClock);
    /// let proof = key.proof("POST", &htu(&url), None, None, now)?;
    /// assert_eq!(proof.split('.').count(), 3);
    /// # Ok::<(), tokenwarden::Error>(())
    /// ```
    pub fn proof(
        &self,
        htm: &str,
        htu: &str,
        ath: Option<&str>,
        nonce: Option<&str>,
        iat: SystemTime,
    ) -> Result<String> {
        let signer = self.signer();
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti)
            .map_err(|_| crate::Error::config("no random bytes for a DPoP proof"))?;
        let jti = URL_SAFE_NO_PAD.encode(jti);
        let iat = iat
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            jti: &jti,
            htm,
            htu,
            iat,
            ath,
            nonce,
        };
        let claims = serde_json::to_vec(&claims)
            .map_err(|_| crate::Error::config("could not write a DPoP proof"))?;
        let header = signer.header();
        let mut jwt = String::with_capacity(header.len() + claims.len() * 4 / 3 + 100);
        jwt.push_str(header);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut jwt);
        let signature = signer.sign(jwt.as_bytes())?;
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jwt);
        Ok(jwt)
    }
}

/// A proof's `htu` for a request to `url`: the URL without its query and
/// fragment (RFC 9449 §4.2), nor any user information (which goes on no
/// request line, and would be signed into a JWT servers log), as the `url`
/// crate normalises it (lower-case scheme and host, no default port).
pub fn htu(url: &url::Url) -> String {
    let mut htu = url.clone();
    htu.set_query(None);
    htu.set_fragment(None);
    let _ = htu.set_username("");
    let _ = htu.set_password(None);
    htu.into()
}

/// A proof's `ath` for an access token: base64url of its SHA-256 (RFC 9449 §4.2).
pub fn ath(access_token: &crate::AccessToken) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.secret().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpop::DpopAlgorithm;

    fn part(jwt: &str, index: usize) -> serde_json::Value {
        let part = jwt.split('.').nth(index).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn a_proof_carries_what_rfc_9449_asks_and_is_never_the_same() {
        let key = DpopKey::generate(DpopAlgorithm::Es256).unwrap();
        let url = url::Url::parse("HTTPS://u:p@API.Example.com:443/v1/items?page=2#top").unwrap();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let token = crate::AccessToken::new("the-access-token");
        let proof = key
            .proof("GET", &htu(&url), Some(&ath(&token)), Some("n-1"), at)
            .unwrap();
        let header = part(&proof, 0);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(&header["jwk"], key.public_jwk());
        assert!(header["jwk"].get("d").is_none(), "no private member");
        let claims = part(&proof, 1);
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "https://api.example.com/v1/items");
        assert_eq!(claims["iat"], 1_800_000_000);
        assert_eq!(claims["nonce"], "n-1");
        // SHA-256("the-access-token"), base64url.
        assert_eq!(claims["ath"], ath(&token));
        assert_eq!(claims["ath"].as_str().unwrap().len(), 43);
        let again = key.proof("GET", &htu(&url), None, None, at).unwrap();
        assert_ne!(part(&again, 1)["jti"], claims["jti"]);
        assert!(part(&again, 1).get("ath").is_none());
    }
}
