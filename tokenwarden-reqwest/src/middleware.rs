//! [`TokenMiddleware`]: attaches the token to requests for allowed origins, and on
//! a rejected token refreshes once and replays the request.

use crate::redirect::carried;
use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use std::hash::Hash;
use std::sync::Arc;
use tokenwarden::http::{rejects_token, AllowedOrigins, TokenPlacement};
use tokenwarden::{Error, HeaderRef, Result, TokenManager, TokenRegistry};
use tracing::Instrument as _;

/// How many times a request is replayed after a rejected token, by default: once.
pub const DEFAULT_MAX_REPLAYS: u32 = 1;

/// A `reqwest_middleware` middleware that puts a valid token on every request to an
/// allowed origin.
///
/// On a 401 (or a 403 with `WWW-Authenticate: Bearer error="invalid_token"`) it
/// invalidates the token it sent (only if still current, so that many concurrent
/// 401s cause one refresh), gets a fresh one, and replays the request when its
/// body can be cloned; a streaming body is not replayed and the 401 is returned as
/// it is. Requests to other origins go out untouched. reqwest drops the
/// `Authorization` and `Cookie` headers itself when a redirect leaves the host;
/// with a token in a custom header, give the client
/// [`same_origin_redirects`](crate::same_origin_redirects).
#[derive(Debug, Clone)]
pub struct TokenMiddleware {
    managers: Managers,
    origins: AllowedOrigins,
    placement: TokenPlacement,
    max_replays: u32,
    /// Whether the client's redirect policy never brings a chain back to an
    /// origin it left (`AuthClient`'s own clients): then an answer from the
    /// token's origin came to a request that carried the token.
    no_round_trips: bool,
}

impl TokenMiddleware {
    /// Tokens from `manager`, for the `origins` given.
    pub fn new(manager: TokenManager, origins: AllowedOrigins) -> Self {
        Self::with_managers(Managers::Fixed(manager), origins)
    }

    /// Tokens per user, tenant or service: each request names its key with
    /// `RequestBuilder::with_extension(key)`, and the key's manager in `registry`
    /// gives the token. A request without a key is refused with an error.
    pub fn per_key<K>(registry: Arc<TokenRegistry<K>>, origins: AllowedOrigins) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
    {
        let pick = move |extensions: &Extensions| -> Result<TokenManager> {
            let key = extensions.get::<K>().ok_or_else(|| {
                Error::config(format!(
                    "this request names no `{}` key: add one with `.with_extension(key)`, of \
                     exactly that type (a `&str` is not a `String`), or build the client with \
                     `build_keyed(registry)`, whose requests take their key as an argument",
                    short_type_name(std::any::type_name::<K>())
                ))
            })?;
            registry.get(key)
        };
        Self::with_managers(Managers::PerKey(Arc::new(pick)), origins)
    }

    fn with_managers(managers: Managers, origins: AllowedOrigins) -> Self {
        Self {
            managers,
            origins,
            placement: TokenPlacement::default(),
            max_replays: DEFAULT_MAX_REPLAYS,
            no_round_trips: false,
        }
    }

    /// Marks the client's redirect policy as one that never follows a chain back
    /// to an origin it left.
    pub(crate) fn with_no_round_trips(mut self) -> Self {
        self.no_round_trips = true;
        self
    }

    /// Where the token goes. Defaults to `Authorization: <type> <token>`.
    pub fn placement(mut self, placement: TokenPlacement) -> Self {
        self.placement = placement;
        self
    }

    /// How many replays after a rejected token. Defaults to [`DEFAULT_MAX_REPLAYS`].
    pub fn max_replays(mut self, max_replays: u32) -> Self {
        self.max_replays = max_replays;
        self
    }

    /// Attaches the token of `header` (and a DPoP proof for a DPoP-bound one).
    fn authorize(
        &self,
        manager: &TokenManager,
        header: &HeaderRef,
        request: &mut Request,
    ) -> reqwest_middleware::Result<()> {
        if !header.token().is_dpop() {
            // A bearer token: no proof, so no copy of the request's URL.
            return (self.placement)
                .apply(request.headers_mut(), header)
                .map_err(reqwest_middleware::Error::middleware);
        }
        let (method, url) = (request.method().clone(), request.url().clone());
        tokenwarden::http::authorize(
            &self.placement,
            request.headers_mut(),
            header,
            &method,
            &url,
            manager,
        )
        .map_err(reqwest_middleware::Error::middleware)
    }
}

/// Where a request goes once it carries the token: down the middleware stack, or
/// straight to a reqwest client ([`AuthClient`](crate::AuthClient)).
pub(crate) trait Transport {
    async fn send(&mut self, request: Request) -> reqwest_middleware::Result<Response>;
}

struct ViaNext<'a, 'b> {
    next: Next<'a>,
    extensions: &'b mut Extensions,
}

impl Transport for ViaNext<'_, '_> {
    async fn send(&mut self, request: Request) -> reqwest_middleware::Result<Response> {
        self.next.clone().run(request, self.extensions).await
    }
}

/// Sends with a plain reqwest client.
pub(crate) struct Direct<'a>(pub(crate) &'a reqwest::Client);

impl Transport for Direct<'_> {
    async fn send(&mut self, request: Request) -> reqwest_middleware::Result<Response> {
        Ok(self.0.execute(request).await?)
    }
}

/// The manager a request's token comes from: the middleware's own, or the one a
/// registry holds for the request's key.
pub(crate) enum Picked<'a> {
    Fixed(&'a TokenManager),
    PerKey(TokenManager),
}

impl std::ops::Deref for Picked<'_> {
    type Target = TokenManager;

    fn deref(&self) -> &TokenManager {
        match self {
            Picked::Fixed(manager) => manager,
            Picked::PerKey(manager) => manager,
        }
    }
}

