//! What this store last read or wrote under each key, as the SHA-1 digest Redis
//! computes in its scripts (`redis.sha1hex`), so that a due refresh can take the
//! lease first: the take answers with the stored token, without taking the lease,
//! when the stored token is not the one this store last saw (another instance
//! refreshed it), and a read before the take would be a wasted round trip.
//!
//! Only a hint: a digest missing or out of date costs a command, never a wrong
//! answer (the lease's holder reads the store again before it refreshes).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Keys remembered at most: beyond, the map starts again (a registry of many
/// keys costs one more command per key now and then, not memory without bound).
const MOST: usize = 10_000;

#[derive(Default)]
pub(crate) struct LastSeen {
    digests: Mutex<HashMap<String, String>>,
}

impl LastSeen {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, String>> {
        // Every change is one step: a panic elsewhere leaves nothing half-made.
        self.digests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that `name` holds `value` (`None`: nothing).
    pub(crate) fn note(&self, name: &str, value: Option<&[u8]>) {
        let digest = value
            .map(|v| sha1_smol::Sha1::from(v).digest().to_string())
            .unwrap_or_default();
        let mut digests = self.lock();
        if digests.len() >= MOST && !digests.contains_key(name) {
            digests.clear();
        }
        digests.insert(name.to_owned(), format!("sha:{digest}"));
    }

    /// Forgets `name` (what it holds now is not known).
    pub(crate) fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// `sha:` and the digest of what `name` last held, as the take script takes it.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.lock().get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_the_ones_redis_computes() {
        let seen = LastSeen::default();
        seen.note("k", Some(b"abc"));
        // redis-cli EVAL "return redis.sha1hex('abc')" 0
        assert_eq!(
            seen.get("k").unwrap(),
            "sha:a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        seen.note("k", None);
        assert_eq!(seen.get("k").unwrap(), "sha:");
        seen.forget("k");
        assert_eq!(seen.get("k"), None);
    }
}
