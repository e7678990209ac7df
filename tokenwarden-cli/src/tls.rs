//! A profile's TLS settings for its HTTP clients (the token endpoint's, `curl`'s
//! and the proxy's): the client certificate of mutual TLS (RFC 8705:
//! `tls_client_auth`, certificate-bound tokens), and a CA trusted beside the
//! platform's roots.

use crate::config::Profile;
use tokenwarden::source::oauth2::ClientCertificate;
use tokenwarden::{Error, Result};

/// The profile's client certificate (`client_cert` and `client_key`), if it
/// names one.
pub fn certificate(profile: &Profile) -> Result<Option<ClientCertificate>> {
    match (&profile.client_cert, &profile.client_key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => ClientCertificate::from_pem_files(cert, key).map(Some),
        _ => Err(Error::config(format!(
            "profile `{}`: client_cert and client_key go together",
            profile.name
        ))),
    }
}

/// The CA of `ca_file`, if the profile names one.
pub fn ca(profile: &Profile) -> Result<Option<reqwest::Certificate>> {
    let Some(path) = &profile.ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path)
        .map_err(|e| Error::config(format!("cannot read the ca_file {}: {e}", path.display())))?;
    reqwest::Certificate::from_pem(&pem).map(Some).map_err(|e| {
        Error::config(format!(
            "the ca_file {} is not a PEM certificate: {e}",
            path.display()
        ))
    })
}

/// `builder` with the profile's client certificate and CA.
pub fn apply(profile: &Profile, builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder> {
    let mut builder = builder;
    if let Some(certificate) = certificate(profile)? {
        builder = builder.identity(certificate.identity());
    }
    if let Some(ca) = ca(profile)? {
        builder = builder.add_root_certificate(ca);
    }
    Ok(builder)
}
