//! [`Metered`]: a store whose operations are counted and timed
//! (`tokenwarden.store.operations`, `tokenwarden.store.operation.duration`).
//! Managers wrap their store in it when the feature `metrics` is on.

use crate::store::{Lease, LeaseWait};
use crate::{Clock, Result, Token, TokenKey, TokenStore};
use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Counts and times each operation of the store it wraps; otherwise the same
/// store (its name, its leases).
#[derive(Debug)]
pub(crate) struct Metered {
    store: Arc<dyn TokenStore>,
    /// The manager's clock: operations are timed on its monotonic time.
    clock: Arc<dyn Clock>,
}

impl Metered {
    pub(crate) fn new(store: Arc<dyn TokenStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Runs `operation`, then counts it by outcome and records how long it took;
    /// one cut off (by the refresh timeout) is counted as `cancelled`.
    async fn timed<T>(&self, operation: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
        let mut timing = Timing {
            store: self,
            operation,
            started: self.clock.monotonic(),
            outcome: "cancelled",
        };
        let outcome = work.await;
        timing.outcome = match &outcome {
            Ok(_) => "ok",
            Err(error) => error.type_name(),
        };
        outcome
    }
}

/// Records an operation when it ends, however it ends.
struct Timing<'a> {
    store: &'a Metered,
    operation: &'a str,
    started: Duration,
    outcome: &'static str,
}

impl Drop for Timing<'_> {
    fn drop(&mut self) {
        let took = self.store.clock.monotonic().saturating_sub(self.started);
        record(self.store.store.name(), self.operation, self.outcome, took);
    }
}

fn record(store: &str, operation: &str, outcome: &str, took: Duration) {
    let labels = [
        ("tokenwarden.store", store.to_owned()),
        ("tokenwarden.operation", operation.to_owned()),
        ("tokenwarden.outcome", outcome.to_owned()),
    ];
    ::metrics::counter!(super::STORE_OPERATIONS, &labels).increment(1);
    ::metrics::histogram!(super::STORE_OPERATION_DURATION, &labels).record(took.as_secs_f64());
}

#[async_trait]
impl TokenStore for Metered {
    async fn load(&self, key: &TokenKey) -> Result<Option<Token>> {
        self.timed("load", self.store.load(key)).await
    }

    async fn save(&self, key: &TokenKey, token: &Token) -> Result<()> {
        self.timed("save", self.store.save(key, token)).await
    }

    async fn delete(&self, key: &TokenKey) -> Result<()> {
        self.timed("delete", self.store.delete(key)).await
    }

    async fn lease(&self, key: &TokenKey, ttl: Duration) -> Result<Lease> {
        self.timed("lease", self.store.lease(key, ttl)).await
    }

    async fn lease_unless_changed(&self, key: &TokenKey, ttl: Duration) -> Result<LeaseWait> {
        self.timed("lease", self.store.lease_unless_changed(key, ttl))
            .await
    }

    fn leases_see_changes(&self) -> bool {
        self.store.leases_see_changes()
    }

    async fn save_leased(&self, key: &TokenKey, token: &Token, lease: &Lease) -> Result<()> {
        self.timed("save", self.store.save_leased(key, token, lease))
            .await
    }

    async fn delete_leased(&self, key: &TokenKey, lease: &Lease) -> Result<()> {
        self.timed("delete", self.store.delete_leased(key, lease))
            .await
    }

    async fn contains(&self, key: &TokenKey) -> Result<bool> {
        self.timed("contains", self.store.contains(key)).await
    }

    fn name(&self) -> &str {
        self.store.name()
    }
}
