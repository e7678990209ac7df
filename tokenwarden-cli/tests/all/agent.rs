//! `tokenwarden agent` (issue 19): the commands' tokens through one process of
//! the user's: 20 `token` invocations make one token request; `status` shows
//! the agent's manager; SIGHUP reads the configuration again; SIGTERM stops it
//! and removes its socket; killed, the commands do without it; its socket is
//! 0600 in a 0700 directory, and a directory others may enter is refused; no
//! secret in its logs at TRACE.

use crate::common::*;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

/// A client-credentials token endpoint on loopback that counts its requests
/// and issues `TOPSECRET-agent-<n>` tokens living an hour.
fn token_endpoint() -> (String, Arc<AtomicUsize>, tokio::runtime::Runtime) {
    let count = Arc::new(AtomicUsize::new(0));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let counted = count.clone();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move || {
            let n = counted.fetch_add(1, SeqCst) + 1;
            async move {
                axum::Json(serde_json::json!({
                    "access_token": format!("{MARKER}-agent-{n}"),
                    "token_type": "Bearer",
                    "expires_in": 3600
                }))
            }
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, count, runtime)
}

fn profile(name: &str, token_url: &str) -> String {
    profile_in(name, token_url, "file")
}

/// A profile of tokens kept in `store`; its secret is `$TW_SECRET`.
fn profile_in(name: &str, token_url: &str, store: &str) -> String {
    format!(
        "[profiles.{name}]\ntoken_url = \"{token_url}\"\ngrant = \"client_credentials\"\n\
         client_id = \"svc\"\nclient_secret = \"svc-{MARKER}-${{TW_SECRET}}\"\nstore = \"{store}\"\n"
    )
}

/// A running agent, killed when dropped; its stderr collected.
struct Agent(Daemon);

impl Agent {
    fn start(home: &Home, socket: &Path) -> Self {
        let mut command = home.command(&["agent"]);
        command
            .env("TOKENWARDEN_AGENT_SOCK", socket)
            .env("TW_SECRET", "same");
        Self(Daemon::start(command, "tokenwarden agent: listening on ").0)
    }

    fn signal(&self, name: &str) {
        self.0.signal(name);
    }

    /// Waits for it to end: its exit code and everything it logged.
    fn end(self) -> (Option<i32>, String) {
        self.0.end()
    }
}

/// `tokenwarden <args>` pointed at the agent's socket.
fn via(home: &Home, socket: &Path, args: &[&str]) -> Run {
    let output = home
        .command(args)
        .env("TOKENWARDEN_AGENT_SOCK", socket)
        .env("TW_SECRET", "same")
        .output()
        .unwrap();
    Run::checked(output, args)
}

fn socket_in(home: &Home) -> PathBuf {
    home.path()
        .join("run")
        .join("tokenwarden")
        .join("agent.sock")
}

#[test]
fn twenty_commands_share_the_agents_one_token_request() {
    let (url, count, _server) = token_endpoint();
    // Tokens in memory: 20 commands without the agent would make 20 requests.
    let home = Home::with_config(&profile_in("api", &url, "memory"));
    let socket = socket_in(&home);
    let agent = Agent::start(&home, &socket);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);

    let tokens = at_once(20, || {
        let mut command = home.command(&["token", "-p", "api"]);
        command
            .env("TOKENWARDEN_AGENT_SOCK", &socket)
            .env("TW_SECRET", "same");
        command
    });
    assert_eq!(tokens.len(), 1);
    assert_eq!(count.load(SeqCst), 1, "one token request for 20 commands");

    // `status` shows the agent's manager.
    let status = via(&home, &socket, &["status", "-p", "api", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status.expect_code(0).stdout()).unwrap();
    assert_eq!(status["agent"], true, "{status:#}");
    assert_eq!(status["last_refresh"]["reason"], "first_use", "{status:#}");

    // A profile added to the file is served; SIGHUP is taken.
    let both = profile_in("api", &url, "memory") + &profile_in("other", &url, "memory");
    std::fs::write(home.config_path(), both).unwrap();
    agent.signal("HUP");
    let other = via(&home, &socket, &["status", "-p", "other", "--json"]);
    let other: serde_json::Value = serde_json::from_str(&other.expect_code(0).stdout()).unwrap();
    assert_eq!(other["agent"], true);
    via(&home, &socket, &["token", "-p", "other"]).expect_code(0);
    assert_eq!(count.load(SeqCst), 2);

    // A profile edited (another endpoint): the agent makes its manager anew.
    let (url2, count2, _server2) = token_endpoint();
    std::fs::write(home.config_path(), profile_in("api", &url2, "memory")).unwrap();
    via(&home, &socket, &["token", "-p", "api"]).expect_code(0);
    assert_eq!(count2.load(SeqCst), 1, "the edited profile's endpoint");

    // The same profile read in another environment (another secret) is another
    // profile: that command does without the agent.
    let other_env = home
        .command(&["token", "-p", "api"])
        .env("TOKENWARDEN_AGENT_SOCK", &socket)
        .env("TW_SECRET", "another")
        .output()
        .unwrap();
    Run::checked(other_env, &[]).expect_code(0);
    assert_eq!(
        count2.load(SeqCst),
        2,
        "its own request, not the agent's token"
    );

    // SIGTERM: it stops, and its socket goes.
    agent.signal("TERM");
    let (code, stderr) = agent.end();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!socket.exists());
    assert!(
        !stderr.contains(MARKER),
        "no secret in its logs at TRACE: {stderr}"
    );
    let asked = stderr.matches("op=token").count();
    assert!(asked >= 20, "the 20 commands asked the agent: {asked}");

    // Without it, the commands do as before: their own request.
    via(&home, &socket, &["token", "-p", "api"]).expect_code(0);
    assert_eq!(count2.load(SeqCst), 3);
    drop(tokens);
}

