//! [`ClientCertificate`]: the client's TLS certificate and key (RFC 8705), for
//! mutual-TLS client authentication at the token endpoint and for
//! certificate-bound access tokens, presented with the same certificate to the
//! API.

use crate::{Error, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use std::path::Path;

/// A client certificate (the leaf first, then any intermediates) and its
/// private key, read from PEM.
///
/// Give it to the OAuth2 client
/// ([`client_certificate`](super::OAuth2ClientBuilder::client_certificate)) for
/// `tls_client_auth` or `self_signed_tls_client_auth`, or for tokens the server
/// binds to the certificate; give the API's HTTP client the same
/// ([`identity`](Self::identity)), since a certificate-bound token is taken only
/// over a connection made with it.
///
/// `Debug` shows the certificate's thumbprint, never the key.
#[derive(Clone)]
pub struct ClientCertificate {
    identity: reqwest::Identity,
    thumbprint: String,
}

impl ClientCertificate {
    /// From PEM: `certificates` holds one or more `CERTIFICATE` blocks (the
    /// client's first), `key` its private key (`PRIVATE KEY`, `EC PRIVATE KEY`
    /// or `RSA PRIVATE KEY`).
    pub fn from_pem(certificates: &[u8], key: &[u8]) -> Result<Self> {
        let blocks = pem::parse_many(certificates).map_err(|_| {
            Error::config("the client certificate is not PEM (-----BEGIN CERTIFICATE-----)")
        })?;
        let leaf = blocks
            .iter()
            .find(|block| block.tag() == "CERTIFICATE")
            .ok_or_else(|| Error::config("the client certificate file holds no CERTIFICATE"))?;
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(leaf.contents()));
        // The error says which, never the key.
        let keys = pem::parse_many(key)
            .map_err(|_| Error::config("the client certificate's key is not PEM"))?;
        // Its key only (a combined file's certificate would come before the
        // client's, and be presented instead), then the certificates in order.
        let key = (keys.into_iter())
            .find(|k| k.tag().ends_with("PRIVATE KEY"))
            .ok_or_else(|| {
                Error::config("the client certificate's key file holds no PRIVATE KEY")
            })?;
        let mut both = zeroize::Zeroizing::new(pem::encode(&key).into_bytes());
        drop(key);
        both.push(b'\n');
        for block in blocks.iter().filter(|block| block.tag() == "CERTIFICATE") {
            both.extend_from_slice(pem::encode(block).as_bytes());
        }
        let identity = reqwest::Identity::from_pem(&both)
            .map_err(|e| Error::config(format!("the client certificate cannot be used: {e}")))?;
        Ok(Self {
            identity,
            thumbprint,
        })
    }

    /// From two PEM files, as [`from_pem`](Self::from_pem) reads them.
    pub fn from_pem_files(certificates: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path).map_err(|e| {
                Error::config(format!("cannot read the {what} {}: {e}", path.display()))
            })
        };
        let key = zeroize::Zeroizing::new(read(key.as_ref(), "client certificate's key")?);
        Self::from_pem(&read(certificates.as_ref(), "client certificate")?, &key)
    }

    /// The certificate and key for a reqwest client
    /// (`reqwest::ClientBuilder::identity`): the API's client must present the
    /// same certificate as the token endpoint saw.
    pub fn identity(&self) -> reqwest::Identity {
        self.identity.clone()
    }

    /// The certificate's SHA-256 thumbprint, base64url (`x5t#S256`, what a
    /// server binds a token to: `cnf`). Not a secret.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t#S256", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

/// `builder` presenting `certificate`, if there is one.
pub(crate) fn presenting(
    builder: reqwest::ClientBuilder,
    certificate: Option<&ClientCertificate>,
) -> reqwest::ClientBuilder {
    match certificate {
        Some(certificate) => builder.identity(certificate.identity()),
        None => builder,
    }
}
