//! Whether a granted scope covers the scope asked for, read the way providers
//! actually answer: not only RFC 6749's space-separated list of the very words
//! asked for.
//!
//! A value asked for counts as granted when the answer holds it, case aside
//! (Entra answers `user.read` with `User.Read`), or one name, a URL, ends in the
//! other after a `/` or a `.` (Google answers `email` with
//! `https://www.googleapis.com/auth/userinfo.email`; Entra answers
//! `https://graph.microsoft.com/Mail.Read` with `Mail.Read`). Values are
//! separated by spaces or commas (GitHub answers `repo,gist`, Strava asks so). `openid` and
//! `offline_access` ask for an ID token and a refresh token, not for access, and
//! servers differ on echoing them: never missing. Nor is a value ending in
//! `/.default` (Microsoft Entra answers it with the permissions it stands for).
//! An answer without `scope` grants what was asked (RFC 6749 §5.1).

/// The values of `asked` that `granted` does not cover, space-separated, if any.
pub(super) fn missing(asked: &str, granted: &str) -> Option<String> {
    let granted: Vec<&str> = granted
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|s| !s.is_empty())
        .collect();
    // One name ends the other after a `/` or a `.`, case aside, where the
    // longer one is a URL (`…/auth/userinfo.email`, `https://graph…/Mail.Read`):
    // `All` does not stand for `Sites.ReadWrite.All`.
    let names = |long: &str, short: &str| {
        let (long, short) = (long.to_ascii_lowercase(), short.to_ascii_lowercase());
        long == short
            || (long.contains("://")
                && long
                    .strip_suffix(&short)
                    .is_some_and(|head| head.ends_with('/') || head.ends_with('.')))
    };
    let covered = |wanted: &str| {
        matches!(wanted, "openid" | "offline_access")
            || wanted.ends_with("/.default")
            || granted.iter().any(|g| names(g, wanted) || names(wanted, g))
    };
    let missing: Vec<&str> = asked
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|wanted| !wanted.is_empty() && !covered(wanted))
        .collect();
    (!missing.is_empty()).then(|| missing.join(" "))
}

#[cfg(test)]
mod tests {
    use super::missing;

    #[test]
    fn the_very_words_or_a_superset_cover_what_was_asked() {
        assert_eq!(missing("read write", "write read"), None);
        assert_eq!(missing("read", "read write admin"), None);
        assert_eq!(missing("", "read"), None);
    }

    #[test]
    fn provider_spellings_cover_what_was_asked() {
        // GitHub separates with commas.
        assert_eq!(missing("repo gist", "repo,gist"), None);
        // Google answers short names with URLs.
        let google = "https://www.googleapis.com/auth/userinfo.email openid https://www.googleapis.com/auth/userinfo.profile";
        assert_eq!(missing("openid email profile", google), None);
        // Entra expands `.default`.
        assert_eq!(
            missing(
                "https://graph.microsoft.com/.default offline_access",
                "User.Read Mail.Read"
            ),
            None
        );
        // Not echoed by every server.
        assert_eq!(missing("openid offline_access api", "api"), None);
    }

    #[test]
    fn a_value_not_granted_is_missing() {
        assert_eq!(missing("read write", "read").as_deref(), Some("write"));
        assert_eq!(missing("admin read", "").as_deref(), Some("admin read"));
        // A longer word is not the same word.
        assert_eq!(missing("read", "unread").as_deref(), Some("read"));
        assert_eq!(missing("read", "read:user").as_deref(), Some("read"));
        // A short grant does not stand for a longer name that is not a URL.
        assert_eq!(
            missing("Sites.ReadWrite.All", "All").as_deref(),
            Some("Sites.ReadWrite.All")
        );
        assert_eq!(
            missing("admin.write", "write").as_deref(),
            Some("admin.write")
        );
        assert_eq!(
            missing("invoices:write", "invoices:read").as_deref(),
            Some("invoices:write")
        );
    }
}
