//! SIGKILL during a save of the file store, at 1,000 random points: the file
//! holds a whole token every time, never a torn one, and nothing is moved aside.
//! This test binary runs itself as the child that saves (selected by an
//! environment variable).

use crate::common::*;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokenwarden::store::{FileKey, FileStore};
use tokenwarden::{Token, TokenKey, TokenStore};

const CHILD_DIR: &str = "TW_KILL_CHILD_DIR";
const ROUNDS: usize = 1_000;

fn store(dir: &Path) -> FileStore {
    FileStore::builder("tokenwarden-tests")
        .dir(dir)
        .key(FileKey::bytes([9; 32]))
        .build()
        .unwrap()
}

fn child_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD_DIR).map(PathBuf::from)
}

#[test]
fn a_process_killed_mid_save_leaves_a_whole_token() {
    let _h = harness();
    let key = TokenKey::new("atomic");
    if let Some(dir) = child_dir() {
        // A child: saves tokens of varying sizes as fast as it can, until killed.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store = store(&dir);
        println!("\nREADY");
        std::io::stdout().flush().unwrap();
        for n in 0u32.. {
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
    for round in 0..ROUNDS {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([
                "file_kill::a_process_killed_mid_save_leaves_a_whole_token",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..20_000)));
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
    // Saves cut short leave temporary files (sealed, 0600); a store opened an
    // hour later removes them, and the token stays.
    let temporary = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".tmp-")
            })
            .count()
    };
    let left = temporary();
    println!("{left} temporary files left by {ROUNDS} kills");
    let later = tokenwarden::ManualClock::new(
        std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000),
    );
    let swept = FileStore::builder("tokenwarden-tests")
        .dir(dir.path())
        .key(FileKey::bytes([9; 32]))
        .clock(later)
        .build()
        .unwrap();
    assert_eq!(temporary(), 0, "the stale temporary files are gone");
    assert!(runtime.block_on(swept.load(&key)).unwrap().is_some());
    assert!(
        found > ROUNDS / 2,
        "most kills land after saves began ({found} of {ROUNDS})"
    );
}
