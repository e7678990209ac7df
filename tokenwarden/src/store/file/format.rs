//! The store file format, version 1: `TWTK` magic, a version byte, a 24-byte
//! random nonce, then the token's JSON sealed with XChaCha20-Poly1305. The magic,
//! the version and the entry's key are the associated data, so a file copied under
//! another key, or tampered with, does not decrypt.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const MAGIC: &[u8; 4] = b"TWTK";
/// The format this code writes.
pub(crate) const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = MAGIC.len() + 1 + NONCE_LEN;

/// Why a file could not be opened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// Not one of our files, or cut short.
    Corrupt(&'static str),
    /// Written by a newer tokenwarden.
    FutureVersion(u8),
    /// The key is wrong, or the file was altered or copied under another name.
    Undecryptable,
}

/// Seals `plaintext` for the entry `key`.
pub(crate) fn seal(
    data_key: &[u8; 32],
    key: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, getrandom::Error> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)?;
    let cipher = XChaCha20Poly1305::new(data_key.into());
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    let aad = associated_data(VERSION, key);
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a file written by [`seal`] for the entry `key`.
pub(crate) fn open(data_key: &[u8; 32], key: &str, file: &[u8]) -> Result<Vec<u8>, Unreadable> {
    if file.len() < MAGIC.len() + 1 || &file[..MAGIC.len()] != MAGIC {
        return Err(Unreadable::Corrupt("it is not a tokenwarden token file"));
    }
    let version = file[MAGIC.len()];
    if version > VERSION {
        return Err(Unreadable::FutureVersion(version));
    }
    if file.len() < HEADER_LEN + 16 {
        return Err(Unreadable::Corrupt("it is truncated"));
    }
    let nonce = XNonce::from_slice(&file[MAGIC.len() + 1..HEADER_LEN]);
    let cipher = XChaCha20Poly1305::new(data_key.into());
    let aad = associated_data(version, key);
    cipher
        .decrypt(
            nonce,
            Payload {
                msg: &file[HEADER_LEN..],
                aad: &aad,
            },
        )
        .map_err(|_| Unreadable::Undecryptable)
}

fn associated_data(version: u8, key: &str) -> Vec<u8> {
    let mut aad = MAGIC.to_vec();
    aad.push(version);
    aad.extend_from_slice(key.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_kind_of_bad_file() {
        let key = [7u8; 32];
        let sealed = seal(&key, "entry", b"secret json").unwrap();
        assert_eq!(open(&key, "entry", &sealed).unwrap(), b"secret json");
        assert_ne!(
            seal(&key, "entry", b"secret json").unwrap(),
            sealed,
            "a fresh nonce each time"
        );
        assert_eq!(
            open(&[8u8; 32], "entry", &sealed),
            Err(Unreadable::Undecryptable)
        );
        assert_eq!(
            open(&key, "other-entry", &sealed),
            Err(Unreadable::Undecryptable)
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            open(&key, "entry", &flipped),
            Err(Unreadable::Undecryptable)
        );
        assert!(matches!(
            open(&key, "entry", &sealed[..20]),
            Err(Unreadable::Corrupt(_))
        ));
        assert!(matches!(
            open(&key, "entry", b"{\"access_token\":1}"),
            Err(Unreadable::Corrupt(_))
        ));
        let mut future = sealed.clone();
        future[4] = 9;
        assert_eq!(
            open(&key, "entry", &future),
            Err(Unreadable::FutureVersion(9))
        );
    }
}
