//! The tower layer over a tonic channel, against a local gRPC service that answers
//! UNAUTHENTICATED to any token but the current one.

#[path = "../support/pinger.rs"]
pub mod pinger;

use crate::common::*;
use http::uri::PathAndQuery;
use pinger::{Ping, State};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::tower::TokenLayer;
use tokenwarden::{source::from_fn, Token, TokenManager};
use tonic_prost::ProstCodec;
use tower_layer::Layer as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_channel_gets_tokens_and_recovers_from_unauthenticated() {
    let _h = harness();
    let state = Arc::new(State::default());
    let address = pinger::serve(state.clone()).await;

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
