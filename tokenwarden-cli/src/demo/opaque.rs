//! Opaque random strings for the demo's secrets and tokens, and the base64 of the
//! client's Basic credentials (the CLI has no base64 or random crate of its own).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// 32 unpredictable bytes as 64 hex digits: SipHash under the process's randomly
/// seeded keys (std's `RandomState`) over a counter. Not a CSPRNG, which a demo
/// whose tokens live seconds on loopback does not need.
pub fn opaque() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let keys = RandomState::new();
    (0..4)
        .map(|_| {
            let mut hasher = keys.build_hasher();
            hasher.write_u64(COUNTER.fetch_add(1, Relaxed));
            format!("{:016x}", hasher.finish())
        })
        .collect()
}

/// Standard base64 with padding (RFC 4648 §4), for the Basic credentials.
pub fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(text.len().div_ceil(3) * 4);
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        let cases = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v")];
        for (plain, encoded) in cases.into_iter().chain([("foobar", "Zm9vYmFy")]) {
            assert_eq!(base64(plain), encoded, "{plain}");
        }
    }

    #[test]
    fn opaque_strings_are_64_hex_digits_and_differ() {
        let (a, b) = (opaque(), opaque());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
    }
}
