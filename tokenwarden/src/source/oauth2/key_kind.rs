//! Which signature algorithm a PEM private key is for: read from the key itself
//! (its PEM label, and for PKCS#8 and SEC1 its algorithm and curve identifiers),
//! so that a user need not name it.
//!
//! By hand over `pkcs8`/`sec1` rather than through `jsonwebtoken`, which takes the
//! algorithm as given and fails with "not a valid RS256 key" for an EC key.

use super::auth::SigningAlgorithm;
use crate::{Error, Result};
use pkcs8::ObjectIdentifier;

const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// What kind of key a PEM private key is, in words for errors.
pub(super) fn detect(pem: &[u8]) -> Result<(SigningAlgorithm, &'static str)> {
    let parsed = ::pem::parse(pem).map_err(|e| {
        Error::config(format!(
            "the private key is not a PEM file ({e}); give a PKCS#8 PEM private key"
        ))
    })?;
    let unsupported = |what: String| {
        Error::config(format!(
            "the private key is {what}; use an RSA, EC P-256, EC P-384 or Ed25519 key in a PKCS#8 PEM file"
        ))
    };
    match parsed.tag() {
        "RSA PRIVATE KEY" => Ok((SigningAlgorithm::Rs256, "an RSA key")),
        // Read to say which it is; the signer (jsonwebtoken) takes PKCS#8 only.
        "EC PRIVATE KEY" => {
            let key = sec1::EcPrivateKey::try_from(parsed.contents())
                .map_err(|e| unsupported(format!("an EC key that does not parse ({e})")))?;
            let curve = key.parameters.and_then(|p| p.named_curve());
            let (_, kind) = curve_algorithm(curve)
                .ok_or_else(|| unsupported(format!("an EC key on the curve {curve:?}")))?;
            Err(Error::config(format!(
                "the private key is {kind} in the SEC1 format (`BEGIN EC PRIVATE KEY`); convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-pkcs8.pem"
            )))
        }
        "PRIVATE KEY" => {
            let info = pkcs8::PrivateKeyInfo::try_from(parsed.contents())
                .map_err(|e| unsupported(format!("a PKCS#8 key that does not parse ({e})")))?;
            match info.algorithm.oid {
                RSA => Ok((SigningAlgorithm::Rs256, "an RSA key")),
                EC => {
                    let curve = info.algorithm.parameters_oid().ok();
                    curve_algorithm(curve)
                        .ok_or_else(|| unsupported(format!("an EC key on the curve {curve:?}")))
                }
                ED25519 => Ok((SigningAlgorithm::EdDsa, "an Ed25519 key")),
                other => Err(unsupported(format!("of the algorithm {other}"))),
            }
        }
        "ENCRYPTED PRIVATE KEY" => Err(Error::config(
            "the private key is encrypted; decrypt it first (openssl pkcs8 -in key.pem -out plain.pem)",
        )),
        other => Err(unsupported(format!("a PEM `{other}`, not a private key"))),
    }
}

fn curve_algorithm(curve: Option<ObjectIdentifier>) -> Option<(SigningAlgorithm, &'static str)> {
    match curve? {
        P256 => Some((SigningAlgorithm::Es256, "an EC P-256 key")),
        P384 => Some((SigningAlgorithm::Es384, "an EC P-384 key")),
        _ => None,
    }
}
