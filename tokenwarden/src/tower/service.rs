//! [`TokenService`]: attaches the token, and refreshes and replays on rejection.

use super::BoxError;
use crate::http::{rejects_token, AllowedOrigins, TokenPlacement};
use crate::TokenManager;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Request bodies that can be sent again after a rejected token. Implemented for
/// the usual in-memory bodies; a streaming body returns `None` and is not replayed.
pub trait ReplayBody: Sized {
    /// A copy to send again, if the body can be.
    fn try_clone(&self) -> Option<Self>;
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
pub struct TokenService<S> {
    pub(super) inner: S,
    pub(super) config: Arc<Config>,
}

impl<S> TokenService<S> {
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

impl<S, B, R> tower_service::Service<Request<B>> for TokenService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: ReplayBody + Send + 'static,
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
        Box::pin(send(inner, config, request))
    }
}

async fn send<S, B, R>(
    mut inner: S,
    config: Arc<Config>,
    mut request: Request<B>,
) -> Result<Response<R>, BoxError>
where
    S: tower_service::Service<Request<B>, Response = Response<R>> + Clone,
    S::Error: Into<BoxError>,
    B: ReplayBody,
{
    if !config.allows(request.uri()) {
        return inner.call(request).await.map_err(Into::into);
    }
    let mut replays = 0;
    loop {
        let header = config.manager.header().await?;
        config.placement.apply(request.headers_mut(), &header)?;
        let again = if replays < config.max_replays {
            clone_request(&request)
        } else {
            None
        };
        let response = inner.call(request).await.map_err(Into::into)?;
        if !rejects_token(response.status(), response.headers()) {
            return Ok(response);
        }
        config.manager.invalidate(header.token());
        let Some(again) = again else {
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

fn clone_request<B: ReplayBody>(request: &Request<B>) -> Option<Request<B>> {
    let body = request.body().try_clone()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}
