//! `tokenwarden token` as a script calls it: a whole process, with a valid token
//! in the encrypted file store. Target: 10 ms median.
//!
//! A local token endpoint (loopback) answers the first call; every measured call
//! reuses the stored token.

use criterion::{criterion_group, criterion_main, Criterion};
use std::process::Command;
use std::time::Duration;

/// A token endpoint for client credentials on 127.0.0.1, in a thread of its own.
fn token_endpoint() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}/token", listener.local_addr().unwrap()))
                .unwrap();
            let app = axum::Router::new().route(
                "/token",
                axum::routing::post(|| async {
                    axum::Json(serde_json::json!({
                        "access_token": "bench-access-token-0123456789abcdef",
                        "token_type": "Bearer",
                        "expires_in": 3600
                    }))
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

fn token_command(c: &mut Criterion) {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.bench]\ntoken_url = \"{}\"\nclient_id = \"bench\"\nclient_secret = \"s\"\n",
            token_endpoint()
        ),
    )
    .unwrap();
    let command = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokenwarden"));
        command
            .args(["token", "-p", "bench"])
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("TOKENWARDEN_CONFIG", &config);
        command
    };
    let first = command().output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    let mut group = c.benchmark_group("cli");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("tokenwarden token (stored token, whole process)", |b| {
        b.iter(|| {
            let out = command().output().unwrap();
            assert!(out.status.success());
            out
        })
    });
    group.finish();
}

criterion_group!(benches, token_command);
criterion_main!(benches);