impl TokenMiddleware {
    /// Whether `request` gets a token at all.
    pub(crate) fn allows(&self, request: &Request) -> bool {
        let allowed = self.origins.allows(request.url());
        if !allowed {
            tracing::debug!(
                origin = %request.url().origin().ascii_serialization(),
                "not an allowed origin: sent without the token"
            );
        }
        allowed
    }

    /// The manager for a request with these `extensions`.
    pub(crate) fn pick(&self, extensions: &Extensions) -> reqwest_middleware::Result<Picked<'_>> {
        Ok(match &self.managers {
            Managers::Fixed(manager) => Picked::Fixed(manager),
            Managers::PerKey(pick) => {
                Picked::PerKey(pick(extensions).map_err(reqwest_middleware::Error::middleware)?)
            }
        })
    }

    /// Sends `request` (to an allowed origin) through `transport` with a valid token
    /// of `manager`, and refreshes and replays once if the token is rejected.
    pub(crate) async fn execute(
        &self,
        mut request: Request,
        manager: &TokenManager,
        transport: &mut impl Transport,
    ) -> reqwest_middleware::Result<Response> {
        let span = tokenwarden::http::request_span(request.method(), request.url());
        async move {
            let span = tracing::Span::current();
            let (mut replays, mut nonce_replays) = (0, 0);
            loop {
                // The handle of the token sent: kept (no copy) to invalidate that very
                // token if the server rejects it.
                let sent = manager
                    .header()
                    .await
                    .map_err(reqwest_middleware::Error::middleware)?;
                // Copied before the token goes in: the copy is cheaper (the headers
                // hold only the caller's), and a replay gets a fresh token anyway.
                // A DPoP-bound token may need one more, for the server's nonce.
                let nonce_may_be_asked = nonce_replays == 0 && sent.token().is_dpop();
                let replay = if replays < self.max_replays || nonce_may_be_asked {
                    request.try_clone()
                } else {
                    None
                };
                self.authorize(manager, &sent, &mut request)?;
                if !span.is_disabled() {
                    span.record("fingerprint", sent.fingerprint());
                    span.record("replays", replays);
                }
                let sent_url = request.url().clone();
                let answer = transport.send(request).await;
                let outcome = answer.as_ref().map(Response::status);
                tokenwarden::http::record_outcome(&span, outcome.map_err(|_| "transport"));
                let response = answer?;
                // A resource server that wants its DPoP nonce in the proof: the
                // token is fine; one replay with the nonce.
                // (Its own answer only: not one after a redirect, whose request
                // may not have been this one.)
                let (status, headers) = (response.status(), response.headers());
                if response.url() == &sent_url
                    && tokenwarden::http::wants_nonce(&sent, &sent_url, status, headers, manager)
                {
                    let Some(again) = replay.filter(|_| nonce_replays == 0) else {
                        return Ok(response);
                    };
                    tracing::debug!("the server wants its DPoP nonce; replaying with it");
                    request = again;
                    nonce_replays += 1;
                    continue;
                }
                if !rejects_token(response.status(), response.headers()) {
                    return Ok(response);
                }
                if crate::redirect::stale_proof(&sent, response.url(), &sent_url) {
                    return Ok(response);
                }
                if !carried(self.no_round_trips, response.url(), &sent_url) {
                    tracing::debug!(
                        status = response.status().as_u16(),
                        origin = %response.url().origin().ascii_serialization(),
                        "a rejection after a redirect the token may not have followed: the token stays"
                    );
                    return Ok(response);
                }
                manager.invalidate(sent.token());
                let Some(again) = replay.filter(|_| replays < self.max_replays) else {
                    tracing::debug!(
                        status = response.status().as_u16(),
                        "token rejected; not replayed (streaming body or replays used up)"
                    );
                    return Ok(response);
                };
                tracing::debug!(
                    status = response.status().as_u16(),
                    "token rejected; refreshed and replaying"
                );
                request = again;
                replays += 1;
            }
        }
        .instrument(span)
        .await
    }
}

#[async_trait::async_trait]
impl Middleware for TokenMiddleware {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        if !self.allows(&request) {
            return next.run(request, extensions).await;
        }
        let manager = self.pick(extensions)?;
        self.execute(request, &manager, &mut ViaNext { next, extensions })
            .await
    }
}

/// Finds the manager of a request from its extensions.
type PickManager = dyn Fn(&Extensions) -> Result<TokenManager> + Send + Sync;

/// Which manager a request's token comes from.
#[derive(Clone)]
enum Managers {
    Fixed(TokenManager),
    PerKey(Arc<PickManager>),
}

impl std::fmt::Debug for Managers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Managers::Fixed(manager) => f.debug_tuple("Fixed").field(manager).finish(),
            Managers::PerKey(_) => f.write_str("PerKey"),
        }
    }
}

/// A type's name without its module paths (`String`, not
/// `alloc::string::String`; `Vec<User>`), for errors.
fn short_type_name(name: &str) -> String {
    let mut short = String::with_capacity(name.len());
    let mut word = String::new();
    for c in name.chars().chain(std::iter::once(' ')) {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        short.push_str(word.rsplit("::").next().unwrap_or_default());
        word.clear();
        short.push(c);
    }
    short.pop(); // the space added
    short
}

#[cfg(test)]
mod tests {
    #[test]
    fn type_names_lose_their_paths() {
        use super::short_type_name;
        assert_eq!(short_type_name("alloc::string::String"), "String");
        assert_eq!(short_type_name("alloc::vec::Vec<my::User>"), "Vec<User>");
        assert_eq!(short_type_name("(u64, &str)"), "(u64, &str)");
    }
}
