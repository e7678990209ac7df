//! The encrypted file store on a real file system (a temporary directory).

use crate::common::*;
use std::time::Duration;
use tokenwarden::store::{FileKey, FileStore};
use tokenwarden::{ErrorKind, Token, TokenKey, TokenManager, TokenStore};

const HOUR: Duration = Duration::from_secs(3600);

fn store(dir: &std::path::Path, key: [u8; 32]) -> FileStore {
    file_store(dir, key)
}

fn token() -> Token {
    Token::new(format!("{MARKER}-file-at"))
        .with_refresh_token(format!("{MARKER}-file-rt"))
        .with_expires_at(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000))
}

#[tokio::test]
async fn tokens_round_trip_encrypted_with_private_permissions() {
    let _h = harness();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let store = store(&tokens, [1; 32]);
    let key = TokenKey::new("api").with("client_id", "c");
    assert!(store.load(&key).await.unwrap().is_none());
    store.save(&key, &token()).await.unwrap();
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(
        loaded.refresh_token.unwrap().secret(),
        format!("{MARKER}-file-rt")
    );
    assert!(store.contains(&key).await.unwrap());

    let file = tokens.join(format!("{}.tok", key.as_str()));
    let raw = std::fs::read(&file).unwrap();
    assert!(
        !String::from_utf8_lossy(&raw).contains(MARKER),
        "encrypted at rest"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tokens), 0o700);
        assert_eq!(mode(&file), 0o600);
    }
    store.delete(&key).await.unwrap();
    assert!(!file.exists());
    store.delete(&key).await.unwrap(); // deleting nothing is fine
    assert_clean("store", &format!("{store:?}"));
}

#[tokio::test]
async fn unreadable_files_are_typed_errors_and_moved_aside() {
    let _h = harness();
    let dir = tempfile::tempdir().unwrap();
    let key = TokenKey::new("api");
    let file = dir.path().join(format!("{}.tok", key.as_str()));

    // Another key.
    store(dir.path(), [1; 32])
        .save(&key, &token())
        .await
        .unwrap();
    let error = store(dir.path(), [2; 32]).load(&key).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Store);
    assert!(
        error.to_string().contains("does not decrypt") && error.to_string().contains("moved aside"),
        "{error}"
    );
    assert!(!file.exists());
    assert_eq!(files_moved_aside(dir.path()), 1, "kept, not deleted");

    // Truncated and garbage.
    for bytes in [
        b"TWTK\x01short".to_vec(),
        b"{\"access_token\":\"x\"}".to_vec(),
    ] {
        std::fs::write(&file, bytes).unwrap();
        let error = store(dir.path(), [1; 32]).load(&key).await.unwrap_err();
        assert!(
            error.to_string().contains(&*file.display().to_string()),
            "names the file: {error}"
        );
    }
    // A file of another entry copied under this name.
    let other = TokenKey::new("other");
    store(dir.path(), [1; 32])
        .save(&other, &token())
        .await
        .unwrap();
    std::fs::copy(dir.path().join(format!("{}.tok", other.as_str())), &file).unwrap();
    assert!(store(dir.path(), [1; 32]).load(&key).await.is_err());
    // Four unreadable files, most in the same second: each kept under a name of
    // its own, none moved over another.
    assert_eq!(files_moved_aside(dir.path()), 4, "none overwritten");

    // A newer format is reported, not moved.
    store(dir.path(), [1; 32])
        .save(&key, &token())
        .await
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[4] = 9;
    std::fs::write(&file, &bytes).unwrap();
    let error = store(dir.path(), [1; 32]).load(&key).await.unwrap_err();
    assert!(error.to_string().contains("newer tokenwarden"), "{error}");
    assert!(file.exists());
    assert_clean("error", &format!("{error:?}"));
}

