//! A file that holds a profile's current token, for programs that read a token
//! file again (as Kubernetes' projected service-account tokens are read): 0600,
//! replaced whole (written beside, then renamed over) after each refresh ahead
//! of expiry. `exec --token-file` keeps one while its command runs; the agent
//! keeps one for each profile with `token_file`.

use crate::exit::CliError;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokenwarden::TokenManager;

/// The shortest wait between two looks at the token while keeping the file.
const MIN_WAIT: Duration = Duration::from_millis(200);

/// Replaces the file's token after each refresh, until aborted.
pub async fn keep_fresh(manager: TokenManager, path: PathBuf, mut written: String) {
    loop {
        // Until the next refresh is due, then as often as it takes to see it.
        let info = manager.info().await;
        let now = tokenwarden::Clock::now(&tokenwarden::SystemClock);
        let until_due = (info.refresh_at)
            .and_then(|at| at.duration_since(now).ok())
            .unwrap_or_default();
        tokio::time::sleep(until_due.max(MIN_WAIT)).await;
        match manager.token().await {
            Ok(token) if token.fingerprint() != written => {
                match write_whole(&path, token.access_token.secret()) {
                    Ok(()) => written = token.fingerprint().to_owned(),
                    Err(e) => tracing::warn!(error = %e, "could not replace the token file"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "no new token for the token file yet"),
        }
    }
}

/// The token file, removed when dropped.
pub struct TokenFile {
    pub path: PathBuf,
}

impl TokenFile {
    pub fn create(path: &Path, token: &str) -> Result<Self, CliError> {
        write_whole(path, token).map_err(|e| {
            CliError::usage(format!(
                "cannot write the token file {}: {e}",
                path.display()
            ))
            .hint("give --token-file a path in a directory you can write to")
        })?;
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes `token` to `path` whole: into a new 0600 file beside it, then renamed
/// over it, so that a reader sees the old token or the new one, never a part.
pub fn write_whole(path: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // tempfile makes it 0600 on Unix.
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(token.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
