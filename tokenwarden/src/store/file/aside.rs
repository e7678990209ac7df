//! Moving an unreadable token file aside: kept under a name of its own (never
//! overwriting an earlier one), and only the very file that failed to read.
//!
//! Between the failed read and the move, another process may have saved a good
//! token at the same path (an atomic rename); moving that one aside would lose
//! it. So the bad file is first linked under its new name (a hard link, which
//! never replaces anything), the link is checked to be the file that was read,
//! and the token path is unlinked only under the key's lock file (which every
//! writer holds), after checking once more that it still names that file. If the
//! lock is busy (another process, or this one, is refreshing), the path is left
//! for that writer to replace, and the next read tries again.

use super::super::fs::{open_lock_file, FileId};
use std::path::{Path, PathBuf};

/// What became of an unreadable file.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Aside {
    /// Kept at this path, and removed from the token path.
    Moved(PathBuf),
    /// Kept at this path; the token path is left for the writer that holds the lock.
    Kept(PathBuf),
    /// The token path names another file by now (a good token saved meanwhile).
    Replaced,
    /// It could not be kept (why).
    Failed(String),
}

/// Moves the file `failed` (read from `path`) aside, next to it, as
/// `<name>.corrupt-<stamp>` (or `-<stamp>-2`, `-3`... where that is taken).
pub(super) fn move_aside(path: &Path, lock: &Path, failed: FileId, stamp: u64) -> Aside {
    let kept = match kept_already(path, failed) {
        Some(kept) => kept,
        None => match link_uniquely(path, stamp) {
            Ok(kept) => kept,
            // Removed since the read (a logout): nothing to keep.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Aside::Replaced,
            Err(e) => return Aside::Failed(e.to_string()),
        },
    };
    if identity(&kept) != Some(failed) {
        // A good file was saved between the read and the link: not ours to keep.
        let _ = std::fs::remove_file(&kept);
        return Aside::Replaced;
    }
    let Ok(lock_file) = open_lock_file(lock) else {
        return Aside::Kept(kept);
    };
    if lock_file.try_lock().is_err() {
        return Aside::Kept(kept);
    }
    // Under the lock no writer renames over the path: check, then unlink.
    let outcome = match identity(path) {
        Some(id) if id == failed => match std::fs::remove_file(path) {
            Ok(()) => Aside::Moved(kept),
            Err(_) => Aside::Kept(kept),
        },
        _ => Aside::Kept(kept),
    };
    drop(lock_file);
    outcome
}

/// A hard link to `path` under the first free name of the series.
fn link_uniquely(path: &Path, stamp: u64) -> std::io::Result<PathBuf> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for n in 1..=1000u32 {
        let suffix = if n == 1 {
            format!("{stamp}")
        } else {
            format!("{stamp}-{n}")
        };
        let kept = path.with_file_name(format!("{name}.corrupt-{suffix}"));
        match std::fs::hard_link(path, &kept) {
            Ok(()) => return Ok(kept),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "a thousand files moved aside in the same second",
    ))
}

/// A name the file `failed` is kept under already (an earlier attempt that
/// found the lock busy).
fn kept_already(path: &Path, failed: FileId) -> Option<PathBuf> {
    let prefix = format!("{}.corrupt-", path.file_name()?.to_string_lossy());
    std::fs::read_dir(path.parent()?)
        .ok()?
        .filter_map(std::result::Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path())
        .find(|kept| identity(kept) == Some(failed))
}

/// The identity of the file at `path`, not following a link.
fn identity(path: &Path) -> Option<FileId> {
    FileId::at(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn id(path: &Path) -> FileId {
        identity(path).unwrap()
    }

    #[test]
    fn a_second_unreadable_file_in_the_same_second_gets_a_name_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (path, lock) = (dir.path().join("k.tok"), dir.path().join("k.lock"));
        std::fs::write(&path, "bad one").unwrap();
        let first = move_aside(&path, &lock, id(&path), 7);
        assert_eq!(first, Aside::Moved(dir.path().join("k.tok.corrupt-7")));
        std::fs::write(&path, "bad two").unwrap();
        let second = move_aside(&path, &lock, id(&path), 7);
        assert_eq!(second, Aside::Moved(dir.path().join("k.tok.corrupt-7-2")));
        let kept = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(
            (kept("k.tok.corrupt-7"), kept("k.tok.corrupt-7-2")),
            ("bad one".into(), "bad two".into())
        );
        assert!(!path.exists());
    }

    #[test]
    fn a_good_file_saved_since_the_read_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (path, lock) = (dir.path().join("k.tok"), dir.path().join("k.lock"));
        std::fs::write(&path, "bad").unwrap();
        let failed = id(&path);
        // Another process saves a good token: a new file renamed over the path.
        let good = dir.path().join("k.tmp");
        std::fs::write(&good, "good").unwrap();
        std::fs::rename(&good, &path).unwrap();
        assert_eq!(move_aside(&path, &lock, failed, 7), Aside::Replaced);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "good");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing else made"
        );
    }

    #[test]
    fn under_a_busy_lock_the_file_is_kept_and_the_path_left_to_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (path, lock) = (dir.path().join("k.tok"), dir.path().join("k.lock"));
        std::fs::write(&path, "bad").unwrap();
        let writer = open_lock_file(&lock).unwrap();
        writer.lock().unwrap();
        let kept = dir.path().join("k.tok.corrupt-7");
        assert_eq!(
            move_aside(&path, &lock, id(&path), 7),
            Aside::Kept(kept.clone())
        );
        assert!(path.exists() && kept.exists());
        drop(writer);
        // The next read's attempt finds the file kept already, and unlinks the path.
        assert_eq!(move_aside(&path, &lock, id(&path), 8), Aside::Moved(kept));
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "one copy, and the lock file"
        );
    }
}
