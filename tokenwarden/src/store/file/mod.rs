//! [`FileStore`]: tokens encrypted on disk, one file per key, readable only by the
//! user, written atomically, with OS file locks as leases so that processes on one
//! machine make one refresh between them (feature `file-store`).

mod aside;
mod key;

pub use key::FileKey;

use super::fs::{self, create_private_dir, io_error};
use super::{Lease, OpenError, TokenCipher, TokenStore};
use crate::{Clock, Error, Result, SystemClock, Token, TokenKey};
use async_trait::async_trait;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Tokens in encrypted files (XChaCha20-Poly1305), in the platform's data
/// directory for the application unless told otherwise.
///
/// - Directories are created 0700 and files 0600 (Unix).
/// - Writes are atomic and durable: a temporary file in the same directory,
///   fsync, rename, fsync of the directory; a crash leaves the old or the new token.
/// - A file that cannot be read (corrupt, truncated, another key, altered) is moved
///   aside as `<name>.corrupt-<unix time>` (`-2`, `-3`... when that name is
///   taken), never overwritten or deleted, and reported as a store error; the
///   manager then logs in again. Only the very file that failed to read is moved
///   (a good token saved there meanwhile by another process is read instead), and
///   the token path is cleared only under the key's lock.
/// - [`lease`](TokenStore::lease) takes an OS lock on `<name>.lock`, released when
///   the lease or its process ends.
///
/// ```no_run
/// use tokenwarden::store::{FileKey, FileStore};
///
/// # fn run() -> tokenwarden::Result<()> {
/// let store = FileStore::builder("my-cli").build()?; // ~/.local/share/my-cli/tokens, key file in ~/.config/my-cli
/// let store = FileStore::builder("my-cli")
///     .dir("/custom/path")
///     .key(FileKey::passphrase(std::env::var("TOKEN_PASSPHRASE").unwrap_or_default()))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Dates the names of files moved aside.
    clock: Arc<dyn Clock>,
    cipher: TokenCipher,
    name: String,
}

/// Builds a [`FileStore`]. Made by [`FileStore::builder`].
#[derive(Debug)]
pub struct FileStoreBuilder {
    app: String,
    dir: Option<PathBuf>,
    key: Option<FileKey>,
    clock: Option<Arc<dyn Clock>>,
}

impl FileStore {
    /// Starts building a store for the application `app` (which names its
    /// directories).
    pub fn builder(app: impl Into<String>) -> FileStoreBuilder {
        FileStoreBuilder {
            app: app.into(),
            dir: None,
            key: None,
            clock: None,
        }
    }

