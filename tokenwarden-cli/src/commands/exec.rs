//! `tokenwarden exec -p P [--env NAME] [--token-file PATH] -- CMD ARGS`: runs
//! CMD with the token in its environment (and not the store's key). Its stdin,
//! stdout and stderr are this process's; TERM, HUP, USR1 and USR2 sent to this
//! process go on to it, while INT and QUIT are left to reach it from the
//! terminal (as `system(3)` does: forwarded, a Ctrl-C would arrive twice); its
//! exit code is this one's; a command ended by a signal ends this process by the same signal
//! (128 + N, as shells say, for signals that dump core). With `--token-file`, a 0600 file holds the current token for
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
    super::bearer_only(&profile, "the command")?;
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
    if args.env.is_empty() || args.env.contains(['=', '\0']) {
        return Err(CliError::usage(format!(
            "`{}` is not an environment variable's name",
            args.env
        )));
    }
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .env(&args.env, token.access_token.secret())
        .env_remove("TOKENWARDEN_STORE_KEY");
    // Listening before the command starts: a signal in between reaches it too.
    let signals = Signals::listen();
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
    let status = signals.wait_passing(&mut child).await;
    if let Some(keeping) = keeping {
        keeping.abort();
        let _ = keeping.await;
    }
    drop(file);
    crate::last_refresh::save(&profile.name, &manager).await;
    let status = status
        .map_err(|e| CliError::new(UNAVAILABLE, format!("waiting for the command failed: {e}")))?;
    #[cfg(unix)]
    end_as(&status);
    Ok(exit_code(status))
}

/// With everything cleaned up, ends this process by the signal that ended the
/// command, as GNU `timeout` and sudo do: the shell sees a command killed, not
/// an exit code (bash, for one, stops a loop whose command died of SIGINT).
/// Only signals that end a process without a core dump; for the others (SEGV,
/// ABRT...) the exit code says 128 + N and this process dumps no core of its own.
#[cfg(unix)]
fn end_as(status: &std::process::ExitStatus) {
    use signal_hook::consts::signal::{
        SIGALRM, SIGHUP, SIGINT, SIGKILL, SIGPIPE, SIGTERM, SIGUSR1, SIGUSR2,
    };
    let Some(signal) = std::os::unix::process::ExitStatusExt::signal(status) else {
        return;
    };
    let ending = [
        SIGHUP, SIGINT, SIGKILL, SIGPIPE, SIGALRM, SIGTERM, SIGUSR1, SIGUSR2,
    ];
    if ending.contains(&signal) {
        // Resets the handler to the default, unblocks the signal and raises it;
        // it returns only where that failed, and the exit code says it instead.
        let _ = signal_hook::low_level::emulate_default_handler(signal);
    }
}

/// The command's exit code, or 128 + the signal that ended it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return u8::try_from(128 + signal).unwrap_or(u8::MAX);
    }
    status.code().map_or(1, |code| (code & 0xff) as u8)
}

/// The signals passed on to the command (TERM, HUP, USR1, USR2), and INT and
/// QUIT taken (so that they do not end this process: the terminal sends them
/// to the command too).
struct Signals {
    #[cfg(unix)]
    streams: Vec<(tokio::signal::unix::Signal, Option<rustix::process::Signal>)>,
}

impl Signals {
    #[cfg(unix)]
    fn listen() -> Self {
        use rustix::process::Signal;
        use tokio::signal::unix::{signal, SignalKind};
        let kinds = [
            (SignalKind::terminate(), Some(Signal::TERM)),
            (SignalKind::hangup(), Some(Signal::HUP)),
            (SignalKind::user_defined1(), Some(Signal::USR1)),
            (SignalKind::user_defined2(), Some(Signal::USR2)),
            (SignalKind::interrupt(), None),
            (SignalKind::quit(), None),
        ];
        let streams = kinds
            .into_iter()
            .filter_map(|(kind, passed)| Some((signal(kind).ok()?, passed)))
            .collect();
        Self { streams }
    }

    #[cfg(not(unix))]
    fn listen() -> Self {
        Self {}
    }

    /// Waits for `child`, passing the signals on.
    #[cfg(unix)]
    async fn wait_passing(
        mut self,
        child: &mut tokio::process::Child,
    ) -> std::io::Result<std::process::ExitStatus> {
        let pid = child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32));
        if self.streams.is_empty() {
            return child.wait().await;
        }
        loop {
            let received =
                futures_util::future::select_all(self.streams.iter_mut().map(
                    |(stream, passed)| Box::pin(async move { stream.recv().await.and(*passed) }),
                ));
            tokio::select! {
                status = child.wait() => return status,
                (passed, _, _) = received => {
                    // Passed on while the command runs (`wait` has not reaped it:
                    // its pid is still its own).
                    if let (Some(pid), Some(passed)) = (pid, passed) {
                        let _ = rustix::process::kill_process(pid, passed);
                    }
                }
            }
        }
    }

    #[cfg(not(unix))]
    async fn wait_passing(
        self,
        child: &mut tokio::process::Child,
    ) -> std::io::Result<std::process::ExitStatus> {
        child.wait().await
    }
}
