//! What the helpers' tests stand in for a resource server with: the real
//! authorization server's introspection (is this token live?) and revocation
//! (make it not), and an HTTPS server of our own certificate.

use crate::oidc::Oidc;
use crate::tls_redis::Pki;
use std::net::SocketAddr;
use std::sync::Arc;

/// The client the tests' profiles use (a confidential client of the server).
const CLIENT: (&str, &str) = ("cc-basic", "cc-basic-TOPSECRET");

/// Whether the authorization server says `token` is live (RFC 7662).
pub async fn active(oidc: &Oidc, token: &str) -> bool {
    let response = reqwest::Client::new()
        .post(format!("{}/token/introspection", oidc.issuer))
        .basic_auth(CLIENT.0, Some(CLIENT.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    body["active"] == true
}

/// Revokes `token` at the authorization server (RFC 7009).
pub async fn revoke(oidc: &Oidc, token: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/token/revocation", oidc.issuer))
        .basic_auth(CLIENT.0, Some(CLIENT.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert!(!active(oidc, token).await);
}

/// Serves `app` over HTTPS on 127.0.0.1 with a certificate `pki` issued for
/// `127.0.0.1` and `localhost`.
pub async fn serve_tls(pki: &Pki, app: axum::Router) -> SocketAddr {
    let (cert, key) = pki.issue(&["127.0.0.1", "localhost"]);
    let certs: Vec<_> = rustls_pemfile(&cert);
    let key = {
        use tokio_rustls::rustls::pki_types::pem::PemObject as _;
        tokio_rustls::rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap()
    };
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    address
}

fn rustls_pemfile(pem: &str) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(Result::unwrap)
        .collect()
}
