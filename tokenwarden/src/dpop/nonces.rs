//! [`DpopNonces`]: the nonces servers asked DPoP proofs to carry, by origin.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

/// The most origins remembered; past it the oldest readings go all at once
/// (a client talks to a handful of servers; a hostile redirect chain cannot
/// grow this without bound).
const MOST_ORIGINS: usize = 256;

/// The nonces servers gave for DPoP proofs (RFC 9449 §8 and §9), by origin
/// (`https://host:port`): each server's latest, from any of its answers'
/// `DPoP-Nonce` header, put in every proof for it until it gives another.
///
/// A manager holds one for the resource servers its adapters talk to
/// ([`TokenManager::dpop_nonces`](crate::TokenManager::dpop_nonces)); an OAuth2
/// client holds one for its authorization server. Nonces are not secrets,
/// but are not logged either.
#[derive(Default)]
pub struct DpopNonces {
    by_origin: RwLock<HashMap<String, String>>,
}

impl DpopNonces {
    /// The nonce `origin` asked for last, if any.
    pub fn get(&self, origin: &str) -> Option<String> {
        let map = self
            .by_origin
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(origin).cloned()
    }

    /// The nonce the origin of `url` asked for last, if any (without
    /// spelling the origin out while no server asked for one).
    pub fn get_for(&self, url: &url::Url) -> Option<String> {
        let map = (self.by_origin.read()).unwrap_or_else(PoisonError::into_inner);
        if map.is_empty() {
            return None;
        }
        map.get(&url.origin().ascii_serialization()).cloned()
    }

    /// Remembers the nonce of an answer from `origin`, if its headers give a
    /// valid one ([`nonce_in`](super::nonce_in)); returns whether they did.
    pub fn remember(&self, origin: &str, headers: &http::HeaderMap) -> bool {
        let Some(nonce) = super::nonce_in(headers) else {
            return false;
        };
        if self.get(origin).as_deref() == Some(nonce) {
            return true;
        }
        let mut map = self
            .by_origin
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MOST_ORIGINS && !map.contains_key(origin) {
            map.clear();
        }
        map.insert(origin.to_owned(), nonce.to_owned());
        true
    }
}

impl std::fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map = self
            .by_origin
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("DpopNonces")
            .field("origins", &map.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_kept_per_origin_renewed_and_bounded() {
        let nonces = DpopNonces::default();
        let mut headers = http::HeaderMap::new();
        assert!(!nonces.remember("https://a", &headers));
        headers.insert("dpop-nonce", "n1".parse().unwrap());
        assert!(nonces.remember("https://a", &headers));
        assert_eq!(nonces.get("https://a").as_deref(), Some("n1"));
        assert_eq!(nonces.get("https://b"), None);
        headers.insert("dpop-nonce", "n2".parse().unwrap());
        nonces.remember("https://a", &headers);
        assert_eq!(nonces.get("https://a").as_deref(), Some("n2"));
        for i in 0..MOST_ORIGINS * 2 {
            nonces.remember(&format!("https://h{i}"), &headers);
        }
        assert!(nonces.by_origin.read().unwrap().len() <= MOST_ORIGINS);
        assert!(!format!("{nonces:?}").contains("n2"));
    }
}
