//! [`TokenService`]: attaches the token, and refreshes and replays on rejection.

use super::BoxError;
use crate::http::{rejects_token, AllowedOrigins, TokenPlacement};
use crate::TokenManager;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use std::sync::Arc;
use std::task::{Context, Poll};
use tracing::Instrument as _;

/// Request bodies that can be sent again after a rejected token. Implemented for
/// the usual in-memory bodies; a streaming body returns `None` and is not replayed.
pub trait ReplayBody: Sized {
    /// A copy to send again, if the body can be.
    fn try_clone(&self) -> Option<Self>;
}

/// Whether and how a [`TokenService`] replays a request after a rejected token.
pub trait Replay<B>: Clone + Send + Sync + 'static {
    /// A copy of `body` to send again, or `None` for no replay.
    fn copy(&self, body: &B) -> Option<B>;
}

/// Replays requests whose body is a [`ReplayBody`] (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayBodies;

impl<B: ReplayBody> Replay<B> for ReplayBodies {
    fn copy(&self, body: &B) -> Option<B> {
        body.try_clone()
    }
}

/// Never replays, for any body (a tonic channel's streams): a rejected token is
/// invalidated and the response returned; the next request gets a fresh token.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReplay;

impl<B> Replay<B> for NoReplay {
    fn copy(&self, _: &B) -> Option<B> {
        None
    }
}

macro_rules! cloneable_bodies {
    ($($body:ty),*) => {$(
        impl ReplayBody for $body {
            fn try_clone(&self) -> Option<Self> {
                Some(self.clone())
            }
        }
    )*};
}

cloneable_bodies!(
    (),
    String,
    Vec<u8>,
    bytes::Bytes,
    http_body_util::Full<bytes::Bytes>,
    http_body_util::Empty<bytes::Bytes>
);

#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) manager: TokenManager,
    pub(super) origins: Option<AllowedOrigins>,
    pub(super) placement: TokenPlacement,
    pub(super) max_replays: u32,
    /// The origin relative URIs go to (a tonic channel's endpoint), which a
    /// DPoP proof names.
    pub(super) relative_origin: Option<url::Url>,
}

impl Config {
    /// Whether a request to `uri` gets the token: a relative URI (a channel that
    /// talks to one server), or an absolute one of an allowed origin.
    fn allows(&self, uri: &http::Uri) -> bool {
        if uri.scheme().is_none() {
            return true;
        }
        let url = url::Url::parse(&uri.to_string()).ok();
        matches!((&self.origins, url), (Some(origins), Some(url)) if origins.allows(&url))
    }
}

/// The service made by [`TokenLayer`](super::TokenLayer).
#[derive(Debug, Clone)]
pub struct TokenService<S, P = ReplayBodies> {
    pub(super) inner: S,
    pub(super) config: Arc<Config>,
    pub(super) replay: P,
}

impl<S, P> TokenService<S, P> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The response future of a [`TokenService`].
pub type TokenFuture<R> = BoxFuture<'static, Result<R, BoxError>>;

impl<S, P, B, R> tower_service::Service<Request<B>> for TokenService<S, P>
where
    S: tower_service::Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    P: Replay<B>,
    B: Send + 'static,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = TokenFuture<Response<R>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone waits for readiness again before a replay; this one was made ready.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        // The URI parsed only where the span is wanted: not on every request.
        let parsed = match tracing::enabled!(tracing::Level::DEBUG) {
            true => Some(url::Url::parse(&request.uri().to_string())),
            false => None,
        };
        let span = match parsed {
            None => tracing::Span::none(),
            Some(Ok(url)) => crate::http::request_span(request.method(), &url),
            // A relative URI (no scheme or host): only what is known.
            Some(Err(_)) => tracing::debug_span!(
                "tokenwarden.request",
                otel.kind = "client",
                http.request.method = %request.method(),
                url.path = request.uri().path(),
                http.response.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
                fingerprint = tracing::field::Empty,
                replays = 0u32,
            ),
        };
        Box::pin(send(inner, config, self.replay.clone(), request).instrument(span))
    }
}

