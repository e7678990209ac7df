//! Waiting for replicas after a save (`WAIT`), so that a rotated refresh token
//! survives a failover: Redis replicates asynchronously, and a primary that dies
//! before a replica has the new token leaves the promoted replica with the spent
//! one, which the fleet would send again (docs/design/004).

use crate::connection::RedisConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
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

/// Replicas not waited for while their primary shows them away: the primaries
/// (in a cluster, the slots) whose last `WAIT` came back short. A write there
/// first asks the primary's `INFO replication` how many replicas answer; where
/// fewer than it waits for do, it does not wait (a stopped or cut-off replica
/// would hold every such write for the replica timeout), and where enough do, it
/// waits again. Nothing is asked while the waits succeed.
#[derive(Debug, Default)]
pub(crate) struct ReplicaHealth {
    short: std::sync::Mutex<std::collections::HashSet<Option<Route>>>,
}

/// How long ago (in whole seconds, `INFO`'s `lag`) a replica that still counts
/// as answering last acknowledged: replicas acknowledge every second.
const ANSWERING_LAG: u32 = 2;

impl ReplicaHealth {
    /// The primary of `key` on `connection`: its slot's in a cluster.
    fn primary(connection: &RedisConnection, key: &str) -> Option<Route> {
        matches!(connection, RedisConnection::Cluster(_))
            .then(|| Route::with_key(key, SlotAddr::Master))
    }

    /// Records how the last wait for the replicas of `key`'s primary ended.
    pub(crate) fn waited(&self, connection: &RedisConnection, key: &str, reached: bool) {
        let primary = Self::primary(connection, key);
        let mut short = self.short.lock().unwrap_or_else(|e| e.into_inner());
        if reached {
            short.remove(&primary);
        } else {
            short.insert(primary);
        }
    }

    /// How many replicas of `key`'s primary answer, where its last wait was
    /// short and its `INFO` (within `timeout`) shows fewer than `wanted`; `None`:
    /// wait for them.
    pub(crate) async fn away(
        &self,
        connection: &RedisConnection,
        key: &str,
        wanted: u32,
        timeout: Duration,
    ) -> Option<u32> {
        let primary = Self::primary(connection, key);
        if !self
            .short
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&primary)
        {
            return None;
        }
        let mut command = redis::cmd("INFO");
        command.arg("replication");
        let info = match (connection.clone(), primary) {
            (RedisConnection::Cluster(mut cluster), Some(route)) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let asked = tokio::time::timeout(timeout, cluster.route_command(command, routing));
                match asked.await {
                    Ok(Ok(value)) => redis::from_redis_value::<String>(value).ok(),
                    _ => None,
                }
            }
            (mut connection, _) => {
                let asked = tokio::time::timeout(timeout, command.query_async(&mut connection));
                asked.await.ok().and_then(Result::ok)
            }
        };
        // No answer: wait, as the write would have.
        let answering = answering_replicas(&info?);
        (answering < wanted).then_some(answering)
    }
}

/// The replicas in a primary's `INFO replication` that are online and
/// acknowledged within [`ANSWERING_LAG`].
fn answering_replicas(info: &str) -> u32 {
    let answering = info.lines().filter(|line| {
        let Some((name, fields)) = line.trim().split_once(':') else {
            return false;
        };
        let field = |key: &str| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        };
        name.starts_with("slave")
            && field("state") == Some("online")
            && field("lag")
                .and_then(|lag| lag.parse::<u32>().ok())
                .is_some_and(|lag| lag <= ANSWERING_LAG)
    });
    u32::try_from(answering.count()).unwrap_or(u32::MAX)
}

/// An `EVALSHA` of `script` with `keys`; its arguments are added by the
/// caller. The `redis` crate's `Script` cannot go in a pipeline (a write with
/// its `WAIT`): it sends its command alone, to load the script on `NOSCRIPT`.
pub(crate) fn evalsha(script: &redis::Script, keys: &[&str]) -> redis::Cmd {
    let mut command = redis::cmd("EVALSHA");
    command.arg(script.get_hash()).arg(keys.len()).arg(keys);
    command
}

/// How a wait for the replicas fell short: how many of how many, and how it
/// was found (for errors and logs).
#[derive(Debug)]
pub(crate) struct Short {
    pub(crate) reached: u32,
    pub(crate) wanted: u32,
    /// `within 3s` (a `WAIT` that timed out), or that `INFO` showed the rest away.
    pub(crate) how: String,
}

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Short {
            reached,
            wanted,
            how,
        } = self;
        write!(f, "reached {reached} of {wanted} replicas {how}")
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
    use super::{answering_replicas, connected_replicas, every_primary_has_a_replica};

    #[test]
    fn replicas_answer_when_online_and_acknowledging() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n\
                    slave0:ip=127.0.0.1,port=7001,state=online,offset=10,lag=0\r\n\
                    slave1:ip=127.0.0.1,port=7002,state=online,offset=10,lag=7\r\n\
                    slave2:ip=127.0.0.1,port=7003,state=wait_bgsave,offset=0,lag=0\r\n\
                    master_repl_offset:10\r\n";
        assert_eq!(answering_replicas(info), 1);
        assert_eq!(answering_replicas("garbage"), 0);
    }

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
