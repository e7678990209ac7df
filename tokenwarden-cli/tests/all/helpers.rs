//! The credential helpers (issue 19) with the real clients: `exec` (exit codes,
//! signals, a token file kept fresh), kubectl's exec plugin against an HTTPS
//! stand-in for an API server, git's credential helper against `git
//! http-backend`, and Docker's protocol driven as Docker drives it. Every
//! resource server here asks the real authorization server whether a token is
//! live (introspection).

use crate::common::*;
use crate::oidc;
use crate::resource::{active, revoke, serve_tls};
use crate::tls_redis::Pki;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A client-credentials profile `api` (5 s tokens), stored in a file, for `base_url`.
fn home(oidc: &oidc::Oidc, base_url: &str, more: &str) -> Home {
    Home::with_config(&format!(
        "[profiles.api]\nissuer = \"{}\"\ngrant = \"client_credentials\"\nclient_id = \"cc-basic\"\n\
         client_secret = \"cc-basic-TOPSECRET\"\nscope = \"read\"\nstore = \"file\"\n\
         base_url = \"{base_url}\"\n{more}",
        oidc.issuer
    ))
}

/// The live tokens a resource server was shown, in order.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

impl Seen {
    fn tokens(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A request's `Authorization` value (taken before any wait: a request's
/// body is not `Sync`).
fn authorization(request: &Request) -> Option<String> {
    let value = request.headers().get(header::AUTHORIZATION)?;
    value.to_str().ok().map(str::to_owned)
}

/// The bearer token or Basic password of an `Authorization` value, if the
/// server says it is live.
async fn live(oidc: &oidc::Oidc, value: Option<String>) -> Option<String> {
    let value = value?;
    let token = match value.split_once(' ')? {
        ("Bearer", token) => token.to_owned(),
        ("Basic", pair) => {
            let pair = base64::engine::general_purpose::STANDARD
                .decode(pair)
                .ok()?;
            String::from_utf8(pair).ok()?.split_once(':')?.1.to_owned()
        }
        _ => return None,
    };
    active(oidc, &token).await.then_some(token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_passes_the_token_the_exit_code_and_signals() {
    let Some(oidc) = oidc::server() else { return };
    let home = home(oidc, "https://api.example.com", "");
    // The token in the environment (a name of our choice), the exit code back.
    let run = home
        .command(&["exec", "-p", "api", "--env", "API_TOKEN", "--", "sh", "-c"])
        .arg(r#"test -n "$API_TOKEN" && printf %s "$API_TOKEN" > token.out && exit 7"#)
        .current_dir(home.path())
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let token = std::fs::read_to_string(home.path().join("token.out")).unwrap();
    assert!(active(oidc, &token).await);
    assert!(!String::from_utf8_lossy(&run.stderr).contains(&token));

    // A command that is not there: 127, as shells say.
    let missing = home.run(&["exec", "-p", "api", "--", "no-such-command-here"]);
    missing.expect_code(127);

    // SIGTERM to tokenwarden reaches the command: it exits as it chooses...
    let mut trapped = home
        .command(&["exec", "-p", "api", "--", "sh", "-c"])
        .arg(r#"trap 'exit 42' TERM; touch started; while :; do sleep 0.05; done"#)
        .current_dir(home.path())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let started = home.path().join("started");
    crate::common::wait_for(|| started.exists()).await;
    signal(trapped.id(), "TERM");
    assert_eq!(trapped.wait().unwrap().code(), Some(42));
    // ...or is ended by it, and tokenwarden ends by the same signal, after its cleanup.
    std::fs::remove_file(&started).unwrap();
    let mut ended = home
        .command(&[
            "exec",
            "-p",
            "api",
            "--",
            "sh",
            "-c",
            "touch started; exec sleep 30",
        ])
        .current_dir(home.path())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    crate::common::wait_for(|| started.exists()).await;
    signal(ended.id(), "TERM");
    let status = ended.wait().unwrap();
    assert_eq!(status.signal(), Some(15), "{status:?}");
    // A shell says 143 for it, as for the command itself.
    let line = format!(
        "'{}' exec -p api -- sh -c 'kill -TERM $$'; echo $?",
        env!("CARGO_BIN_EXE_tokenwarden")
    );
    let said = home.tool("sh", &["-c", &line]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&said.stdout).trim(), "143");
    // A signal that dumps core ends the command; tokenwarden dumps none of its
    // own and says 128 + N.
    let segv = home.run(&["exec", "-p", "api", "--", "sh", "-c", "kill -SEGV $$"]);
    segv.expect_code(139);
}

fn signal(pid: u32, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_keeps_a_token_file_fresh_and_whole_while_the_command_runs() {
    let Some(oidc) = oidc::server() else { return };
    let home = home(oidc, "https://api.example.com", "");
    let file = home.path().join("run").join("token");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut child = home
        .command(&["exec", "-p", "api", "--token-file", file.to_str().unwrap()])
        .args(["--", "sleep", "9"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    crate::common::wait_for(|| file.exists()).await;
    // Read all the while (5 s tokens, refreshed ahead of expiry): every read is
    // a whole token, the file is 0600, and it changes before each expiry.
    let mut seen: Vec<String> = Vec::new();
    let deadline = 8_000 / 20;
    for _ in 0..deadline {
        if let Ok(text) = std::fs::read_to_string(&file) {
            use std::os::unix::fs::PermissionsExt as _;
            if let Ok(meta) = std::fs::metadata(&file) {
                assert_eq!(meta.permissions().mode() & 0o777, 0o600);
            }
            assert!(
                !text.is_empty() && !text.contains('\n'),
                "a whole token: {text:?}"
            );
            if seen.last() != Some(&text) {
                seen.push(text);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen.len() >= 2,
        "replaced at least once in 8 s: {}",
        seen.len()
    );
    assert_eq!(
        seen.iter().map(String::len).min(),
        seen.iter().map(String::len).max()
    );
    assert!(active(oidc, seen.last().unwrap()).await);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(!file.exists(), "removed when the command ended");
}

/// A stand-in for an API server: `/api` answers a live bearer token only.
async fn api_server(
    State((oidc, seen)): State<(&'static oidc::Oidc, Arc<Seen>)>,
    request: Request,
) -> Response {
    let Some(token) = live(oidc, authorization(&request)).await else {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    };
    seen.0.lock().unwrap().push(token);
    let versions = serde_json::json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    });
    axum::Json(versions).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_its_tokens_through_the_exec_plugin() {
    let Some(oidc) = oidc::server() else { return };
    if std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        assert!(!required(), "kubectl is required under CI");
        eprintln!("skipped: kubectl is not installed");
        return;
    }
    let pki = Pki::new("kube-test-ca");
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .fallback(api_server)
        .with_state((oidc, seen.clone()));
    let address = serve_tls(&pki, app).await;
    let home = home(oidc, &format!("https://{address}"), "");
    let ca = base64::engine::general_purpose::STANDARD.encode(&pki.ca);
    let kubeconfig = home.path().join("kubeconfig");
    let binary = env!("CARGO_BIN_EXE_tokenwarden");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://{address}\n    certificate-authority-data: {ca}\n\
             users:\n- name: me\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {binary}\n      args: [kubectl, -p, api]\n      interactiveMode: Never\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: me\ncurrent-context: test\n"
        ),
    )
    .unwrap();
    let kubectl = || {
        let output = home
            .tool(
                "kubectl",
                &[
                    "--kubeconfig",
                    kubeconfig.to_str().unwrap(),
                    "get",
                    "--raw",
                    "/api",
                ],
            )
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "kubectl failed: {stderr}");
        assert!(!stderr.contains(MARKER), "{stderr}");
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(kubectl().contains("APIVersions"));
    // After the token expired (5 s), kubectl runs the plugin again: a new token.
    let status = home.run(&["status", "-p", "api", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    let left = status["expires_in"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(left + 1)).await;
    assert!(kubectl().contains("APIVersions"));
    // (kubectl may make more than one request per run.)
    let tokens = seen.tokens();
    assert!(tokens.len() >= 2);
    assert_ne!(
        tokens.first(),
        tokens.last(),
        "a new token after the first expired"
    );
}

/// `git http-backend` behind a check of the Basic password with the
/// authorization server: a live token, or 401.
async fn git_server(
    State((oidc, root, seen)): State<(&'static oidc::Oidc, std::path::PathBuf, Arc<Seen>)>,
    request: Request,
) -> Response {
    let Some(token) = live(oidc, authorization(&request)).await else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Basic realm="git""#)],
            "Unauthorized",
        )
            .into_response();
    };
    seen.0.lock().unwrap().push(token);
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let text = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut cgi = std::process::Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", "tester")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", text(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", text(header::CONTENT_ENCODING))
        .env(
            "GIT_PROTOCOL",
            text(header::HeaderName::from_static("git-protocol")),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || {
        let mut child = cgi.spawn().unwrap();
        child.stdin.take().unwrap().write_all(&body).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    // CGI: headers, a blank line, the body.
    let split = output
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let split = split.or_else(|| {
        output
            .stdout
            .windows(2)
            .position(|w| w == b"\n\n")
            .map(|i| (i, 2))
    });
    let (end, gap) = split.expect("CGI headers");
    let mut response = Response::builder();
    for line in String::from_utf8_lossy(&output.stdout[..end]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("status") {
            let code: u16 = value.trim()[..3].parse().unwrap();
            response = response.status(code);
        } else {
            response = response.header(name.trim(), value.trim());
        }
    }
    response
        .body(axum::body::Body::from(output.stdout[end + gap..].to_vec()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_clones_and_pushes_with_the_credential_helper_and_recovers_from_a_rejection() {
    let Some(oidc) = oidc::server() else { return };
    let root = tempfile::tempdir().unwrap();
    let git = |dir: &std::path::Path, args: &[&str]| {
        let output = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    git(root.path(), &["init", "--bare", "-q", "repo.git"]);
    git(
        &root.path().join("repo.git"),
        &["config", "http.receivepack", "true"],
    );
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new().fallback(git_server).with_state((
        oidc,
        root.path().to_owned(),
        seen.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let home = home(
        oidc,
        &format!("http://{address}"),
        "helper_username = \"x-access-token\"\n",
    );
    let helper = format!(
        "!{} git-credential -p api",
        env!("CARGO_BIN_EXE_tokenwarden")
    );
    let work = home.path().join("work");
    let url = format!("http://{address}/repo.git");
    let run_git = |dir: &std::path::Path, args: &[&str]| {
        let mut all = vec!["-c", "credential.helper=", "-c"];
        let helper = format!("credential.helper={helper}");
        all.push(&helper);
        all.extend(["-c", "user.name=t", "-c", "user.email=t@example.com"]);
        all.extend(args);
        let output = home.tool("git", &all).current_dir(dir).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!stderr.contains(MARKER), "{stderr}");
        (output.status.success(), stderr)
    };
    // Clone (empty) and push: the helper's token both times.
    let (cloned, stderr) = run_git(home.path(), &["clone", "-q", &url, "work"]);
    assert!(cloned, "{stderr}");
    std::fs::write(work.join("a.txt"), "a").unwrap();
    run_git(&work, &["add", "a.txt"]);
    run_git(&work, &["commit", "-q", "-m", "a"]);
    let (pushed, stderr) = run_git(&work, &["push", "-q", "origin", "HEAD:main"]);
    assert!(pushed, "{stderr}");
    let first = seen.tokens().last().unwrap().clone();

    // The server stops accepting that token: git is refused, tells the helper
    // (erase), and the next try gets a new token.
    revoke(oidc, &first).await;
    std::fs::write(work.join("b.txt"), "b").unwrap();
    run_git(&work, &["add", "b.txt"]);
    run_git(&work, &["commit", "-q", "-m", "b"]);
    let (pushed, _) = run_git(&work, &["push", "-q", "origin", "HEAD:main"]);
    assert!(!pushed, "refused with the revoked token");
    let (pushed, stderr) = run_git(&work, &["push", "-q", "origin", "HEAD:main"]);
    assert!(pushed, "{stderr}");
    let last = seen.tokens().last().unwrap().clone();
    assert_ne!(last, first);

    // The helper answers for the profile's origin only.
    let get = home.command(&["git-credential", "-p", "api", "get"]);
    let answer = with_input(get, b"protocol=https\nhost=elsewhere.example\n\n");
    assert!(answer.status.success());
    assert!(answer.stdout.is_empty(), "nothing for another host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_credential_helper_speaks_dockers_protocol() {
    let Some(oidc) = oidc::server() else { return };
    let home = home(
        oidc,
        "https://registry.example.com",
        "registry = \"registry.example.com\"\n",
    );
    // Docker runs `docker-credential-<name>` from PATH: a link to the binary.
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-tokenwarden");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tokenwarden"), &helper).unwrap();
    let ask = |operation: &str, input: &str| {
        let output = with_input(home.tool(&helper, &[operation]), input.as_bytes());
        assert!(!String::from_utf8_lossy(&output.stderr).contains(MARKER));
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
        )
    };
    let (code, out) = ask("get", "https://registry.example.com/v1/");
    assert_eq!(code, Some(0), "{out}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["Username"], "oauth2");
    assert_eq!(answer["ServerURL"], "https://registry.example.com/v1/");
    assert!(active(oidc, answer["Secret"].as_str().unwrap()).await);
    let (code, out) = ask("get", "other.example.com");
    assert_eq!(
        (code, out.trim()),
        (Some(1), "credentials not found in native keychain")
    );
    let (code, out) = ask("list", "");
    assert_eq!(code, Some(0));
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list, serde_json::json!({"registry.example.com": "oauth2"}));
    let login = r#"{"ServerURL":"registry.example.com","Username":"u","Secret":"s"}"#;
    assert_eq!(ask("store", login).0, Some(0));
    assert_eq!(ask("erase", "registry.example.com").0, Some(0));
}

/// A registry's `/v2/`: a Basic password that is a live token, or 401.
async fn registry(State(oidc): State<&'static oidc::Oidc>, request: Request) -> Response {
    match live(oidc, authorization(&request)).await {
        Some(_) => axum::Json(serde_json::json!({})).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Basic realm="test""#)],
            "Unauthorized",
        )
            .into_response(),
    }
}

/// The real `docker` client, which logs in to a registry without a daemon when
/// given the password: the helper's secret as it (a registry that checks it is
/// live), then `store` and `erase` as `docker login` and `logout` call them.
/// (A login with stored credentials, the one that calls `get`, needs a daemon.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_logs_in_with_the_helpers_token() {
    let Some(oidc) = oidc::server() else { return };
    if std::process::Command::new("docker")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(!required(), "the docker client is required under CI");
        eprintln!("skipped: the docker client is not installed");
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/v2/", axum::routing::get(registry))
        .with_state(oidc);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let home = home(
        oidc,
        &format!("http://{address}"),
        &format!("registry = \"{address}\"\n"),
    );
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_tokenwarden"),
        bin.join("docker-credential-tokenwarden"),
    )
    .unwrap();
    let docker_config = home.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::write(
        docker_config.join("config.json"),
        format!(r#"{{"credHelpers": {{"{address}": "tokenwarden"}}}}"#),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let docker = |args: &[&str], stdin: &str| {
        let mut docker = home.tool("docker", args);
        docker
            .env("PATH", &path)
            .env("DOCKER_CONFIG", &docker_config);
        let output = with_input(docker, stdin.as_bytes());
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(!text.contains(MARKER), "{text}");
        (output.status.success(), text)
    };
    // The secret as Docker would get it from the helper.
    let get = home.tool(bin.join("docker-credential-tokenwarden"), &["get"]);
    let answer = with_input(get, address.to_string().as_bytes());
    let answer: serde_json::Value = serde_json::from_slice(&answer.stdout).unwrap();
    let (user, secret) = (
        answer["Username"].as_str().unwrap(),
        answer["Secret"].as_str().unwrap(),
    );
    let address = address.to_string();
    let (ok, text) = docker(&["login", "-u", user, "--password-stdin", &address], secret);
    assert!(ok && text.contains("Login Succeeded"), "{text}");
    assert!(
        !text.contains("Error saving credentials"),
        "the helper took `store`: {text}"
    );
    let refused = docker(
        &["login", "-u", user, "--password-stdin", &address],
        "not-a-live-token",
    );
    assert!(
        !refused.0,
        "the registry refuses another password: {}",
        refused.1
    );
    let (ok, text) = docker(&["logout", &address], "");
    assert!(ok, "the helper took `erase`: {text}");
}

/// A profile without `base_url` gives git nothing: its token would go to any
/// host git asks about.
#[test]
fn the_git_helper_answers_nothing_without_an_origin() {
    let home = Home::with_config(
        "[profiles.api]\ntoken_url = \"https://auth.example.com/token\"\n\
         client_id = \"c\"\nclient_secret = \"c-TOPSECRET\"\nstore = \"memory\"\n",
    );
    for host in [
        "github.com",
        "evil.example@good.example",
        "good.example/path",
    ] {
        let request = format!("protocol=https\nhost={host}\n\n");
        let answer = with_input(
            home.command(&["git-credential", "-p", "api", "get"]),
            request.as_bytes(),
        );
        assert!(answer.status.success());
        assert!(answer.stdout.is_empty(), "nothing for {host}");
    }
}

/// Two profiles naming one registry: Docker is told, not given a guess.
#[test]
fn two_profiles_for_one_registry_are_an_error() {
    let profile = |name: &str| {
        format!(
            "[profiles.{name}]\ntoken_url = \"https://auth.example.com/token\"\n\
             client_id = \"c\"\nclient_secret = \"c-TOPSECRET\"\nstore = \"memory\"\n\
             registry = \"registry.example.com\"\n"
        )
    };
    let home = Home::with_config(&(profile("a") + &profile("b")));
    let get = with_input(
        home.command(&["docker-credential", "get"]),
        b"https://registry.example.com",
    );
    let run = Run::checked(get, &["docker-credential", "get"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("both name registry"),
        "{}",
        run.stderr()
    );
}
