//! File-system pieces shared by the stores that keep something on disk: private
//! directories, opening files without following links, I/O errors naming the
//! path, and OS file locks as leases.

use super::{Lease, LeaseGuard};
use crate::{Error, Result};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;

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
    read_identified(path).map(|(bytes, _)| bytes)
}

/// Which file a path named when it was read: its device and inode on Unix (a
/// file replaced by a rename since is another one); elsewhere (no stable file
/// identity in std), its length and a hash of its contents, so that a good file
/// saved since never passes for the bad one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId((u64, u64));

impl FileId {
    /// The identity of the file `meta` describes, whose contents are `bytes`.
    pub(crate) fn of(meta: &std::fs::Metadata, bytes: &[u8]) -> Self {
        #[cfg(unix)]
        {
            let _ = bytes;
            Self((
                std::os::unix::fs::MetadataExt::dev(meta),
                std::os::unix::fs::MetadataExt::ino(meta),
            ))
        }
        #[cfg(not(unix))]
        {
            use std::hash::{Hash as _, Hasher as _};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut hasher);
            Self((meta.len(), hasher.finish()))
        }
    }

    /// The identity of the file at `path` now, not following a link.
    pub(crate) fn at(path: &Path) -> Option<Self> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        #[cfg(unix)]
        return Some(Self::of(&meta, &[]));
        #[cfg(not(unix))]
        return read_regular(path).ok().map(|bytes| Self::of(&meta, &bytes));
    }
}

