//! Asking the agent, from a command: `None` when no agent of this user answers
//! on the socket (none runs, it was killed, the socket is not the user's own),
//! and the command then does as it does without an agent.

use super::{socket, Answer, Request};
use std::os::unix::fs::MetadataExt as _;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

/// Set in the agent itself: its own managers never ask it.
pub(super) static IN_AGENT: AtomicBool = AtomicBool::new(false);

/// How long connecting may take (a live agent accepts at once).
const CONNECT: Duration = Duration::from_secs(1);
/// How long an answer may take: a refresh at the agent, within its timeout.
const ANSWER: Duration = Duration::from_secs(40);
/// The longest answer read.
const MAX_ANSWER: u64 = 1 << 20;

/// Whether commands may use an agent: not inside it, not with
/// `TOKENWARDEN_AGENT=off`.
pub fn enabled() -> bool {
    !IN_AGENT.load(SeqCst) && std::env::var("TOKENWARDEN_AGENT").map_or(true, |v| v != "off")
}

/// The agent's answer to `request`, if an agent of this user answers.
pub async fn ask(request: &Request) -> Option<Answer> {
    if !enabled() {
        return None;
    }
    let path = socket::path();
    // The socket, and its directory, must be this user's: another user's
    // listener there would be handed the rejected tokens, and hand out its own.
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if meta.uid() != socket::uid() || !path.parent().is_some_and(socket::private) {
        tracing::warn!(socket = %path.display(), "the agent's socket is not yours alone: not used");
        return None;
    }
    let stream = tokio::time::timeout(CONNECT, tokio::net::UnixStream::connect(&path))
        .await
        .ok()?
        .ok()?;
    if stream.peer_cred().ok()?.uid() != socket::uid() {
        tracing::warn!("the agent's socket is served by another user: not used");
        return None;
    }
    let exchange = async {
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(request).ok()?;
        line.push(b'\n');
        write.write_all(&line).await.ok()?;
        let mut answer = String::new();
        let mut read = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_ANSWER));
        read.read_line(&mut answer).await.ok()?;
        serde_json::from_str::<Answer>(&answer).ok()
    };
    let answer = tokio::time::timeout(ANSWER, exchange).await.ok().flatten();
    if answer.is_none() {
        tracing::warn!("the agent did not answer: doing without it");
    }
    answer
}
