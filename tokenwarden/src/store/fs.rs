//! File-system pieces shared by the stores that keep something on disk: private
//! directories, opening files without following links, I/O errors naming the
//! path, and OS file locks as leases.

use super::{Lease, LeaseGuard};
use crate::{Error, Result};
use async_trait::async_trait;
use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

/// How often a waiting process tries the lock of a lease.
const LEASE_POLL: Duration = Duration::from_millis(20);

/// Creates `dir` (and parents) readable only by the user.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Opens `path` without following a symbolic link in its last component
/// (`O_NOFOLLOW` on Unix): a link planted in a store directory is an error,
/// never a way out of it.
pub(crate) fn open_no_follow(options: &mut OpenOptions, path: &Path) -> std::io::Result<File> {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(options, libc::O_NOFOLLOW);
    options.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return std::io::Error::new(
                e.kind(),
                "it is a symbolic link, which a store never follows",
            );
        }
        e
    })
}

/// The contents of the regular file at `path`, opened without following a
/// link; a directory or device there is an error too.
pub(crate) fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = open_no_follow(OpenOptions::new().read(true), path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is not a regular file (a directory or a device)",
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A store error saying what could not be done to which path, and why.
pub(crate) fn io_error(store: &str, action: &str, path: &Path, error: std::io::Error) -> Error {
    Error::store(
        store,
        format!("could not {action} {}: {error}", path.display()),
    )
    .with_cause(error)
}

/// Takes an OS lock on the file `path` (created 0600 if missing), waiting up to
/// `ttl` for another holder to let go.
///
/// Polled rather than blocked on, so that a lock nobody releases (a hung holder)
/// is given up after `ttl` instead of stalling the refresh forever; the OS drops
/// the lock of a process that dies.
pub(crate) async fn lock(path: &Path, ttl: Duration, store: &str) -> Result<Lease> {
    let file = open_lock_file(path).map_err(|e| io_error(store, "open", path, e))?;
    let mut polls_left = ttl.as_millis() / LEASE_POLL.as_millis();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Lease::new(FileLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) if polls_left > 0 => {
                polls_left -= 1;
                tokio::time::sleep(LEASE_POLL).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::store(
                    store,
                    format!(
                        "{} stayed locked for {ttl:?}: another process is refreshing, or is stuck",
                        path.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(store, "lock", path, e)),
        }
    }
}

/// Opens (creating it 0600 if missing) a lock file, never through a link.
pub(crate) fn open_lock_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    open_no_follow(&mut options, path)
}

/// Holds the lock until dropped (the OS drops it with the process, too).
#[derive(Debug)]
struct FileLock {
    _file: std::fs::File,
}

#[async_trait]
impl LeaseGuard for FileLock {
    async fn release(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
