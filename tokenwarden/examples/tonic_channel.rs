//! A tonic channel wrapped in `TokenLayer`, calling a local gRPC service that
//! accepts only current tokens: the token goes in the metadata, an UNAUTHENTICATED
//! answer invalidates it, and the next call carries a new one.
//!
//! ```text
//! cargo run -p tokenwarden --features tower --example tonic_channel
//! ```

#[path = "../tests/support/pinger.rs"]
mod pinger;

use http::uri::PathAndQuery;
use pinger::{Ping, State};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden::tower::TokenLayer;
use tokenwarden::{source::from_fn, Token, TokenManager};
use tonic_prost::ProstCodec;
use tower_layer::Layer as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let state = Arc::new(State::default());
    let address = pinger::serve(state.clone()).await;

    let login = state.clone();
    let manager = TokenManager::builder(from_fn("grpc-api", move || {
        let n = login.logins.fetch_add(1, SeqCst) + 1;
        let token = format!("token-{n}");
        login.valid.lock().unwrap().insert(token.clone());
        async move { Ok(Token::new(token).with_expires_in(Duration::from_secs(600))) }
    }))
    .build()?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    // gRPC bodies are streams: no replay; the next call gets the fresh token.
    let mut client = tonic::client::Grpc::new(TokenLayer::new(manager).no_replay().layer(channel));
    let path = PathAndQuery::from_static("/test.Pinger/Ping");

    for (i, text) in ["hello", "again", "once more"].into_iter().enumerate() {
        if i == 1 {
            println!("the service stops accepting the token...");
            state.valid.lock().unwrap().clear();
        }
        client.ready().await?;
        let request = tonic::Request::new(Ping { text: text.into() });
        match client
            .unary(request, path.clone(), ProstCodec::<Ping, Ping>::default())
            .await
        {
            Ok(response) => println!("call {}: {}", i + 1, response.into_inner().text),
            Err(status) => println!("call {}: {:?} (token invalidated)", i + 1, status.code()),
        }
    }
    println!("logins: {}", state.logins.load(SeqCst));
    Ok(())
}
