//! [`TokenCipher`]: tokens sealed for storage with XChaCha20-Poly1305 (feature
//! `encryption`), the scheme of the file store, open to any other store.
//!
//! Sealed format, version 1: `TWTK` magic, a version byte, a 24-byte random nonce,
//! then the token's JSON sealed with XChaCha20-Poly1305. The magic, the version and
//! the entry's name are the associated data, so a value copied under another name,
//! or tampered with, does not open.

use crate::{Error, Result, Token};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"TWTK";
/// The format this code writes.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = MAGIC.len() + 1 + NONCE_LEN;
const TAG_LEN: usize = 16;

/// Seals tokens with a 32-byte data key: a fresh random nonce per seal, the entry's
/// name bound in as associated data.
///
/// ```
/// use tokenwarden::store::TokenCipher;
/// use tokenwarden::Token;
///
/// let cipher = TokenCipher::new([7; 32]);
/// let sealed = cipher.seal("billing:api", &Token::new("t0ken")).unwrap();
/// assert_eq!(cipher.open("billing:api", &sealed).unwrap().access_token.secret(), "t0ken");
/// assert!(cipher.open("another-entry", &sealed).is_err());
/// ```
#[derive(Clone)]
pub struct TokenCipher {
    key: Zeroizing<[u8; 32]>,
}

/// Why sealed bytes did not give a token back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The bytes are not a sealed token (another program's data).
    #[error("it is not a sealed tokenwarden token")]
    NotSealed,
    /// The bytes are cut short.
    #[error("it is truncated")]
    Truncated,
    /// Sealed by a newer tokenwarden, in a format this one does not know.
    #[error("it was written by a newer tokenwarden (format {0}); upgrade tokenwarden")]
    FutureVersion(u8),
    /// Another key sealed it, or it was altered, or copied from another entry.
    #[error("it does not decrypt with this key (another key, another entry's copy, or altered)")]
    Undecryptable,
    /// It decrypts, but what is inside is not a token.
    #[error("it decrypts but holds no token")]
    NotAToken,
}

impl TokenCipher {
    /// A cipher with this data key. Get the 32 bytes from a secret manager or a
    /// random source (`openssl rand 32`), not from a password: for that, use
    /// [`from_passphrase`](Self::from_passphrase).
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key: Zeroizing::new(key),
        }
    }

    /// A cipher whose key is derived from `passphrase` and `salt` (at least 8
    /// bytes, kept with the data) with argon2id.
    pub fn from_passphrase(passphrase: &str, salt: &[u8]) -> Result<Self> {
        let mut key = Zeroizing::new([0u8; 32]);
        argon2::Argon2::default()
            .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
            .map_err(|e| {
                Error::config(format!(
                    "could not derive a key from the passphrase: {e}; give a salt of 8 bytes or more"
                ))
            })?;
        Ok(Self { key })
    }

    /// Seals `token` for the entry `entry`.
    pub fn seal(&self, entry: &str, token: &Token) -> Result<Vec<u8>> {
        let json = Zeroizing::new(
            serde_json::to_vec(token)
                .map_err(|e| Error::config(format!("could not encode the token: {e}")))?,
        );
        self.seal_bytes(entry, &json)
    }

    /// Seals any bytes as a token's JSON would be; the fuzz targets use it to
    /// reach the decoder behind the AEAD with inputs of their choosing.
    pub(crate) fn seal_bytes(&self, entry: &str, json: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::config(format!("no randomness from the operating system: {e}")))?;
        let mut out = Vec::with_capacity(HEADER_LEN + json.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        let sealed = self
            .aead()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: json,
                    aad: &associated_data(VERSION, entry),
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens bytes sealed by [`seal`](Self::seal) for the entry `entry`.
    pub fn open(&self, entry: &str, sealed: &[u8]) -> std::result::Result<Token, OpenError> {
        if sealed.len() < MAGIC.len() + 1 || &sealed[..MAGIC.len()] != MAGIC {
            return Err(OpenError::NotSealed);
        }
        let version = sealed[MAGIC.len()];
        if version > VERSION {
            return Err(OpenError::FutureVersion(version));
        }
        if sealed.len() < HEADER_LEN + TAG_LEN {
            return Err(OpenError::Truncated);
        }
        let plaintext = Zeroizing::new(
            self.aead()
                .decrypt(
                    XNonce::from_slice(&sealed[MAGIC.len() + 1..HEADER_LEN]),
                    Payload {
                        msg: &sealed[HEADER_LEN..],
                        aad: &associated_data(version, entry),
                    },
                )
                .map_err(|_| OpenError::Undecryptable)?,
        );
        serde_json::from_slice(&plaintext).map_err(|_| OpenError::NotAToken)
    }

    fn aead(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.key.as_ref().into())
    }
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher { key: [redacted], aead: XChaCha20-Poly1305 }")
    }
}

