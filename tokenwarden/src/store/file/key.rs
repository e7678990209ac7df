//! Where the file store's 32-byte data key comes from: given by the caller,
//! derived from a passphrase (argon2id), or a key file kept apart from the tokens.

use crate::{Error, Result};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The source of a [`FileStore`](super::FileStore)'s encryption key.
#[derive(Clone)]
#[non_exhaustive]
pub enum FileKey {
    /// These 32 bytes.
    Bytes(Zeroizing<[u8; 32]>),
    /// A key derived from this passphrase with argon2id (the salt is kept in the
    /// store directory, `.salt`).
    Passphrase(Zeroizing<String>),
    /// 32 random bytes in this file, created (0600) on first use. Keep it apart
    /// from the tokens: anyone with both can read the tokens.
    KeyFile(PathBuf),
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileKey::Bytes(_) => f.write_str("Bytes([redacted])"),
            FileKey::Passphrase(_) => f.write_str("Passphrase([redacted])"),
            FileKey::KeyFile(path) => f.debug_tuple("KeyFile").field(path).finish(),
        }
    }
}

impl FileKey {
    /// A key of these bytes.
    pub fn bytes(key: [u8; 32]) -> Self {
        FileKey::Bytes(Zeroizing::new(key))
    }

    /// A key derived from `passphrase`.
    pub fn passphrase(passphrase: impl Into<String>) -> Self {
        FileKey::Passphrase(Zeroizing::new(passphrase.into()))
    }

    /// The data key, reading or creating what it needs.
    pub(crate) fn resolve(&self, store_dir: &Path, store: &str) -> Result<Zeroizing<[u8; 32]>> {
        match self {
            FileKey::Bytes(key) => Ok(key.clone()),
            FileKey::Passphrase(passphrase) => {
                let salt = read_or_create(&store_dir.join(".salt"), 16, store)?;
                let mut key = Zeroizing::new([0u8; 32]);
                argon2::Argon2::default()
                    .hash_password_into(passphrase.as_bytes(), &salt, key.as_mut())
                    .map_err(|e| {
                        Error::store(
                            store,
                            format!("could not derive the key from the passphrase: {e}"),
                        )
                    })?;
                Ok(key)
            }
            FileKey::KeyFile(path) => {
                let bytes = read_or_create(path, 32, store)?;
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    Error::store(
                        store,
                        format!("the key file {} is not 32 bytes; restore it, or delete it and log in again", path.display()),
                    )
                })?;
                Ok(Zeroizing::new(key))
            }
        }
    }
}

/// The contents of `path`, or `len` fresh random bytes written there (0600).
fn read_or_create(path: &Path, len: usize, store: &str) -> Result<Zeroizing<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => return Ok(Zeroizing::new(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(store, "read", path, e)),
    }
    if let Some(parent) = path.parent() {
        super::create_private_dir(parent).map_err(|e| io_error(store, "create", parent, e))?;
    }
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    getrandom::fill(&mut bytes).map_err(|e| {
        Error::store(
            store,
            format!("no randomness from the operating system: {e}"),
        )
    })?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(&bytes)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(store, "write", path, e))?;
            Ok(bytes)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path)
            .map(Zeroizing::new)
            .map_err(|e| io_error(store, "read", path, e)),
        Err(e) => Err(io_error(store, "create", path, e)),
    }
}

pub(crate) fn io_error(store: &str, action: &str, path: &Path, error: std::io::Error) -> Error {
    Error::store(
        store,
        format!("could not {action} {}: {error}", path.display()),
    )
    .with_cause(error)
}
