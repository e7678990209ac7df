//! A token a helper's client reports rejected (git's `erase`): replaced at once,
//! so that the next request for a credential gets a new one. Each helper call
//! is a process of its own: the library's `invalidate` would not outlive it.

use tokenwarden::{AccessToken, TokenManager};

/// Gets a new token now if `rejected` is the profile's current one (compared in
/// constant time); an older token, or none, changes nothing. Failures are
/// logged: the caller's client asks again and is told then.
pub async fn replace(profile: &str, manager: &TokenManager, rejected: &str) {
    let current = match manager.token().await {
        Ok(current) => current,
        Err(e) => {
            tracing::warn!(error = %e, "no current token to compare with the rejected one");
            return;
        }
    };
    if !current.access_token.ct_eq(&AccessToken::new(rejected)) {
        return; // replaced already, by another process
    }
    let fingerprint = current.fingerprint().to_owned();
    let rejected = current.to_token();
    drop(current);
    // As after a 401 in a long-running client: the next call refreshes.
    manager.invalidate(&rejected);
    match manager.token().await {
        Ok(new) => {
            tracing::info!(rejected = %fingerprint, new = new.fingerprint(), "replaced a rejected token")
        }
        Err(e) => {
            tracing::warn!(error = %e, rejected = %fingerprint, "could not replace a rejected token")
        }
    }
    crate::last_refresh::save(profile, manager).await;
}
