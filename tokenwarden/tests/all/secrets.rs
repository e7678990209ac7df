//! No secret in any `Debug` string, error message or log line.

use crate::common::*;
use std::time::Duration;
use tokenwarden::store::MemoryStore;
use tokenwarden::{
    AccessToken, ClientSecret, IdToken, RefreshToken, Token, TokenEventKind, TokenManager,
    TokenRegistry,
};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_of_every_type_that_holds_a_secret_is_redacted() {
    let _h = harness();
    let token = Token::new(format!("{MARKER}-a"))
        .with_refresh_token(format!("{MARKER}-r"))
        .with_id_token(format!("{MARKER}-id"))
        .with_extra("session", serde_json::json!(format!("{MARKER}-extra")))
        .with_expires_in(HOUR);
    let store = MemoryStore::new();
    let (listener, mut events) = event_channel();
    let source = tokenwarden::source::StaticSource::new("static", token.clone());
    let manager = TokenManager::builder(source.clone())
        .store(store.clone())
        .listener(listener)
        .build()
        .unwrap();
    let token_ref = manager.token().await.unwrap();
    let header = manager.header().await.unwrap();
    let event = next_event(&mut events, TokenEventKind::Fetched).await;
    let registry =
        TokenRegistry::builder(move |_: &u8| TokenManager::builder(source.clone()).build()).build();
    registry.token(&1).await.unwrap();

    let debugs = [
        (
            "AccessToken",
            format!(
                "{:?} {}",
                AccessToken::new(MARKER),
                AccessToken::new(MARKER)
            ),
        ),
        (
            "RefreshToken",
            format!(
                "{:?} {}",
                RefreshToken::new(MARKER),
                RefreshToken::new(MARKER)
            ),
        ),
        (
            "ClientSecret",
            format!(
                "{:?} {}",
                ClientSecret::new(MARKER),
                ClientSecret::new(MARKER)
            ),
        ),
        (
            "IdToken",
            format!("{:?} {}", IdToken::new(MARKER), IdToken::new(MARKER)),
        ),
        ("Token", format!("{token:?} {:#?}", token)),
        ("TokenRef", format!("{token_ref:?}")),
        ("HeaderRef", format!("{header:?}")),
        ("TokenEvent", format!("{event:?}")),
        ("TokenInfo", format!("{:?}", manager.info().await)),
        (
            "TokenInfo JSON",
            serde_json::to_string(&manager.info().await).unwrap(),
        ),
        ("TokenManager", format!("{manager:?}")),
        ("MemoryStore", format!("{store:?}")),
        ("TokenRegistry", format!("{registry:?}")),
        ("Stats", format!("{:?}", manager.stats())),
    ];
    for (what, text) in debugs {
        assert_clean(what, &text);
    }
    assert_eq!(
        header.token().access_token.secret(),
        format!("{MARKER}-a"),
        "the secret is there on request"
    );
}

#[test]
fn the_log_capture_is_live() {
    let _h = harness();
    tracing::trace!(target: "tokenwarden_tests", "capture check");
    assert!(captured().contains("capture check"));
}
