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
use crate::token_file::{keep_fresh, TokenFile};

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
