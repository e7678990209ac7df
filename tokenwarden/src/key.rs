//! [`TokenKey`]: the name a token is cached and stored under, derived from
//! everything that shaped the token so that a changed scope, client or user never
//! gets a token minted for another.

use sha2::{Digest, Sha256};
use std::fmt;

/// The key of a cached or stored token.
///
/// Built from a readable name and the parts that shaped the token (issuer or token
/// URL, client id, grant, scope, audience, subject...). The parts are hashed, so the
/// key reveals nothing about them and is safe as a file or Redis key name; change any
/// part and the key changes. Never put a secret in a part.
///
/// ```
/// use tokenwarden::TokenKey;
///
/// let a = TokenKey::new("billing-api")
///     .with("token_url", "https://auth.example.com/token")
///     .with("client_id", "svc")
///     .with("scope", "read");
/// let b = TokenKey::new("billing-api")
///     .with("token_url", "https://auth.example.com/token")
///     .with("client_id", "svc")
///     .with("scope", "read write");
/// assert_ne!(a, b);
/// assert!(a.as_str().starts_with("billing-api-"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKey {
    name: String,
    parts: Vec<(String, String)>,
    rendered: String,
}

impl TokenKey {
    /// A key with a readable name and no parts yet.
    pub fn new(name: impl AsRef<str>) -> Self {
        let name = sanitize(name.as_ref());
        let mut key = Self {
            name,
            parts: Vec::new(),
            rendered: String::new(),
        };
        key.render();
        key
    }

    /// Adds a part that shaped the token. Parts are sorted by name before hashing,
    /// so the order of calls does not matter; an empty value is the same as none.
    pub fn with(mut self, part: impl Into<String>, value: impl Into<String>) -> Self {
        let (part, value) = (part.into(), value.into());
        self.parts.retain(|(p, _)| *p != part);
        if !value.is_empty() {
            self.parts.push((part, value));
            self.parts.sort();
        }
        self.render();
        self
    }

    /// The readable name the key starts with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key: `<name>-<16 hex digits>`, characters `[A-Za-z0-9._-]` only.
    pub fn as_str(&self) -> &str {
        &self.rendered
    }

    fn render(&mut self) {
        let mut hasher = Sha256::new();
        hasher.update(self.name.as_bytes());
        for (part, value) in &self.parts {
            // Length prefixes keep ("ab","c") and ("a","bc") apart.
            for field in [part, value] {
                hasher.update((field.len() as u64).to_le_bytes());
                hasher.update(field.as_bytes());
            }
        }
        let digest = hasher.finalize();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        self.rendered = format!("{}-{hex}", self.name);
    }
}

/// Keeps `[A-Za-z0-9._-]`, replaces the rest with `_`, and bounds the length, so the
/// key is a safe file name and never a path.
fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match cleaned.trim_start_matches('.') {
        "" => "token".to_owned(),
        rest => rest.to_owned(),
    }
}

impl fmt::Display for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rendered)
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenKey({})", self.rendered)
    }
}

impl AsRef<str> for TokenKey {
    fn as_ref(&self) -> &str {
        &self.rendered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_changes_the_key_and_order_does_not() {
        let base = TokenKey::new("api")
            .with("client_id", "a")
            .with("scope", "x");
        let same = TokenKey::new("api")
            .with("scope", "x")
            .with("client_id", "a");
        assert_eq!(base, same);
        assert_ne!(
            base,
            TokenKey::new("api")
                .with("client_id", "b")
                .with("scope", "x")
        );
        assert_ne!(
            base,
            TokenKey::new("api")
                .with("client_id", "a")
                .with("scope", "y")
        );
        assert_ne!(
            base,
            TokenKey::new("api")
                .with("client_id", "a")
                .with("scope", "x")
                .with("subject", "u1")
        );
        assert_ne!(
            TokenKey::new("a").with("x", "bc"),
            TokenKey::new("a").with("xb", "c")
        );
    }

    #[test]
    fn key_is_a_safe_file_name() {
        let key = TokenKey::new("../../etc/passwd");
        assert!(!key.as_str().contains('/'), "{key}");
        assert!(!key.as_str().starts_with('.'), "{key}");
        assert!(TokenKey::new("").as_str().starts_with("token-"));
    }
}
