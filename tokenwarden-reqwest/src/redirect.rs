//! [`same_origin_redirects`]: a redirect policy for tokens in custom headers.

/// The most redirects followed, as reqwest's default policy.
const MAX_REDIRECTS: usize = 10;

/// A reqwest redirect policy that follows redirects within one origin (scheme,
/// host and port), up to 10, and stops at one that leaves it, handing the 3xx
/// back to the caller.
///
/// reqwest removes `Authorization` and `Cookie` itself when a redirect leads to
/// another host, but no other header: a token sent in a custom header
/// ([`TokenPlacement::Header`](crate::TokenPlacement::Header)) would follow the
/// redirect. [`AuthClient`](crate::AuthClient) uses this policy for its default
/// client with such a placement; give it to your own client too.
///
/// ```
/// let http = reqwest::Client::builder()
///     .redirect(tokenwarden_reqwest::same_origin_redirects())
///     .build()
///     .unwrap();
/// # drop(http);
/// ```
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let from = attempt.previous().last().map(|url| url.origin());
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if from.as_ref() == Some(&attempt.url().origin()) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// The default client's policy: reqwest's (up to 10 redirects), except that a
/// redirect back to an origin the chain has left (A → B → A, an SSO round trip)
/// is handed back to the caller rather than followed: reqwest drops the token on
/// the way out, so the request back to A would carry none, and A's 401 would
/// look like the token's rejection.
pub(crate) fn no_round_trips() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let origin = attempt.url().origin();
        let previous = attempt.previous();
        let left = previous.iter().any(|url| url.origin() != origin);
        let back = previous.iter().any(|url| url.origin() == origin);
        if previous.len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if left && back {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}
