//! [`KeyringStore`]: tokens in the operating system's credential store (feature
//! `keyring`), through the `keyring` crate.

use super::fs::{self, create_private_dir, io_error};
use super::{Lease, TokenStore};
use crate::{Error, Result, Token, TokenKey};
use async_trait::async_trait;
use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroizing;

/// Tokens in the OS credential store: the macOS Keychain, the Windows Credential
/// Manager, or the Linux kernel keyring (keyutils), one entry per key under the
/// service name you give.
///
/// The Linux kernel keyring needs no desktop session (it works on servers and in
/// containers), but it lives in memory: it is emptied by a reboot, and the
/// manager then logs in again. For tokens that must outlive a reboot there, use
/// [`FileStore`](super::FileStore).
///
/// Leases are OS file locks in the platform's cache directory for the service
/// (`~/.cache/<service>/locks` on Linux), so that processes of one user on one
/// machine refresh once between them.
///
/// ```no_run
/// use tokenwarden::store::KeyringStore;
/// use tokenwarden::{source::from_fn, Token, TokenManager};
///
/// # fn run() -> tokenwarden::Result<()> {
/// let manager = TokenManager::builder(from_fn("api", || async { Ok(Token::new("t")) }))
///     .store(KeyringStore::new("my-cli"))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KeyringStore {
    service: String,
    lock_dir: Option<PathBuf>,
    name: String,
}

impl KeyringStore {
    /// A store of entries under the service name `service` (your application's
    /// name, as the OS shows it to the user).
    pub fn new(service: impl Into<String>) -> Self {
        let service = service.into();
        let lock_dir = directories::ProjectDirs::from("", "", &service)
            .map(|dirs| dirs.cache_dir().join("locks"));
        Self {
            name: format!("keyring:{service}"),
            service,
            lock_dir,
        }
    }

    /// Where the lease lock files go. Defaults to the platform's cache directory.
    pub fn lock_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.lock_dir = Some(dir.into());
        self
    }

    /// The service name of the entries.
    pub fn service(&self) -> &str {
        &self.service
    }

    async fn blocking<T: Send + 'static>(
        &self,
        key: &TokenKey,
        work: impl FnOnce(&keyring::Entry, &str) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (service, user, name) = (
            self.service.clone(),
            key.as_str().to_owned(),
            self.name.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let entry =
                entry(&service, &user).map_err(|e| keyring_error(&name, "open the entry", e))?;
            work(&entry, &name)
        })
        .await
        .map_err(|e| Error::store(&self.name, format!("the keyring task failed: {e}")))?
    }
}

#[async_trait]
impl TokenStore for KeyringStore {
    async fn load(&self, key: &TokenKey) -> Result<Option<Token>> {
        let user = key.as_str().to_owned();
        self.blocking(key, move |entry, name| match entry.get_password() {
            Ok(json) => {
                let json = Zeroizing::new(json);
                serde_json::from_str(&json).map(Some).map_err(|_| {
                    Error::store(
                        name,
                        format!("the keyring entry `{user}` holds no token (another program's?); remove it, or log in again"),
                    )
                })
            }
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(keyring_error(name, "read the token", e)),
        })
        .await
    }

    async fn save(&self, key: &TokenKey, token: &Token) -> Result<()> {
        let json =
            Zeroizing::new(serde_json::to_string(token).map_err(|e| {
                Error::store(&self.name, format!("could not encode the token: {e}"))
            })?);
        self.blocking(key, move |entry, name| {
            entry
                .set_password(&json)
                .map_err(|e| keyring_error(name, "save the token", e))
        })
        .await
    }

    async fn delete(&self, key: &TokenKey) -> Result<()> {
        self.blocking(key, |entry, name| match entry.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(keyring_error(name, "delete the token", e)),
        })
        .await
    }

    async fn lease(&self, key: &TokenKey, ttl: Duration) -> Result<Lease> {
        let Some(dir) = &self.lock_dir else {
            return Err(Error::store(
                &self.name,
                "no directory for lock files (no home directory); give the store a lock_dir",
            ));
        };
        create_private_dir(dir).map_err(|e| io_error(&self.name, "create", dir, e))?;
        fs::lock(&dir.join(format!("{}.lock", key.as_str())), ttl, &self.name).await
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// The keyring entry of `user` under `service`.
///
/// On Linux, the calling thread's session keyring is made first. A process started
/// without one (a service, a container, cron) otherwise uses the user-session
/// keyring, and the `keyring` crate's entry links the persistent keyring in, which
/// gives the thread a new session keyring under that entry's feet: its first write
/// fails with "no such entry". Session keyrings belong to threads (credentials are
/// per thread), so each thread joins once, before its first entry; entries stay
/// visible to every thread and process of the user through the persistent keyring.
pub(crate) fn entry(service: &str, user: &str) -> keyring::Result<keyring::Entry> {
    #[cfg(target_os = "linux")]
    {
        thread_local!(static JOINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
        if !JOINED.get() {
            use linux_keyutils::{KeyRing, KeyRingIdentifier};
            if let Err(error) = KeyRing::get_persistent(KeyRingIdentifier::Session) {
                tracing::debug!(
                    ?error,
                    "no persistent kernel keyring; entries last as long as the session"
                );
            }
            JOINED.set(true);
        }
    }
    keyring::Entry::new(service, user)
}

/// A store error for a keyring failure. Written out per variant: `keyring::Error`'s
/// `Debug` of a badly encoded entry would print the entry's bytes.
pub(crate) fn keyring_error(store: &str, action: &str, error: keyring::Error) -> Error {
    let why = match &error {
        keyring::Error::NoStorageAccess(e) => {
            format!("the OS keyring is not available ({e}); unlock it, or use the file store")
        }
        keyring::Error::PlatformFailure(e) => format!("the OS keyring failed ({e})"),
        keyring::Error::BadEncoding(_) => "the entry is not UTF-8 text".to_owned(),
        keyring::Error::TooLong(what, max) => {
            format!(
                "the {what} is longer than this keyring allows ({max} bytes); use the file store"
            )
        }
        keyring::Error::NoEntry => "there is no such entry".to_owned(),
        other => format!("{other}"),
    };
    Error::store(store, format!("could not {action}: {why}"))
}
