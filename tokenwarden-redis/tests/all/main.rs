//! The Redis store against the real server on 127.0.0.1:6379 (started by `.ci/run`;
//! without it these tests print why and skip, except under `CI`, where they fail).

#[path = "../support/cluster.rs"]
mod cluster;
mod cluster_store;
mod fencing;
#[path = "../../../tokenwarden/tests/support/grant_server.rs"]
mod grant_server;
#[path = "../support/held_writes.rs"]
mod held_writes;
#[allow(dead_code)] // not every binary uses every helper
#[path = "../../../tokenwarden/tests/support/leaks.rs"]
mod leaks;
#[allow(dead_code)] // the OpenID provider's tests use the rest
#[path = "../../../tokenwarden/tests/support/pki.rs"]
mod pki;
mod processes;
#[path = "../../../tokenwarden/tests/support/recorder.rs"]
mod recorder;
mod replicas;
#[path = "../support/replicated.rs"]
mod replicated;
mod restart;
#[path = "../support/secured_sentinels.rs"]
mod secured_sentinels;
mod sentinel;
#[path = "../support/sentinels.rs"]
mod sentinels;
mod shared;
mod tls;
#[path = "../support/tls_redis.rs"]
mod tls_redis;
mod wakeups;

#[path = "../../../tokenwarden/tests/all/browser.rs"]
mod browser;
#[allow(dead_code)]
#[path = "../../../tokenwarden/tests/all/dot.rs"]
mod dot;
#[allow(dead_code)] // the OAuth2 tests use the rest
#[path = "../../../tokenwarden/tests/all/oidc.rs"]
mod oidc;
#[allow(dead_code)]
#[path = "../../../tokenwarden/tests/all/servers.rs"]
mod servers;

use tokenwarden::ManualClock;
use tokenwarden_redis::RedisStore;

/// The shared server: `TW_REDIS_URL`, else Redis on 127.0.0.1:6379 (database 0).
pub static URL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("TW_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
});

/// Whether Redis must be there (under `CI`), else tests print why and skip.
pub fn required() -> bool {
    std::env::var_os("CI").is_some()
}

/// A store with a prefix of its own (tests run in parallel on one server), or
/// `None` when Redis is not there and `CI` is not set.
pub async fn store(clock: &ManualClock) -> Option<RedisStore> {
    let prefix = format!("tokenwarden-test-{:016x}", fastrand::u64(..));
    match RedisStore::builder(URL.as_str())
        .prefix(prefix)
        .clock(clock.clone())
        .build()
        .await
    {
        Ok(store) => Some(store),
        Err(error) if required() => panic!("Redis is required under CI: {error}"),
        Err(error) => {
            eprintln!("skipped: {error}");
            None
        }
    }
}

pub async fn same_prefix(store: &RedisStore, clock: &ManualClock) -> RedisStore {
    RedisStore::builder(URL.as_str())
        .prefix(store.prefix())
        .clock(clock.clone())
        .build()
        .await
        .unwrap()
}
