//! The agent itself: listens on its socket, answers the user's own processes
//! only, holds one manager per profile (made on first use, refreshing ahead of
//! expiry in the background), forgets them on SIGHUP (the configuration is
//! read again), and stops on SIGTERM or Ctrl-C, removing its socket.

use super::managers::Managers;
use super::{canonical, client, socket, Answer, AnswerError, Request, OTHER_PROFILE};
use crate::commands::Context;
use crate::config::Config;
use crate::exit::{CliError, OK};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use tokenwarden::{AccessToken, TokenManager};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

/// The longest request read.
const MAX_REQUEST: u64 = 64 * 1024;

/// How long a connection may take to send its request.
const REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// The least time between two tokens of a profile replaced because a command
/// reported them rejected: a loop of reports (a client retrying a 401 that a
/// new token does not cure) makes one token request per interval, not one each.
const REJECTIONS_APART: std::time::Duration = std::time::Duration::from_secs(10);

struct Agent {
    ctx: Context,
    /// The configuration file it serves (requests for another are refused).
    config: PathBuf,
    managers: Managers,
    /// When a profile's token was last replaced on a command's report
    /// (monotonic time).
    rejections: Mutex<HashMap<String, std::time::Duration>>,
}

/// Serves until SIGTERM or Ctrl-C. With `print_env`, first prints the shell
/// line that points the commands at it.
pub async fn run(ctx: Context, socket: Option<PathBuf>, print_env: bool) -> Result<u8, CliError> {
    client::IN_AGENT.store(true, std::sync::atomic::Ordering::SeqCst);
    let path = socket.unwrap_or_else(socket::path);
    socket::prepare(&path)?;
    // Held while the agent runs: one agent per socket.
    let _lock = socket::lock(&path)?;
    let config = canonical(&Config::path(ctx.config_flag.as_deref())?);
    let listener = crate::unix_socket::bind(&path)?;
    if print_env {
        let shown = path.display().to_string().replace('\'', r"'\''");
        println!(
            "{}='{shown}'; export {};",
            socket::SOCKET_VAR,
            socket::SOCKET_VAR
        );
    }
    eprintln!(
        "tokenwarden agent: listening on {} for {}",
        path.display(),
        config.display()
    );
    let agent = Arc::new(Agent {
        ctx,
        config,
        managers: Managers::default(),
        rejections: Mutex::default(),
    });
    // Spawned: the requests are answered while the first tokens are got.
    tokio::spawn(agent.clone().keep_files());
    let served = serve(&agent, listener).await;
    let _ = std::fs::remove_file(&path);
    agent.managers.stop();
    eprintln!("tokenwarden agent: stopped");
    served
}

async fn serve(agent: &Arc<Agent>, listener: tokio::net::UnixListener) -> Result<u8, CliError> {
    use tokio::signal::unix::{signal, SignalKind};
    let signals = |kind| {
        signal(kind).map_err(|e| {
            CliError::new(
                crate::exit::UNAVAILABLE,
                format!("cannot handle signals: {e}"),
            )
        })
    };
    let (mut hangup, mut terminate) = (
        signals(SignalKind::hangup())?,
        signals(SignalKind::terminate())?,
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors, say: a moment for connections to end.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                };
                let agent = agent.clone();
                tokio::spawn(async move { agent.answer(stream).await });
            }
            _ = hangup.recv() => {
                // The managers go (their tokens stay in the stores); the next
                // requests read the configuration again.
                agent.managers.clear();
                eprintln!("tokenwarden agent: the configuration will be read again");
                // The token files of the profiles as they are now (a file kept
                // before stays in place, replaced whole, until the agent stops).
                tokio::spawn(agent.clone().keep_files());
            }
            _ = terminate.recv() => return Ok(OK),
            _ = tokio::signal::ctrl_c() => return Ok(OK),
        }
    }
}

impl Agent {
    /// Keeps the token file of every profile that names one (`token_file`):
    /// their managers, made now, keep them; files no profile names go.
    async fn keep_files(self: Arc<Self>) {
        let config = match self.ctx.config() {
            Ok(config) => config,
            Err(e) => {
                eprintln!("tokenwarden agent: {}", e.message);
                return;
            }
        };
        let names: Vec<String> = config.names().map(str::to_owned).collect();
        let wanted: Vec<_> = (names.iter())
            .filter_map(|name| config.profile(name).ok())
            .filter(|profile| profile.token_file.is_some())
            .collect();
        let paths: Vec<PathBuf> = wanted.iter().filter_map(|p| p.token_file.clone()).collect();
        self.managers.keep_only_files(&paths);
        for profile in wanted {
            if let Err(e) = self.managers.get(&profile).await {
                eprintln!(
                    "tokenwarden agent: no token file for `{}`: {e}",
                    profile.name
                );
            }
        }
    }

