//! Mutual TLS (RFC 8705) against the real OpenID provider's mutual-TLS
//! listener: `tls_client_auth` (a certificate of the tests' CA) and
//! `self_signed_tls_client_auth`, at the endpoints its discovery names in
//! `mtls_endpoint_aliases`; tokens bound to the certificate, taken by a resource
//! server only over a connection made with the same certificate.

use crate::common::*;
use crate::mtls_resource::{self as resource, Checks};
use crate::oidc::{self, Oidc};
use tokenwarden::source::oauth2::{ClientAuth, ClientCertificate, OAuth2Client};
use tokenwarden::TokenManager;

/// An HTTP client that trusts the tests' CA and presents `certificate`.
fn http(oidc: &Oidc, certificate: Option<&ClientCertificate>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(oidc.mtls.pki.ca.as_bytes()).unwrap();
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(certificate) = certificate {
        builder = builder.identity(certificate.identity());
    }
    builder.build().unwrap()
}

fn client(
    oidc: &Oidc,
    id: &str,
    auth: ClientAuth,
    certificate: &ClientCertificate,
) -> OAuth2Client {
    OAuth2Client::builder()
        .issuer(&oidc.issuer)
        .client_id(id)
        .auth(auth)
        .client_certificate(certificate.clone())
        .http_client(http(oidc, Some(certificate)))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_clients_get_tokens_bound_to_their_certificate() {
    let _h = harness();
    let Some(oidc) = oidc::server() else { return };
    let checks = Checks::new(&oidc.issuer);
    let app = axum::Router::new().route("/v1/items", axum::routing::get(|| async { "items" }));
    let base = resource::serve(&oidc.mtls.pki, checks.clone(), app).await;
    let (pki, self_signed) = (&oidc.mtls.pki_client, &oidc.mtls.self_client);
    let pki = ClientCertificate::from_pem(pki.0.as_bytes(), pki.1.as_bytes()).unwrap();
    let self_signed =
        ClientCertificate::from_pem(self_signed.0.as_bytes(), self_signed.1.as_bytes()).unwrap();
    for (id, auth, certificate) in [
        ("mtls-pki", ClientAuth::TlsClientAuth, &pki),
        (
            "mtls-self",
            ClientAuth::SelfSignedTlsClientAuth,
            &self_signed,
        ),
    ] {
        let client = client(oidc, id, auth, certificate);
        // The discovered alias, on the mutual-TLS listener.
        let token_url = client.token_url().await.unwrap();
        assert!(
            token_url.as_str().starts_with(&oidc.mtls.base),
            "{id}: {token_url}"
        );
        let manager = TokenManager::builder(client.client_credentials().scope("read"))
            .listener(watching())
            .build()
            .unwrap();
        let header = manager.header().await.unwrap();
        let token = header.token().access_token.secret().to_owned();
        let said = oidc::introspect(&oidc.issuer, &token).await.unwrap();
        assert_eq!(
            said["cnf"]["x5t#S256"],
            certificate.thumbprint(),
            "{id}: {said}"
        );

        // With the same certificate: taken. With another, or none: refused.
        let url = format!("{base}/v1/items");
        let with = |presenting: Option<&ClientCertificate>| {
            let request = http(oidc, presenting)
                .get(&url)
                .header("authorization", &*header);
            async move { request.send().await.unwrap().status().as_u16() }
        };
        assert_eq!(
            with(Some(certificate)).await,
            200,
            "{id}: {:?}",
            checks.refusals()
        );
        let other = if std::ptr::eq(certificate, &pki) {
            &self_signed
        } else {
            &pki
        };
        assert_eq!(with(Some(other)).await, 401, "{id}");
        assert_eq!(with(None).await, 401, "{id}");
        let refusals = checks.refusals();
        assert!(
            refusals.ends_with(&[
                "the token is bound to another certificate".to_owned(),
                "no client certificate".to_owned()
            ]),
            "{id}: {refusals:?}"
        );
        let debug = format!("{certificate:?} {client:?}");
        assert!(
            debug.contains(certificate.thumbprint()) && !debug.contains("PRIVATE"),
            "{debug}"
        );
    }
    assert_eq!(checks.served(), 2);
}

#[test]
fn a_mutual_tls_client_without_its_certificate_or_with_a_wrong_key_is_a_config_error() {
    let error = OAuth2Client::builder()
        .token_url("https://auth.example.com/token")
        .client_id("svc")
        .auth(ClientAuth::TlsClientAuth)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("client_certificate"), "{error}");
    let pki = crate::pki::Pki::new("a CA");
    let (cert, _) = pki.issue(&["svc.example"]);
    let (_, other_key) = pki.issue(&["other.example"]);
    // A key that is not the certificate's: refused when the client is built.
    let mismatched = ClientCertificate::from_pem(cert.as_bytes(), other_key.as_bytes()).unwrap();
    let error = OAuth2Client::builder()
        .token_url("https://auth.example.com/token")
        .client_id("svc")
        .auth(ClientAuth::TlsClientAuth)
        .client_certificate(mismatched)
        .build()
        .unwrap_err();
    assert!(!error.to_string().contains("PRIVATE KEY-----"), "{error}");
    for (certs, key) in [("not pem", other_key.as_str()), (cert.as_str(), "not pem")] {
        let error = ClientCertificate::from_pem(certs.as_bytes(), key.as_bytes()).unwrap_err();
        assert_eq!(error.kind(), tokenwarden::ErrorKind::Config, "{error}");
    }
}
