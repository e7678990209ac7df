//! A resource server that takes DPoP-bound tokens only (RFC 9449 §7), checked
//! with a JOSE library of its own (jsonwebtoken, RustCrypto), not with
//! tokenwarden's code: the proof's type, algorithm and signature against the
//! key in its header, `htm`, `htu` (this server's URI of the request, without
//! query), `iat` (within a minute), a `jti` never seen before, `ath` (the hash of
//! the token sent), the server's nonce when it asks for one; then the token
//! itself at the authorization server (introspection): live, DPoP-bound, and
//! bound to the proof's key (`cnf.jkt`).
//!
//! A middleware, so that it guards any router: plain handlers, or a tonic
//! service's routes. Refusals are counted with their reason.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// The server's state, shared with its tests.
#[derive(Default)]
pub struct Checks {
    issuer: String,
    seen: Mutex<HashSet<String>>,
    /// The nonce it asks for, if it asks for one.
    nonce: Mutex<Option<String>>,
    nonces_made: Mutex<u32>,
    /// Requests served, nonce challenges sent, refusals with their reason.
    pub served: Mutex<u32>,
    /// Every proof received (the tests watch them: none may be logged).
    pub proofs: Mutex<Vec<String>>,
    pub challenges: Mutex<u32>,
    pub refusals: Mutex<Vec<String>>,
}

impl Checks {
    /// Checks against the authorization server at `issuer`; with
    /// `require_nonce`, proofs must carry the server's current nonce.
    pub fn new(issuer: &str, require_nonce: bool) -> Arc<Self> {
        let checks = Arc::new(Checks {
            issuer: issuer.to_owned(),
            ..Checks::default()
        });
        if require_nonce {
            checks.rotate_nonce();
        }
        checks
    }

    /// Makes a new nonce (the old one is refused from now on).
    pub fn rotate_nonce(&self) {
        let mut made = self.nonces_made.lock().unwrap();
        *made += 1;
        *self.nonce.lock().unwrap() = Some(format!("rs-nonce-{}", *made));
    }

    pub fn served(&self) -> u32 {
        *self.served.lock().unwrap()
    }

    pub fn challenges(&self) -> u32 {
        *self.challenges.lock().unwrap()
    }

    pub fn refusals(&self) -> Vec<String> {
        self.refusals.lock().unwrap().clone()
    }

    pub fn proofs(&self) -> Vec<String> {
        self.proofs.lock().unwrap().clone()
    }
}

/// Why a request is refused.
enum Refusal {
    /// The proof lacks the current nonce: a `use_dpop_nonce` challenge.
    Nonce,
    /// Anything else.
    Invalid(String),
}

/// The middleware: passes a request on only with a valid proof and a live token
/// bound to its key.
pub async fn guard(State(checks): State<Arc<Checks>>, request: Request, next: Next) -> Response {
    // Owned: a request's body is not `Sync`, and the checks wait.
    let (method, uri) = (request.method().clone(), request.uri().clone());
    match check(&checks, &method, &uri, request.headers().clone()).await {
        Ok(()) => {
            *checks.served.lock().unwrap() += 1;
            next.run(request).await
        }
        Err(Refusal::Nonce) => {
            *checks.challenges.lock().unwrap() += 1;
            let nonce = checks.nonce.lock().unwrap().clone().unwrap_or_default();
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            let headers = response.headers_mut();
            headers.insert(
                "www-authenticate",
                HeaderValue::from_static(
                    r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
                ),
            );
            headers.insert("dpop-nonce", HeaderValue::from_str(&nonce).unwrap());
            response
        }
        Err(Refusal::Invalid(why)) => {
            checks.refusals.lock().unwrap().push(why);
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static(r#"DPoP error="invalid_token", algs="ES256 EdDSA RS256""#),
            );
            response
        }
    }
}

async fn check(
    checks: &Checks,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: HeaderMap,
) -> Result<(), Refusal> {
    let invalid = |why: &str| Refusal::Invalid(why.to_owned());
    let headers = &headers;
    let token = one(headers, "authorization")?
        .strip_prefix("DPoP ")
        .ok_or_else(|| invalid("not a DPoP authorization"))?
        .to_owned();
    let proof = one(headers, "dpop")?;
    checks.proofs.lock().unwrap().push(proof.clone());
    let header =
        jsonwebtoken::decode_header(&proof).map_err(|e| invalid(&format!("header: {e}")))?;
    if header.typ.as_deref() != Some("dpop+jwt") {
        return Err(invalid("typ is not dpop+jwt"));
    }
    if ![Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256].contains(&header.alg) {
        return Err(invalid("algorithm not taken"));
    }
    let jwk = header.jwk.ok_or_else(|| invalid("no jwk in the header"))?;
    if serde_json::to_value(&jwk).unwrap().get("d").is_some() {
        return Err(invalid("a private key in the header"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| invalid(&format!("jwk: {e}")))?;
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(&proof, &key, &validation)
        .map_err(|e| invalid(&format!("signature: {e}")))?
        .claims;
    if claims["htm"] != method.as_str() {
        return Err(invalid("htm"));
    }
    let authority = (uri.authority().map(|a| a.to_string()))
        .or_else(|| headers.get("host")?.to_str().ok().map(str::to_owned))
        .unwrap_or_default();
    let htu = format!("http://{authority}{}", uri.path());
    if claims["htu"] != htu.as_str() {
        return Err(invalid(&format!("htu {} is not {htu}", claims["htu"])));
    }
    let now = tokenwarden::Clock::now(&tokenwarden::SystemClock)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let iat = claims["iat"].as_u64().ok_or_else(|| invalid("no iat"))?;
    if now.abs_diff(iat) > Duration::from_secs(60).as_secs() {
        return Err(invalid("iat too far from now"));
    }
    let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
    if claims["ath"] != ath.as_str() {
        return Err(invalid("ath is not the token's hash"));
    }
    let jti = claims["jti"].as_str().ok_or_else(|| invalid("no jti"))?;
    if jti.len() < 16 || !checks.seen.lock().unwrap().insert(jti.to_owned()) {
        return Err(invalid("a jti seen before (a proof replayed)"));
    }
    let wanted = checks.nonce.lock().unwrap().clone();
    if wanted.is_some() && claims["nonce"].as_str() != wanted.as_deref() {
        return Err(Refusal::Nonce);
    }
    // The token: live, DPoP-bound, bound to this key.
    let introspected = crate::oidc::introspect(&checks.issuer, &token)
        .await
        .map_err(|e| invalid(&format!("introspection: {e}")))?;
    if introspected["active"] != true {
        return Err(invalid("the token is not active"));
    }
    if introspected["token_type"] != "DPoP" {
        return Err(invalid("the token is not DPoP-bound"));
    }
    let thumbprint = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| invalid(&format!("thumbprint: {e}")))?;
    if introspected["cnf"]["jkt"] != thumbprint.as_str() {
        return Err(invalid("the token is bound to another key"));
    }
    Ok(())
}

/// The one value of header `name`.
fn one(headers: &HeaderMap, name: &str) -> Result<String, Refusal> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value
            .to_str()
            .map(str::to_owned)
            .map_err(|_| Refusal::Invalid(format!("{name} is not text"))),
        (None, _) => Err(Refusal::Invalid(format!("no {name} header"))),
        _ => Err(Refusal::Invalid(format!("more than one {name} header"))),
    }
}

/// Serves `app` behind the checks on 127.0.0.1; its base URL.
pub async fn serve(checks: Arc<Checks>, app: axum::Router) -> String {
    let app = app.layer(axum::middleware::from_fn_with_state(checks, guard));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}
