//! Seed 002's handler pattern on a real PostgreSQL: the `persist_listener` example's
//! listener writes every new token, sealed, to a table, and deletes it on logout.
//! Without PostgreSQL on 127.0.0.1:5432 the test prints why and skips, except
//! under `CI`.

#[allow(dead_code)]
#[path = "../../examples/persist_listener.rs"]
mod example;

use crate::common::*;
use std::time::Duration;
use tokenwarden::store::TokenCipher;
use tokenwarden::{source::from_fn, Token, TokenKey, TokenManager};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_token_is_persisted_sealed_and_removed_on_logout() {
    let _h = harness();
    let client = match example::connect().await {
        Ok(client) => client,
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("CI needs PostgreSQL on 127.0.0.1:5432: {error}")
        }
        Err(error) => {
            eprintln!("skipped: no PostgreSQL ({error})");
            return;
        }
    };
    let cipher = TokenCipher::new([4; 32]);
    let (listener, written) = example::PostgresListener::start(client.clone(), cipher.clone())
        .await
        .unwrap();
    let key = TokenKey::new(format!("persist-{:016x}", fastrand::u64(..)));
    let manager = TokenManager::builder(from_fn("persisted-api", || async {
        Ok(Token::new(format!("{MARKER}-pg-{}", fastrand::u32(..)))
            .with_refresh_token(format!("{MARKER}-pg-rt"))
            .with_expires_in(Duration::from_secs(3600)))
    }))
    .key(key.clone())
    .listener(listener)
    .build()
    .unwrap();
    let events = |n: u64| {
        let mut written = written.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(10), written.wait_for(|w| *w >= n))
                .await
                .expect("the writer keeps up")
                .unwrap();
        }
    };

    manager.token().await.unwrap();
    let refreshed = manager.force_refresh().await.unwrap().to_token();
    events(2).await;
    let persisted = example::fetch(&client, &cipher, key.as_str())
        .await
        .unwrap()
        .expect("a row");
    assert_eq!(
        persisted.access_token.secret(),
        refreshed.access_token.secret()
    );
    let millis = |t: &Token| {
        t.expires_at
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    assert_eq!(
        millis(&persisted),
        millis(&refreshed),
        "stored to the millisecond"
    );

    // Sealed in the table; a row copied under another key does not open.
    let row = client
        .query_one(
            "SELECT sealed FROM tokenwarden_tokens WHERE key = $1",
            &[&key.as_str()],
        )
        .await
        .unwrap();
    let sealed: Vec<u8> = row.get(0);
    assert!(!String::from_utf8_lossy(&sealed).contains(MARKER));
    let copy = format!("{}-copy", key.as_str());
    client
        .execute(
            "INSERT INTO tokenwarden_tokens (key, source, sealed) VALUES ($1, 'copy', $2)",
            &[&copy, &sealed],
        )
        .await
        .unwrap();
    let error = example::fetch(&client, &cipher, &copy).await.unwrap_err();
    assert!(
        error.contains("cannot be read") && !error.contains(MARKER),
        "{error}"
    );
    client
        .execute("DELETE FROM tokenwarden_tokens WHERE key = $1", &[&copy])
        .await
        .unwrap();

    manager.logout().await.unwrap();
    events(3).await;
    assert!(example::fetch(&client, &cipher, key.as_str())
        .await
        .unwrap()
        .is_none());
}
