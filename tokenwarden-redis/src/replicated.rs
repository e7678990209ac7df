//! Writes that wait for replicas (`WAIT`): a token with a refresh token, and a
//! lease, must reach them before anyone relies on it (docs/design/004).
//!
//! A write and its `WAIT` are one pipeline on the store's write connection:
//! - nothing can come between them: `WAIT` counts the writes of its own
//!   connection, so one sent after a reconnect (or, with Sentinel, to a new
//!   primary) counts nothing of the write and answers at once, a replication
//!   that did not happen;
//! - in a cluster the pipeline goes to the primary of the write's slot, and so
//!   does its `WAIT` (alone, `WAIT` goes to every primary);
//! - a blocked `WAIT` holds up the write connection only: reads, lease waits
//!   and releases go on the other one (built from a URL; a connection you give
//!   serves both).
//!
//! The `redis` crate pipelines commands, not scripts: a script goes as
//! `EVALSHA` ([`evalsha`](crate::replicas::evalsha)), and where the server
//! answers `NOSCRIPT` (the write did not run) the pipeline goes again with the
//! script's source (`EVAL`, after which the server has it).

use crate::replicas::Short;
use crate::store::RedisStore;
use redis::{ErrorKind, FromRedisValue, ServerErrorKind};
use tokenwarden::Result;

const NO_SCRIPT: ErrorKind = ErrorKind::Server(ServerErrorKind::NoScript);

impl RedisStore {
    /// Runs `write` (of `key`, a `what` for the logs; `source`: the code of the
    /// script it calls by its hash, if it does); where `wait` and the store waits
    /// for replicas, `WAIT` goes with it. Its answer, and how the wait fell
    /// short, if it did (for the caller to count, where it counts). A `Replay`
    /// write is sent once more where its connection was found dropped (see
    /// [`Replay`]).
    pub(crate) async fn write_and_wait<T: FromRedisValue>(
        &self,
        action: &str,
        key: &str,
        (write, source, replay): (redis::Cmd, Option<&str>, Replay),
        wait: bool,
    ) -> Result<(T, Option<Short>)> {
        let inner = &self.inner;
        let wanted = inner.replicas;
        let mut pipeline = redis::pipe();
        pipeline.add_command(write);
        let alone = |pipeline| async move {
            let (answer,): (T,) = self
                .send(action, pipeline, (source, replay), inner.timeout)
                .await?;
            Ok::<_, tokenwarden::Error>(answer)
        };
        if !wait || wanted == 0 {
            return Ok((alone(&pipeline).await?, None));
        }
        // Asked on the other connection: this one may be held by a `WAIT`.
        let away = inner
            .health
            .away(&inner.connection, key, wanted, inner.timeout);
        if let Some(answering) = away.await {
            let answer = alone(&pipeline).await?;
            let short = Short {
                reached: answering,
                wanted,
                how: "answering (the primary's INFO shows the rest away: not waited for)".into(),
            };
            return Ok((answer, Some(short)));
        }
        let timeout = inner.replica_timeout;
        let millis = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        pipeline.cmd("WAIT").arg(wanted).arg(millis);
        let sent = self.send(action, &pipeline, (source, replay), timeout + inner.timeout);
        let (answer, reached): (T, i64) = sent.await?;
        let reached = u32::try_from(reached).unwrap_or(0);
        inner.health.waited(&inner.writes, key, reached >= wanted);
        if reached >= wanted {
            return Ok((answer, None));
        }
        let how = format!("within {timeout:?}");
        let short = Short {
            reached,
            wanted,
            how,
        };
        Ok((answer, Some(short)))
    }

    /// Sends `pipeline` on the write connection, answered within `deadline`.
    /// Where the server does not have the script of its first command yet
    /// (`NOSCRIPT`: the write did not run), it is sent again with the script's
    /// `source` (`EVAL`): loading it first (`SCRIPT LOAD`) would go to every
    /// node of a cluster, and fail while any is down. A [`Replay::Allowed`]
    /// write whose connection was found dropped is sent once more.
    async fn send<R: FromRedisValue>(
        &self,
        action: &str,
        pipeline: &redis::Pipeline,
        (source, replay): (Option<&str>, Replay),
        deadline: std::time::Duration,
    ) -> Result<R> {
        let mut connection = self.inner.writes.clone();
        let mut pipeline = std::borrow::Cow::Borrowed(pipeline);
        let (mut loaded, mut reconnected) = (false, false);
        loop {
            let sent = tokio::time::timeout(deadline, pipeline.query_async::<R>(&mut connection));
            match (sent.await, source) {
                (Ok(Ok(answer)), _) => return Ok(answer),
                (Ok(Err(e)), Some(source)) if e.kind() == NO_SCRIPT && !loaded => {
                    loaded = true;
                    pipeline = std::borrow::Cow::Owned(with_source(&pipeline, source));
                }
                (Ok(Err(e)), _)
                    if replay == Replay::Allowed && e.is_connection_dropped() && !reconnected =>
                {
                    reconnected = true;
                    tracing::debug!(store = %self.inner.name, error = %e, "{action}: the connection was dropped; sending again");
                }
                (Ok(Err(e)), _) => return Err(self.error(action, e)),
                // No answer at all (a hung primary, often one about to fail over).
                (Err(_), _) => {
                    return Err(self.error(action, format!("no answer within {deadline:?}")))
                }
            }
        }
    }

    /// Counts and logs a wait that fell short.
    pub(crate) fn fell_short(&self, key: &str, what: &str, short: &Short) {
        self.inner
            .unreplicated
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(store = %self.inner.name, key, reached = short.reached, wanted = short.wanted, "a {what} did not reach its replicas");
    }
}

/// Whether a write may be sent again where its connection was found dropped (a
/// restarted or failed-over primary: the first command after it fails, and the
/// connection is made again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// A lease's take: sent again by the same owner, it answers as the first did,
    /// and writes the lease again, so that its `WAIT` (in the same pipeline) counts
    /// the lease on the new connection too.
    Allowed,
    /// Saves and deletes: one that ran before the connection dropped, then refused
    /// on the primary a failover promoted (which lacks the lease), would read as a
    /// lost lease and lose the token it carried; failed, it is kept and saved
    /// again by the manager (docs/design/004).
    Once,
}

/// `pipeline` with its first command, an `EVALSHA`, made an `EVAL` of `source`.
fn with_source(pipeline: &redis::Pipeline, source: &str) -> redis::Pipeline {
    let mut again = redis::pipe();
    for (n, command) in pipeline.cmd_iter().enumerate() {
        if n > 0 {
            again.add_command(command.clone());
            continue;
        }
        let mut eval = redis::cmd("EVAL");
        eval.arg(source);
        for arg in command.args_iter().skip(2) {
            if let redis::Arg::Simple(bytes) = arg {
                eval.arg(bytes);
            }
        }
        again.add_command(eval);
    }
    again
}
