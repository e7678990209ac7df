//! Waiting for replicas after a save (`WAIT`), so that a rotated refresh token
//! survives a failover: Redis replicates asynchronously, and a primary that dies
//! before a replica has the new token leaves the promoted replica with the spent
//! one, which the fleet would send again (docs/design/004).

use crate::connection::RedisConnection;
use std::time::Duration;

/// How many replicas a save of a token with a refresh token waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaWait {
    /// One replica where the primary has any when the store is built (`INFO
    /// replication`), else none. The default.
    Auto,
    /// None: a save returns once the primary has it.
    Off,
    /// At least this many replicas.
    AtLeast(u32),
}

/// How long a save waits for its replicas by default.
pub const DEFAULT_REPLICA_TIMEOUT: Duration = Duration::from_secs(1);

/// The replicas `wait` asks for on `connection`: what `Auto` finds there.
pub(crate) async fn resolve(wait: ReplicaWait, connection: &RedisConnection) -> u32 {
    match wait {
        ReplicaWait::Off => 0,
        ReplicaWait::AtLeast(n) => n,
        ReplicaWait::Auto => {
            let info: redis::RedisResult<String> = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut connection.clone())
                .await;
            // A server that does not answer INFO (a proxy, a managed service
            // that hides it) gets no wait, as a single server would.
            info.map(|text| u32::from(connected_replicas(&text) > 0))
                .unwrap_or(0)
        }
    }
}

/// `connected_slaves` of a primary's `INFO replication`.
fn connected_replicas(info: &str) -> u32 {
    let primary = info.lines().any(|l| l.trim() == "role:master");
    let count = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("connected_slaves:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    if primary {
        count
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::connected_replicas;

    #[test]
    fn replicas_are_counted_on_a_primary_only() {
        let primary =
            "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=127.0.0.1\r\n";
        assert_eq!(connected_replicas(primary), 2);
        let replica = "# Replication\r\nrole:slave\r\nconnected_slaves:0\r\n";
        assert_eq!(connected_replicas(replica), 0);
        assert_eq!(connected_replicas("garbage"), 0);
    }
}
