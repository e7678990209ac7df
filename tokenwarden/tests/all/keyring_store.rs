//! The keyring store on the machine's real OS credential store (the kernel keyring
//! on Linux). Where none answers, the tests print why and skip, except under `CI`.

use crate::common::*;
use std::time::Duration;
use tokenwarden::store::{FileKey, FileStore, KeyringStore};
use tokenwarden::{source::from_fn, Token, TokenKey, TokenManager, TokenStore};

/// A store under a service name no other run uses, or `None` (skip) where the OS
/// keyring does not answer.
async fn store(dir: &std::path::Path) -> Option<KeyringStore> {
    let service = format!("tokenwarden-tests-{}", fastrand::u64(..));
    let store = KeyringStore::new(service).lock_dir(dir.join("locks"));
    let probe = TokenKey::new("probe");
    match store.save(&probe, &Token::new("probe")).await {
        Ok(()) => {
            store.delete(&probe).await.unwrap();
            Some(store)
        }
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("CI needs the OS keyring (keyutils on Linux): {error}")
        }
        Err(error) => {
            eprintln!("skipped: the OS keyring does not answer here ({error})");
            None
        }
    }
}

/// The keyring entry itself, as another program would open it (on Linux, from a
/// thread in the session keyring the store's threads use).
fn raw_entry(service: &str, user: &str) -> keyring::Entry {
    #[cfg(target_os = "linux")]
    linux_keyutils::KeyRing::get_persistent(linux_keyutils::KeyRingIdentifier::Session).unwrap();
    keyring::Entry::new(service, user).unwrap()
}

#[tokio::test]
async fn tokens_round_trip_in_the_os_keyring() {
    let _h = harness();
    let dir = tempfile::tempdir().unwrap();
    let Some(store) = store(dir.path()).await else {
        return;
    };
    let key = TokenKey::new("api").with("client_id", "c");
    assert!(store.load(&key).await.unwrap().is_none());
    assert!(!store.contains(&key).await.unwrap());
    let token = Token::new(format!("{MARKER}-keyring-at"))
        .with_refresh_token(format!("{MARKER}-keyring-rt"));
    store.save(&key, &token).await.unwrap();
    let loaded = store.load(&key).await.unwrap().unwrap();
    assert_eq!(
        loaded.refresh_token.unwrap().secret(),
        format!("{MARKER}-keyring-rt")
    );
    // Another store value, as another process would make it, sees the entry.
    let again = KeyringStore::new(store.service());
    assert!(again.contains(&key).await.unwrap());
    store.delete(&key).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_none());
    store.delete(&key).await.unwrap(); // deleting nothing is fine
    assert_clean("keyring store", &format!("{store:?}"));
}

#[tokio::test]
async fn a_foreign_entry_is_a_typed_error_that_names_it() {
    let _h = harness();
    let dir = tempfile::tempdir().unwrap();
    let Some(store) = store(dir.path()).await else {
        return;
    };
    let key = TokenKey::new("foreign");
    raw_entry(store.service(), key.as_str())
        .set_password("not json")
        .unwrap();
    let error = store.load(&key).await.unwrap_err();
    assert_eq!(error.kind(), tokenwarden::ErrorKind::Store);
    assert!(error.to_string().contains(key.as_str()), "{error}");
    store.delete(&key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_sharing_the_keyring_make_one_token_request() {
    let _h = harness();
    let dir = tempfile::tempdir().unwrap();
    let Some(store) = store(dir.path()).await else {
        return;
    };
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let managers: Vec<_> = (0..4)
        .map(|_| {
            let calls = calls.clone();
            TokenManager::builder(from_fn("keyring-api", move || {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Token::new(format!("{MARKER}-shared"))
                        .with_expires_in(Duration::from_secs(3600)))
                }
            }))
            .store(KeyringStore::new(store.service()).lock_dir(dir.path().join("locks")))
            .build()
            .unwrap()
        })
        .collect();
    let tokens = futures_util::future::join_all(
        managers
            .iter()
            .map(|m| async { m.token().await.unwrap().access_token.secret().to_owned() }),
    )
    .await;
    assert!(tokens.iter().all(|t| t == &format!("{MARKER}-shared")));
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    managers[0].logout().await.unwrap();
    let key = managers[0].key().clone();
    assert!(!store.contains(&key).await.unwrap());
}

#[tokio::test]
async fn the_file_store_key_can_live_in_the_keyring() {
    let _h = harness();
    let dir = tempfile::tempdir().unwrap();
    let Some(probe) = store(dir.path()).await else {
        return;
    };
    let service = probe.service().to_owned();
    let build = || {
        FileStore::builder("tokenwarden-tests")
            .dir(dir.path().join("tokens"))
            .key(FileKey::keyring(&service))
            .build()
            .unwrap()
    };
    let key = TokenKey::new("api");
    build()
        .save(&key, &Token::new(format!("{MARKER}-file-keyring")))
        .await
        .unwrap();
    let loaded = build().load(&key).await.unwrap().unwrap();
    assert_eq!(
        loaded.access_token.secret(),
        format!("{MARKER}-file-keyring")
    );
    // The key is in the keyring, not beside the tokens.
    let entry = raw_entry(&service, "file-key");
    assert_eq!(entry.get_password().unwrap().len(), 44, "32 bytes, base64");
    let raw_keys = std::fs::read_dir(dir.path().join("tokens"))
        .unwrap()
        .filter(|f| f.as_ref().unwrap().metadata().unwrap().len() == 32)
        .count();
    assert_eq!(raw_keys, 0, "no key file beside the tokens");
    // The key is gone from the keyring: a new one is made, and the file sealed with
    // the old one is moved aside, not overwritten.
    entry.delete_credential().unwrap();
    let error = build().load(&key).await.unwrap_err();
    assert!(error.to_string().contains("moved aside"), "{error}");
    assert_eq!(files_moved_aside(&dir.path().join("tokens")), 1);
    entry.delete_credential().unwrap();
}