fn associated_data(version: u8, entry: &str) -> Vec<u8> {
    let mut aad = MAGIC.to_vec();
    aad.push(version);
    aad.extend_from_slice(entry.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_kind_of_bad_input() {
        let cipher = TokenCipher::new([7; 32]);
        let token = Token::new("TOPSECRET-sealed");
        let sealed = cipher.seal("entry", &token).unwrap();
        assert_eq!(
            cipher.open("entry", &sealed).unwrap().access_token.secret(),
            "TOPSECRET-sealed"
        );
        assert!(!sealed.windows(9).any(|w| w == b"TOPSECRET"), "encrypted");
        assert_ne!(
            cipher.seal("entry", &token).unwrap(),
            sealed,
            "a fresh nonce each time"
        );
        assert_eq!(
            TokenCipher::new([8; 32])
                .open("entry", &sealed)
                .unwrap_err(),
            OpenError::Undecryptable
        );
        assert_eq!(
            cipher.open("other", &sealed).unwrap_err(),
            OpenError::Undecryptable
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            cipher.open("entry", &flipped).unwrap_err(),
            OpenError::Undecryptable
        );
        assert_eq!(
            cipher.open("entry", &sealed[..20]).unwrap_err(),
            OpenError::Truncated
        );
        assert_eq!(
            cipher.open("entry", b"{\"access_token\":1}").unwrap_err(),
            OpenError::NotSealed
        );
        let mut future = sealed.clone();
        future[4] = 9;
        assert_eq!(
            cipher.open("entry", &future).unwrap_err(),
            OpenError::FutureVersion(9)
        );
        let not_a_token = TokenCipher::new([7; 32]);
        let mut raw = MAGIC.to_vec();
        raw.push(VERSION);
        raw.extend_from_slice(&[0; NONCE_LEN]);
        raw.extend_from_slice(
            &not_a_token
                .aead()
                .encrypt(
                    XNonce::from_slice(&[0; NONCE_LEN]),
                    Payload {
                        msg: b"[1,2]",
                        aad: &associated_data(VERSION, "entry"),
                    },
                )
                .unwrap(),
        );
        assert_eq!(
            not_a_token.open("entry", &raw).unwrap_err(),
            OpenError::NotAToken
        );
        assert!(!format!("{cipher:?}").contains('7'));
    }

    #[test]
    fn passphrase_keys_depend_on_the_salt_and_reject_short_salts() {
        let a = TokenCipher::from_passphrase("pass", b"saltsalt").unwrap();
        let b = TokenCipher::from_passphrase("pass", b"saltsal2").unwrap();
        let sealed = a.seal("e", &Token::new("x")).unwrap();
        assert!(a.open("e", &sealed).is_ok());
        assert_eq!(b.open("e", &sealed).unwrap_err(), OpenError::Undecryptable);
        let err = TokenCipher::from_passphrase("pass", b"short").unwrap_err();
        assert!(err.to_string().contains("salt"), "{err}");
    }
}
