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

/// The redirect policy of a client made for a token in `placement`: within one
/// origin for a custom header (reqwest keeps those across origins), else
/// reqwest's, without round trips back to an origin left.
pub(crate) fn policy_for(placement: &crate::TokenPlacement) -> reqwest::redirect::Policy {
    match placement {
        crate::TokenPlacement::Header(_) => same_origin_redirects(),
        _ => no_round_trips(),
    }
}

/// Whether the answer from `answered` came to a request that carried the token
/// sent to `sent`: only such an answer may reject the token. After a redirect to
/// another origin it did not (reqwest drops the token); after one that came
/// back (A → B → A) it did not either, and with a client of the caller's the
/// hops cannot be seen (`no_round_trips` false): then only an answer to the
/// very URL sent counts.
pub(crate) fn carried(no_round_trips: bool, answered: &url::Url, sent: &url::Url) -> bool {
    if no_round_trips {
        answered.origin() == sent.origin()
    } else {
        answered == sent
    }
}

/// Whether a rejection came after a redirect to a request that carried a DPoP
/// proof: the proof names the first URI (`htu`), and reqwest sent it on to
/// the next, which refused it for that. The token is fine: it stays, and the
/// answer goes back to the caller (logged), who can ask the final URL
/// directly. A refresh would change nothing.
pub(crate) fn stale_proof(
    sent: &tokenwarden::HeaderRef,
    answered: &url::Url,
    asked: &url::Url,
) -> bool {
    let stale = sent.token().is_dpop() && answered != asked;
    if stale {
        tracing::warn!(
            asked = %tokenwarden::http::loggable_url(asked),
            answered = %tokenwarden::http::loggable_url(answered),
            "a redirect carried the DPoP proof of the first URI, and the server refused it; \
             request the final URI directly (the token stays)"
        );
    }
    stale
}
