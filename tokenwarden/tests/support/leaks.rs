//! The secret-leak check every test binary of the workspace shares: all tracing
//! output at TRACE level and every panic message are captured, and a test's
//! [`harness`] guard fails it if any of them held [`MARKER`], which every test
//! secret (access and refresh tokens, client secrets, passwords, keys) carries.
//! Panics matter beyond the failing test: a panic in a spawned task or a
//! listener is caught by the library and would otherwise go unseen. Secrets
//! without the marker (the tokens a real authorization server issues) are
//! added with [`watch`], or with the [`watching`] listener on a manager.

use std::io::Write;
use std::sync::{Mutex, Once};

/// The marker every test secret carries.
pub const MARKER: &str = "TOPSECRET";

static CAPTURED: Mutex<String> = Mutex::new(String::new());
static LEAKS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static WATCHED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Whether `text` holds the marker or a watched secret.
fn holds_secret(text: &str) -> bool {
    text.contains(MARKER)
        || WATCHED
            .lock()
            .unwrap()
            .iter()
            .any(|s| text.contains(s.as_str()))
}

struct CaptureWriter;

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        for line in text.lines().filter(|l| holds_secret(l)) {
            LEAKS.lock().unwrap().push(line.to_owned());
        }
        CAPTURED.lock().unwrap().push_str(&text);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the TRACE capture and the panic hook once; the returned guard fails
/// the test if any captured line or panic message so far contained a secret.
pub fn harness() -> LeakCheck {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| CaptureWriter)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or_default();
            if holds_secret(message) {
                LEAKS.lock().unwrap().push(format!("panic: {message}"));
            }
            CAPTURED
                .lock()
                .unwrap()
                .push_str(&format!("panic: {message}\n"));
            default_hook(info);
        }));
    });
    LeakCheck
}

/// Adds a secret that does not carry the marker: from now on a log line or
/// panic message holding it is a leak, and so is one captured before.
pub fn watch(secret: &str) {
    if secret.len() < 8 {
        return; // too short to tell from ordinary text
    }
    if CAPTURED.lock().unwrap().contains(secret) {
        LEAKS.lock().unwrap().push(format!(
            "a watched secret was logged before it was watched ({} chars)",
            secret.len()
        ));
    }
    WATCHED.lock().unwrap().push(secret.to_owned());
}

/// A listener that watches every token a manager gets: its access, refresh
/// and ID tokens.
pub fn watching() -> impl Fn(&tokenwarden::TokenEvent) + Send + Sync + 'static {
    |event| {
        if let Some(token) = event.token() {
            watch(token.access_token.secret());
            if let Some(refresh) = &token.refresh_token {
                watch(refresh.secret());
            }
            if let Some(id) = &token.id_token {
                watch(id.secret());
            }
            // The private key of a DPoP-bound token, as stores write it.
            if let Some(key) = &token.dpop_key {
                let stored = serde_json::to_value(key).unwrap();
                watch(stored["pkcs8"].as_str().unwrap());
            }
        }
    }
}

/// Everything captured so far.
pub fn captured() -> String {
    CAPTURED.lock().unwrap().clone()
}

/// Fails the test it guards, when dropped, if a secret was captured.
pub struct LeakCheck;

impl Drop for LeakCheck {
    fn drop(&mut self) {
        let leaks = LEAKS.lock().unwrap().clone();
        if !leaks.is_empty() && !std::thread::panicking() {
            panic!(
                "secrets reached the logs or a panic message:\n{}",
                leaks.join("\n")
            );
        }
    }
}

/// Asserts that `text` (a Debug string, an error message...) holds no secret.
pub fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(MARKER), "{what} shows a secret: {text}");
}