    /// The directory holding the token files.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn path(&self, key: &TokenKey) -> PathBuf {
        // Key names are `[A-Za-z0-9._-]` only and never start with a dot: no path
        // can escape the directory.
        self.inner.dir.join(format!("{}.tok", key.as_str()))
    }

    fn error(&self, message: String) -> Error {
        Error::store(&self.inner.name, message)
    }

    fn io(&self, action: &str, path: &Path, error: std::io::Error) -> Error {
        io_error(&self.inner.name, action, path, error)
    }

    fn load_blocking(&self, key: &TokenKey) -> Result<Option<Token>> {
        self.load_once(key, true)
    }

    /// One read; `again`: once more if the file that failed to read was
    /// replaced meanwhile.
    fn load_once(&self, key: &TokenKey, again: bool) -> Result<Option<Token>> {
        let path = self.path(key);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("read", &path, e)),
            Ok(meta) if !meta.file_type().is_file() => {
                return Err(self.error(format!(
                    "{} is not a regular file (a link or a directory); refusing to follow it",
                    path.display()
                )));
            }
            Ok(_) => {}
        }
        // Opened without following a link, so a link put there since the check
        // above is refused too.
        let (bytes, read) = fs::read_identified(&path).map_err(|e| self.io("read", &path, e))?;
        match self.inner.cipher.open(key.as_str(), &bytes) {
            Ok(token) => Ok(Some(token)),
            Err(OpenError::FutureVersion(version)) => Err(self.error(format!(
                "{} was written by a newer tokenwarden (format {version}); upgrade, or log in again after removing it",
                path.display()
            ))),
            Err(why) => match self.move_aside(key, &path, read, &why.to_string()) {
                // A good token was saved there since: that one is read.
                None if again => self.load_once(key, false),
                None => Err(self.error(format!(
                    "{} cannot be read: {why}, and it keeps changing; try again",
                    path.display()
                ))),
                Some(error) => Err(error),
            },
        }
    }

    /// Moves the unreadable file `read` aside (never deleting it, never over
    /// another) and says so; `None` if the path holds another file by now.
    fn move_aside(
        &self,
        key: &TokenKey,
        path: &Path,
        read: fs::FileId,
        why: &str,
    ) -> Option<Error> {
        let stamp = crate::clock::unix_millis(self.inner.clock.now()) / 1000;
        let moved = match aside::move_aside(path, &self.lock_path(key), read, stamp) {
            aside::Aside::Replaced => return None,
            aside::Aside::Moved(kept) => format!("moved aside to {}", kept.display()),
            aside::Aside::Kept(kept) => format!(
                "kept as {}; it is removed once no other process holds its lock",
                kept.display()
            ),
            aside::Aside::Failed(e) => format!("could not move it aside ({e})"),
        };
        tracing::warn!(file = %path.display(), why, "unreadable token file; {moved}");
        Some(self.error(format!("{} cannot be read: {why}; {moved}", path.display())))
    }

    /// The lock file of `key`, whose OS lock is the key's lease.
    fn lock_path(&self, key: &TokenKey) -> PathBuf {
        self.inner.dir.join(format!("{}.lock", key.as_str()))
    }

    fn save_blocking(&self, key: &TokenKey, token: &Token) -> Result<()> {
        let path = self.path(key);
        let sealed = self
            .inner
            .cipher
            .seal(key.as_str(), token)
            .map_err(|e| self.error(format!("could not seal the token: {e}")))?;
        let dir = &self.inner.dir;
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(|e| self.io("create a temporary file in", dir, e))?;
        // tempfile creates files 0600 on Unix.
        temp.write_all(&sealed)
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|e| self.io("write", temp.path(), e))?;
        temp.persist(&path)
            .map_err(|e| self.io("replace", &path, e.error))?;
        sync_dir(dir).map_err(|e| self.io("sync", dir, e))
    }

    fn delete_blocking(&self, key: &TokenKey) -> Result<()> {
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.inner.dir).map_err(|e| self.io("sync", &self.inner.dir, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("remove", &path, e)),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(FileStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(store))
            .await
            .map_err(|e| self.error(format!("the file task failed: {e}")))?
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[async_trait]
impl TokenStore for FileStore {
    async fn load(&self, key: &TokenKey) -> Result<Option<Token>> {
        let key = key.clone();
        self.blocking(move |store| store.load_blocking(&key)).await
    }

    async fn save(&self, key: &TokenKey, token: &Token) -> Result<()> {
        let (key, token) = (key.clone(), token.clone());
        self.blocking(move |store| store.save_blocking(&key, &token))
            .await
    }

    async fn delete(&self, key: &TokenKey) -> Result<()> {
        let key = key.clone();
        self.blocking(move |store| store.delete_blocking(&key))
            .await
    }

    async fn lease(&self, key: &TokenKey, ttl: Duration) -> Result<Lease> {
        fs::lock(&self.lock_path(key), ttl, &self.inner.name).await
    }

    async fn contains(&self, key: &TokenKey) -> Result<bool> {
        Ok(self.path(key).is_file())
    }

    fn name(&self) -> &str {
        &self.inner.name
    }
}

impl FileStoreBuilder {
    /// The directory of the token files. Defaults to the platform's data directory
    /// for the application (`~/.local/share/<app>/tokens` on Linux).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Where the encryption key comes from. Defaults to a key file in the
    /// platform's config directory for the application (`~/.config/<app>/token.key`
    /// on Linux), apart from the tokens; on macOS and Windows with the `keyring`
    /// feature, to the OS keyring unless that key file exists already or the
    /// keyring does not answer. (The Linux kernel keyring is emptied by a reboot,
    /// so it is used only when asked for, with [`FileKey::Keyring`].)
    pub fn key(mut self, key: FileKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The clock that dates files moved aside. Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Builds the store: creates the directory (0700) and reads or creates the key.
    pub fn build(self) -> Result<FileStore> {
        let project = || {
            directories::ProjectDirs::from("", "", &self.app).ok_or_else(|| {
                Error::config(
                    "no home directory to keep tokens in: give the file store a dir and a key",
                )
            })
        };
        let dir = match self.dir {
            Some(dir) => dir,
            None => project()?.data_dir().join("tokens"),
        };
        let name = format!("file:{}", dir.display());
        create_private_dir(&dir).map_err(|e| io_error(&name, "create", &dir, e))?;
        let cipher = match self.key {
            Some(key) => key.resolve(&dir, &name)?,
            None => key::default_key(
                &self.app,
                project()?.config_dir().join("token.key"),
                &dir,
                &name,
            )?,
        };
        // File times come from the real clock, whatever clock the store was given.
        sweep_temporary_files(&dir, SystemClock.now());
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        Ok(FileStore {
            inner: Arc::new(Inner {
                dir,
                clock,
                cipher,
                name,
            }),
        })
    }
}

/// How old a `.tmp-` file must be before a new store removes it. A save holds
/// its temporary file for milliseconds; older ones were left by a process killed
/// mid-save (they hold sealed tokens only, but should not pile up).
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// Removes the temporary files that killed processes left behind. Best effort:
/// a file it cannot read or remove is left for the next store to try.
fn sweep_temporary_files(dir: &Path, now: std::time::SystemTime) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(".tmp-")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| {
                    now.duration_since(modified).unwrap_or_default() > STALE_TEMPORARY
                });
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            tracing::debug!(file = %entry.path().display(), "removed a temporary file left by an interrupted save");
        }
    }
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}
