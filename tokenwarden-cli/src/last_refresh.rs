//! The last attempt to get a profile's token on this machine, kept for
//! `status`: each command runs in its own process, so what one command's
//! manager did (why it refreshed, how that went, how long it backs off) is
//! written to `<data dir>/last-refresh/<profile>.json` when it ends, and by the
//! proxy as it goes. Never a secret: times, a reason, an outcome, an error kind.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use tokenwarden::TokenManager;

/// The record's file for `profile`, if there is a data directory.
fn path(profile: &str) -> Option<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "tokenwarden")?;
    // A profile name is a TOML key: kept to characters safe in a file name,
    // and where any had to go, told apart by a hash of the name (FNV-1a: stable
    // across builds).
    let mut name: String = (profile.chars())
        .map(
            |c| match c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                true => c,
                false => '_',
            },
        )
        .collect();
    if name != profile {
        let hash = (profile.bytes()).fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        name += &format!("-{hash:016x}");
    }
    Some(
        dirs.data_dir()
            .join("last-refresh")
            .join(format!("{name}.json")),
    )
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The manager's last attempt (and its backoff), as `status` shows it.
pub async fn describe(manager: &TokenManager) -> Option<Value> {
    let last = manager.last_refresh()?;
    let error = match last.outcome {
        tokenwarden::RefreshOutcome::Failed(kind) => Some(kind.as_str()),
        _ => None,
    };
    let retry_at = manager.info().await.retry_at.map(unix_ms);
    Some(json!({
        "at": unix_ms(last.at),
        "reason": last.reason.as_str(),
        "outcome": last.outcome.as_str(),
        "error": error,
        "took_ms": u64::try_from(last.took.as_millis()).unwrap_or(u64::MAX),
        "retry_at": retry_at,
    }))
}

/// Writes the manager's last attempt for `profile`, if it made one. Best effort:
/// a record that cannot be written costs `status` a line, not the command.
pub async fn save(profile: &str, manager: &TokenManager) {
    // A command's copy of the agent's token: the agent keeps the record.
    if manager.source_name().starts_with("agent:") {
        return;
    }
    let (Some(record), Some(path)) = (describe(manager).await, path(profile)) else {
        return;
    };
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    // Whole or not at all: written beside, then renamed over.
    let Ok(mut file) = tempfile::NamedTempFile::new_in(dir) else {
        return;
    };
    if serde_json::to_writer(&mut file, &record).is_ok() {
        let _ = file.persist(&path);
    }
}

/// The last attempt recorded for `profile` on this machine.
pub fn load(profile: &str) -> Option<Value> {
    let text = std::fs::read(path(profile)?).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Keeps the record of a long-running manager (the proxy's) current: written
/// each time the manager's last attempt changes, checked every second.
pub async fn keep(profile: String, manager: TokenManager) {
    let mut written = None;
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        ticks.tick().await;
        let last = manager.last_refresh();
        if last.is_some() && last != written {
            save(&profile, &manager).await;
            written = last;
        }
    }
}
