//! Why a manager went for a new token, and how that went: [`RefreshReason`],
//! [`RefreshOutcome`], [`LastRefresh`]. Carried by [`TokenEvent`](crate::TokenEvent),
//! the `tokenwarden.refresh` span, metrics, and
//! [`TokenManager::last_refresh`](crate::TokenManager::last_refresh).

use crate::ErrorKind;
use std::time::{Duration, SystemTime};

/// Why the manager went for a new token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefreshReason {
    /// The manager held no token yet: its first use, or the first after a logout.
    FirstUse,
    /// The token entered its stale window: refreshed ahead of its expiry (by the
    /// background task, or by a caller that was served the token meanwhile).
    AheadOfExpiry,
    /// The token was in its last moments or expired: callers waited for the new one.
    Expired,
    /// The server rejected the token ([`invalidate`](crate::TokenManager::invalidate),
    /// after a 401).
    Invalidated,
    /// [`force_refresh`](crate::TokenManager::force_refresh).
    Forced,
    /// Not for a new token: the copy was checked against the shared store (its
    /// periodic re-read, `store_recheck`), or the store was looked at while the
    /// manager backed off after a failure.
    StoreCheck,
}

impl RefreshReason {
    /// Every reason, in declaration order.
    pub const ALL: [RefreshReason; 6] = [
        Self::FirstUse,
        Self::AheadOfExpiry,
        Self::Expired,
        Self::Invalidated,
        Self::Forced,
        Self::StoreCheck,
    ];

    /// The name metrics and logs use: `first_use`, `ahead_of_expiry`, `expired`,
    /// `invalidated`, `forced`, `store_check`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstUse => "first_use",
            Self::AheadOfExpiry => "ahead_of_expiry",
            Self::Expired => "expired",
            Self::Invalidated => "invalidated",
            Self::Forced => "forced",
            Self::StoreCheck => "store_check",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0) as u8
    }

    pub(crate) fn from_u8(n: u8) -> Self {
        Self::ALL
            .get(usize::from(n))
            .copied()
            .unwrap_or(Self::FirstUse)
    }
}

impl std::fmt::Display for RefreshReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an attempt to get a token ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefreshOutcome {
    /// A new token from a full login ([`fetch`](crate::TokenSource::fetch)).
    Fetched,
    /// A new token from a [`refresh`](crate::TokenSource::refresh).
    Refreshed,
    /// A token another instance (or an earlier run) stored, taken from the store:
    /// no request was made.
    AdoptedFromStore,
    /// Nothing changed (a store check that found the token this manager holds, or
    /// an attempt that a `set_tokens` or `logout` made moot).
    Unchanged,
    /// It failed; the manager backs off before the next attempt.
    Failed(ErrorKind),
}

impl RefreshOutcome {
    /// The name metrics and logs use: `fetched`, `refreshed`,
    /// `adopted_from_store`, `unchanged`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fetched => "fetched",
            Self::Refreshed => "refreshed",
            Self::AdoptedFromStore => "adopted_from_store",
            Self::Unchanged => "unchanged",
            Self::Failed(_) => "failed",
        }
    }
}

impl std::fmt::Display for RefreshOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(kind) => write!(f, "failed ({kind:?})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// A manager's last attempt to get a token: see
/// [`TokenManager::last_refresh`](crate::TokenManager::last_refresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastRefresh {
    /// When it ended (the manager's clock).
    pub at: SystemTime,
    /// Why it was made.
    pub reason: RefreshReason,
    /// How it ended.
    pub outcome: RefreshOutcome,
    /// How long it took.
    pub took: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_and_have_snake_case_names() {
        for reason in RefreshReason::ALL {
            assert_eq!(RefreshReason::from_u8(reason.to_u8()), reason);
            let name = reason.as_str();
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
    }
}
