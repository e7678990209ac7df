//! The agent's managers: one per profile, made by the first request that needs
//! it (again after an edit of the profile), each with the tasks that serve it:
//! its last-refresh record and, where the profile names one, its token file.
//!
//! The tasks belong to the manager's slot: a slot replaced (an edit) or cleared
//! (SIGHUP) ends them with it. A manager whose start raced a reload serves the
//! request that made it and starts no task, so nothing of an older reading of
//! the configuration lives on.

use crate::config::Profile;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use tokenwarden::TokenManager;
use tokio::sync::OnceCell;
use tokio::task::JoinSet;

/// The managers of the profiles the agent was asked for.
#[derive(Default)]
pub struct Managers {
    slots: Mutex<HashMap<String, Slot>>,
    /// The token files written (removed when the agent stops, or when no
    /// profile names them after a reload).
    files: Arc<Mutex<Vec<PathBuf>>>,
}

/// A profile's manager, made once, for the profile as it read then (its
/// digest), and the tasks that serve it (ended when the slot goes).
struct Slot {
    digest: String,
    cell: Arc<OnceCell<TokenManager>>,
    tasks: JoinSet<()>,
}

impl Slot {
    fn new(digest: String) -> Self {
        Slot {
            digest,
            cell: Arc::default(),
            tasks: JoinSet::new(),
        }
    }
}

impl Managers {
    /// The manager of `profile` as it resolves now: the one made for the same
    /// digest, or a new one (with its tasks) in place of an older reading's.
    pub async fn get(&self, profile: &Profile) -> Result<TokenManager, tokenwarden::Error> {
        let digest = profile.digest();
        let cell = {
            let mut slots = self.slots();
            let slot =
                (slots.entry(profile.name.clone())).or_insert_with(|| Slot::new(digest.clone()));
            if slot.digest != digest {
                *slot = Slot::new(digest);
            }
            slot.cell.clone()
        };
        let made = cell.get_or_try_init(|| async {
            let manager = profile.agent_manager().await?;
            let mut tasks = JoinSet::new();
            let name = profile.name.clone();
            tasks.spawn(crate::last_refresh::keep(name.clone(), manager.clone()));
            if let Some(path) = profile.token_file.clone() {
                tasks.spawn(keep_file(name, manager.clone(), path, self.files.clone()));
            }
            self.attach(&profile.name, &cell, tasks);
            Ok(manager)
        });
        made.await.cloned()
    }

    /// Gives the slot of `name` its tasks if `cell` is still its manager's;
    /// else (the slot was replaced or cleared meanwhile) they end here.
    fn attach(&self, name: &str, cell: &Arc<OnceCell<TokenManager>>, tasks: JoinSet<()>) {
        if let Some(slot) = self.slots().get_mut(name) {
            if Arc::ptr_eq(&slot.cell, cell) {
                slot.tasks = tasks;
            }
        }
    }

    /// Forgets every manager and ends their tasks (their tokens stay in the
    /// stores): the next requests read the configuration again.
    pub fn clear(&self) {
        self.slots().clear();
    }

    /// Removes the token files written that `wanted` no longer names.
    pub fn keep_only_files(&self, wanted: &[PathBuf]) {
        self.files().retain(|kept| {
            let still = wanted.contains(kept);
            if !still {
                let _ = std::fs::remove_file(kept);
            }
            still
        });
    }

    /// Ends every task and removes every token file written.
    pub fn stop(&self) {
        self.clear();
        self.keep_only_files(&[]);
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes the profile's token file, then keeps it fresh until aborted.
async fn keep_file(
    name: String,
    manager: TokenManager,
    path: PathBuf,
    files: Arc<Mutex<Vec<PathBuf>>>,
) {
    let first = match manager.token().await {
        Ok(token) => crate::token_file::write_whole(&path, token.access_token.secret())
            .map(|()| token.fingerprint().to_owned()),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    };
    match first {
        Ok(fingerprint) => {
            {
                let mut files = files.lock().unwrap_or_else(PoisonError::into_inner);
                if !files.contains(&path) {
                    files.push(path.clone());
                }
            }
            crate::token_file::keep_fresh(manager, path, fingerprint).await;
        }
        Err(e) => eprintln!("tokenwarden agent: no token file for `{name}`: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn profile(scope: &str) -> Profile {
        let text = format!(
            "[profiles.p]\ntoken_url = \"http://127.0.0.1:9/token\"\nclient_id = \"c\"\n\
             client_secret = \"s\"\nstore = \"memory\"\nscope = \"{scope}\"\n"
        );
        let config = Config::parse(std::path::Path::new("/nowhere/config.toml"), text);
        config.unwrap().profile("p").unwrap()
    }

    /// Tasks that tell when they end: the receiver sees its sender dropped.
    fn watched() -> (JoinSet<()>, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let _held = tx;
            std::future::pending::<()>().await;
        });
        (tasks, rx)
    }

    fn cell(managers: &Managers) -> Arc<OnceCell<TokenManager>> {
        managers.slots()["p"].cell.clone()
    }

    #[tokio::test]
    async fn the_same_profile_keeps_its_manager_and_tasks() {
        let managers = Managers::default();
        managers.get(&profile("read")).await.unwrap();
        let first = cell(&managers);
        assert_eq!(
            managers.slots()["p"].tasks.len(),
            1,
            "its last-refresh record"
        );
        managers.get(&profile("read")).await.unwrap();
        assert!(Arc::ptr_eq(&first, &cell(&managers)));
    }

    #[tokio::test]
    async fn an_edit_ends_the_older_managers_tasks() {
        let managers = Managers::default();
        managers.get(&profile("read")).await.unwrap();
        let (tasks, mut ended) = watched();
        managers.attach("p", &cell(&managers), tasks);
        assert!(ended
            .try_recv()
            .is_err_and(|e| e == tokio::sync::oneshot::error::TryRecvError::Empty));
        managers.get(&profile("read write")).await.unwrap();
        assert!(ended.await.is_err(), "the older slot's task ended with it");
    }

    #[tokio::test]
    async fn a_start_that_raced_a_reload_starts_no_task() {
        let managers = Managers::default();
        managers.get(&profile("read")).await.unwrap();
        let before = cell(&managers);
        managers.clear(); // SIGHUP while a manager was being made
        let (tasks, ended) = watched();
        managers.attach("p", &before, tasks);
        assert!(ended.await.is_err(), "its tasks end at once");
        assert!(managers.slots().is_empty());
        // Nor into a slot made since.
        managers.get(&profile("read")).await.unwrap();
        let (tasks, ended) = watched();
        managers.attach("p", &before, tasks);
        assert!(ended.await.is_err());
        assert_eq!(managers.slots()["p"].tasks.len(), 1);
    }
}
