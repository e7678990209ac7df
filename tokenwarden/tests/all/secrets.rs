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

/// A user's source that derives `Debug` over its credentials.
#[derive(Debug)]
struct CarelessSource {
    client_secret: String,
}

#[async_trait::async_trait]
impl tokenwarden::TokenSource for CarelessSource {
    async fn fetch(&self) -> tokenwarden::Result<Token> {
        Ok(Token::new(format!("{MARKER}-{}", self.client_secret.len())))
    }
    fn name(&self) -> &str {
        "careless"
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_manager_does_not_show_its_sources_fields() {
    let _h = harness();
    let manager = TokenManager::builder(CarelessSource {
        client_secret: format!("{MARKER}-client-secret"),
    })
    .build()
    .unwrap();
    manager.token().await.unwrap();
    let debug = format!("{manager:?}");
    assert_clean("TokenManager", &debug);
    assert!(debug.contains("careless"), "{debug}");
}

#[test]
fn the_log_capture_is_live() {
    let _h = harness();
    tracing::trace!(target: "tokenwarden_tests", "capture check");
    assert!(captured().contains("capture check"));
}

#[tokio::test]
async fn keys_and_passphrases_never_show() {
    use tokenwarden::store::{FileKey, FileStore, TokenCipher, TokenStore};
    let _h = harness();
    let key: [u8; 32] = *b"TOPSECRET-data-key-0123456789abc";
    // A key shown with `{:?}` would read as its bytes, not as text.
    let as_numbers = format!("{:?}", &key[..4]);
    let as_numbers = as_numbers.trim_matches(|c| c == '[' || c == ']');
    // In the logs, a key would show as text, hex or base64: all are watched.
    use base64::Engine as _;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    watch(&hex);
    watch(&base64::engine::general_purpose::STANDARD.encode(key));
    watch(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key));
    let passphrase = format!("{MARKER}-correct horse battery staple");
    let dir = tempfile::tempdir().unwrap();
    let token_key = tokenwarden::TokenKey::new("api");
    let by_passphrase = |pass: &str| {
        FileStore::builder("t")
            .dir(dir.path().join("p"))
            .key(FileKey::passphrase(pass))
            .build()
            .unwrap()
    };
    let token = Token::new(format!("{MARKER}-at")).with_expires_in(HOUR);
    by_passphrase(&passphrase)
        .save(&token_key, &token)
        .await
        .unwrap();
    let wrong = by_passphrase("wrong").load(&token_key).await.unwrap_err();
    let by_key = FileStore::builder("t")
        .dir(dir.path().join("k"))
        .key(FileKey::bytes(key))
        .build()
        .unwrap();
    let cipher = TokenCipher::new(key);
    let sealed = cipher.seal("entry", &token).unwrap();
    let unopened = TokenCipher::new([1; 32])
        .open("entry", &sealed)
        .unwrap_err();
    let texts = [
        (
            "FileKey::passphrase",
            format!("{:?}", FileKey::passphrase(&passphrase)),
        ),
        ("FileKey::bytes", format!("{:?}", FileKey::bytes(key))),
        (
            "FileStore",
            format!("{:?} {by_key:?}", by_passphrase(&passphrase)),
        ),
        ("TokenCipher", format!("{cipher:?}")),
        ("the wrong passphrase's error", format!("{wrong} {wrong:?}")),
        ("the wrong key's error", format!("{unopened} {unopened:?}")),
    ];
    for (what, text) in texts {
        assert_clean(what, &text);
        assert!(
            !text.contains(as_numbers),
            "{what} shows the key's bytes: {text}"
        );
    }
}
