//! The file store across real processes: this test binary runs itself as the child
//! processes (selected by an environment variable), so each test is one parent
//! that spawns, kills and checks.

use crate::common::*;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokenwarden::store::{FileKey, FileStore};
use tokenwarden::{source::from_fn, Token, TokenKey, TokenManager, TokenStore};

const CHILD_DIR: &str = "TW_FILE_CHILD_DIR";

fn store(dir: &Path) -> FileStore {
    FileStore::builder("tokenwarden-tests")
        .dir(dir)
        .key(FileKey::bytes([9; 32]))
        .build()
        .unwrap()
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

#[test]
fn a_process_killed_mid_save_leaves_a_whole_token() {
    let _h = harness();
    let key = TokenKey::new("atomic");
    if let Some(dir) = child_dir() {
        // A child: saves 1,000 tokens as fast as it can, until killed.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store = store(&dir);
        println!("\nREADY");
        std::io::stdout().flush().unwrap();
        for n in 0..1_000u32 {
            let token = Token::new(format!(
                "{MARKER}-save-{n}-{}",
                "x".repeat(n as usize % 300)
            ))
            .with_expires_in(Duration::from_secs(60));
            runtime.block_on(store.save(&key, &token)).unwrap();
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut found = 0;
    for round in 0..20 {
        let mut process = child(
            "file_processes::a_process_killed_mid_save_leaves_a_whole_token",
            dir.path(),
        )
        .spawn()
        .unwrap();
        let mut ready = String::new();
        let mut stdout = std::io::BufReader::new(process.stdout.take().unwrap());
        while !ready.contains("READY") {
            ready.clear();
            let read = std::io::BufRead::read_line(&mut stdout, &mut ready).unwrap();
            assert!(read > 0, "round {round}: the child never started saving");
        }
        // A random point in the run of saves, then SIGKILL.
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..100)));
        process.kill().unwrap();
        process.wait().unwrap();
        match runtime.block_on(store(dir.path()).load(&key)) {
            Ok(Some(token)) => {
                assert!(token
                    .access_token
                    .secret()
                    .starts_with(&format!("{MARKER}-save-")));
                found += 1;
            }
            Ok(None) => {} // killed before the first save landed
            Err(error) => panic!("round {round}: the file is not whole: {error}"),
        }
        let leftovers = files_moved_aside(dir.path());
        assert_eq!(leftovers, 0, "round {round}: nothing was ever unreadable");
    }
    assert!(found > 0, "some kills landed after saves began");
}
