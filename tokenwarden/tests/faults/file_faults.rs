//! The file store on file systems that refuse writes: a read-only mount and a full
//! one. Each is made in a private user and mount namespace (`unshare -rm`, so no
//! root is needed and nothing outside the test sees it), where this test binary
//! runs itself as the child that does the work and says `child: ok`.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::store::{FileKey, FileStore};
use tokenwarden::{source::from_fn, ErrorKind, Token, TokenKey, TokenManager, TokenStore};

/// Set in the child: the directory the namespace mounted.
const FAULT_DIR: &str = "TW_FAULT_DIR";

fn store(dir: &Path) -> FileStore {
    file_store(dir, [6; 32])
}

fn token(name: &str) -> Token {
    // An absolute expiry, as a manager saves it (2033).
    Token::new(format!("{MARKER}-{name}"))
        .with_expires_at(std::time::UNIX_EPOCH + Duration::from_secs(2_000_000_000))
}

fn child_dir() -> Option<PathBuf> {
    std::env::var_os(FAULT_DIR).map(PathBuf::from)
}

/// Runs the test `test` as a child after `mount` (a shell command on
/// `$TW_FAULT_DIR`) in a new namespace; `false` (skip) where namespaces cannot be
/// made here and `CI` is not set.
fn run_child(test: &str, dir: &Path, mount: &str) -> bool {
    let output = Command::new("unshare")
        .args(["-rm", "sh", "-c", &format!("{mount} && exec \"$0\" \"$@\"")])
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(FAULT_DIR, dir)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) => return skip(format!("no `unshare` ({error})")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.contains("running 1 test") {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return skip(format!(
            "no private mount namespace here: {}",
            stderr.trim()
        ));
    }
    assert!(
        output.status.success() && stdout.contains("child: ok"),
        "the child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

fn skip(reason: String) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("CI needs user and mount namespaces (unshare -rm): {reason}");
    }
    eprintln!("skipped: {reason}");
    false
}

fn counting_source() -> (Arc<AtomicUsize>, impl tokenwarden::TokenSource) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let source = from_fn("faults", move || {
        let n = counted.fetch_add(1, SeqCst) + 1;
        async move { Ok(token(&format!("new-{n}"))) }
    });
    (calls, source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_directory_keeps_serving_and_loses_nothing() {
    let _h = harness();
    let key = TokenKey::new("faults");
    if let Some(dir) = child_dir() {
        let store = store(&dir);
        let loaded = store.load(&key).await.unwrap().unwrap();
        assert_eq!(loaded.access_token.secret(), format!("{MARKER}-saved"));
        let error = store.save(&key, &token("refused")).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Store);
        let text = error.to_string();
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(text.contains("Read-only file system"), "{text}");

        // A manager on it serves the saved token, then a new one it cannot save.
        let (calls, source) = counting_source();
        let manager = TokenManager::builder(source)
            .key(key.clone())
            .store(store.clone())
            .build()
            .unwrap();
        let first = manager.token().await.unwrap();
        assert_eq!(first.access_token.secret(), format!("{MARKER}-saved"));
        assert_eq!(calls.load(SeqCst), 0);
        let refreshed = manager.force_refresh().await.unwrap();
        assert_eq!(refreshed.access_token.secret(), format!("{MARKER}-new-1"));
        let again = manager.token().await.unwrap();
        assert_eq!(again.access_token.secret(), format!("{MARKER}-new-1"));

        // A store cannot be made below it; the error names the directory.
        let below = dir.join("below");
        let error = FileStore::builder("tokenwarden-tests")
            .dir(&below)
            .key(FileKey::bytes([6; 32]))
            .build()
            .unwrap_err();
        assert!(
            error.to_string().contains(&below.display().to_string()),
            "{error}"
        );
        println!("child: ok");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    store(dir.path()).save(&key, &token("saved")).await.unwrap();
    let mount = r#"mount --bind "$TW_FAULT_DIR" "$TW_FAULT_DIR" && mount -o remount,bind,ro "$TW_FAULT_DIR""#;
    if !run_child(
        "file_faults::a_read_only_directory_keeps_serving_and_loses_nothing",
        dir.path(),
        mount,
    ) {
        return;
    }
    let kept = store(dir.path()).load(&key).await.unwrap().unwrap();
    assert_eq!(kept.access_token.secret(), format!("{MARKER}-saved"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing else written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_save_and_keeps_the_old_token_whole() {
    let _h = harness();
    let key = TokenKey::new("faults");
    if let Some(dir) = child_dir() {
        // A 64 KiB file system: save a token, then fill it up.
        let store = store(&dir);
        store.save(&key, &token("old")).await.unwrap();
        let filler = dir.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let full = loop {
            if let Err(error) = std::io::Write::write_all(&mut file, &[0; 4096]) {
                break error;
            }
        };
        assert_eq!(full.raw_os_error(), Some(28), "ENOSPC: {full}");
        drop(file);

        let error = store.save(&key, &token("new")).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Store);
        assert!(error.to_string().contains("No space left"), "{error}");
        let kept = store.load(&key).await.unwrap().unwrap();
        assert_eq!(kept.access_token.secret(), format!("{MARKER}-old"));
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

        // Room again: the next save works.
        std::fs::remove_file(&filler).unwrap();
        store.save(&key, &token("new")).await.unwrap();
        let saved = store.load(&key).await.unwrap().unwrap();
        assert_eq!(saved.access_token.secret(), format!("{MARKER}-new"));
        println!("child: ok");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    run_child(
        "file_faults::a_full_disk_fails_the_save_and_keeps_the_old_token_whole",
        dir.path(),
        r#"mount -t tmpfs -o size=64k,mode=0700 tmpfs "$TW_FAULT_DIR""#,
    );
}
