//! `tokenwarden exec -p P [--env NAME] [--token-file PATH] -- CMD ARGS`: runs
//! CMD with the token in its environment. Its stdin, stdout and stderr are this
//! process's; the signals this process gets (INT, TERM, HUP, QUIT, USR1, USR2)
//! go on to it; its exit code is this one's (128 + N when a signal N ended it,
//! as shells say). With `--token-file`, a 0600 file holds the current token for
//! as long as CMD runs, replaced whole (written beside, then renamed over) after
//! each refresh ahead of expiry, for programs that read a token file again (as
//! Kubernetes' projected service-account tokens are read); it is removed when
//! CMD ends.

use super::Context;
use crate::cli::ExecArgs;
use crate::exit::{CliError, UNAVAILABLE};
use crate::profile::Interaction;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokenwarden::TokenManager;

/// The shortest wait between two looks at the token while keeping the file.
const MIN_WAIT: Duration = Duration::from_millis(200);

pub async fn run(ctx: &Context, args: &ExecArgs) -> Result<u8, CliError> {
    let profile = ctx.profile(args.profile.profile.as_deref())?;
    // A file kept fresh needs refreshes ahead of expiry; one token does not.
    let manager = match &args.token_file {
        Some(_) => profile.service_manager().await?,
        None => profile.manager(Interaction::Refused).await?,
    };
    let token = manager.token().await;
    crate::last_refresh::save(&profile.name, &manager).await;
    let token = token?;
    let file = match &args.token_file {
        Some(path) => Some(TokenFile::create(path, token.access_token.secret())?),
        None => None,
    };
    let (program, rest) = args.command.split_first().ok_or_else(|| {
        CliError::usage("no command to run").hint("give it after --: tokenwarden exec -- CMD")
    })?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .env(&args.env, token.access_token.secret());
    let fingerprint = token.fingerprint().to_owned();
    drop(token);
    let mut child = command.spawn().map_err(|e| {
        let code = match e.kind() {
            std::io::ErrorKind::NotFound => 127,
            _ => 126,
        };
        CliError::new(
            code,
            format!("cannot run `{}`: {e}", program.to_string_lossy()),
        )
    })?;
    let keeping = file
        .as_ref()
        .map(|file| tokio::spawn(keep_fresh(manager.clone(), file.path.clone(), fingerprint)));
    let status = wait_passing_signals(&mut child).await;
    if let Some(keeping) = keeping {
        keeping.abort();
        let _ = keeping.await;
    }
    drop(file);
    crate::last_refresh::save(&profile.name, &manager).await;
    let status = status
        .map_err(|e| CliError::new(UNAVAILABLE, format!("waiting for the command failed: {e}")))?;
    Ok(exit_code(status))
}

/// The command's exit code, or 128 + the signal that ended it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return u8::try_from(128 + signal).unwrap_or(u8::MAX);
    }
    status.code().map_or(1, |code| (code & 0xff) as u8)
}

/// Waits for `child`, passing on the signals this process gets.
#[cfg(unix)]
async fn wait_passing_signals(
    child: &mut tokio::process::Child,
) -> std::io::Result<std::process::ExitStatus> {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        (SignalKind::interrupt(), rustix::process::Signal::INT),
        (SignalKind::terminate(), rustix::process::Signal::TERM),
        (SignalKind::hangup(), rustix::process::Signal::HUP),
        (SignalKind::quit(), rustix::process::Signal::QUIT),
        (SignalKind::user_defined1(), rustix::process::Signal::USR1),
        (SignalKind::user_defined2(), rustix::process::Signal::USR2),
    ];
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut listeners = Vec::new();
    for (kind, passed) in kinds {
        let Ok(mut stream) = signal(kind) else {
            continue;
        };
        let tx = tx.clone();
        listeners.push(tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(passed).is_err() {
                    return;
                }
            }
        }));
    }
    let pid = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32));
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(passed) = rx.recv() => {
                if let Some(pid) = pid {
                    let _ = rustix::process::kill_process(pid, passed);
                }
            }
        }
    };
    listeners.iter().for_each(tokio::task::JoinHandle::abort);
    status
}

#[cfg(not(unix))]
async fn wait_passing_signals(
    child: &mut tokio::process::Child,
) -> std::io::Result<std::process::ExitStatus> {
    child.wait().await
}

/// Replaces the file's token after each refresh, until aborted.
async fn keep_fresh(manager: TokenManager, path: PathBuf, mut written: String) {
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
struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    fn create(path: &Path, token: &str) -> Result<Self, CliError> {
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
fn write_whole(path: &Path, token: &str) -> std::io::Result<()> {
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
