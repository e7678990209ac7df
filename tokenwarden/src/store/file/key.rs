//! Where the file store's 32-byte data key comes from: given by the caller,
//! derived from a passphrase (argon2id), or a key file kept apart from the tokens.

use crate::store::fs::{create_private_dir, io_error};
use crate::store::TokenCipher;
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
    /// 32 random bytes in the OS keyring, under this service name (entry
    /// `file-key`), created on first use (feature `keyring`).
    #[cfg(feature = "keyring")]
    Keyring(String),
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileKey::Bytes(_) => f.write_str("Bytes([redacted])"),
            FileKey::Passphrase(_) => f.write_str("Passphrase([redacted])"),
            FileKey::KeyFile(path) => f.debug_tuple("KeyFile").field(path).finish(),
            #[cfg(feature = "keyring")]
            FileKey::Keyring(service) => f.debug_tuple("Keyring").field(service).finish(),
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

    /// A key of 32 random bytes kept in the file at `path`, created (0600) on
    /// first use. Keep it apart from the tokens: anyone with both can read them.
    ///
    /// ```no_run
    /// # fn run() -> tokenwarden::Result<()> {
    /// use tokenwarden::store::{FileKey, FileStore};
    /// let store = FileStore::builder("my-app")
    ///     .key(FileKey::key_file("/etc/my-app/token-key"))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn key_file(path: impl Into<PathBuf>) -> Self {
        FileKey::KeyFile(path.into())
    }

    /// A key in the OS keyring under `service` (feature `keyring`).
    #[cfg(feature = "keyring")]
    pub fn keyring(service: impl Into<String>) -> Self {
        FileKey::Keyring(service.into())
    }

    /// The cipher of the data key, reading or creating what it needs.
    pub(crate) fn resolve(&self, store_dir: &Path, store: &str) -> Result<TokenCipher> {
        match self {
            FileKey::Bytes(key) => Ok(TokenCipher::new(**key)),
            FileKey::Passphrase(passphrase) => {
                // In the store directory: never read through a link.
                let salt = read_or_create(&store_dir.join(".salt"), 16, store, false)?;
                TokenCipher::from_passphrase(passphrase, &salt)
            }
            FileKey::KeyFile(path) => {
                // A path the user chose: it may be a link (to a mounted secret).
                let bytes = read_or_create(path, 32, store, true)?;
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    Error::store(
                        store,
                        format!("the key file {} is not 32 bytes; restore it, or delete it and log in again", path.display()),
                    )
                })?;
                Ok(TokenCipher::new(key))
            }
            #[cfg(feature = "keyring")]
            FileKey::Keyring(service) => keyring_key(service, store_dir, store),
        }
    }
}

/// The key of a store built without one: the key file if there is one already,
/// else (macOS and Windows, feature `keyring`) the OS keyring if it answers, else
/// a new key file. The Linux kernel keyring is not used here: it is emptied by a
/// reboot, which would make every stored token unreadable.
pub(crate) fn default_key(
    app: &str,
    key_file: PathBuf,
    store_dir: &Path,
    store: &str,
) -> Result<TokenCipher> {
    #[cfg(all(feature = "keyring", any(target_os = "macos", windows)))]
    if !key_file.exists() {
        match keyring_key(app, store_dir, store) {
            Ok(cipher) => return Ok(cipher),
            Err(error) => {
                tracing::debug!(%error, "no OS keyring for the file store's key; using a key file")
            }
        }
    }
    let _ = app;
    FileKey::KeyFile(key_file).resolve(store_dir, store)
}

/// The file store's key from the OS keyring, created there on first use under a
/// lock in the store directory, so that two processes starting at once agree.
#[cfg(feature = "keyring")]
fn keyring_key(service: &str, store_dir: &Path, store: &str) -> Result<TokenCipher> {
    use crate::store::keyring::{entry, keyring_error};
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let lock_path = store_dir.join(".key.lock");
    let lock = crate::store::fs::open_lock_file(&lock_path)
        .and_then(|file| file.lock().map(|()| file))
        .map_err(|e| io_error(store, "lock", &lock_path, e))?;
    let entry = entry(service, "file-key")
        .map_err(|e| keyring_error(store, "open the key's keyring entry", e))?;
    let result = match entry.get_password() {
        Ok(encoded) => {
            let encoded = Zeroizing::new(encoded);
            let bytes = Zeroizing::new(engine.decode(encoded.as_bytes()).unwrap_or_default());
            <[u8; 32]>::try_from(bytes.as_slice())
                .map(TokenCipher::new)
                .map_err(|_| {
                    Error::store(
                        store,
                        format!("the keyring entry `file-key` of `{service}` is not a 32-byte key; remove it, and log in again"),
                    )
                })
        }
        Err(keyring::Error::NoEntry) => {
            let mut key = Zeroizing::new([0u8; 32]);
            getrandom::fill(key.as_mut()).map_err(|e| {
                Error::store(
                    store,
                    format!("no randomness from the operating system: {e}"),
                )
            })?;
            entry
                .set_password(&Zeroizing::new(engine.encode(key.as_ref())))
                .map_err(|e| keyring_error(store, "save the key in the keyring", e))
                .map(|()| TokenCipher::new(*key))
        }
        Err(e) => Err(keyring_error(store, "read the key from the keyring", e)),
    };
    drop(lock);
    result
}

/// The contents of `path`, or `len` fresh random bytes written there (0600).
/// Links are followed only if `follow_links`.
fn read_or_create(
    path: &Path,
    len: usize,
    store: &str,
    follow_links: bool,
) -> Result<Zeroizing<Vec<u8>>> {
    let read = |path: &Path| {
        if follow_links {
            std::fs::read(path)
        } else {
            crate::store::fs::read_regular(path)
        }
    };
    match read(path) {
        Ok(bytes) => return Ok(Zeroizing::new(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(store, "read", path, e)),
    }
    if let Some(parent) = path.parent() {
        create_private_dir(parent).map_err(|e| io_error(store, "create", parent, e))?;
    }
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    getrandom::fill(&mut bytes).map_err(|e| {
        Error::store(
            store,
            format!("no randomness from the operating system: {e}"),
        )
    })?;
    // Written whole to a temporary file, then linked into place: a link never
    // replaces an existing file, so of processes starting at once one key wins, and
    // nobody reads a file still being written.
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".key-")
        .tempfile_in(dir)
        .map_err(|e| io_error(store, "create a temporary file in", dir, e))?;
    temp.write_all(&bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| io_error(store, "write", temp.path(), e))?;
    match std::fs::hard_link(temp.path(), path) {
        Ok(()) => Ok(bytes),
        // Another process linked its key first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path)
            .map(Zeroizing::new)
            .map_err(|e| io_error(store, "read", path, e)),
        Err(e) => Err(io_error(store, "create", path, e)),
    }
}
