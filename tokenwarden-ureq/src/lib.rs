//! # tokenwarden-ureq
//!
//! [`TokenMiddleware`] for [`ureq`] 3: every request an agent sends to an
//! allowed origin carries a valid token from a
//! [`tokenwarden::blocking::TokenManager`], and [`with_replay`] sends a request
//! whose token the API rejected once more, with a fresh one.
//!
//! - The token goes only to allowed origins (over https, or to loopback), in the
//!   `Authorization` header (marked sensitive) or the placement you choose.
//! - A 401 (or a 403 with `WWW-Authenticate: Bearer error="invalid_token"`)
//!   drops the token it answered, if it is still the current one: many threads'
//!   rejections cause one refresh.
//! - ureq's middleware cannot send a request twice (its continuation is used up
//!   by the first), so the replay wraps the call: [`with_replay`] runs your
//!   closure again, which builds the request (body included) anew.
//!
//! ```no_run
//! use std::time::Duration;
//! use tokenwarden::{blocking::TokenManager, http::AllowedOrigins, source::from_fn, Token};
//! use tokenwarden_ureq::{with_replay, TokenMiddleware};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = TokenManager::builder(from_fn("api", || async {
//!     Ok(Token::new("token").with_expires_in(Duration::from_secs(3600)))
//! }))
//! .build_blocking()?;
//! let origins = AllowedOrigins::of("https://api.example.com")?;
//! let agent: ureq::Agent = ureq::Agent::config_builder()
//!     .middleware(TokenMiddleware::new(manager, origins))
//!     .build()
//!     .into();
//! let users = with_replay(|| agent.get("https://api.example.com/v1/users").call())?
//!     .body_mut()
//!     .read_to_string()?;
//! # Ok(()) }
//! ```
//!
//! Redirects: ureq drops `Authorization` on every redirect by default
//! (`redirect_auth_headers`), but not a custom header: with
//! [`TokenPlacement::Header`], give the agent `max_redirects(0)`. With ureq's
//! `http_status_as_error` (its default) a 401 is an error without its headers
//! or final URL: a 401 after a redirect then also counts as the token's
//! rejection (one refresh more, nothing sent where it should not go).

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

use std::cell::Cell;
use tokenwarden::blocking::TokenManager;
use tokenwarden::http::rejects_token;
pub use tokenwarden::http::{AllowedOrigins, TokenPlacement};
use ureq::http::{Request, Response};
use ureq::middleware::{Middleware, MiddlewareNext};
use ureq::{Body, ResponseExt as _, SendBody};

thread_local! {
    /// Whether a [`TokenMiddleware`] on this thread saw its token rejected
    /// since [`with_replay`] last looked: ureq runs middleware on the calling
    /// thread.
    static REJECTED: Cell<bool> = const { Cell::new(false) };
}

/// A ureq middleware that puts a valid token on every request to an allowed
/// origin, and drops a token the API rejects. See the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct TokenMiddleware {
    manager: TokenManager,
    origins: AllowedOrigins,
    placement: TokenPlacement,
}

impl TokenMiddleware {
    /// Tokens from `manager`, for the `origins` given.
    pub fn new(manager: TokenManager, origins: AllowedOrigins) -> Self {
        Self {
            manager,
            origins,
            placement: TokenPlacement::default(),
        }
    }

    /// Where the token goes. Defaults to `Authorization: <type> <token>`.
    pub fn placement(mut self, placement: TokenPlacement) -> Self {
        self.placement = placement;
        self
    }

    fn allows(&self, request: &Request<SendBody<'_>>) -> bool {
        url::Url::parse(&request.uri().to_string()).is_ok_and(|url| self.origins.allows(&url))
    }
}

impl Middleware for TokenMiddleware {
    fn handle(
        &self,
        mut request: Request<SendBody<'_>>,
        next: MiddlewareNext<'_>,
    ) -> Result<Response<Body>, ureq::Error> {
        if !self.allows(&request) {
            tracing::debug!(uri = %request.uri(), "not an allowed origin: sent without the token");
            return next.handle(request);
        }
        let failed = |error: tokenwarden::Error| ureq::Error::Other(Box::new(error));
        let sent = self.manager.header().map_err(failed)?;
        if sent.token().is_dpop() {
            // Sent without a proof it would only be refused.
            return Err(failed(tokenwarden::Error::config(
                "a DPoP-bound token needs a proof with each request, which this ureq \
                 middleware does not sign: use tokenwarden-reqwest or the tower layer",
            )));
        }
        (self.placement)
            .apply(request.headers_mut(), &sent)
            .map_err(failed)?;
        let sent_to = request.uri().clone();
        let answer = next.handle(request);
        let rejected = match &answer {
            // An answer after a redirect did not carry the token.
            Ok(response) => {
                rejects_token(response.status(), response.headers())
                    && *response.get_uri() == sent_to
            }
            Err(ureq::Error::StatusCode(401)) => true,
            Err(_) => false,
        };
        if rejected {
            self.manager.invalidate(sent.token());
            REJECTED.with(|r| r.set(true));
            tracing::debug!("token rejected; dropped, the next request gets a fresh one");
        }
        answer
    }
}

/// Runs `call`, a request through an agent with a [`TokenMiddleware`], and if
/// the API rejected its token, runs it once more: the middleware has dropped
/// that token, so the second call carries a fresh one (one refresh for every
/// thread whose call was rejected). `call` builds its request each time, body
/// included.
pub fn with_replay<T>(mut call: impl FnMut() -> Result<T, ureq::Error>) -> Result<T, ureq::Error> {
    REJECTED.with(|r| r.set(false));
    let first = call();
    if !REJECTED.with(|r| r.replace(false)) {
        return first;
    }
    tracing::debug!("token rejected; replaying with a fresh one");
    call()
}
