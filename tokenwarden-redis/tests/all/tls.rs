//! Redis over TLS (`rediss://`, rustls), against a real `redis-server` started
//! here on loopback with a CA and certificates this test makes: the server's
//! certificate checked against the CA given (`tls_ca`), a certificate for
//! another name or from another CA refused with a clear error, a client
//! certificate for a server that asks for one, and an ACL user and password
//! from the URL that never show in an error or a `Debug` string.

use crate::tls_redis::{Pki, TlsRedis};
use std::time::Duration;
use tokenwarden::{Token, TokenKey, TokenStore};
use tokenwarden_redis::RedisStore;

async fn store(
    url: &str,
    ca: &str,
    client: Option<&(String, String)>,
) -> tokenwarden::Result<RedisStore> {
    let mut builder = RedisStore::builder(url)
        .prefix(format!("tw-tls-{:08x}", fastrand::u32(..)))
        .tls_ca(ca.as_bytes().to_vec())
        .timeout(Duration::from_secs(5));
    if let Some((cert, key)) = client {
        builder = builder.tls_client_cert(cert.as_bytes().to_vec(), key.as_bytes().to_vec());
    }
    builder.build().await
}

fn assert_no_password(text: &str) {
    assert!(!text.contains("pw-TOPSECRET"), "the password shows: {text}");
}

/// What rustls says of a server certificate from a CA the client does not trust.
/// (The hint appended to every `rediss://` connection failure names
/// "certificate", `tls_ca` and `tls_client_cert` whatever the cause: the
/// assertions look for the cause itself.)
const UNKNOWN_ISSUER: &str = "could not connect to Redis: invalid peer certificate: UnknownIssuer";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_go_to_redis_over_tls_with_the_servers_certificate_checked() {
    let _h = crate::leaks::harness();
    let pki = Pki::new("tokenwarden test CA");
    let Some(redis) = TlsRedis::start(&pki, &pki.issue(&["localhost", "127.0.0.1"]), false) else {
        return;
    };
    // The CA given: tokens round-trip, and a lease works.
    let ok = store(&redis.url("localhost"), &pki.ca, None).await.unwrap();
    let key = TokenKey::new("api");
    ok.save(&key, &Token::new("at-TOPSECRET")).await.unwrap();
    let loaded = ok.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.access_token.secret(), "at-TOPSECRET");
    ok.lease(&key, Duration::from_secs(5))
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    assert_no_password(&format!("{ok:?}"));

    // Another CA: refused because of the issuer, and the error says what to check.
    let other = Pki::new("another CA");
    let error = store(&redis.url("localhost"), &other.ca, None)
        .await
        .unwrap_err();
    let said = error.to_string();
    assert!(said.contains(UNKNOWN_ISSUER), "{said}");
    assert!(said.contains("tls_ca"), "{said}");
    assert_no_password(&said);
    assert_no_password(&format!("{error:?}"));
    // Without the CA, the platform's roots do not know this one either.
    let error = RedisStore::builder(redis.url("localhost"))
        .build()
        .await
        .unwrap_err();
    let said = error.to_string();
    assert!(said.contains(UNKNOWN_ISSUER), "{said}");
    assert_no_password(&said);
    assert_no_password(&format!("{error:?}"));

    // TLS settings with a plain redis:// URL: a configuration error.
    let plain = format!("redis://127.0.0.1:{}/0", redis.port);
    let error = store(&plain, &pki.ca, None).await.unwrap_err();
    assert!(error.to_string().contains("rediss://"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused() {
    let _h = crate::leaks::harness();
    let pki = Pki::new("tokenwarden test CA");
    let Some(redis) = TlsRedis::start(&pki, &pki.issue(&["redis.other.example"]), false) else {
        return;
    };
    let error = store(&redis.url("localhost"), &pki.ca, None)
        .await
        .unwrap_err();
    let said = error.to_string();
    assert!(
        said.contains(
            "invalid peer certificate: certificate not valid for name \"localhost\"; \
             certificate is only valid for DnsName(\"redis.other.example\")"
        ),
        "{said}"
    );
    assert!(!said.contains("UnknownIssuer"), "{said}");
    assert_no_password(&said);
    assert_no_password(&format!("{error:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_asks_for_a_client_certificate_gets_one() {
    let _h = crate::leaks::harness();
    let pki = Pki::new("tokenwarden test CA");
    let Some(redis) = TlsRedis::start(&pki, &pki.issue(&["localhost"]), true) else {
        return;
    };
    let client = pki.issue(&["tokenwarden-client"]);
    let with = store(&redis.url("localhost"), &pki.ca, Some(&client))
        .await
        .unwrap();
    let key = TokenKey::new("api");
    with.save(&key, &Token::new("at-TOPSECRET")).await.unwrap();
    assert!(with.load(&key).await.unwrap().is_some());
    let without = store(&redis.url("localhost"), &pki.ca, None).await;
    let error = without.unwrap_err();
    let said = error.to_string();
    // The server's alert, not only the hint (which names tls_client_cert anyway).
    assert!(
        said.contains("received fatal alert: CertificateRequired"),
        "{said}"
    );
    assert!(said.contains("tls_client_cert"), "{said}");
    assert_no_password(&said);
}