async fn send<S, P, B, R>(
    mut inner: S,
    config: Arc<Config>,
    replay: P,
    mut request: Request<B>,
) -> Result<Response<R>, BoxError>
where
    S: tower_service::Service<Request<B>, Response = Response<R>> + Clone,
    S::Error: Into<BoxError>,
    P: Replay<B>,
{
    if !config.allows(request.uri()) {
        return inner.call(request).await.map_err(Into::into);
    }
    let mut replays = 0;
    // Replays with a resource server's DPoP nonce (one at most).
    #[cfg_attr(not(feature = "dpop"), allow(unused_mut))]
    let mut nonce_replays = 0;
    loop {
        let header = config.manager.header().await?;
        #[cfg(feature = "dpop")]
        let target = dpop::authorize(&config, &mut request, &header)?;
        #[cfg(not(feature = "dpop"))]
        {
            if header.token().is_dpop() {
                // Sent without a proof it would only be refused.
                return Err(crate::Error::config(
                    "a DPoP-bound token needs a proof with each request: build tokenwarden \
                     with the `dpop` feature",
                )
                .into());
            }
            config.placement.apply(request.headers_mut(), &header)?;
        }
        let span = tracing::Span::current();
        if !span.is_disabled() {
            span.record("fingerprint", header.fingerprint());
            span.record("replays", replays);
        }
        // A DPoP-bound token may need one more copy, for the server's nonce.
        let nonce_may_be_asked = nonce_replays == 0 && header.token().is_dpop();
        let again = if replays < config.max_replays || nonce_may_be_asked {
            clone_request(&replay, &request)
        } else {
            None
        };
        let sent = inner.call(request).await.map_err(Into::into);
        let outcome = sent.as_ref().map(Response::status);
        crate::http::record_outcome(&span, outcome.map_err(|_| "transport"));
        let response = sent?;
        // A resource server that wants its DPoP nonce in the proof: the token is
        // fine; one replay with the nonce.
        #[cfg(feature = "dpop")]
        if let Some(url) = &target {
            let (status, headers) = (response.status(), response.headers());
            if crate::http::wants_nonce(&header, url, status, headers, &config.manager) {
                let Some(again) = again.filter(|_| nonce_replays == 0) else {
                    return Ok(response);
                };
                tracing::debug!("the server wants its DPoP nonce; replaying with it");
                request = again;
                nonce_replays += 1;
                std::future::poll_fn(|cx| inner.poll_ready(cx))
                    .await
                    .map_err(Into::into)?;
                continue;
            }
        }
        if !rejects_token(response.status(), response.headers()) {
            return Ok(response);
        }
        config.manager.invalidate(header.token());
        let Some(again) = again.filter(|_| replays < config.max_replays) else {
            tracing::debug!(
                fingerprint = header.fingerprint(),
                "token rejected; not replayed"
            );
            return Ok(response);
        };
        tracing::debug!(
            fingerprint = header.fingerprint(),
            "token rejected; refreshed and replaying"
        );
        request = again;
        replays += 1;
        std::future::poll_fn(|cx| inner.poll_ready(cx))
            .await
            .map_err(Into::into)?;
    }
}

#[cfg(feature = "dpop")]
mod dpop {
    use super::{BoxError, Config};
    use crate::HeaderRef;
    use http::Request;

    /// Puts the token on `request` and, for a DPoP-bound token, its proof;
    /// the request's full URL then, for the answer's nonce.
    pub(super) fn authorize<B>(
        config: &Config,
        request: &mut Request<B>,
        header: &HeaderRef,
    ) -> Result<Option<url::Url>, BoxError> {
        if !header.token().is_dpop() {
            config.placement.apply(request.headers_mut(), header)?;
            return Ok(None);
        }
        let url = target(config, request.uri())?;
        let method = request.method().clone();
        crate::http::authorize(
            &config.placement,
            request.headers_mut(),
            header,
            &method,
            &url,
            &config.manager,
        )?;
        Ok(Some(url))
    }

    /// The full URL of a request to `uri`: as it is, or relative to the
    /// layer's [`relative_origin`](crate::tower::TokenLayer::relative_origin).
    fn target(config: &Config, uri: &http::Uri) -> Result<url::Url, BoxError> {
        if uri.scheme().is_some() {
            return Ok(url::Url::parse(&uri.to_string())?);
        }
        let origin = config.relative_origin.as_ref().ok_or_else(|| {
            crate::Error::config(
                "a DPoP proof names the request's full URI, and this request's is relative: \
                 give the layer its channel's origin with `TokenLayer::relative_origin`",
            )
        })?;
        // Set, not joined: a path of `//host/x` would name another host.
        let mut url = origin.clone();
        url.set_path(uri.path());
        url.set_query(uri.query());
        Ok(url)
    }
}

fn clone_request<B, P: Replay<B>>(replay: &P, request: &Request<B>) -> Option<Request<B>> {
    let body = replay.copy(request.body())?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    // Every extension can be cloned (http 1 requires it of what is inserted).
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}
