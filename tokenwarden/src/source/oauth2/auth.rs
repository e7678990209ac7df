//! Client authentication at the token endpoint: `client_secret_basic`,
//! `client_secret_post` (RFC 6749 §2.3.1), `private_key_jwt` (RFC 7523 §2.2, OpenID
//! Connect Core §9), mutual TLS (RFC 8705 §2), or none for public clients.

use crate::{ClientSecret, Clock, Error, Result};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::time::{Duration, UNIX_EPOCH};

/// An `Authorization` header value and form fields.
pub(crate) type Credentials = (Option<String>, Vec<(&'static str, String)>);

/// How the client proves who it is to the token endpoint.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// A public client: only `client_id` is sent (device and PKCE flows).
    None,
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1), the default.
    SecretBasic(ClientSecret),
    /// The client id and secret in the form body.
    SecretPost(ClientSecret),
    /// A JWT signed with the client's private key (RFC 7523 §2.2).
    PrivateKeyJwt(JwtSigner),
    /// Mutual TLS with a certificate of a CA the server trusts (RFC 8705 §2.1):
    /// the client certificate
    /// ([`client_certificate`](super::OAuth2ClientBuilder::client_certificate))
    /// proves who the client is; only `client_id` goes in the body.
    TlsClientAuth,
    /// Mutual TLS with a self-signed certificate registered with the server
    /// (RFC 8705 §2.2), as [`TlsClientAuth`](Self::TlsClientAuth) sends it.
    SelfSignedTlsClientAuth,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.method())
    }
}

impl ClientAuth {
    /// The method's registered name (`client_secret_basic`...).
    pub fn method(&self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::SecretBasic(_) => "client_secret_basic",
            ClientAuth::SecretPost(_) => "client_secret_post",
            ClientAuth::PrivateKeyJwt(_) => "private_key_jwt",
            ClientAuth::TlsClientAuth => "tls_client_auth",
            ClientAuth::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        }
    }

    /// Whether the client proves who it is with its TLS certificate.
    pub(crate) fn is_mutual_tls(&self) -> bool {
        matches!(
            self,
            ClientAuth::TlsClientAuth | ClientAuth::SelfSignedTlsClientAuth
        )
    }

    /// The `Authorization` header and form fields that authenticate `client_id` at
    /// `audience` (the issuer identifier, else the token endpoint).
    pub(crate) fn credentials(
        &self,
        client_id: &str,
        audience: &str,
        clock: &dyn Clock,
    ) -> Result<Credentials> {
        Ok(match self {
            ClientAuth::None | ClientAuth::TlsClientAuth | ClientAuth::SelfSignedTlsClientAuth => {
                (None, vec![("client_id", client_id.to_owned())])
            }
            ClientAuth::SecretBasic(secret) => {
                // RFC 6749 §2.3.1: both parts form-urlencoded before base64.
                let encode = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let pair = format!("{}:{}", encode(client_id), encode(secret.secret()));
                let basic = base64::engine::general_purpose::STANDARD.encode(pair);
                (Some(format!("Basic {basic}")), Vec::new())
            }
            ClientAuth::SecretPost(secret) => (
                None,
                vec![
                    ("client_id", client_id.to_owned()),
                    ("client_secret", secret.secret().to_owned()),
                ],
            ),
            ClientAuth::PrivateKeyJwt(signer) => (
                None,
                vec![
                    ("client_id", client_id.to_owned()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                    ),
                    (
                        "client_assertion",
                        signer.assertion(client_id, client_id, audience, clock)?,
                    ),
                ],
            ),
        })
    }
}

/// Signs the JWTs of `private_key_jwt` and of the JWT bearer grant, with an RSA
/// (RS256), EC P-256 (ES256), EC P-384 (ES384) or Ed25519 (EdDSA) private key.
#[derive(Clone)]
pub struct JwtSigner {
    key: EncodingKey,
    algorithm: Algorithm,
    key_id: Option<String>,
    lifetime: Duration,
}

/// The signature algorithms a [`JwtSigner`] supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, from an RSA key.
    Rs256,
    /// ECDSA with P-256 and SHA-256, from an EC P-256 key.
    Es256,
    /// ECDSA with P-384 and SHA-384, from an EC P-384 key.
    Es384,
    /// EdDSA, from an Ed25519 key (servers that accept it: check their
    /// `token_endpoint_auth_signing_alg_values_supported`).
    EdDsa,
}

impl SigningAlgorithm {
    /// The algorithm a PEM private key is for: RSA → RS256, EC P-256 → ES256, EC
    /// P-384 → ES384, Ed25519 → EdDSA (PKCS#8, or PKCS#1 for RSA; an EC key in the
    /// SEC1 format is an error that says how to convert it).
    pub fn of_pem(pem: &[u8]) -> Result<Self> {
        super::key_kind::detect(pem).map(|(algorithm, _)| algorithm)
    }

    /// Its JWS name (`RS256`, `ES256`, `ES384`, `EdDSA`).
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::Rs256 => "RS256",
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::Es384 => "ES384",
            SigningAlgorithm::EdDsa => "EdDSA",
        }
    }
}

impl JwtSigner {
    /// A signer from a PEM private key (PKCS#8, or PKCS#1 for RSA), with the
    /// algorithm its kind calls for ([`SigningAlgorithm::of_pem`]).
    pub fn from_pem_key(pem: &[u8]) -> Result<Self> {
        Self::from_pem(pem, SigningAlgorithm::of_pem(pem)?)
    }

    /// A signer from a PEM private key (PKCS#8, or PKCS#1 for RSA) for
    /// `algorithm`. A key of another kind is an error that says which kind it
    /// is and what to use; [`from_pem_key`](Self::from_pem_key) needs no algorithm.
    pub fn from_pem(pem: &[u8], algorithm: SigningAlgorithm) -> Result<Self> {
        if let Ok((found, kind)) = super::key_kind::detect(pem) {
            if found != algorithm {
                return Err(Error::config(format!(
                    "the private key is {kind}, for {}, not {}: use {} (or leave the algorithm out: it follows from the key)",
                    found.name(),
                    algorithm.name(),
                    found.name()
                )));
            }
        }
        let (key, algorithm) = match algorithm {
            SigningAlgorithm::Rs256 => (EncodingKey::from_rsa_pem(pem), Algorithm::RS256),
            SigningAlgorithm::Es256 => (EncodingKey::from_ec_pem(pem), Algorithm::ES256),
            SigningAlgorithm::Es384 => (EncodingKey::from_ec_pem(pem), Algorithm::ES384),
            SigningAlgorithm::EdDsa => (EncodingKey::from_ed_pem(pem), Algorithm::EdDSA),
        };
        let key = key.map_err(|e| {
            Error::config(format!(
                "the private key is not a valid {algorithm:?} PEM key ({e}); give a PKCS#8 PEM file"
            ))
        })?;
        Ok(Self {
            key,
            algorithm,
            key_id: None,
            lifetime: Duration::from_secs(60),
        })
    }

    /// Sets the `kid` header, for servers that hold several of the client's keys.
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// How long each assertion is valid. Defaults to 60 seconds.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// A fresh signed assertion (`iss`, `sub`, `aud`, `iat`, `exp`, unique `jti`).
    pub(crate) fn assertion(
        &self,
        issuer: &str,
        subject: &str,
        audience: &str,
        clock: &dyn Clock,
    ) -> Result<String> {
        let now = clock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = serde_json::json!({
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "exp": now + self.lifetime.as_secs(),
            "jti": format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        });
        let mut header = Header::new(self.algorithm);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Error::config(format!("could not sign the client assertion: {e}")))
    }
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}
