//! SIGKILL during a save of the file store, at 1,000 random points: the file
//! holds a whole token every time, never a torn one, and nothing is moved aside.
//! This test binary runs itself as the child that saves (selected by an
//! environment variable).

use crate::common::*;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokenwarden::store::FileStore;
use tokenwarden::{Token, TokenKey, TokenStore};

const CHILD_DIR: &str = "TW_KILL_CHILD_DIR";
const ROUNDS: usize = 1_000;

fn store(dir: &Path) -> FileStore {
    file_store(dir, [9; 32])
}

fn child_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD_DIR).map(PathBuf::from)
}

const ROUND: &str = "TW_KILL_ROUND";

/// `(round, n)` of a token saved as save `n` of round `round`.
fn which(token: &Token) -> (usize, u64) {
    let mut parts = token.access_token.secret().split('-').skip(2);
    let mut next = || parts.next().unwrap().parse().unwrap();
    (next() as usize, next())
}

#[test]
#[allow(clippy::disallowed_methods)] // file times are real time
fn a_process_killed_mid_save_leaves_a_whole_token() {
    let _h = harness();
    let key = TokenKey::new("atomic");
    if let Some(dir) = child_dir() {
        // A child: saves tokens of varying sizes as fast as it can, saying after
        // each that it completed, until killed.
        let round: usize = std::env::var(ROUND).unwrap().parse().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store = store(&dir);
        let mut stdout = std::io::stdout();
        writeln!(stdout, "\nREADY").unwrap();
        stdout.flush().unwrap();
        for n in 0u64.. {
            let padding = "x".repeat(n as usize % 300);
            let token = Token::new(format!("{MARKER}-save-{round}-{n}-{padding}"))
                .with_expires_in(Duration::from_secs(60));
            runtime.block_on(store.save(&key, &token)).unwrap();
            writeln!(stdout, "SAVED {n}").unwrap();
            stdout.flush().unwrap();
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Where each kill lands is random, from a seed that replays (TW_KILL_SEED).
    let seed = std::env::var("TW_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("kill points from seed {seed} (TW_KILL_SEED={seed} replays them)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut mid_run, mut in_flight_landed, mut after_saves) = (0, 0, 0);
    let mut held: Option<(usize, u64)> = None;
    for round in 0..ROUNDS {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([
                "file_kill::a_process_killed_mid_save_leaves_a_whole_token",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(process.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("READY") {
            line.clear();
            let read = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
            assert!(read > 0, "round {round}: the child never started saving");
        }
        // A random point in the run of saves, then SIGKILL: after a random
        // number of saves have completed (counted, not timed: a busy machine
        // slows the child, not where the kill lands), and a random moment into
        // the next one.
        let saves = rng.usize(0..=8);
        after_saves += usize::from(saves > 0);
        for _ in 0..saves {
            line.clear();
            let read = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
            assert!(read > 0, "round {round}: the child stopped saving");
        }
        std::thread::sleep(Duration::from_micros(rng.u64(0..2_000)));
        process.kill().unwrap();
        process.wait().unwrap();
        let mut rest = line.clone();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let completed = rest
            .lines()
            .filter_map(|l| l.strip_prefix("SAVED ")?.parse::<u64>().ok())
            .max();
        let loaded = match runtime.block_on(store(dir.path()).load(&key)) {
            Ok(token) => token.as_ref().map(which),
            Err(error) => panic!("round {round}: the file is not whole: {error}"),
        };
        // Nothing lost: the file holds the last save that completed, or the one
        // the kill cut short if it got as far as its rename.
        let fine = match completed {
            Some(n) => {
                mid_run += 1;
                in_flight_landed += usize::from(loaded == Some((round, n + 1)));
                loaded == Some((round, n)) || loaded == Some((round, n + 1))
            }
            None => loaded == held || loaded == Some((round, 0)),
        };
        assert!(
            fine,
            "round {round}: saves completed up to {completed:?}, the file holds {loaded:?} (before: {held:?})"
        );
        held = loaded;
        let leftovers = files_moved_aside(dir.path());
        assert_eq!(leftovers, 0, "round {round}: nothing was ever unreadable");
    }
    println!(
        "{ROUNDS} kills: {mid_run} after some saves had completed, {in_flight_landed} of them \
         after the rename of the save they cut short"
    );
    assert!(
        mid_run >= after_saves,
        "every kill after a completed save saw it: {mid_run} of {after_saves}"
    );
    // Saves cut short leave temporary files (sealed, 0600). Once they are more
    // than an hour old (made so here), a new store removes them; younger ones,
    // which may be another process's save in progress, stay.
    let temporary = || -> Vec<PathBuf> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".tmp-")
            })
            .collect()
    };
    let left = temporary();
    println!("{} temporary files left by {ROUNDS} kills", left.len());
    let _ = store(dir.path());
    assert_eq!(temporary().len(), left.len(), "recent ones stay");
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    for path in &left {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(two_hours_ago).unwrap();
    }
    let swept = store(dir.path());
    assert!(temporary().is_empty(), "the stale temporary files are gone");
    assert!(runtime.block_on(swept.load(&key)).unwrap().is_some());
}
