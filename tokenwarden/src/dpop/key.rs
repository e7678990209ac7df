//! [`DpopKey`]: the private key a DPoP-bound token is bound to, kept with the
//! token (in every store, sealed where the store seals) so that the token and
//! its refresh token stay usable after a restart and on every machine that
//! shares them.

use super::DpopAlgorithm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::Arc;
use zeroize::Zeroizing;

/// A DPoP key: the private key a token is bound to (RFC 9449).
///
/// Made by the OAuth2 client with a new grant ([`generate`](Self::generate)),
/// carried by the [`Token`](crate::Token) it is bound to, and used by every
/// adapter to sign a proof for each request. Cheap to clone (shared).
///
/// `Debug` shows its algorithm and public thumbprint, never the private key.
/// Serialized (as stores do) it is `{"alg": "ES256", "pkcs8": "<base64url>"}`:
/// the private key in clear, like the token itself, so only sealed stores
/// should hold it. Without the `dpop` feature it is carried as read and written
/// back unchanged, and cannot sign.
#[derive(Clone)]
pub struct DpopKey {
    inner: Arc<Inner>,
}

struct Inner {
    alg: DpopAlgorithm,
    /// The private key, PKCS#8 DER.
    pkcs8: Zeroizing<Vec<u8>>,
    #[cfg(feature = "dpop")]
    signer: super::sign::Signer,
}

impl DpopKey {
    /// A new key for `alg`, from the operating system's random source.
    ///
    /// RSA keys are 2048 bits and take a moment (tens of milliseconds) to make;
    /// ES256, the default, takes microseconds.
    #[cfg(feature = "dpop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
    pub fn generate(alg: DpopAlgorithm) -> crate::Result<Self> {
        let pkcs8 = super::sign::generate(alg)?;
        Self::from_pkcs8(alg, pkcs8)
    }

    /// The key of a PKCS#8 document (DER) for `alg`.
    fn from_pkcs8(alg: DpopAlgorithm, pkcs8: Zeroizing<Vec<u8>>) -> crate::Result<Self> {
        #[cfg(feature = "dpop")]
        let signer = super::sign::Signer::new(alg, &pkcs8)?;
        Ok(Self {
            inner: Arc::new(Inner {
                alg,
                pkcs8,
                #[cfg(feature = "dpop")]
                signer,
            }),
        })
    }

    /// The algorithm its proofs are signed with.
    pub fn algorithm(&self) -> DpopAlgorithm {
        self.inner.alg
    }

    /// The JWK SHA-256 thumbprint of its public key (RFC 7638), base64url: what
    /// a server binds the token to (`cnf.jkt`, and `dpop_jkt` in an
    /// authorization request). Not a secret.
    #[cfg(feature = "dpop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
    pub fn thumbprint(&self) -> &str {
        self.inner.signer.thumbprint()
    }

    /// Its public key as a JWK (what each proof's header carries).
    #[cfg(feature = "dpop")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dpop")))]
    pub fn public_jwk(&self) -> &serde_json::Value {
        self.inner.signer.public_jwk()
    }

    #[cfg(feature = "dpop")]
    pub(crate) fn signer(&self) -> &super::sign::Signer {
        &self.inner.signer
    }
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("DpopKey");
        debug.field("alg", &self.inner.alg);
        #[cfg(feature = "dpop")]
        debug.field("thumbprint", &self.thumbprint());
        debug.finish_non_exhaustive()
    }
}

/// The stored form, written.
#[derive(Serialize)]
struct Writing<'a> {
    alg: DpopAlgorithm,
    pkcs8: &'a str,
}

/// The stored form, read.
#[derive(Deserialize)]
struct Reading {
    alg: DpopAlgorithm,
    pkcs8: String,
}

impl Serialize for DpopKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let pkcs8 = Zeroizing::new(URL_SAFE_NO_PAD.encode(&*self.inner.pkcs8));
        Writing {
            alg: self.inner.alg,
            pkcs8: &pkcs8,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DpopKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let read = Reading::deserialize(deserializer)?;
        let text = Zeroizing::new(read.pkcs8);
        let pkcs8 = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| D::Error::custom("the DPoP key is not base64url"))?;
        // The error says what is wrong, never the key.
        Self::from_pkcs8(read.alg, Zeroizing::new(pkcs8)).map_err(D::Error::custom)
    }
}

#[cfg(all(test, feature = "dpop"))]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_its_stored_form_and_its_debug_shows_no_secret() {
        for alg in [DpopAlgorithm::Es256, DpopAlgorithm::EdDsa] {
            let key = DpopKey::generate(alg).unwrap();
            let stored = serde_json::to_string(&key).unwrap();
            let back: DpopKey = serde_json::from_str(&stored).unwrap();
            assert_eq!(back.thumbprint(), key.thumbprint());
            assert_eq!(back.algorithm(), alg);
            let debug = format!("{key:?}");
            // Past the document's fixed header: the private key itself.
            let pkcs8 = URL_SAFE_NO_PAD.encode(&*key.inner.pkcs8);
            for window in pkcs8.as_bytes()[40..].chunks(12) {
                let window = std::str::from_utf8(window).unwrap();
                assert!(window.len() < 12 || !debug.contains(window), "{debug}");
            }
            assert!(debug.contains(key.thumbprint()), "{debug}");
        }
    }

    #[test]
    fn a_stored_key_that_does_not_parse_is_an_error_that_shows_no_key() {
        let key = DpopKey::generate(DpopAlgorithm::Es256).unwrap();
        let pkcs8 = URL_SAFE_NO_PAD.encode(&*key.inner.pkcs8);
        let wrong_alg = serde_json::to_string(&key)
            .unwrap()
            .replace("ES256", "EdDSA");
        for stored in [
            r#"{"alg":"ES256","pkcs8":"!!!"}"#.to_owned(),
            r#"{"alg":"ES256","pkcs8":"AAAA"}"#.to_owned(),
            r#"{"alg":"HS256","pkcs8":"AAAA"}"#.to_owned(),
            wrong_alg,
        ] {
            let error = serde_json::from_str::<DpopKey>(&stored).err().unwrap();
            assert!(!error.to_string().contains("AAAA"), "{error}");
            assert!(!error.to_string().contains(&pkcs8[40..60]), "{error}");
        }
    }
}
