//! Redis Sentinel (issue 16): a store on a `redis+sentinel://` URL talks to the
//! primary the sentinels name, and after the primary dies (SIGKILL) right after
//! a refresh saved a rotated refresh token, it finds the promoted replica, which
//! holds that token (the save waited for it): the spent one never comes back.

use crate::sentinels::Sentinels;
use std::time::Duration;
use tokenwarden::store::TokenStore;
use tokenwarden::{Token, TokenKey};
use tokenwarden_redis::RedisStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_survives_the_primarys_death() {
    let _h = crate::leaks::harness();
    let Some(mut deployment) = Sentinels::start() else {
        return;
    };
    let store = RedisStore::builder(deployment.url())
        .timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let key = TokenKey::new("api");
    let first = Token::new("at1-TOPSECRET").with_refresh_token("rt1-TOPSECRET");
    let rotated = Token::new("at2-TOPSECRET").with_refresh_token("rt2-TOPSECRET");
    store.save(&key, &first).await.unwrap();
    let lease = store.lease(&key, Duration::from_secs(30)).await.unwrap();
    store.save_leased(&key, &rotated, &lease).await.unwrap();

    // The primary dies right after the rotation was saved.
    let old = deployment.pair.primary.port;
    deployment.pair.primary.kill();
    let mut promoted = None;
    for _ in 0..1_500 {
        promoted = deployment.primary_port().filter(|p| *p != old);
        if promoted.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        promoted,
        Some(deployment.pair.replica.port),
        "the sentinels promoted the replica"
    );

    // The store finds it: a command or two may fail while it does (the
    // manager serves from its cache meanwhile), then the rotated token is there.
    let mut loaded = None;
    for _ in 0..50 {
        match store.load(&key).await {
            Ok(token) => {
                loaded = token;
                break;
            }
            Err(error) => {
                assert!(error.is_transient(), "{error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let loaded = loaded.expect("the token, from the promoted replica");
    assert_eq!(loaded.refresh_token.unwrap().secret(), "rt2-TOPSECRET");
    // And it writes there; with no replica left, a rotated token is kept on the
    // new primary and its save reported failed (the manager saves it again),
    // until a replica is back.
    let third = Token::new("at3-TOPSECRET").with_refresh_token("rt3-TOPSECRET");
    let error = store.save(&key, &third).await.unwrap_err();
    assert!(
        error.to_string().contains("reached 0 of 1 replicas"),
        "{error}"
    );
    let again = store.load(&key).await.unwrap().unwrap();
    assert_eq!(again.access_token.secret(), "at3-TOPSECRET");
}

/// A Sentinel URL that cannot be read, or sentinels that are not there: typed
/// errors that never quote the password.
#[tokio::test]
async fn bad_sentinel_urls_and_absent_sentinels_are_typed_errors() {
    let _h = crate::leaks::harness();
    for (url, kind) in [
        (
            "redis+sentinel://tw:TOPSECRET@127.0.0.1:x/m",
            tokenwarden::ErrorKind::Config,
        ),
        (
            "redis+sentinel://127.0.0.1:26379",
            tokenwarden::ErrorKind::Config,
        ),
        (
            "redis+sentinel://tw:TOPSECRET@127.0.0.1:1/m",
            tokenwarden::ErrorKind::Store,
        ),
    ] {
        let error = RedisStore::builder(url)
            .timeout(Duration::from_secs(1))
            .build()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), kind, "{url}: {error}");
        assert!(
            !format!("{error} {error:?}").contains("TOPSECRET"),
            "{error}"
        );
    }
}
