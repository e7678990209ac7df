//! DPoP, sender-constrained tokens (RFC 9449): a token bound to a key the
//! client holds, useless to whoever steals it without the key.
//!
//! An [`OAuth2Client`](crate::source::oauth2::OAuth2Client) built with
//! [`dpop`](crate::source::oauth2::OAuth2ClientBuilder::dpop) makes a
//! [`DpopKey`] with each new grant, proves possession of it at the token
//! endpoint, and keeps it in the [`Token`](crate::Token) it gets
//! ([`Token::dpop_key`](crate::Token::dpop_key)): every store keeps the key
//! with its token (sealed where the store seals), and a refresh uses the same
//! key, so a DPoP-bound refresh token stays usable after a restart and on
//! every machine that shares it.
//!
//! Every adapter (reqwest's `AuthClient` and `TokenMiddleware`, the tower
//! layer, the CLI's `curl` and `proxy`) sends a DPoP-bound token as
//! `Authorization: DPoP <token>` with a fresh proof in the `DPoP` header,
//! through [`http::authorize`](crate::http::authorize): the request's method
//! and URI without query and fragment, the time, a random `jti`, the token's
//! hash (`ath`), and the server's nonce where it asked for one. A resource
//! server's `WWW-Authenticate: DPoP error="use_dpop_nonce"` is answered with one
//! replay carrying its nonce; the token stays. Nonces are remembered per
//! origin in the manager's [`DpopNonces`] and renewed from every `DPoP-Nonce`
//! header.
//!
//! Proofs are never reused, and neither keys nor proofs appear in `Debug`,
//! logs or errors.

mod key;
#[cfg(feature = "dpop")]
mod nonces;
#[cfg(feature = "dpop")]
mod proof;
#[cfg(feature = "dpop")]
mod sign;

pub use key::DpopKey;
#[cfg(feature = "dpop")]
pub use nonces::DpopNonces;
#[cfg(feature = "dpop")]
pub use proof::{ath, htu};

use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

/// The header a DPoP proof travels in, and a server's nonce.
pub const DPOP: &str = "dpop";
/// The header a server gives its nonce in (RFC 9449 §8.1).
pub const DPOP_NONCE: &str = "dpop-nonce";
/// The `token_type` of a DPoP-bound token, and its `Authorization` scheme.
pub const TOKEN_TYPE: &str = "DPoP";
/// The error a server answers with when it wants its nonce in the proof.
pub const USE_DPOP_NONCE: &str = "use_dpop_nonce";

/// The algorithm of a DPoP key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DpopAlgorithm {
    /// ECDSA with P-256 and SHA-256: the default, and what every server takes.
    #[default]
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519 (`EdDSA`, RFC 8037).
    #[serde(rename = "EdDSA")]
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and a 2048-bit key, for servers that
    /// take nothing else.
    #[serde(rename = "RS256")]
    Rs256,
}

impl DpopAlgorithm {
    /// Its JWS name (`ES256`, `EdDSA`, `RS256`).
    pub fn as_str(self) -> &'static str {
        match self {
            DpopAlgorithm::Es256 => "ES256",
            DpopAlgorithm::EdDsa => "EdDSA",
            DpopAlgorithm::Rs256 => "RS256",
        }
    }
}

impl std::str::FromStr for DpopAlgorithm {
    type Err = crate::Error;

    /// `ES256`, `EdDSA` (or `Ed25519`) or `RS256`, in any case.
    fn from_str(name: &str) -> crate::Result<Self> {
        match name.to_ascii_uppercase().as_str() {
            "ES256" => Ok(DpopAlgorithm::Es256),
            "EDDSA" | "ED25519" => Ok(DpopAlgorithm::EdDsa),
            "RS256" => Ok(DpopAlgorithm::Rs256),
            _ => Err(crate::Error::config(format!(
                "`{name}` is not a DPoP algorithm: use ES256, EdDSA or RS256"
            ))),
        }
    }
}

/// The nonce a response gives in its `DPoP-Nonce` header, if it is a valid
/// one (RFC 9449 §8.1: printable ASCII but `"` and `\`, at most 1024 here).
pub fn nonce_in(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(DPOP_NONCE)?.to_str().ok()?;
    let valid = |b: u8| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e);
    (!value.is_empty() && value.len() <= 1024 && value.bytes().all(valid)).then_some(value)
}

/// Whether a resource server's answer asks for a proof with its nonce: a 401
/// with a `WWW-Authenticate: DPoP` challenge whose `error` is `use_dpop_nonce`
/// (RFC 9449 §9), and a valid nonce in `DPoP-Nonce`. A malformed header never
/// counts.
pub fn asks_for_nonce(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::UNAUTHORIZED
        && nonce_in(headers).is_some()
        && headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| crate::http::challenge_error(value, TOKEN_TYPE, USE_DPOP_NONCE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_nonce_challenge_is_read_and_nothing_else_counts() {
        let asked = headers(&[
            (
                "www-authenticate",
                r#"DPoP error="use_dpop_nonce", algs="ES256""#,
            ),
            ("dpop-nonce", "eyJ7S_zG.eyJH0-Z.HX4w-7v"),
        ]);
        assert!(asks_for_nonce(StatusCode::UNAUTHORIZED, &asked));
        assert_eq!(nonce_in(&asked), Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
        assert!(!asks_for_nonce(StatusCode::FORBIDDEN, &asked));
        for wrong in [
            headers(&[("www-authenticate", r#"DPoP error="use_dpop_nonce""#)]),
            headers(&[
                ("www-authenticate", r#"DPoP error="invalid_token""#),
                ("dpop-nonce", "n"),
            ]),
            headers(&[
                ("www-authenticate", r#"Bearer error="use_dpop_nonce""#),
                ("dpop-nonce", "n"),
            ]),
            headers(&[
                ("www-authenticate", r#"DPoP error="use_dpop_nonce"#),
                ("dpop-nonce", "n"),
            ]),
            headers(&[
                ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
                ("dpop-nonce", "a\"b"),
            ]),
        ] {
            assert!(
                !asks_for_nonce(StatusCode::UNAUTHORIZED, &wrong),
                "{wrong:?}"
            );
        }
        assert_eq!(nonce_in(&headers(&[("dpop-nonce", "")])), None);
        assert_eq!(nonce_in(&headers(&[("dpop-nonce", "a b")])), None);
        let long = "n".repeat(1025);
        assert_eq!(nonce_in(&headers(&[("dpop-nonce", &long)])), None);
    }

    #[test]
    fn algorithms_by_name() {
        for (name, alg) in [
            ("ES256", DpopAlgorithm::Es256),
            ("eddsa", DpopAlgorithm::EdDsa),
            ("Ed25519", DpopAlgorithm::EdDsa),
            ("rs256", DpopAlgorithm::Rs256),
        ] {
            assert_eq!(name.parse::<DpopAlgorithm>().unwrap(), alg);
        }
        let error = "HS256".parse::<DpopAlgorithm>().unwrap_err();
        assert!(
            error.to_string().contains("ES256, EdDSA or RS256"),
            "{error}"
        );
    }
}
