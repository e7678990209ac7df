//! [`TokenLayer`] → [`TokenService`]: tokens for any `tower::Service` of
//! `http::Request`s, such as a hyper client or a tonic channel (feature `tower`).
//!
//! The service puts a valid token on every request to an allowed origin (for
//! requests with a relative URI, as tonic sends them, every request), and on a
//! rejected token (401, 403 `invalid_token`, or gRPC `UNAUTHENTICATED`)
//! invalidates the token it sent and replays the request once when its body can be
//! replayed ([`ReplayBody`]); otherwise the response is returned and the next
//! request gets a fresh token. A replay carries the new token only (and the
//! request's extensions).
//!
//! To follow redirects, put the redirect-following layer (tower-http's
//! `FollowRedirect`) *above* this one, never below: then every hop passes through
//! this layer, which puts the token only on hops to allowed origins and takes
//! only their own answers as the token's rejection. Below it, a chain that left
//! the token's origin would come back with an answer this layer would take for
//! its own request's.
//!
//! ```no_run
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tokenwarden::http::AllowedOrigins;
//! use tokenwarden::tower::TokenLayer;
//! use tokenwarden::{source::from_fn, Token, TokenManager};
//! use tower_layer::Layer;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let manager = TokenManager::builder(from_fn("api", || async { Ok(Token::new("t")) })).build()?;
//! let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
//! let client = TokenLayer::new(manager)
//!     .allowed_origins(AllowedOrigins::of("http://127.0.0.1:8080")?)
//!     .layer(hyper);
//! # Ok(()) }
//! ```

//! Over a tonic channel (whose streaming bodies cannot be replayed):
//!
//! ```no_run
//! # async fn run(manager: tokenwarden::TokenManager) -> Result<(), Box<dyn std::error::Error>> {
//! use tokenwarden::tower::TokenLayer;
//! use tower_layer::Layer;
//! let channel = tonic::transport::Channel::from_static("http://127.0.0.1:50051").connect().await?;
//! let channel = TokenLayer::new(manager).no_replay().layer(channel);
//! // Use it with your generated client: `MyServiceClient::new(channel)`.
//! # Ok(()) }
//! ```

mod layer;
mod service;

pub use layer::TokenLayer;
pub use service::{NoReplay, Replay, ReplayBodies, ReplayBody, TokenFuture, TokenService};

/// The error of a [`TokenService`]: the inner service's, or the token's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
