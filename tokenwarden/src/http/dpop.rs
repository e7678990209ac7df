//! DPoP in every adapter: the proof beside the token, and the one replay a
//! resource server's nonce challenge asks for.

use super::TokenPlacement;
use crate::{HeaderRef, Result, TokenManager};
use http::{HeaderMap, HeaderName, Method, StatusCode};
use url::Url;

/// The `DPoP` header.
const DPOP: HeaderName = HeaderName::from_static(crate::dpop::DPOP);

/// Puts the token of `header` into `headers` where `placement` says and, for a
/// DPoP-bound token, a fresh proof for this request (`method` to `url`) in the
/// `DPoP` header, with the nonce the server last gave `manager`'s adapters,
/// dated by `manager`'s clock. A bearer token gets no proof, and a stale proof
/// of an earlier attempt goes.
pub fn authorize(
    placement: &TokenPlacement,
    headers: &mut HeaderMap,
    header: &HeaderRef,
    method: &Method,
    url: &Url,
    manager: &TokenManager,
) -> Result<()> {
    placement.apply(headers, header)?;
    if !header.token().is_dpop() {
        return Ok(());
    }
    let nonce = manager.dpop_nonces().get_for(url);
    let now = manager.clock().now();
    let htu = crate::dpop::htu(url);
    if let Some(proof) = header.dpop_proof(method.as_str(), &htu, nonce.as_deref(), now)? {
        headers.insert(DPOP, proof);
    }
    Ok(())
}

/// After the answer to a request that carried `header` to `url`: remembers the
/// server's new DPoP nonce if it gave one, and says whether the request should
/// be sent again with it (a 401 whose DPoP challenge is `use_dpop_nonce`: the
/// token is fine, and stays). Always `false` for a bearer token.
pub fn wants_nonce(
    header: &HeaderRef,
    url: &Url,
    status: StatusCode,
    headers: &HeaderMap,
    manager: &TokenManager,
) -> bool {
    if !header.token().is_dpop() || crate::dpop::nonce_in(headers).is_none() {
        return false;
    }
    let origin = url.origin().ascii_serialization();
    manager.dpop_nonces().remember(&origin, headers) && crate::dpop::asks_for_nonce(status, headers)
}
