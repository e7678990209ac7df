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
            "the private key is not a PEM file ({}); give a PKCS#8 PEM private key",
            pem_problem(&e)
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

/// What is wrong with a PEM file, in words that quote none of it: the `pem`
/// crate's own messages quote the END label and a bad header line, which in a
/// damaged file can be lines of the key (found by the `private_key` fuzz target).
fn pem_problem(error: &::pem::PemError) -> &'static str {
    use ::pem::PemError;
    match error {
        PemError::MismatchedTags(..) => "its BEGIN and END labels differ",
        PemError::MalformedFraming => "its BEGIN/END lines are malformed",
        PemError::MissingBeginTag => "no BEGIN line",
        PemError::MissingEndTag => "no END line",
        PemError::MissingData => "nothing between BEGIN and END",
        PemError::InvalidData(_) => "its body is not valid base64",
        PemError::InvalidHeader(_) => "a header line is malformed",
        PemError::NotUtf8(_) => "it is not UTF-8 text",
    }
}

fn curve_algorithm(curve: Option<ObjectIdentifier>) -> Option<(SigningAlgorithm, &'static str)> {
    match curve? {
        P256 => Some((SigningAlgorithm::Es256, "an EC P-256 key")),
        P384 => Some((SigningAlgorithm::Es384, "an EC P-384 key")),
        _ => None,
    }
}

/// The `private_key` fuzz target's check, also run on its seeds by the unit
/// tests: reading `pem` (its algorithm, and a signer for each algorithm) never
/// panics, and no error quotes a line of it. In each line of 8 characters or
/// more but the `-----` ones, the base64 characters are replaced by a marker
/// (`Zq00Zq00…` in the first), the rest kept, and no marked line may show in an
/// error: comparing the lines themselves would take a line that happens to be a
/// phrase of our own messages for a quoted one.
#[cfg(any(test, fuzzing))]
pub(crate) fn check_private_key(pem: &[u8]) {
    let read = |pem: &[u8]| {
        let mut errors = vec![
            SigningAlgorithm::of_pem(pem).err(),
            super::auth::JwtSigner::from_pem_key(pem).err(),
        ];
        for algorithm in [
            SigningAlgorithm::Rs256,
            SigningAlgorithm::Es256,
            SigningAlgorithm::Es384,
            SigningAlgorithm::EdDsa,
        ] {
            errors.push(super::auth::JwtSigner::from_pem(pem, algorithm).err());
        }
        errors
            .into_iter()
            .flatten()
            .map(|e| format!("{e} {e:?}"))
            .collect::<Vec<_>>()
    };
    read(pem);
    let text = String::from_utf8_lossy(pem);
    let mut markers = Vec::new();
    let marked: Vec<String> = text
        .split('\n')
        .map(|line| {
            if line.trim().len() < 8 || line.starts_with("-----") {
                return line.to_owned();
            }
            // Base64's characters replaced, the rest (dashes, spaces) kept, so
            // that the file keeps its shape.
            let mut pattern = format!("Zq{:02}", markers.len() % 100)
                .into_bytes()
                .into_iter()
                .cycle();
            let marker: String = line
                .chars()
                .map(|c| match c {
                    'A'..='Z' | 'a'..='z' | '0'..='9' | '+' | '/' | '=' => {
                        char::from(pattern.next().unwrap_or(b'Z'))
                    }
                    other => other,
                })
                .collect();
            markers.push(marker.clone());
            marker
        })
        .collect();
    for shown in read(marked.join("\n").as_bytes()) {
        for marker in &markers {
            assert!(
                !shown.contains(marker.as_str()),
                "a line of the file in: {shown}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every committed seed of the `private_key` fuzz target (among them the
    /// inputs that once stopped it) passes its check.
    #[test]
    fn fuzz_seeds_pass_the_targets_check() {
        let seeds = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/private_key");
        let mut read = 0;
        for entry in std::fs::read_dir(seeds).unwrap() {
            super::check_private_key(&std::fs::read(entry.unwrap().path()).unwrap());
            read += 1;
        }
        assert!(read >= 5, "{read} seeds under {seeds}");
    }
}
