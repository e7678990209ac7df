//! Authorization server metadata: OpenID Connect discovery
//! (`/.well-known/openid-configuration`), and RFC 8414
//! (`/.well-known/oauth-authorization-server`) where that is all the server has
//! or where it names endpoints the OpenID document does not.

use super::client::{secure_url, OAuth2Client};
use super::response::excerpt;
use crate::{Error, Result};
use serde::Deserialize;
use url::Url;

/// What a server says about itself: the endpoints tokenwarden uses.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct ProviderMetadata {
    /// The issuer identifier; must equal the configured issuer.
    pub issuer: String,
    /// The token endpoint.
    pub token_endpoint: Url,
    /// The authorization endpoint (authorization code grant).
    #[serde(default)]
    pub authorization_endpoint: Option<Url>,
    /// The device authorization endpoint (RFC 8628).
    #[serde(default)]
    pub device_authorization_endpoint: Option<Url>,
    /// The revocation endpoint (RFC 7009).
    #[serde(default)]
    pub revocation_endpoint: Option<Url>,
    /// Where the issuer publishes the keys its ID tokens are signed with.
    #[serde(default)]
    pub jwks_uri: Option<Url>,
    /// The grant types the server supports, if it says.
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    /// Whether the server names itself (`iss`) in its authorization responses
    /// (RFC 9207); then a response without `iss` is refused.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// The endpoints a client that presents a TLS certificate uses instead
    /// (RFC 8705 §5), where they differ.
    #[serde(default)]
    pub mtls_endpoint_aliases: MtlsEndpointAliases,
}

/// The mutual-TLS aliases of the endpoints tokenwarden uses (RFC 8705 §5): a
/// client with a [`ClientCertificate`](super::ClientCertificate) sends its
/// requests to these, where named.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[non_exhaustive]
pub struct MtlsEndpointAliases {
    /// The token endpoint.
    #[serde(default)]
    pub token_endpoint: Option<Url>,
    /// The revocation endpoint.
    #[serde(default)]
    pub revocation_endpoint: Option<Url>,
    /// The device authorization endpoint.
    #[serde(default)]
    pub device_authorization_endpoint: Option<Url>,
}

impl ProviderMetadata {
    /// Whether an endpoint tokenwarden may use is not named.
    fn lacks_an_endpoint(&self) -> bool {
        self.authorization_endpoint.is_none()
            || self.device_authorization_endpoint.is_none()
            || self.revocation_endpoint.is_none()
            || self.jwks_uri.is_none()
    }

    /// Takes from `other` (another document of the same issuer, checked) each
    /// endpoint this one does not name, if it lies under `issuer` (its origin,
    /// and its path): the RFC 8414 document of an issuer with a path is served
    /// from the host's root, which on a shared host another application may
    /// answer, naming the issuer it copied and endpoints of its own.
    fn fill_from(&mut self, other: ProviderMetadata, issuer: &Url) {
        let prefix = issuer.path().trim_end_matches('/');
        let under = |url: &Url| {
            url.origin() == issuer.origin()
                && (url.path() == prefix || url.path().starts_with(&format!("{prefix}/")))
        };
        let fill = |mine: &mut Option<Url>, theirs: Option<Url>| {
            if mine.is_none() {
                *mine = theirs.filter(under);
            }
        };
        fill(
            &mut self.authorization_endpoint,
            other.authorization_endpoint,
        );
        fill(
            &mut self.device_authorization_endpoint,
            other.device_authorization_endpoint,
        );
        fill(&mut self.revocation_endpoint, other.revocation_endpoint);
        fill(&mut self.jwks_uri, other.jwks_uri);
        if self.grant_types_supported.is_empty() {
            self.grant_types_supported = other.grant_types_supported;
        }
    }

    /// Every endpoint the document names.
    pub(crate) fn endpoints(&self) -> impl Iterator<Item = &Url> {
        [
            Some(&self.token_endpoint),
            self.authorization_endpoint.as_ref(),
            self.device_authorization_endpoint.as_ref(),
            self.revocation_endpoint.as_ref(),
            self.jwks_uri.as_ref(),
            self.mtls_endpoint_aliases.token_endpoint.as_ref(),
            self.mtls_endpoint_aliases.revocation_endpoint.as_ref(),
            self.mtls_endpoint_aliases
                .device_authorization_endpoint
                .as_ref(),
        ]
        .into_iter()
        .flatten()
    }
}

const OPENID: &str = ".well-known/openid-configuration";
const OAUTH: &str = ".well-known/oauth-authorization-server";