/// A store whose clock stands still: every file it moves aside gets the same
/// second in its name.
fn stopped_clock_store(dir: &std::path::Path) -> FileStore {
    let stopped = tokenwarden::ManualClock::new(
        std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    FileStore::builder("tokenwarden-tests")
        .dir(dir)
        .key(FileKey::bytes([1; 32]))
        .clock(stopped)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_aside_file_is_never_replaced_and_a_busy_lock_keeps_the_path() {
    let _h = harness();
    let dir = tempfile::tempdir().unwrap();
    let key = TokenKey::new("api");
    let file = dir.path().join(format!("{}.tok", key.as_str()));
    let store = stopped_clock_store(dir.path());
    // Three unreadable files in the same second: three names, three contents kept.
    for n in 0..3 {
        std::fs::write(&file, format!("garbage {n}")).unwrap();
        assert!(store.load(&key).await.is_err());
    }
    let mut kept: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    kept.sort();
    assert_eq!(kept, ["garbage 0", "garbage 1", "garbage 2"]);

    // While another holder has the key's lease (a refresh, here or in another
    // process), the unreadable file is copied aside but the path is left to it.
    std::fs::write(&file, "garbage 3").unwrap();
    let lease = store.lease(&key, Duration::from_secs(5)).await.unwrap();
    let error = store.load(&key).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no other process holds its lock"),
        "{error}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "garbage 3",
        "left in place"
    );
    // The holder saves a good token over it: that one is read, nothing moved.
    store.save_leased(&key, &token(), &lease).await.unwrap();
    lease.release().await.unwrap();
    assert!(
        store.load(&key).await.unwrap().is_some(),
        "the holder's token"
    );
    // The copy made under the busy lock is all that is left of "garbage 3".
    assert_eq!(files_moved_aside(dir.path()), 4);
    assert!(file.exists());
}

#[cfg(unix)]
#[tokio::test]
async fn links_are_not_followed_and_directories_in_the_way_are_errors() {
    let _h = harness();
    let dir = tempfile::tempdir().unwrap();
    let key = TokenKey::new("api");
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "not yours").unwrap();
    let tokens = dir.path().join("tokens");
    let store = store(&tokens, [1; 32]);
    std::os::unix::fs::symlink(&outside, tokens.join(format!("{}.tok", key.as_str()))).unwrap();
    let error = store.load(&key).await.unwrap_err();
    assert!(error.to_string().contains("refusing to follow"), "{error}");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "not yours");
    // A save replaces the link itself; the file it pointed to is untouched.
    store.save(&key, &token()).await.unwrap();
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "not yours");
    assert!(store.load(&key).await.unwrap().is_some());

    // A directory where the token file should be: typed errors, nothing removed.
    let other = TokenKey::new("dir");
    let in_the_way = tokens.join(format!("{}.tok", other.as_str()));
    std::fs::create_dir(&in_the_way).unwrap();
    std::fs::write(in_the_way.join("keep"), "kept").unwrap();
    let load = store.load(&other).await.unwrap_err();
    assert!(load.to_string().contains("not a regular file"), "{load}");
    let save = store.save(&other, &token()).await.unwrap_err();
    assert!(
        save.to_string().contains(&in_the_way.display().to_string()),
        "{save}"
    );
    assert_eq!(
        std::fs::read_to_string(in_the_way.join("keep")).unwrap(),
        "kept"
    );

    // Links planted where the lock file and the passphrase's salt go, pointing
    // out of the directory (one dangling, one at a file): refused, and nothing
    // is created or read out there.
    let planted = dir.path().join("planted");
    std::os::unix::fs::symlink(&planted, tokens.join(format!("{}.lock", key.as_str()))).unwrap();
    let lease = store.lease(&key, HOUR).await.unwrap_err();
    assert!(lease.to_string().contains("symbolic link"), "{lease}");
    assert!(!planted.exists(), "no file made through the link");
    let salted = dir.path().join("salted");
    std::fs::create_dir(&salted).unwrap();
    std::os::unix::fs::symlink(&outside, salted.join(".salt")).unwrap();
    let salt = FileStore::builder("t")
        .dir(&salted)
        .key(FileKey::passphrase(format!("{MARKER}-pass")))
        .build()
        .unwrap_err();
    assert!(salt.to_string().contains("symbolic link"), "{salt}");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "not yours");
}

