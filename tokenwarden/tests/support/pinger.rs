//! A one-method gRPC service for the tonic tests and example: `/test.Pinger/Ping`
//! answers `pong: <text>` to the current tokens and UNAUTHENTICATED to others.
//! Routed by hand, so no protobuf compiler is needed.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::server::{NamedService, UnaryService};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(string, tag = "1")]
    pub text: String,
}

/// What the service accepts and counts.
#[derive(Default)]
pub struct State {
    /// The tokens accepted now.
    pub valid: Mutex<HashSet<String>>,
    /// Calls received.
    pub calls: AtomicUsize,
    /// Logins made (by the token source of the test or example).
    pub logins: AtomicUsize,
}

struct PingHandler(Arc<State>);

impl UnaryService<Ping> for PingHandler {
    type Response = Ping;
    type Future =
        futures_util::future::BoxFuture<'static, Result<tonic::Response<Ping>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Ping>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            state.calls.fetch_add(1, SeqCst);
            let token = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            let token = token
                .and_then(|t| {
                    t.strip_prefix("Bearer ")
                        .or_else(|| t.strip_prefix("DPoP "))
                })
                .unwrap_or_default()
                .to_owned();
            if !state.valid.lock().unwrap().contains(&token) {
                return Err(tonic::Status::unauthenticated("token rejected"));
            }
            Ok(tonic::Response::new(Ping {
                text: format!("pong: {}", request.into_inner().text),
            }))
        })
    }
}

/// The service, routed by hand (no code generation needed for one method).
#[derive(Clone)]
pub struct Pinger(pub Arc<State>);

impl NamedService for Pinger {
    const NAME: &'static str = "test.Pinger";
}

impl tower_service::Service<http::Request<Body>> for Pinger {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future =
        futures_util::future::BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Ping, Ping>::default());
            Ok(grpc.unary(PingHandler(state), request).await)
        })
    }
}

/// Serves [`Pinger`] on 127.0.0.1 and returns its address.
pub async fn serve(state: Arc<State>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let incoming = futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Pinger(state))
            .serve_with_incoming(incoming),
    );
    address
}
