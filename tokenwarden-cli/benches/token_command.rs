//! `tokenwarden token` as a script calls it: a whole process, with a valid token
//! in the encrypted file store (target: 10 ms median), and through the agent
//! (target: 1 ms median), printed side by side from paired rounds.
//!
//! A local token endpoint (loopback) answers the first call; every measured call
//! reuses the stored token, or the agent's.

// Timing code reads the system clock; the program itself never does.
#![allow(clippy::disallowed_methods)]

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
    let socket = home.path().join("run").join("agent.sock");
    let with_env = |mut command: Command| {
        command
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("TOKENWARDEN_CONFIG", &config)
            .env("TOKENWARDEN_AGENT_SOCK", &socket);
        command
    };
    let token = |agent: bool| {
        let mut command = with_env(Command::new(env!("CARGO_BIN_EXE_tokenwarden")));
        command.args(["token", "-p", "bench"]);
        if !agent {
            command.env("TOKENWARDEN_AGENT", "off");
        }
        command
    };
    let first = token(false).output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // The agent, serving the same profile (its first answer fetches nothing:
    // the token is stored).
    let mut agent = with_env(Command::new(env!("CARGO_BIN_EXE_tokenwarden")));
    let mut agent = agent
        .arg("agent")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !socket.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(token(true).output().unwrap().status.success());

    let mut group = c.benchmark_group("cli");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("tokenwarden token (stored token, whole process)", |b| {
        b.iter(|| {
            let out = token(false).output().unwrap();
            assert!(out.status.success());
            out
        })
    });
    group.bench_function(
        "tokenwarden token (through the agent, whole process)",
        |b| {
            b.iter(|| {
                let out = token(true).output().unwrap();
                assert!(out.status.success());
                out
            })
        },
    );
    group.finish();

    // Side by side, in paired rounds (one of each, in turn), so that the
    // machine's drift falls on both alike.
    // The floor: the same binary started and ended (`--version`).
    let floor_command = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokenwarden"));
        command.arg("--version");
        command
    };
    // The machine's: a process of the system's (`true`, C, dynamically linked)
    // started and ended, the least any command takes here.
    let (mut direct, mut through, mut floor, mut machine) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        for (command, times) in [
            (token(false), &mut direct),
            (token(true), &mut through),
            (floor_command(), &mut floor),
            (Command::new("true"), &mut machine),
        ] {
            let mut command = command;
            let started = std::time::Instant::now();
            let out = command.output().unwrap();
            times.push(started.elapsed());
            assert!(out.status.success());
        }
    }
    let _ = agent.kill();
    let _ = agent.wait();
    let (direct, through, floor, machine) = (
        median(direct),
        median(through),
        median(floor),
        median(machine),
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("figures:");
    println!(
        "token_command tokenwarden token, whole process, median of {ROUNDS}: direct (stored token) {:.2} ms, through the agent {:.2} ms ({:.2}x)",
        ms(direct),
        ms(through),
        ms(through) / ms(direct)
    );
    println!(
        "token_command the floor (the same binary, `--version`, started and ended): {:.2} ms; through the agent above it: {:.2} ms",
        ms(floor),
        ms(through) - ms(floor)
    );
    println!(
        "token_command the machine's floor (`true`, started and ended): {:.2} ms",
        ms(machine)
    );
    println!(
        "token_command target <= 1 ms through the agent: {}",
        if through <= Duration::from_millis(1) {
            "met"
        } else {
            "MISSED"
        }
    );
}

/// Rounds of the side-by-side comparison.
const ROUNDS: usize = 100;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

criterion_group!(benches, token_command);
criterion_main!(benches);
