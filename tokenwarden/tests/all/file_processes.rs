//! The file store across real processes: this test binary runs itself as the child
//! processes (selected by an environment variable), so each test is one parent
//! that spawns, kills and checks.

use crate::common::*;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokenwarden::store::FileStore;
use tokenwarden::{source::from_fn, Token, TokenManager};

const CHILD_DIR: &str = "TW_FILE_CHILD_DIR";

fn store(dir: &Path) -> FileStore {
    file_store(dir, [9; 32])
}

/// Runs the test `name` of this binary as a child process on `dir`.
fn child(name: &str, dir: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    command
}

fn child_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD_DIR).map(PathBuf::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_processes_make_one_token_request() {
    let _h = harness();
    if let Some(dir) = child_dir() {
        // A child: one "CLI invocation" that needs a token.
        let logins = dir.join("logins");
        let source = from_fn("cli", move || {
            let logins = logins.clone();
            async move {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&logins)
                    .unwrap();
                writeln!(file, "login").unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await; // the token endpoint
                let n: u64 = fastrand::u64(..);
                Ok(Token::new(format!("{MARKER}-proc-{n}"))
                    .with_expires_in(Duration::from_secs(3600)))
            }
        });
        let manager = TokenManager::builder(source)
            .store(store(&dir))
            .build()
            .unwrap();
        println!(
            "FINGERPRINT={}",
            manager.token().await.unwrap().fingerprint()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..20)
        .map(|_| {
            child(
                "file_processes::twenty_processes_make_one_token_request",
                dir.path(),
            )
            .spawn()
            .unwrap()
        })
        .collect();
    let mut fingerprints = std::collections::HashSet::new();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.split("FINGERPRINT=").nth(1))
            .unwrap_or_else(|| panic!("the child printed no token: {stdout}"));
        fingerprints.insert(line.to_owned());
    }
    let logins = std::fs::read_to_string(dir.path().join("logins")).unwrap();
    assert_eq!(logins.lines().count(), 1, "20 processes, one token request");
    assert_eq!(fingerprints.len(), 1, "all 20 use the same token");
}
