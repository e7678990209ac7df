//! The file store: `load` of a stored token and `save` of one (a durable write: a
//! temporary file, fsync, rename, fsync of the directory), through the async
//! `TokenStore` trait on a current-thread Tokio runtime, in a temporary directory
//! (`$TMPDIR`, else `/tmp`: set `TMPDIR` to measure another file system).
//!
//! The token is realistic (a ~900-byte JWT-like access token, a refresh token, an
//! ID token, an expiry). To show where the time goes, the same run times the parts:
//! `TokenCipher::seal` and `open` alone, an empty `spawn_blocking` round trip (each
//! call hops to the blocking pool), and the same durable write and read done with
//! `std::fs` alone, with and without the two fsyncs.
//!
//! Run with `cargo bench -p tokenwarden --bench file_store --features file-store`;
//! the figures are printed at the end, one per line.

// Timing code reads the system clocks; the library itself never does.
#![allow(clippy::disallowed_methods)]

mod support;

use criterion::SamplingMode;
use std::io::Write as _;
use std::path::Path;
use support::{async_loop, measure, ratio, time_loop, us, SAMPLES};
use tokenwarden::store::{FileKey, FileStore, TokenCipher};
use tokenwarden::{TokenKey, TokenStore};

fn main() {
    let mut c = support::criterion(SAMPLES);
    let rt = support::current_thread_runtime();
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let store = FileStore::builder("tokenwarden-bench")
        .dir(tmp.path())
        .key(FileKey::bytes([7; 32]))
        .build()
        .expect("file store");
    let key = TokenKey::new("bench");
    let token = support::realistic_token();
    rt.block_on(store.save(&key, &token)).expect("first save");
    let file = tmp.path().join(format!("{}.tok", key.as_str()));
    let sealed = std::fs::read(&file).expect("the token file");
    let cipher = TokenCipher::new([7; 32]);
    let entry = key.as_str();

    let mut g = c.benchmark_group("file_store");
    let load = measure(&mut g, "FileStore::load", |n| {
        async_loop(&rt, n, || store.load(&key))
    });
    g.sampling_mode(SamplingMode::Flat); // a save takes milliseconds
    let save = measure(&mut g, "FileStore::save (durable)", |n| {
        async_loop(&rt, n, || store.save(&key, &token))
    });
    g.finish();

    let mut g = c.benchmark_group("parts");
    let seal = measure(&mut g, "TokenCipher::seal", |n| {
        time_loop(n, || cipher.seal(entry, &token).expect("seal"))
    });
    let open = measure(&mut g, "TokenCipher::open", |n| {
        time_loop(n, || cipher.open(entry, &sealed).expect("open"))
    });
    let hop = measure(&mut g, "empty spawn_blocking round trip", |n| {
        async_loop(&rt, n, || tokio::task::spawn_blocking(|| ()))
    });
    let read = measure(&mut g, "std::fs::read of the token file", |n| {
        time_loop(n, || std::fs::read(&file).expect("read"))
    });
    let no_sync = measure(&mut g, "std::fs write + rename, no fsync", |n| {
        time_loop(n, || write(tmp.path(), &file, &sealed, false))
    });
    g.sampling_mode(SamplingMode::Flat);
    let durable = measure(&mut g, "std::fs write + fsync + rename + fsync dir", |n| {
        time_loop(n, || write(tmp.path(), &file, &sealed, true))
    });
    g.finish();

    let reloaded = rt.block_on(store.load(&key)).expect("load");
    assert!(reloaded.is_some(), "the token survives the run");
    c.final_summary();

    let part = |name: &str, value: Option<f64>, of: Option<f64>| {
        format!("part {name}: {} ({} of it)", us(value), percent(value, of))
    };
    let out = [
        format!(
            "token: {} bytes of JSON, {} bytes sealed on disk in {}",
            serde_json::to_vec(&token).expect("json").len(),
            sealed.len(),
            tmp.path().display()
        ),
        format!("file_store load: {}", us(load)),
        part("TokenCipher::open", open, load),
        part("std::fs::read", read, load),
        part("spawn_blocking round trip", hop, load),
        format!("file_store save (durable): {}", us(save)),
        part("TokenCipher::seal", seal, save),
        part("std::fs durable write (2 fsyncs)", durable, save),
        part("std::fs write + rename without fsync", no_sync, save),
        format!("save/load = {}", ratio(save, load)),
    ];
    support::print_figures("file_store", &out);
}

/// The save's file steps with `std::fs` alone (no sealing, no blocking-pool hop).
fn write(dir: &Path, path: &Path, bytes: &[u8], sync: bool) {
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .expect("temporary file");
    temp.write_all(bytes).expect("write");
    if sync {
        temp.as_file().sync_all().expect("fsync");
    }
    temp.persist(path).expect("rename");
    if sync {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .expect("fsync dir");
    }
}

fn percent(part: Option<f64>, whole: Option<f64>) -> String {
    match (part, whole) {
        (Some(p), Some(w)) if w > 0.0 => format!("{:.0}%", p / w * 100.0),
        _ => "n/a".into(),
    }
}
