//! The owners of this store's live leases, by lease and fence: a fenced write
//! names its lease's owner as well as its fence, and is refused where another
//! owner got the fence. Fences alone can repeat across a failover: a lease
//! whose take had not reached the replica promoted leaves it the fence before,
//! and the next lease there gets the same one (docs/design/004).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Owners by (lease key, fence).
#[derive(Debug, Default)]
pub(crate) struct Holders(Mutex<HashMap<(String, u64), String>>);

impl Holders {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that `owner` holds `lease` with `fence`.
    pub(crate) fn hold(&self, lease: &str, fence: u64, owner: &str) {
        self.map()
            .insert((lease.to_owned(), fence), owner.to_owned());
    }

    /// Forgets the lease `lease` with `fence` (released or dropped).
    pub(crate) fn forget(&self, lease: &str, fence: u64) {
        self.map().remove(&(lease.to_owned(), fence));
    }

    /// The owner of `lease` with `fence`, or an empty string for a lease this
    /// store did not take (then the fence alone is checked).
    pub(crate) fn owner(&self, lease: &str, fence: u64) -> String {
        self.map()
            .get(&(lease.to_owned(), fence))
            .cloned()
            .unwrap_or_default()
    }
}
