//! The real authorization server the OAuth2 tests talk to: panva's oidc-provider
//! (a certified OpenID provider, from npm) in `tests/oidc/`, started once per test
//! binary on 127.0.0.1. `.ci/run` installs it; on a machine without Node.js or
//! without `npm ci --prefix tokenwarden/tests/oidc`, the tests that need it skip
//! with the reason, except under `CI`, where they fail.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// A running server.
pub struct Oidc {
    pub issuer: String,
    /// PKCS#8 PEM private keys registered for the `cc-jwt` client, by algorithm.
    pub keys: HashMap<String, String>,
    _process: Mutex<Child>,
}

/// The server, started on first use; `None` (after printing why) when it cannot
/// run here and `CI` is not set.
pub fn server() -> Option<&'static Oidc> {
    static SERVER: OnceLock<Result<Oidc, String>> = OnceLock::new();
    match SERVER.get_or_init(start) {
        Ok(server) => Some(server),
        Err(reason) if std::env::var_os("CI").is_some() => {
            panic!("the OpenID provider is required under CI: {reason}")
        }
        Err(reason) => {
            eprintln!("skipped: {reason}");
            None
        }
    }
}

fn start() -> Result<Oidc, String> {
    // From either crate of the workspace (the Redis tests use this server too).
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tokenwarden/tests/oidc");
    if !dir.join("node_modules/oidc-provider").exists() {
        return Err(format!(
            "oidc-provider is not installed; run `npm ci --prefix {}`",
            dir.display()
        ));
    }
    let mut node = Command::new("node");
    node.arg("server.mjs").current_dir(&dir);
    let (child, ready) = spawn_ready(node, "install Node.js 20 or later")?;
    let issuer = ready["issuer"]
        .as_str()
        .ok_or("no issuer in the server's output")?
        .to_owned();
    let keys = ready["keys"]
        .as_object()
        .ok_or("no keys in the server's output")?
        .iter()
        .map(|(alg, pem)| (alg.clone(), pem.as_str().unwrap_or_default().to_owned()))
        .collect();
    Ok(Oidc {
        issuer,
        keys,
        _process: Mutex::new(child),
    })
}

/// Starts a test server's process and reads the one JSON line it prints when it
/// is ready. Its stdin is a pipe that closes when this process ends, which ends
/// the server; its output is drained after that line, so that it never writes
/// into a closed pipe. `missing` says what to install if it cannot start.
pub fn spawn_ready(
    mut command: Command,
    missing: &str,
) -> Result<(Child, serde_json::Value), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start `{program}` ({e}); {missing}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next()
        .ok_or_else(|| format!("`{program}` exited before it was ready"))?
        .map_err(|e| e.to_string())?;
    let ready: serde_json::Value = serde_json::from_str(&line)
        .map_err(|e| format!("unexpected output of `{program}` {line:?}: {e}"))?;
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, ready))
}

impl Oidc {
    /// The token endpoint (oidc-provider's default path).
    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }
}
