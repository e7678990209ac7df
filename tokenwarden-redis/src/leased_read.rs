//! The stored value read in the same script that took a lease, so that the
//! holder's read of the store right after taking it costs no command.
//!
//! While a lease is held, no instance keeping to the protocol writes its key (every
//! write the manager makes is under the lease), so the value read with the lease
//! is the stored value. It is served once, to the first read of the key, and only
//! while the lease is surely held; a write through this store and the lease's end
//! forget it. (A plain `save` made by another program without the lease, in the
//! moments the lease is held, is not seen by that one read; the next one sees it.)

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The values read with the leases this store holds, by Redis key.
#[derive(Default)]
pub(crate) struct LeasedReads {
    reads: Mutex<HashMap<String, Read>>,
}

struct Read {
    /// The lease's owner.
    owner: String,
    /// When the lease surely ends (monotonic).
    until: Duration,
    stored: Option<Vec<u8>>,
}

impl LeasedReads {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Read>> {
        // Every change is one step: a panic elsewhere leaves nothing half-made.
        self.reads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps what was stored under `name` when `owner` took its lease, held until
    /// `until`.
    pub(crate) fn remember(
        &self,
        name: &str,
        owner: &str,
        until: Duration,
        stored: Option<Vec<u8>>,
    ) {
        let read = Read {
            owner: owner.to_owned(),
            until,
            stored,
        };
        self.lock().insert(name.to_owned(), read);
    }

    /// The value kept for `name`, once, if its lease is still held at `now`:
    /// `Some(None)` when nothing was stored.
    pub(crate) fn take(&self, name: &str, now: Duration) -> Option<Option<Vec<u8>>> {
        let read = self.lock().remove(name)?;
        (now < read.until).then_some(read.stored)
    }

    /// Forgets the value kept for `name` (it is being written).
    pub(crate) fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Forgets the value kept with `owner`'s lease (it ends).
    pub(crate) fn forget_lease(&self, owner: &str) {
        self.lock().retain(|_, read| read.owner != owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_once_while_the_lease_is_held() {
        let reads = LeasedReads::default();
        let s = Duration::from_secs;
        reads.remember("k", "a", s(10), Some(b"v".to_vec()));
        assert_eq!(reads.take("k", s(1)), Some(Some(b"v".to_vec())));
        assert_eq!(reads.take("k", s(1)), None, "once");
        reads.remember("k", "a", s(10), None);
        assert_eq!(reads.take("k", s(10)), None, "the lease had ended");
        reads.remember("k", "a", s(10), None);
        reads.forget_lease("b");
        reads.forget_lease("a");
        assert_eq!(reads.take("k", s(1)), None, "released");
        reads.remember("k", "a", s(10), None);
        reads.forget("k");
        assert_eq!(reads.take("k", s(1)), None, "written");
    }
}
