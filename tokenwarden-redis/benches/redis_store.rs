//! The Redis store against the Redis at `redis://127.0.0.1:6379/0` (without one, the
//! bench prints why it skipped and exits 0): `load` of a stored token and `save` of
//! one, as JSON and sealed with a `TokenCipher`, and an uncontended lease round trip
//! (`lease`, then `release`), through the async `TokenStore` trait on a
//! current-thread Tokio runtime. A raw `GET` of the stored value on a connection of
//! its own shows what the network round trip alone costs.
//!
//! The token is realistic (a ~900-byte JWT-like access token, a refresh token, an
//! ID token, an expiry an hour away). The keys live under a prefix of this run's,
//! `tokenwarden-bench-<random>`, and are deleted at the end (the tokens would expire
//! within the hour anyway).
//!
//! Run with `cargo bench -p tokenwarden-redis --bench redis_store --features
//! encryption`; the figures are printed at the end, one per line.

// Timing code reads the system clocks; the library itself never does.
#![allow(clippy::disallowed_methods)]

#[path = "../../tokenwarden/benches/support/mod.rs"]
mod support;

use redis::AsyncCommands as _;
use std::time::Duration;
use support::{async_loop, measure, ratio, us, SAMPLES};
use tokenwarden::store::TokenCipher;
use tokenwarden::{TokenKey, TokenStore};
use tokenwarden_redis::RedisStore;

const URL: &str = "redis://127.0.0.1:6379/0";
const LEASE_TTL: Duration = Duration::from_secs(5);

fn main() {
    let rt = support::current_thread_runtime();
    let prefix = format!("tokenwarden-bench-{:016x}", fastrand::u64(..));
    let build = |cipher: Option<TokenCipher>| {
        let builder = RedisStore::builder(URL).prefix(&prefix);
        let builder = match cipher {
            Some(cipher) => builder.cipher(cipher),
            None => builder,
        };
        rt.block_on(builder.build())
    };
    let plain = match build(None) {
        Ok(store) => store,
        Err(error) => {
            println!("skipped: no Redis to measure at {URL}: {error}");
            return;
        }
    };
    let sealed = build(Some(TokenCipher::new([7; 32]))).expect("a second connection");
    let client = redis::Client::open(URL).expect("a Redis URL");
    let mut raw = rt
        .block_on(client.get_connection_manager())
        .expect("a raw connection");

    let token = support::realistic_token();
    let (plain_key, sealed_key) = (TokenKey::new("bench"), TokenKey::new("bench-sealed"));
    rt.block_on(plain.save(&plain_key, &token)).expect("save");
    rt.block_on(sealed.save(&sealed_key, &token)).expect("save");
    let value_of = |key: &TokenKey| {
        let value: Vec<u8> = rt
            .block_on(raw.clone().get(format!("{prefix}:{}", key.as_str())))
            .expect("the stored value");
        value.len()
    };
    let (plain_bytes, sealed_bytes) = (value_of(&plain_key), value_of(&sealed_key));

    let mut c = support::criterion(SAMPLES);
    let mut g = c.benchmark_group("redis_store");
    let (store, key) = (&plain, &plain_key);
    let load = measure(&mut g, "RedisStore::load (JSON)", |n| {
        async_loop(&rt, n, || store.load(key))
    });
    let load_sealed = measure(&mut g, "RedisStore::load (sealed)", |n| {
        async_loop(&rt, n, || sealed.load(&sealed_key))
    });
    let save = measure(&mut g, "RedisStore::save (JSON)", |n| {
        async_loop(&rt, n, || plain.save(&plain_key, &token))
    });
    let save_sealed = measure(&mut g, "RedisStore::save (sealed)", |n| {
        async_loop(&rt, n, || sealed.save(&sealed_key, &token))
    });
    let lease = measure(&mut g, "lease + release (uncontended)", |n| {
        async_loop(&rt, n, || async move {
            store.lease(key, LEASE_TTL).await?.release().await
        })
    });
    g.finish();

    let mut g = c.benchmark_group("baseline");
    let name = &format!("{prefix}:{}", plain_key.as_str());
    let get = measure(&mut g, "raw GET of the stored JSON", |n| {
        async_loop(&rt, n, || {
            let mut connection = raw.clone();
            async move { connection.get(name).await.map(|v: Vec<u8>| v) }
        })
    });
    g.finish();

    let loaded = rt.block_on(sealed.load(&sealed_key)).expect("load");
    assert!(loaded.is_some(), "the sealed token survives the run");
    rt.block_on(plain.delete(&plain_key)).expect("delete");
    rt.block_on(sealed.delete(&sealed_key)).expect("delete");
    let left: Vec<String> = rt.block_on(raw.keys(format!("{prefix}*"))).expect("KEYS");
    c.final_summary();

    let out = [
        format!("token: {plain_bytes} bytes as JSON, {sealed_bytes} bytes sealed, in Redis at {URL} under {prefix}"),
        format!("redis_store load (JSON): {}", us(load)),
        format!("redis_store load (sealed): {}; sealed/JSON = {}", us(load_sealed), ratio(load_sealed, load)),
        format!("redis_store save (JSON): {}", us(save)),
        format!("redis_store save (sealed): {}; sealed/JSON = {}", us(save_sealed), ratio(save_sealed, save)),
        format!("redis_store lease + release (uncontended): {}; lease/load = {}", us(lease), ratio(lease, load)),
        format!("baseline raw GET of the same value: {}; load (JSON)/GET = {}", us(get), ratio(load, get)),
        format!("cleanup: {} key(s) left under the prefix {left:?}", left.len()),
    ];
    support::print_figures("redis_store", &out);
}
