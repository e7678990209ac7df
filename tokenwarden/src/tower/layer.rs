//! [`TokenLayer`]: the layer that wraps a service in a [`TokenService`].

use super::service::{Config, NoReplay, ReplayBodies, TokenService};
use crate::http::{AllowedOrigins, TokenPlacement};
use crate::TokenManager;
use std::sync::Arc;

/// Wraps services in a [`TokenService`] with tokens from one manager.
#[derive(Debug, Clone)]
pub struct TokenLayer<P = ReplayBodies> {
    config: Config,
    replay: P,
}

impl TokenLayer {
    /// Tokens from `manager`. Without [`allowed_origins`](Self::allowed_origins),
    /// only requests with a relative URI (a tonic channel's) get the token.
    pub fn new(manager: TokenManager) -> Self {
        Self {
            config: Config {
                manager,
                origins: None,
                placement: TokenPlacement::default(),
                max_replays: 1,
                relative_origin: None,
            },
            replay: ReplayBodies,
        }
    }

    /// Never replays (for bodies that cannot be, like a tonic channel's): a
    /// rejected token is invalidated, the response returned, and the next request
    /// gets a fresh token.
    pub fn no_replay(self) -> TokenLayer<NoReplay> {
        TokenLayer {
            config: self.config,
            replay: NoReplay,
        }
    }
}

impl<P> TokenLayer<P> {
    /// The origins that get the token, for requests with an absolute URI.
    pub fn allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.config.origins = Some(origins);
        self
    }

    /// Where the token goes. Defaults to `Authorization: <type> <token>`.
    pub fn placement(mut self, placement: TokenPlacement) -> Self {
        self.config.placement = placement;
        self
    }

    /// The origin requests with a relative URI go to (a tonic channel's
    /// endpoint, `http://127.0.0.1:50051`): a DPoP proof names the request's
    /// full URI, so a DPoP-bound token needs it for such requests.
    pub fn relative_origin(mut self, origin: url::Url) -> Self {
        self.config.relative_origin = Some(origin);
        self
    }

    /// Replays after a rejected token, for replayable bodies. Defaults to 1.
    pub fn max_replays(mut self, max_replays: u32) -> Self {
        self.config.max_replays = max_replays;
        self
    }
}

impl<S, P: Clone> tower_layer::Layer<S> for TokenLayer<P> {
    type Service = TokenService<S, P>;

    fn layer(&self, inner: S) -> TokenService<S, P> {
        TokenService {
            inner,
            config: Arc::new(self.config.clone()),
            replay: self.replay.clone(),
        }
    }
}