#[test]
fn a_killed_agent_or_a_socket_others_can_reach_is_done_without() {
    let (url, count, _server) = token_endpoint();
    let home = Home::with_config(&profile("api", &url));
    let socket = socket_in(&home);
    let agent = Agent::start(&home, &socket);
    let first = via(&home, &socket, &["token", "-p", "api"])
        .expect_code(0)
        .stdout();

    // A second agent on the same socket refuses, and leaves the first serving.
    let second = home
        .command(&["agent"])
        .env("TOKENWARDEN_AGENT_SOCK", &socket)
        .env("TW_SECRET", "same")
        .output()
        .unwrap();
    let second = Run::checked(second, &["agent"]);
    second.expect_code(2);
    assert!(second.stderr().contains("runs on"), "{}", second.stderr());
    assert_eq!(
        via(&home, &socket, &["token", "-p", "api"])
            .expect_code(0)
            .stdout(),
        first
    );

    // Its directory opened to others: the commands no longer trust the socket.
    let dir = socket.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let direct = via(&home, &socket, &["token", "-p", "api"]);
    assert!(
        direct.stderr().contains("not yours alone"),
        "{}",
        direct.stderr()
    );
    assert_eq!(direct.expect_code(0).stdout(), first);
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    // Killed (its socket left behind): the commands do without it.
    drop(agent);
    assert!(socket.exists());
    assert_eq!(
        via(&home, &socket, &["token", "-p", "api"])
            .expect_code(0)
            .stdout(),
        first
    );
    assert_eq!(count.load(SeqCst), 1);

    // An agent refuses a directory others may enter.
    let open = home.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let refused = home
        .command(&["agent"])
        .env("TOKENWARDEN_AGENT_SOCK", open.join("agent.sock"))
        .output()
        .unwrap();
    let refused = Run::checked(refused, &["agent"]);
    refused.expect_code(2);
    assert!(
        refused.stderr().contains("not yours alone"),
        "{}",
        refused.stderr()
    );
}

#[test]
fn the_agent_keeps_the_token_files_the_profiles_name() {
    let (url, _count, _server) = token_endpoint();
    let home = Home::with_config("");
    let file = home.path().join("tokens").join("api");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let config = profile("api", &url) + &format!("token_file = \"{}\"\n", file.display());
    std::fs::write(home.config_path(), config).unwrap();
    let socket = socket_in(&home);
    let agent = Agent::start(&home, &socket);
    let token = via(&home, &socket, &["token", "-p", "api"])
        .expect_code(0)
        .stdout();
    // Written before the agent answers anything: there, whole, 0600.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token.trim_end());
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Named no more (an edit, then SIGHUP): removed.
    std::fs::write(home.config_path(), profile("api", &url)).unwrap();
    agent.signal("HUP");
    wait_until(|| !file.exists());
    // Named again: kept again, and removed when the agent stops.
    let config = profile("api", &url) + &format!("token_file = \"{}\"\n", file.display());
    std::fs::write(home.config_path(), config).unwrap();
    agent.signal("HUP");
    wait_until(|| file.exists());
    agent.signal("TERM");
    let (code, _) = agent.end();
    assert_eq!(code, Some(0));
    assert!(!file.exists(), "removed when the agent stops");
}

/// Polls `done` (10 s of real time at most: a hang, not a timing check).
fn wait_until(done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the condition never came true");
}
