//! The built-in sources that need no network: static and closure sources.

use crate::common::*;
use std::time::Duration;
use tokenwarden::source::{from_fn, StaticSource};
use tokenwarden::{Clock, ErrorKind, Token, TokenKey, TokenManager, TokenSource};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "current_thread")]
async fn a_static_source_serves_its_token_until_it_expires() {
    let _h = harness();
    let clock = clock();
    let token = Token::new(format!("{MARKER}-static")).with_expires_at(clock.now() + HOUR);
    let manager = TokenManager::builder(StaticSource::new("ci", token))
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(
        manager.token().await.unwrap().access_token.secret(),
        format!("{MARKER}-static")
    );
    clock.advance(HOUR);
    let error = manager.token().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoValidToken);
    assert!(error.to_string().contains("`ci`"), "{error}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_static_source_without_an_access_token_says_what_to_do() {
    let _h = harness();
    let empty = Token::new("").with_refresh_token(format!("{MARKER}-rt"));
    let error = StaticSource::new("env", empty).fetch().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Source);
    assert!(
        error
            .to_string()
            .contains("give the manager a source that can"),
        "{error}"
    );
    assert_clean("error", &format!("{error:?}"));
}

#[tokio::test(flavor = "current_thread")]
async fn a_token_without_expiry_gets_the_jwt_exp_or_the_default_lifetime() {
    let _h = harness();
    let clock = clock();
    let manager = TokenManager::builder(from_fn("opaque", || async { Ok(Token::new("opaque")) }))
        .clock(clock.clone())
        .default_lifetime(Duration::from_secs(600))
        .build()
        .unwrap();
    let token = manager.token().await.unwrap();
    assert_eq!(
        token.expires_in(clock.now()),
        Some(Duration::from_secs(600))
    );

    use base64::Engine as _;
    let exp = tokenwarden::clock::unix_millis(clock.now()) / 1000 + 120;
    let claims =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp}}}"#));
    let jwt = format!("eyJhbGciOiJub25lIn0.{claims}.");
    let manager = TokenManager::builder(from_fn("jwt", move || {
        let jwt = jwt.clone();
        async move { Ok(Token::new(jwt)) }
    }))
    .clock(clock.clone())
    .build()
    .unwrap();
    let token = manager.token().await.unwrap();
    assert_eq!(
        token.expires_in(clock.now()),
        Some(Duration::from_secs(120))
    );
}

#[test]
fn the_key_follows_the_source_unless_set() {
    let source = from_fn("svc", || async { Ok(Token::new("x")) });
    let manager = TokenManager::builder(source.clone()).build().unwrap();
    assert_eq!(manager.key(), &TokenKey::new("svc"));
    let scoped = TokenKey::new("svc").with("scope", "read");
    let manager = TokenManager::builder(source.with_key(scoped.clone()))
        .build()
        .unwrap();
    assert_eq!(manager.key(), &scoped);
    let manager = TokenManager::builder(from_fn("svc", || async { Ok(Token::new("x")) }))
        .key(TokenKey::new("other"))
        .build()
        .unwrap();
    assert_eq!(manager.key().name(), "other");
    assert_eq!(manager.source_name(), "svc");
}

#[tokio::test(flavor = "current_thread")]
async fn a_source_shared_as_arc_dyn_works() {
    let _h = harness();
    let source: std::sync::Arc<dyn TokenSource> = CountingSource::new(HOUR);
    let manager = TokenManager::builder(source).build().unwrap();
    assert!(manager.token().await.is_ok());
    assert_eq!(manager.info().await.source, "counting");
}