    /// One connection: a request line, an answer line.
    async fn answer(self: Arc<Self>, stream: tokio::net::UnixStream) {
        // The kernel says who connected: this user's processes only.
        match stream.peer_cred() {
            Ok(peer) if peer.uid() == socket::uid() => {}
            Ok(peer) => {
                tracing::warn!(uid = peer.uid(), "refused a connection of another user");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "refused a connection whose peer is not known");
                return;
            }
        }
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        let mut read = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
        let read_line = tokio::time::timeout(REQUEST_WAIT, read.read_line(&mut line));
        if !matches!(read_line.await, Ok(Ok(_))) {
            return; // nothing sent in time, or the connection failed
        }
        let answer = match serde_json::from_str::<Request>(&line) {
            Ok(request) => self.handle(request).await,
            Err(e) => refusal(format!("not a request: {e}")),
        };
        let mut out = serde_json::to_vec(&answer).unwrap_or_default();
        out.push(b'\n');
        let _ = write.write_all(&out).await;
    }

    async fn handle(&self, request: Request) -> Answer {
        // Another configuration file's profiles are not this agent's.
        let theirs = request.config.as_deref().map(canonical);
        if theirs.as_ref() != Some(&self.config) {
            return other_profile(format!(
                "this agent serves {}, not {}",
                self.config.display(),
                theirs.unwrap_or_default().display()
            ));
        }
        let (Some(profile), Some(digest)) = (request.profile.as_deref(), &request.digest) else {
            return refusal("a request names a profile and its digest".into());
        };
        tracing::debug!(op = %request.op, profile, "request");
        let found = match self.manager(profile, digest).await {
            Ok(found) => found,
            Err(answer) => return answer,
        };
        match request.op.as_str() {
            "ping" => Answer {
                ok: true,
                ..Answer::default()
            },
            "token" => {
                self.token(profile, &found.1, request.rejected.as_deref())
                    .await
            }
            "status" => self.status(&found.0, &found.1).await,
            op => refusal(format!("unknown request `{op}`")),
        }
    }

    /// The profile's manager, made on first use (again after an edit of the
    /// profile); only for the profile the command resolved (`digest`): the
    /// same name read in another environment is another profile.
    async fn manager(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<(crate::config::Profile, TokenManager), Answer> {
        let profile = self
            .ctx
            .profile(Some(name))
            .map_err(|e| other_profile(e.message))?;
        let current = profile.digest();
        if digest != current {
            return Err(other_profile(format!(
                "profile `{name}` resolves otherwise here (another environment, or an edit)"
            )));
        }
        let manager = self.managers.get(&profile).await.map_err(|e| failure(&e))?;
        Ok((profile, manager))
    }

    async fn token(&self, name: &str, manager: &TokenManager, rejected: Option<&str>) -> Answer {
        // A token a command's server rejected: dropped if it is still the
        // current one (and none was replaced so in the last interval), so that
        // this call gets a new one.
        if let Some(rejected) = rejected {
            if let Ok(current) = manager.token().await {
                if current.access_token.ct_eq(&AccessToken::new(rejected)) && self.may_replace(name)
                {
                    let current = current.to_token();
                    manager.invalidate(&current);
                    tracing::info!(fingerprint = %current.fingerprint(), "a command reported its token rejected");
                }
            }
        }
        match manager.token().await {
            Ok(token) => Answer {
                ok: true,
                access_token: Some(token.access_token.secret().to_owned()),
                token_type: Some(token.token_type.clone()),
                expires_at: token.expires_at.and_then(|at| {
                    let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
                    u64::try_from(ms).ok()
                }),
                scope: token.scope.clone(),
                ..Answer::default()
            },
            Err(e) => failure(&e),
        }
    }

    /// Whether a reported rejection may replace `name`'s token now (at most
    /// one per [`REJECTIONS_APART`]).
    fn may_replace(&self, name: &str) -> bool {
        let now = tokenwarden::Clock::monotonic(&tokenwarden::SystemClock);
        let mut last = self
            .rejections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match last.get(name) {
            Some(at) if now.saturating_sub(*at) < REJECTIONS_APART => false,
            _ => {
                last.insert(name.to_owned(), now);
                true
            }
        }
    }

    async fn status(&self, profile: &crate::config::Profile, manager: &TokenManager) -> Answer {
        let mut status = crate::describe::describe_manager(profile, manager).await;
        status["agent"] = true.into();
        Answer {
            ok: true,
            status: Some(status),
            ..Answer::default()
        }
    }
}

/// A request for a profile this agent does not serve as the command read it:
/// the command does without the agent.
fn other_profile(message: String) -> Answer {
    let mut answer = refusal(message);
    if let Some(error) = answer.error.as_mut() {
        error.kind = OTHER_PROFILE.into();
    }
    answer
}

/// The agent's own refusal (a usage error at the command).
fn refusal(message: String) -> Answer {
    Answer {
        ok: false,
        error: Some(AnswerError {
            kind: "usage".into(),
            message,
            status: None,
            oauth_error: None,
            transient: false,
        }),
        ..Answer::default()
    }
}

/// A failure to get a token, as the command reports it. Its last attempt says
/// why (the manager wraps it as "no valid token").
fn failure(error: &tokenwarden::Error) -> Answer {
    let mut cause = error;
    while let Some(last) = cause.last_attempt() {
        cause = last;
    }
    Answer {
        ok: false,
        error: Some(AnswerError {
            kind: cause.kind().as_str().into(),
            message: error.to_string(),
            status: cause.status(),
            oauth_error: cause
                .oauth_error()
                .map(|e| (e.error.clone(), e.error_description.clone())),
            transient: error.is_transient(),
        }),
        ..Answer::default()
    }
}