#[tokio::test]
async fn passphrase_and_key_file_keys() {
    let _h = harness();
    let dir = tempfile::tempdir().unwrap();
    let key = TokenKey::new("api");
    let with = |pass: &str| {
        FileStore::builder("t")
            .dir(dir.path())
            .key(FileKey::passphrase(pass))
            .build()
            .unwrap()
    };
    with("correct horse").save(&key, &token()).await.unwrap();
    assert!(with("correct horse").load(&key).await.unwrap().is_some());
    assert!(with("wrong").load(&key).await.is_err());

    let key_file = dir.path().join("config/token.key");
    let by_file = || {
        FileStore::builder("t")
            .dir(dir.path().join("kf"))
            .key(FileKey::key_file(&key_file))
            .build()
            .unwrap()
    };
    by_file().save(&key, &token()).await.unwrap();
    assert!(
        by_file().load(&key).await.unwrap().is_some(),
        "the key file was reused"
    );
    assert_eq!(std::fs::read(&key_file).unwrap().len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_excludes_other_holders_until_released() {
    let _h = harness();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(dir.path(), [1; 32]), store(dir.path(), [1; 32]));
    let key = TokenKey::new("api");
    let held = a.lease(&key, Duration::from_secs(5)).await.unwrap();
    let waiting = tokio::spawn({
        let (b, key) = (b.clone(), key.clone());
        async move {
            b.lease(&key, Duration::from_secs(5))
                .await
                .map(|lease| lease.is_held())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "the second holder waits");
    held.release().await.unwrap();
    assert!(waiting.await.unwrap().unwrap());
    let stuck = a.lease(&key, Duration::from_secs(5)).await.unwrap();
    let error = b.lease(&key, Duration::from_millis(60)).await.unwrap_err();
    assert!(error.to_string().contains("stayed locked"), "{error}");
    drop(stuck);
}

#[tokio::test]
async fn a_restarted_manager_uses_the_saved_token() {
    let _h = harness();
    let dir = tempfile::tempdir().unwrap();
    let (source, clock) = (CountingSource::new(HOUR), clock());
    let first = TokenManager::builder(source.clone())
        .clock(clock.clone())
        .store(store(dir.path(), [3; 32]))
        .build()
        .unwrap();
    let fingerprint = first.token().await.unwrap().fingerprint();
    drop(first); // the process ends
    let second = TokenManager::builder(source.clone())
        .clock(clock.clone())
        .store(store(dir.path(), [3; 32]))
        .build()
        .unwrap();
    assert_eq!(second.token().await.unwrap().fingerprint(), fingerprint);
    assert_eq!(source.calls(), 1, "no second login");
}

#[tokio::test]
async fn hostile_key_names_stay_inside_the_store_directory() {
    let _h = harness();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let store = store(&tokens, [4; 32]);
    let long = "k".repeat(10_000);
    let names = [
        "../../escaped",
        "/etc/passwd",
        "..",
        ".hidden",
        "a/b\\c",
        "nul\0byte",
        "ünïcødé-名前",
        "CON",
        long.as_str(),
    ];
    for name in names {
        let key = TokenKey::new(name).with("client_id", name);
        store.save(&key, &token()).await.unwrap();
        assert!(store.load(&key).await.unwrap().is_some(), "{name:?}");
        let _ = store.lease(&key, HOUR).await.unwrap();
    }
    // Everything is a plain 0600 file directly in the directory; nothing beside it.
    for entry in std::fs::read_dir(&tokens).unwrap() {
        let entry = entry.unwrap();
        assert!(entry.file_type().unwrap().is_file(), "{:?}", entry.path());
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.') || name.ends_with(".lock"), "{name}");
        assert!(name.len() <= 255, "{name}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}: tokens and lock files are private");
        }
    }
    let beside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("tokens")]);
}
