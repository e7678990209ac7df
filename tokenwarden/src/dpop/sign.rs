//! The crypto of a DPoP key: made, read back and signing with aws-lc-rs (the
//! crate rustls already builds), and what its proofs carry of it: the public
//! JWK, its RFC 7638 thumbprint and the JWS header, computed once per key.
//!
//! Written here rather than with `jsonwebtoken`: that crate makes no keys and
//! parses its key again for every signature, which a proof per request cannot
//! afford.

use super::DpopAlgorithm;
use crate::{Error, Result};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// A new private key for `alg`, PKCS#8 DER.
pub(super) fn generate(alg: DpopAlgorithm) -> Result<Zeroizing<Vec<u8>>> {
    let failed = |_| Error::config(format!("could not make a {} DPoP key", alg.as_str()));
    let rng = SystemRandom::new();
    let der = match alg {
        DpopAlgorithm::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
        DpopAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        DpopAlgorithm::Rs256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(failed)?;
            pair.as_der().map_err(failed)?.as_ref().to_vec()
        }
    };
    Ok(Zeroizing::new(der))
}

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A key ready to sign proofs, with what its proofs carry of it.
pub(crate) struct Signer {
    pair: Pair,
    jwk: Value,
    thumbprint: String,
    /// The JWS protected header, base64url: `typ`, `alg` and the public `jwk`.
    header: String,
}

impl Signer {
    /// The key of `pkcs8`, which must be a key for `alg`.
    pub(super) fn new(alg: DpopAlgorithm, pkcs8: &[u8]) -> Result<Self> {
        let rejected = |why: aws_lc_rs::error::KeyRejected| {
            Error::config(format!(
                "the DPoP key is not a {} private key in PKCS#8 ({why})",
                alg.as_str()
            ))
        };
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        // The public JWK, and its members for the thumbprint in RFC 7638's
        // order (required members only, sorted, no spaces).
        let (pair, jwk, canonical) = match alg {
            DpopAlgorithm::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(rejected)?;
                // Uncompressed point: 0x04 || x || y.
                let point = pair.public_key().as_ref();
                let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
                let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
                let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                (Pair::Ec(pair), jwk, canonical)
            }
            DpopAlgorithm::EdDsa => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(rejected)?;
                let x = b64(pair.public_key().as_ref());
                let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x});
                let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
                (Pair::Ed(pair), jwk, canonical)
            }
            DpopAlgorithm::Rs256 => {
                let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(rejected)?;
                let public = pair.public_key();
                let n = b64(public.modulus().big_endian_without_leading_zero());
                let e = b64(public.exponent().big_endian_without_leading_zero());
                let jwk = json!({"kty": "RSA", "n": n, "e": e});
                let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                (Pair::Rsa(pair), jwk, canonical)
            }
        };
        let thumbprint = b64(&Sha256::digest(canonical.as_bytes()));
        let header = json!({"typ": "dpop+jwt", "alg": alg.as_str(), "jwk": jwk});
        let header = b64(header.to_string().as_bytes());
        Ok(Self {
            pair,
            jwk,
            thumbprint,
            header,
        })
    }

    pub(super) fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    pub(super) fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    pub(super) fn header(&self) -> &str {
        &self.header
    }

    /// The JWS signature of `input` (ECDSA as `r || s`, as JWS wants).
    pub(super) fn sign(&self, input: &[u8]) -> Result<Vec<u8>> {
        let failed = |_| Error::config("could not sign a DPoP proof");
        match &self.pair {
            Pair::Ec(pair) => Ok(pair
                .sign(&SystemRandom::new(), input)
                .map_err(failed)?
                .as_ref()
                .to_vec()),
            Pair::Ed(pair) => Ok(pair.sign(input).as_ref().to_vec()),
            Pair::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input,
                    &mut signature,
                )
                .map_err(failed)?;
                Ok(signature)
            }
        }
    }
}