/// Fetches the metadata of `issuer` (configured as `issuer_id`): OpenID
/// discovery first, RFC 8414 on a 404. Where the OpenID document lacks an
/// endpoint, the RFC 8414 one is read too and fills it in (some servers name
/// their revocation or device endpoint only there), if it names the same issuer
/// and passes the same checks, and only with endpoints under the issuer (its
/// origin and path); an RFC 8414 document that is missing, unreadable or for
/// another issuer adds nothing.
pub(crate) async fn fetch(
    client: &OAuth2Client,
    issuer: &Url,
    issuer_id: &str,
) -> Result<ProviderMetadata> {
    let name = client.name();
    let (mut metadata, openid) = match document(client, issuer, issuer_id, OPENID).await? {
        Some(openid) => (openid, true),
        None => match document(client, issuer, issuer_id, OAUTH).await? {
            Some(oauth) => (oauth, false),
            None => {
                return Err(Error::config(format!(
                    "`{issuer}` publishes no metadata (HTTP 404 at both {OPENID} and {OAUTH}); \
                     is it the issuer? Otherwise configure the token_url"
                )))
            }
        },
    };
    if openid && metadata.lacks_an_endpoint() {
        match document(client, issuer, issuer_id, OAUTH).await {
            Ok(Some(oauth)) => metadata.fill_from(oauth, issuer),
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(client = %name, "the RFC 8414 document adds nothing: {error}")
            }
        }
    }
    tracing::debug!(issuer = %metadata.issuer, token_endpoint = %metadata.token_endpoint, "discovered the authorization server");
    Ok(metadata)
}

/// The metadata document at `well_known` for `issuer`, checked; `None` on a 404.
async fn document(
    client: &OAuth2Client,
    issuer: &Url,
    issuer_id: &str,
    well_known: &str,
) -> Result<Option<ProviderMetadata>> {
    let name = client.name();
    let url = metadata_url(issuer, well_known)?;
    let answer = client.get_retried(&url).await?;
    if answer.status == 404 {
        return Ok(None);
    }
    if !(200..300).contains(&answer.status) {
        return Err(super::response::status_error(name, &answer));
    }
    let metadata: ProviderMetadata = serde_json::from_slice(&answer.body).map_err(|e| {
        Error::invalid_response(
            name,
            format!("the discovery document at {url} is not valid metadata: {e}"),
        )
        .with_status(answer.status)
    })?;
    check(name, issuer_id, &metadata)?;
    Ok(Some(metadata))
}

/// RFC 8414 §3: the well-known part goes between the host and the issuer's path.
fn metadata_url(issuer: &Url, well_known: &str) -> Result<Url> {
    let path = issuer.path().trim_end_matches('/');
    let mut url = issuer.clone();
    if well_known == OPENID {
        url.set_path(&format!("{path}/{well_known}"));
    } else {
        url.set_path(&format!("/{well_known}{path}"));
    }
    Ok(url)
}

/// The issuer must be the very string configured (RFC 8414 §3.3, OpenID
/// Discovery §4.3: identical, not merely equivalent; mix-up protection), and every
/// endpoint secure: https, or http on loopback for a loopback issuer only (a
/// remote server's document must not point the client at this machine).
pub(crate) fn check(name: &str, issuer_id: &str, metadata: &ProviderMetadata) -> Result<()> {
    if metadata.issuer != issuer_id {
        return Err(Error::invalid_response(
            name,
            format!(
                "the discovery document names issuer {} instead of {issuer_id}; refusing it \
                 (issuers must be identical strings: configure exactly the one it names if it is yours)",
                excerpt(metadata.issuer.as_bytes())
            ),
        ));
    }
    let local_issuer = Url::parse(issuer_id).is_ok_and(|url| crate::http::is_loopback(&url));
    for endpoint in metadata.endpoints() {
        secure_url(endpoint.as_str(), "a discovered endpoint")?;
        if endpoint.scheme() == "http" && !local_issuer {
            return Err(Error::invalid_response(
                name,
                format!(
                    "the discovery document of {issuer_id} names the endpoint {} on this machine \
                     over plain http; only a loopback issuer may",
                    excerpt(endpoint.as_str().as_bytes())
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(issuer: &str, token_endpoint: &str) -> ProviderMetadata {
        serde_json::from_value(serde_json::json!({
            "issuer": issuer,
            "token_endpoint": token_endpoint,
        }))
        .unwrap()
    }

    #[test]
    fn issuers_must_be_identical_strings() {
        let doc = metadata(
            "https://auth.example.com/",
            "https://auth.example.com/token",
        );
        assert!(check("t", "https://auth.example.com/", &doc).is_ok());
        let error = check("t", "https://auth.example.com", &doc).unwrap_err();
        assert!(error.to_string().contains("identical"), "{error}");
    }

    #[test]
    fn only_a_loopback_issuer_may_name_loopback_http_endpoints() {
        let remote = metadata("https://auth.example.com", "http://127.0.0.1:9/token");
        let error = check("t", "https://auth.example.com", &remote).unwrap_err();
        assert!(
            error.to_string().contains("only a loopback issuer may"),
            "{error}"
        );
        let local = metadata("http://127.0.0.1:8", "http://127.0.0.1:9/token");
        assert!(check("t", "http://127.0.0.1:8", &local).is_ok());
    }

    #[test]
    fn well_known_urls_follow_the_specs() {
        let issuer = Url::parse("https://auth.example.com/tenant1").unwrap();
        assert_eq!(
            metadata_url(&issuer, OPENID).unwrap().as_str(),
            "https://auth.example.com/tenant1/.well-known/openid-configuration"
        );
        assert_eq!(
            metadata_url(&issuer, OAUTH).unwrap().as_str(),
            "https://auth.example.com/.well-known/oauth-authorization-server/tenant1"
        );
        let root = Url::parse("https://auth.example.com").unwrap();
        assert_eq!(
            metadata_url(&root, OPENID).unwrap().as_str(),
            "https://auth.example.com/.well-known/openid-configuration"
        );
    }
}
