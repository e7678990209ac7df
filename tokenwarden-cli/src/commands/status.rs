//! `tokenwarden status`: signed in or not, until when, where the token is kept;
//! never a secret. Without `-p`, one line per profile.

use super::login::human;
use super::Context;
use crate::config::Profile;
use crate::exit::{CliError, OK};
use crate::profile::Interaction;
use serde_json::{json, Value};
use std::time::Duration;

pub async fn run(ctx: &Context, profile: Option<&str>, json: bool) -> Result<u8, CliError> {
    let config = ctx.config()?;
    // Without -p, every profile (even with TOKENWARDEN_PROFILE set): an overview.
    let Some(name) = profile.map(str::to_owned) else {
        let mut rows = Vec::new();
        for name in config.names() {
            rows.push(match config.profile(name) {
                Ok(profile) => describe(&profile).await,
                Err(error) => json!({ "profile": name, "error": error.message }),
            });
        }
        if json {
            println!("{:#}", Value::Array(rows));
        } else {
            print_table(&rows);
        }
        return Ok(OK);
    };
    let profile = config.profile(&name)?;
    let mut row = describe(&profile).await;
    row["revocation"] = revocation(&profile).await;
    if json {
        println!("{row:#}");
    } else {
        for (label, key) in [
            ("profile", "profile"),
            ("grant", "grant"),
            ("authenticated", "authenticated"),
            ("refreshable", "refreshable"),
            ("expires in", "expires_in"),
            ("next refresh", "next_refresh_in"),
            ("last refresh", "last_refresh"),
            ("backing off", "retry_in"),
            ("unsaved", "unsaved"),
            ("refresh token", "has_refresh_token"),
            ("sign in again", "refresh_expires_in"),
            ("scope", "scope"),
            ("token type", "token_type"),
            ("fingerprint", "fingerprint"),
            ("store", "store"),
            ("revocation", "revocation"),
            ("error", "error"),
        ] {
            if let Some(value) = row.get(key).filter(|v| !v.is_null()) {
                println!("{label:<14} {}", text(key, value));
            }
        }
    }
    Ok(OK)
}

/// Whether `logout` can revoke the profile's tokens at the server: its
/// revocation endpoint, or why not. Reads the issuer's metadata where the
/// profile names no `revocation_url` (for one profile only, within 5 s).
async fn revocation(profile: &Profile) -> Value {
    let lookup = tokio::time::timeout(Duration::from_secs(5), profile.revocation());
    match lookup.await {
        Ok(None) => json!("not applicable (custom grant)"),
        Ok(Some(Ok(Some(url)))) => json!(format!("at {url}")),
        Ok(Some(Ok(None))) => {
            json!(format!(
                "not possible: {} (set revocation_url)",
                profile.no_revocation_endpoint()
            ))
        }
        Ok(Some(Err(error))) => json!(format!("unknown: {error}")),
        Err(_) => json!("unknown: the issuer's metadata did not come within 5 s"),
    }
}

/// What is known of the profile's token, from its cache and store only.
async fn describe(profile: &Profile) -> Value {
    // The agent's manager, where one serves this configuration: its last
    // refresh, backoff and plan are the ones that count.
    #[cfg(unix)]
    {
        let request = crate::agent::Request::about("status", profile);
        if crate::agent::client::enabled() {
            if let Some(status) = crate::agent::client::ask(&request)
                .await
                .and_then(|a| a.status)
            {
                return status;
            }
        }
    }
    match profile.manager(Interaction::Refused).await {
        Ok(manager) => crate::describe::describe_manager(profile, &manager).await,
        Err(error) => json!({
            "profile": profile.name,
            "grant": profile.grant.name(),
            "store": profile.store_location(),
            "error": error.to_string(),
        }),
    }
}

fn text(key: &str, value: &Value) -> String {
    match (key, value) {
        ("refresh_expires_in", Value::Number(n)) => format!(
            "in {}, when the refresh token ends",
            human(std::time::Duration::from_secs(n.as_u64().unwrap_or(0)))
        ),
        ("expires_in", Value::Number(n)) => {
            human(std::time::Duration::from_secs(n.as_u64().unwrap_or(0)))
        }
        ("next_refresh_in", Value::Number(n)) => match n.as_u64().unwrap_or(0) {
            0 => "due: the next `tokenwarden token` refreshes it".into(),
            secs => format!("in {}", human(std::time::Duration::from_secs(secs))),
        },
        ("retry_in", Value::Number(n)) => format!(
            "after a failure; the next attempt in {}",
            human(std::time::Duration::from_secs(n.as_u64().unwrap_or(0)))
        ),
        ("last_refresh", Value::Object(last)) => last_refresh_text(last),
        ("unsaved", Value::Bool(true)) => {
            "yes: the store failed to save the token; retrying".into()
        }
        ("refreshable", Value::Bool(true)) => {
            "yes: expired, `tokenwarden token` refreshes it".into()
        }
        ("authenticated" | "has_refresh_token" | "refreshable" | "unsaved", Value::Bool(b)) => {
            if *b { "yes" } else { "no" }.into()
        }
        (_, Value::String(s)) => s.clone(),
        (_, other) => other.to_string(),
    }
}

/// `3 min ago: ahead_of_expiry, refreshed (120 ms)`.
fn last_refresh_text(last: &serde_json::Map<String, Value>) -> String {
    let field = |key: &str| last.get(key).and_then(Value::as_str).unwrap_or("?");
    let now = tokenwarden::Clock::now(&tokenwarden::SystemClock);
    let at = last.get("at").and_then(Value::as_u64).unwrap_or(0);
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at);
    let ago = human(now.duration_since(at).unwrap_or_default());
    let took = last.get("took_ms").and_then(Value::as_u64).unwrap_or(0);
    let outcome = match last.get("error").and_then(Value::as_str) {
        Some(error) => format!("failed ({error})"),
        None => field("outcome").to_owned(),
    };
    format!("{ago} ago: {}, {outcome} ({took} ms)", field("reason"))
}

fn print_table(rows: &[Value]) {
    println!(
        "{:<16} {:<20} {:<14} {:<11} STORE",
        "PROFILE", "GRANT", "AUTHENTICATED", "EXPIRES IN"
    );
    for row in rows {
        let field = |key: &str| {
            row.get(key)
                .filter(|v| !v.is_null())
                .map(|v| text(key, v))
                .unwrap_or_else(|| "-".into())
        };
        let store = match row.get("error") {
            Some(error) => format!("error: {}", error.as_str().unwrap_or_default()),
            None => field("store"),
        };
        println!(
            "{:<16} {:<20} {:<14} {:<11} {store}",
            field("profile"),
            field("grant"),
            field("authenticated"),
            field("expires_in")
        );
    }
}
