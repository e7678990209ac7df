//! A resource server that takes certificate-bound tokens only (RFC 8705 §3):
//! over TLS, it asks each client for a certificate (any, self-signed ones
//! included: the token says which), and takes a token only if the authorization
//! server says it is live and bound to the certificate the connection was made
//! with (introspection: `cnf` `x5t#S256`). Refusals are counted with their reason.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use std::sync::{Arc, Mutex};
use tokio_rustls::rustls;

/// The client certificate's thumbprint of a connection (`x5t#S256`), if it sent one.
#[derive(Clone)]
struct Presented(Option<String>);

/// What the server counts.
#[derive(Default)]
pub struct Checks {
    issuer: String,
    pub served: Mutex<u32>,
    pub refusals: Mutex<Vec<String>>,
}

impl Checks {
    pub fn new(issuer: &str) -> Arc<Self> {
        Arc::new(Checks {
            issuer: issuer.to_owned(),
            ..Checks::default()
        })
    }

    pub fn served(&self) -> u32 {
        *self.served.lock().unwrap()
    }

    pub fn refusals(&self) -> Vec<String> {
        self.refusals.lock().unwrap().clone()
    }
}

async fn guard(State(checks): State<Arc<Checks>>, request: Request, next: Next) -> Response {
    let presented = request.extensions().get::<Presented>().cloned();
    let token = (request.headers().get("authorization"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    match check(&checks, presented.and_then(|p| p.0), token).await {
        Ok(()) => {
            *checks.served.lock().unwrap() += 1;
            next.run(request).await
        }
        Err(why) => {
            checks.refusals.lock().unwrap().push(why);
            StatusCode::UNAUTHORIZED.into_response()
        }
    }
}

async fn check(
    checks: &Checks,
    presented: Option<String>,
    token: Option<String>,
) -> Result<(), String> {
    let token = token.ok_or("no bearer token")?;
    let presented = presented.ok_or("no client certificate")?;
    let said = crate::oidc::introspect(&checks.issuer, &token).await?;
    if said["active"] != true {
        return Err("the token is not active".into());
    }
    if said["cnf"]["x5t#S256"] != presented.as_str() {
        return Err("the token is bound to another certificate".into());
    }
    Ok(())
}

/// Asks for a client certificate and takes any: whose it is, the token says.
/// The handshake's signature still proves the client holds its key.
#[derive(Debug)]
struct AnyClientCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::server::danger::ClientCertVerifier for AnyClientCertificate {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        false // a request without one is refused in HTTP, where the test sees why
    }

    fn verify_client_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Serves `app` behind the checks over TLS on 127.0.0.1, with a certificate of
/// `pki` for 127.0.0.1; its base URL (`https://127.0.0.1:port`).
pub async fn serve(pki: &crate::pki::Pki, checks: Arc<Checks>, app: axum::Router) -> String {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = pki.issue(&["127.0.0.1", "localhost"]);
    let certs: Vec<_> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(Arc::new(AnyClientCertificate(provider)))
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = app.layer(axum::middleware::from_fn_with_state(checks, guard));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
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
                let presented = (tls.get_ref().1.peer_certificates())
                    .and_then(|chain| chain.first())
                    .map(|leaf| URL_SAFE_NO_PAD.encode(Sha256::digest(leaf.as_ref())));
                let app = app.layer(axum::Extension(Presented(presented)));
                let service = hyper_util::service::TowerToHyperService::new(app);
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    base
}
