//! `tokenwarden kubectl -p P`: kubectl's exec credential plugin. kubectl runs it
//! with `KUBERNETES_EXEC_INFO` (an `ExecCredential` naming the API version it
//! wants and whether the session is interactive) and reads an `ExecCredential`
//! with the token and its `expirationTimestamp` on stdout; it runs it again once
//! that time has passed, or after the API server rejected the token.
//!
//! ```yaml
//! users:
//! - name: me
//!   user:
//!     exec:
//!       apiVersion: client.authentication.k8s.io/v1
//!       command: tokenwarden
//!       args: [kubectl, -p, my-cluster]
//!       interactiveMode: IfAvailable
//! ```

use super::Context;
use crate::exit::{CliError, USAGE};
use crate::profile::Interaction;
use serde_json::{json, Value};
use std::io::Write as _;

/// The API versions kubectl may ask for.
const VERSIONS: [&str; 2] = [
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
];

pub async fn run(ctx: &Context, profile: Option<&str>) -> Result<u8, CliError> {
    let asked = exec_info()?;
    let version = asked["apiVersion"]
        .as_str()
        .unwrap_or("client.authentication.k8s.io/v1beta1")
        .to_owned();
    if !VERSIONS.contains(&version.as_str()) {
        return Err(CliError::usage(format!(
            "kubectl asks for an ExecCredential of `{version}`, which is not {} or {}",
            VERSIONS[0], VERSIONS[1]
        ))
        .hint("set the exec plugin's apiVersion to client.authentication.k8s.io/v1"));
    }
    // A sign-in in a browser or with a device code only where kubectl says a
    // person is there (its stdin is the terminal's then).
    let interactive = asked["spec"]["interactive"].as_bool().unwrap_or(false);
    let profile = ctx.profile(profile)?;
    super::bearer_only(&profile, "kubectl")?;
    // The token held (by the agent, or in the store) first; a person is asked
    // to sign in only where none can be had without them.
    let manager = profile.manager(Interaction::Refused).await?;
    let mut token = manager.token().await;
    crate::last_refresh::save(&profile.name, &manager).await;
    let needs_person = |e: &tokenwarden::Error| {
        let mut cause = e;
        while let Some(last) = cause.last_attempt() {
            cause = last;
        }
        // The refusal of a profile that signs a person in, made here (no
        // server said it).
        cause.status().is_none()
            && cause
                .oauth_error()
                .is_some_and(|o| o.error == "login_required")
    };
    if interactive && token.as_ref().is_err_and(needs_person) {
        let signing_in = profile.manager(Interaction::Allowed).await?;
        token = signing_in.token().await;
        crate::last_refresh::save(&profile.name, &signing_in).await;
    }
    let token = token?;
    let mut status = json!({ "token": token.access_token.secret() });
    if let Some(at) = token.expires_at {
        status["expirationTimestamp"] = rfc3339(at).into();
    }
    let credential = json!({
        "apiVersion": version,
        "kind": "ExecCredential",
        "status": status,
    });
    writeln!(std::io::stdout().lock(), "{credential}")
        .map_err(|e| CliError::new(USAGE, format!("cannot write to stdout: {e}")))?;
    Ok(crate::exit::OK)
}

/// What kubectl sent in `KUBERNETES_EXEC_INFO` (an empty object without it).
fn exec_info() -> Result<Value, CliError> {
    match std::env::var("KUBERNETES_EXEC_INFO") {
        Ok(text) if !text.trim().is_empty() => serde_json::from_str(&text).map_err(|e| {
            CliError::usage(format!("KUBERNETES_EXEC_INFO is not JSON: {e}"))
                .hint("run this as kubectl's exec credential plugin")
        }),
        _ => Ok(json!({})),
    }
}

/// `at` as RFC 3339 in UTC, to the second (`2026-12-01T10:00:00Z`).
fn rfc3339(at: std::time::SystemTime) -> String {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The calendar date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`). Written here: `httpdate`, the one date crate in the
/// tree, writes RFC 9110 dates only, and a calendar crate for one format is
/// more than this takes.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let at = UNIX_EPOCH + Duration::from_secs(1_796_086_923);
        assert_eq!(rfc3339(at), "2026-12-01T01:02:03Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