/// [`read_regular`], with the identity of the file that was read.
pub(crate) fn read_identified(path: &Path) -> std::io::Result<(Vec<u8>, FileId)> {
    let mut file = open_no_follow(OpenOptions::new().read(true), path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is not a regular file (a directory or a device)",
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let id = FileId::of(&meta, &bytes);
    Ok((bytes, id))
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
/// A waiter blocks in the OS (`File::lock`: `flock` on Unix, `LockFileEx` on
/// Windows), which hands it the lock the moment the holder lets go, on every
/// platform and without polling. (Watching files instead, with inotify and its
/// kin, needs one mechanism per platform and has no token file to watch for the
/// keyring store, which shares these locks; and a lock's release is no event of
/// its own.) A fixed-interval poll costs a wait of up to its interval after each
/// release, and wake-ups meanwhile. A thread blocked in the OS cannot be
/// interrupted, so the blocking is done by [`LockWaiter`]: one thread per contended
/// lock file per process, not per caller, that hands the lock to the callers
/// waiting for it in turn. A caller that gives up (after `ttl`, or dropped) leaves
/// at once; the thread stays blocked until the holder lets go (a hung holder
/// parks one thread per process, however many callers give up on it), then
/// releases the lock straight away if nobody waits any more. The OS drops the lock
/// of a process that dies.
pub(crate) async fn lock(path: &Path, ttl: Duration, store: &str) -> Result<Lease> {
    let file = open_lock_file(path).map_err(|e| io_error(store, "open", path, e))?;
    match file.try_lock() {
        Ok(()) => return Ok(Lease::new(FileLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => drop(file),
        Err(std::fs::TryLockError::Error(e)) => return Err(io_error(store, "lock", path, e)),
    }
    let handed = LockWaiter::wait_for(path).map_err(|e| io_error(store, "wait for", path, e))?;
    match tokio::time::timeout(ttl, handed).await {
        Ok(Ok(Ok(file))) => Ok(Lease::new(FileLock { _file: file })),
        Ok(Ok(Err(e))) => Err(io_error(store, "lock", path, e)),
        Ok(Err(_)) => Err(Error::store(
            store,
            format!(
                "the thread waiting for the lock of {} ended",
                path.display()
            ),
        )),
        Err(_) => Err(Error::store(
            store,
            format!(
                "{} stayed locked for {ttl:?}: another process is refreshing, or is stuck",
                path.display()
            ),
        )),
    }
}

/// A lock (or why it could not be had), handed by a [`LockWaiter`] to a caller.
type Handoff = oneshot::Sender<std::io::Result<File>>;

/// The callers waiting for each contended lock file of this process, in order. A
/// path is here exactly while its [`LockWaiter`] thread runs.
static WAITING: LazyLock<Mutex<HashMap<PathBuf, VecDeque<Handoff>>>> =
    LazyLock::new(Mutex::default);

/// The thread that waits in the OS for one lock file on behalf of this process's
/// callers.
struct LockWaiter {
    path: PathBuf,
}

impl LockWaiter {
    /// Queues a caller for the lock of `path`, starting the path's thread if it has
    /// none; the lock arrives on the returned channel.
    fn wait_for(path: &Path) -> std::io::Result<oneshot::Receiver<std::io::Result<File>>> {
        let (handoff, handed) = oneshot::channel();
        let mut waiting = Self::waiting();
        if let Some(queue) = waiting.get_mut(path) {
            queue.push_back(handoff);
            return Ok(handed);
        }
        let waiter = LockWaiter {
            path: path.to_owned(),
        };
        std::thread::Builder::new()
            .name("tokenwarden-lock".into())
            .spawn(move || waiter.run())?;
        waiting.insert(path.to_owned(), VecDeque::from([handoff]));
        Ok(handed)
    }

    fn waiting() -> MutexGuard<'static, HashMap<PathBuf, VecDeque<Handoff>>> {
        // Every change is one step: a panic elsewhere leaves no half-made queue.
        WAITING.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the lock and hands it to the first caller still waiting, for as long
    /// as callers wait; a lock nobody wants any more is released at once.
    fn run(self) {
        loop {
            let locked = open_lock_file(&self.path).and_then(|file| loop {
                match file.lock() {
                    Ok(()) => return Ok(file),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            });
            let mut waiting = Self::waiting();
            let queue = waiting.entry(self.path.clone()).or_default();
            // To the first caller still waiting (with the error, if the lock could
            // not be had); one that gave up passes it to the next.
            let mut left = Some(locked);
            while let Some(locked) = left.take() {
                let Some(handoff) = queue.pop_front() else {
                    break;
                };
                left = handoff.send(locked).err();
            }
            if queue.is_empty() {
                waiting.remove(&self.path);
                return;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(path: &Path) -> Option<usize> {
        LockWaiter::waiting().get(path).map(VecDeque::len)
    }

    #[tokio::test]
    async fn waiters_get_the_lock_in_turn_from_one_thread_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let holder = lock(&path, Duration::from_secs(5), "test").await.unwrap();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move {
                    let lease = lock(&path, Duration::from_secs(30), "test").await?;
                    lease.release().await
                })
            })
            .collect();
        while queued(&path) != Some(8) {
            tokio::task::yield_now().await;
        }
        assert!(waiters.iter().all(|w| !w.is_finished()), "the lock is held");
        drop(holder);
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }
        assert_eq!(queued(&path), None, "the thread has ended");
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_the_lock_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lock");
        let holder = lock(&path, Duration::from_secs(5), "test").await.unwrap();
        let gave_up = lock(&path, Duration::from_millis(50), "test").await;
        assert!(gave_up.unwrap_err().to_string().contains("stayed locked"));
        let next = tokio::spawn({
            let path = path.clone();
            async move {
                lock(&path, Duration::from_secs(30), "test")
                    .await
                    .map(|l| l.is_held())
            }
        });
        while queued(&path) != Some(2) {
            tokio::task::yield_now().await;
        }
        drop(holder);
        assert!(next.await.unwrap().unwrap());
        // The one that gave up passed its turn on, and the lock is free again.
        let file = open_lock_file(&path).unwrap();
        while queued(&path).is_some() {
            tokio::task::yield_now().await;
        }
        file.try_lock().unwrap();
    }
}
