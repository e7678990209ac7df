//! [`RedisConnection`]: the `redis` crate's connections a store can run on.

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A connection of the `redis` crate for a [`RedisStore`](crate::RedisStore): a
/// [`ConnectionManager`] (reconnects by itself; what a URL gives) or a
/// [`MultiplexedConnection`] you already have (it does not reconnect: commands fail,
/// with the store's timeout, until you give the store a new one).
#[derive(Clone)]
#[non_exhaustive]
pub enum RedisConnection {
    /// A connection manager.
    Manager(ConnectionManager),
    /// A multiplexed connection.
    Multiplexed(MultiplexedConnection),
    /// The primary that Redis Sentinel names, found again after a failover (what
    /// a `redis+sentinel://` URL gives).
    Sentinel(crate::sentinel::SentinelConnection),
    /// A Redis Cluster (what a `redis+cluster://` URL gives): each command goes
    /// to the node of its keys' slot; a token's keys share one.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl From<ConnectionManager> for RedisConnection {
    fn from(connection: ConnectionManager) -> Self {
        RedisConnection::Manager(connection)
    }
}

impl From<MultiplexedConnection> for RedisConnection {
    fn from(connection: MultiplexedConnection) -> Self {
        RedisConnection::Multiplexed(connection)
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Manager(c) => c.req_packed_command(cmd),
            RedisConnection::Multiplexed(c) => c.req_packed_command(cmd),
            RedisConnection::Sentinel(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Manager(c) => c.req_packed_commands(cmd, offset, count),
            RedisConnection::Multiplexed(c) => c.req_packed_commands(cmd, offset, count),
            RedisConnection::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Manager(c) => c.get_db(),
            RedisConnection::Multiplexed(c) => c.get_db(),
            RedisConnection::Sentinel(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConnection::Manager(_) => "RedisConnection::Manager",
            RedisConnection::Multiplexed(_) => "RedisConnection::Multiplexed",
            RedisConnection::Sentinel(_) => "RedisConnection::Sentinel",
            RedisConnection::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}
