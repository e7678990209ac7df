//! The tower layer over a tonic channel, against a local gRPC service that answers
//! UNAUTHENTICATED to any token but the current one.

use crate::common::*;
use http::uri::PathAndQuery;
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokenwarden::tower::TokenLayer;
use tokenwarden::{source::from_fn, Token, TokenManager};
use tonic::body::Body;
use tonic::server::{NamedService, UnaryService};
use tonic_prost::ProstCodec;
use tower_layer::Layer as _;

#[derive(Clone, PartialEq, prost::Message)]
struct Ping {
    #[prost(string, tag = "1")]
    text: String,
}

#[derive(Default)]
struct State {
    valid: Mutex<HashSet<String>>,
    calls: AtomicUsize,
    logins: AtomicUsize,
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
                .and_then(|t| t.strip_prefix("Bearer "))
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
struct Pinger(Arc<State>);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_channel_gets_tokens_and_recovers_from_unauthenticated() {
    let _h = harness();
    let state = Arc::new(State::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let incoming = tokio_stream_listener(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Pinger(state.clone()))
            .serve_with_incoming(incoming),
    );

    let login_state = state.clone();
    let manager = TokenManager::builder(from_fn("grpc", move || {
        let n = login_state.logins.fetch_add(1, SeqCst) + 1;
        let token = format!("{MARKER}-grpc-{n}");
        login_state.valid.lock().unwrap().insert(token.clone());
        async move { Ok(Token::new(token).with_expires_in(Duration::from_secs(600))) }
    }))
    .build()
    .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = tonic::client::Grpc::new(TokenLayer::new(manager).no_replay().layer(channel));
    let path = PathAndQuery::from_static("/test.Pinger/Ping");
    let call = |text: &str| {
        let request = tonic::Request::new(Ping { text: text.into() });
        let path = path.clone();
        let mut client = client.clone();
        async move {
            client.ready().await.unwrap();
            client
                .unary(request, path, ProstCodec::<Ping, Ping>::default())
                .await
        }
    };

    assert_eq!(call("one").await.unwrap().into_inner().text, "pong: one");
    state.valid.lock().unwrap().clear(); // the server stops accepting the token
    let status = call("two").await.unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::Unauthenticated,
        "a streaming call is not replayed"
    );
    assert_eq!(
        call("three").await.unwrap().into_inner().text,
        "pong: three",
        "the next call has a new token"
    );
    assert_eq!(state.logins.load(SeqCst), 2);
    assert_eq!(state.calls.load(SeqCst), 3);
}

/// The listener's connections as the stream tonic serves.
fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}
