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

/// How long a save waits for its replicas by default: 1 s.
pub const DEFAULT_REPLICA_TIMEOUT: Duration = Duration::from_secs(1);

/// The replicas `wait` asks for on `connection`: what `Auto` finds there.
pub(crate) async fn resolve(wait: ReplicaWait, connection: &RedisConnection) -> u32 {
    match wait {
        ReplicaWait::Off => 0,
        ReplicaWait::AtLeast(n) => n,
        ReplicaWait::Auto if matches!(connection, RedisConnection::Cluster(_)) => {
            // `WAIT` goes to every primary there, and answers the fewest
            // replicas any of them reached: one only where each has one.
            let nodes: redis::RedisResult<String> = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut connection.clone())
                .await;
            nodes
                .map(|text| u32::from(every_primary_has_a_replica(&text)))
                .unwrap_or(0)
        }
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

/// Whether, in a cluster's `CLUSTER NODES`, every primary that serves slots
/// has a replica that is not failing.
fn every_primary_has_a_replica(nodes: &str) -> bool {
    let fields: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| f.len() >= 8)
        .collect();
    let flags = |f: &Vec<&str>, flag: &str| f[2].split(',').any(|x| x == flag);
    let mut primaries = fields
        .iter()
        .filter(|f| flags(f, "master") && f.len() > 8)
        .peekable();
    primaries.peek().is_some()
        && primaries.all(|primary| {
            fields
                .iter()
                .any(|f| flags(f, "slave") && !flags(f, "fail") && f[3] == primary[0])
        })
}

#[cfg(test)]
mod tests {
    use super::{connected_replicas, every_primary_has_a_replica};

    #[test]
    fn a_cluster_waits_only_where_every_primary_has_a_replica() {
        let with = "a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191\n\
                    b 127.0.0.1:7001@17001 master - 0 0 2 connected 8192-16383\n\
                    c 127.0.0.1:7002@17002 slave a 0 0 1 connected\n\
                    d 127.0.0.1:7003@17003 slave b 0 0 2 connected\n";
        assert!(every_primary_has_a_replica(with));
        let without = with.replace("slave b", "slave,fail b");
        assert!(!every_primary_has_a_replica(&without));
        assert!(!every_primary_has_a_replica("garbage"));
    }

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
