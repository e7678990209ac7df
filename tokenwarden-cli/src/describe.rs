//! A profile's token described without a secret: what `status --json` and
//! `token --json` show, in a command or in the agent.

use crate::config::Profile;
use serde_json::{json, Value};

/// The profile and its manager's token, described without a secret (`status`, and
/// `token --json` with the token added).
pub async fn describe_manager(profile: &Profile, manager: &tokenwarden::TokenManager) -> Value {
    let info = manager.info().await;
    let expired = info.expires_in.is_some_and(|d| d.is_zero());
    let unix = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).ok();
    let now = tokenwarden::Clock::now(&tokenwarden::SystemClock);
    let secs_until =
        |at: std::time::SystemTime| at.duration_since(now).unwrap_or_default().as_secs();
    // This process's last attempt, else the last one a command or the proxy
    // made here.
    let last_refresh = match crate::last_refresh::describe(manager).await {
        Some(last) => Some(last),
        None => crate::last_refresh::load(&profile.name),
    };
    // Backing off: this process, or the proxy (or command) that recorded it.
    let retry_at = info
        .retry_at
        .and_then(unix)
        .map(|d| d.as_millis() as u64)
        .or_else(|| last_refresh.as_ref()?.get("retry_at")?.as_u64());
    let now_ms = unix(now).map_or(0, |d| d.as_millis() as u64);
    let retry_in = retry_at
        .filter(|at| *at > now_ms)
        .map(|at| (at - now_ms).div_ceil(1000));
    json!({
        "profile": profile.name,
        "grant": profile.grant.name(),
        "store": profile.store_location(),
        "authenticated": info.authenticated,
        // An expired token with a refresh token is one `token` call from a new one.
        "refreshable": expired && info.has_refresh_token,
        "expires_in": info.expires_in.map(|d| d.as_secs()),
        "expires_at": info.expires_at.and_then(unix).map(|d| d.as_secs()),
        "has_refresh_token": info.has_refresh_token,
        // When the refresh token ends (if the server said): a person signs in again.
        "refresh_expires_in": info.refresh_expires_at.map(|at| {
            let now = tokenwarden::Clock::now(&tokenwarden::SystemClock);
            at.duration_since(now).unwrap_or_default().as_secs()
        }),
        "scope": info.scope,
        "token_type": info.token_type,
        "fingerprint": info.fingerprint,
        "next_refresh_in": info.refresh_at.map(secs_until),
        "last_refresh": last_refresh,
        "retry_in": retry_in,
        "unsaved": info.unsaved,
    })
}
