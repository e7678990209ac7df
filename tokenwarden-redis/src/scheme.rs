//! The schemes of this crate's own URLs: `redis+<kind>://`, and
//! `rediss+<kind>://` over TLS.

/// Whether `url` is one of `kind` over TLS, and what follows its scheme; else
/// what a URL of that kind starts with (`label` names it in the error).
pub(crate) fn split<'a>(url: &'a str, kind: &str, label: &str) -> Result<(bool, &'a str), String> {
    let secure = format!("rediss+{kind}://");
    let plain = format!("redis+{kind}://");
    match (url.strip_prefix(&secure), url.strip_prefix(&plain)) {
        (Some(rest), _) => Ok((true, rest)),
        (None, Some(rest)) => Ok((false, rest)),
        (None, None) => Err(format!(
            "a {label} URL starts with {plain} ({secure} over TLS)"
        )),
    }
}
