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
    /// Its mutual-TLS listener (RFC 8705) and the PKI of the tests.
    pub mtls: Mtls,
    _process: Mutex<Child>,
}

/// The provider's mutual-TLS side: the HTTPS listener its discovery names in
/// `mtls_endpoint_aliases`, the CA its certificate comes from, and the client
/// certificates (PEM, with their keys) of its clients `mtls-pki` (issued by
/// the CA for `mtls-client.example`: `tls_client_auth`) and `mtls-self`
/// (self-signed: `self_signed_tls_client_auth`).
pub struct Mtls {
    pub base: String,
    pub pki: crate::pki::Pki,
    pub pki_client: (String, String),
    pub self_client: (String, String),
    _files: tempfile::TempDir,
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
    // The PKI of the mutual-TLS listener, in files the server reads.
    let pki = crate::pki::Pki::new("tokenwarden test CA");
    let files = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (server, server_key) = pki.issue(&["127.0.0.1", "localhost"]);
    let pki_client = pki.issue(&["mtls-client.example"]);
    let self_client = crate::pki::self_signed(&["mtls-self.example"]);
    for (name, pem) in [
        ("ca.pem", &pki.ca),
        ("server.pem", &server),
        ("server.key", &server_key),
        ("self-client.pem", &self_client.0),
    ] {
        std::fs::write(files.path().join(name), pem).map_err(|e| e.to_string())?;
    }
    let mut node = Command::new("node");
    node.arg("server.mjs")
        .current_dir(&dir)
        .env("TW_MTLS_DIR", files.path());
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
    let mtls = Mtls {
        base: ready["mtls"]
            .as_str()
            .ok_or("no mutual-TLS listener in the server's output")?
            .to_owned(),
        pki,
        pki_client,
        self_client,
        _files: files,
    };
    Ok(Oidc {
        issuer,
        keys,
        mtls,
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

/// What the authorization server at `issuer` says of `token` (RFC 7662), asked
/// as the confidential client `cc-basic`: any client's token, with its `cnf`.
pub async fn introspect(issuer: &str, token: &str) -> Result<serde_json::Value, String> {
    let answer = reqwest::Client::new()
        .post(format!("{issuer}/token/introspection"))
        .basic_auth("cc-basic", Some("cc-basic-TOPSECRET"))
        .form(&[("token", token)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    answer.json().await.map_err(|e| e.to_string())
}

impl Oidc {
    /// The token endpoint (oidc-provider's default path).
    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }
}
