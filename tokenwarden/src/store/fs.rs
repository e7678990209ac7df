//! File-system pieces shared by the stores that keep something on disk: private
//! directories, I/O errors naming the path, and OS file locks as leases.

use super::{Lease, LeaseGuard};
use crate::{Error, Result};
use async_trait::async_trait;
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
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(path)
        .map_err(|e| io_error(store, "open", path, e))?;
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
                        "{} stayed locked for {ttl:?}; refreshing without it",
                        path.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(store, "lock", path, e)),
        }
    }
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
