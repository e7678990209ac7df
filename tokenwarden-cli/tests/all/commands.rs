//! `token`, `status`, `login`, `logout`, `curl` and `completions` against the real
//! authorization server and a local resource server.

use crate::common::*;
use crate::{browser, oidc};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

/// A profile `api` (client credentials, `${TW_CC_SECRET}`, the file store) and a
/// profile `app` (device code) on the test server.
fn config(oidc: &oidc::Oidc, extra: &str) -> String {
    format!(
        "[profiles.api]\nissuer = \"{issuer}\"\ngrant = \"client_credentials\"\nclient_id = \"cc-basic\"\n\
         client_secret = \"${{TW_CC_SECRET}}\"\nscope = \"read\"\n{extra}\n\
         [profiles.app]\nissuer = \"{issuer}\"\ngrant = \"device_code\"\nclient_id = \"app\"\n\
         client_secret = \"app-TOPSECRET\"\nscope = \"openid offline_access read\"\n",
        issuer = oidc.issuer
    )
}

fn run(home: &Home, args: &[&str]) -> Run {
    Run::checked(
        home.command(args)
            .env("TW_CC_SECRET", "cc-basic-TOPSECRET")
            .output()
            .unwrap(),
        args,
    )
}

#[test]
fn token_is_stored_reused_described_and_logged_out() {
    let Some(oidc) = oidc::server() else { return };
    let home = Home::with_config(&config(oidc, ""));
    let first = run(&home, &["token", "-p", "api"]);
    first.expect_code(0);
    let token = first.stdout();
    assert_eq!(token.lines().count(), 1, "one line: {token}");
    let token = token.trim().to_owned();
    assert!(token.len() > 20);
    assert!(!first.stderr().contains(&token));

    // The next call reuses the stored (encrypted) token.
    let again = run(&home, &["token", "-p", "api"]);
    assert_eq!(again.expect_code(0).stdout().trim(), token);
    let tokens = home.path().join("xdg-data/tokenwarden/tokens");
    let stored: Vec<_> = std::fs::read_dir(&tokens)
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    assert!(stored
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "tok")));
    for file in &stored {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&token),
            "encrypted at rest"
        );
    }

    let json = run(&home, &["token", "-p", "api", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&json.expect_code(0).stdout()).unwrap();
    assert_eq!(value["access_token"], token.as_str());
    assert_eq!(value["profile"], "api");
    assert_eq!(value["authenticated"], true);

    let status = run(&home, &["status", "-p", "api"]);
    let text = status.expect_code(0).stdout();
    assert!(text.contains("authenticated  yes"), "{text}");
    assert!(text.contains("client_credentials"), "{text}");
    assert!(text.contains(&tokens.display().to_string()), "{text}");
    assert!(
        text.contains(&format!(
            "revocation     at {}/token/revocation",
            oidc.issuer
        )),
        "{text}"
    );
    assert!(!text.contains(&token) && !status.stderr().contains(&token));
    let table = run(&home, &["status"]);
    let table = table.expect_code(0).stdout();
    assert!(
        table.contains("api") && table.contains("app") && !table.contains(&token),
        "{table}"
    );
    let json = run(&home, &["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&json.expect_code(0).stdout()).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);

    let logout = run(&home, &["logout", "-p", "api"]);
    let said = logout.expect_code(0).stderr();
    assert!(
        said.contains("the tokens were revoked at 127.0.0.1 and removed from the store"),
        "{said}"
    );
    let again = run(&home, &["logout", "-p", "api"]).expect_code(0).stderr();
    assert!(
        again.contains("held no token; nothing to revoke"),
        "{again}"
    );
    let after = run(&home, &["status", "-p", "api"]);
    assert!(
        after.expect_code(0).stdout().contains("authenticated  no"),
        "{}",
        after.stdout()
    );
    let next = run(&home, &["token", "-p", "api"]);
    assert_ne!(
        next.expect_code(0).stdout().trim(),
        token,
        "a new token after logout"
    );
}

/// A server that names no revocation endpoint (a profile with `token_url` only):
/// `status` says revocation is not possible, and `logout` says the tokens were
/// removed on this machine only, with the hint to set `revocation_url`.
#[test]
fn logout_says_when_it_could_not_revoke() {
    let Some(oidc) = oidc::server() else { return };
    let home = Home::with_config(&format!(
        "[profiles.api]\ntoken_url = \"{}\"\nclient_id = \"cc-basic\"\n\
         client_secret = \"${{TW_CC_SECRET}}\"\nscope = \"read\"\n",
        oidc.token_url()
    ));
    run(&home, &["token", "-p", "api"]).expect_code(0);
    let status = run(&home, &["status", "-p", "api"]).expect_code(0).stdout();
    assert!(
        status.contains("not possible: the profile names neither an issuer nor a revocation_url"),
        "{status}"
    );
    let said = run(&home, &["logout", "-p", "api"]).expect_code(0).stderr();
    assert!(said.contains("on this machine only"), "{said}");
    assert!(
        said.contains("hint: if the server has one, set `revocation_url`"),
        "{said}"
    );
}

/// A token file that cannot be read is moved aside, and the command says so on
/// stderr in one line that names both files; it then gets a new token.
#[test]
fn an_unreadable_token_file_is_moved_aside_with_a_warning() {
    let Some(oidc) = oidc::server() else { return };
    let home = Home::with_config(&config(oidc, ""));
    run(&home, &["token", "-p", "api"]).expect_code(0);
    let tokens = home.path().join("xdg-data/tokenwarden/tokens");
    let file = std::fs::read_dir(&tokens)
        .unwrap()
        .map(|f| f.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "tok"))
        .unwrap();
    std::fs::write(&file, b"TWTK\x01damaged").unwrap();
    let again = run(&home, &["token", "-p", "api"]);
    let said = again.expect_code(0).stderr();
    let warning: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("tokenwarden: warning:"))
        .collect();
    assert_eq!(warning.len(), 1, "{said}");
    assert!(
        warning[0].contains(&file.display().to_string()) && warning[0].contains("moved aside to"),
        "{said}"
    );
    let kept = std::fs::read_dir(&tokens)
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| p.display().to_string().contains(".corrupt-"))
        .count();
    assert_eq!(kept, 1, "the damaged file is kept");
    assert!(
        std::fs::read(&file).unwrap().len() > 20,
        "a new token stored"
    );
}

#[test]
fn twenty_concurrent_invocations_share_one_token() {
    let Some(oidc) = oidc::server() else { return };
    let home = Home::with_config(&config(oidc, ""));
    let tokens = at_once(20, || {
        let mut command = home.command(&["token", "-p", "api"]);
        command.env("TW_CC_SECRET", "cc-basic-TOPSECRET");
        command
    });
    // Had two processes asked the server, two tokens would be out there.
    assert_eq!(
        tokens.len(),
        1,
        "20 invocations, one token request: {tokens:?}"
    );
}

#[test]
fn each_failure_has_its_exit_code_and_a_hint() {
    let Some(oidc) = oidc::server() else { return };
    // The server rejects us: 3.
    let home = Home::with_config(&config(oidc, ""));
    let rejected = Run::checked(
        home.command(&["token", "-p", "api"])
            .env("TW_CC_SECRET", "wrong-TOPSECRET")
            .output()
            .unwrap(),
        &[],
    );
    rejected.expect_code(3).expect_no_secret(false);
    assert!(
        rejected.stderr().contains("invalid_client"),
        "{}",
        rejected.stderr()
    );
    assert!(rejected.stderr().contains("hint:"));
    // Nobody answers at the token endpoint: 4.
    let down = Home::with_config("[profiles.api]\ntoken_url = \"http://127.0.0.1:1/token\"\nclient_id = \"c\"\nclient_secret = \"s\"\n");
    down.run(&["token", "-p", "api"]).expect_code(4);
    // The store cannot be used: 5.
    let blocked = Home::with_config(&config(oidc, "store_dir = \"not-a-dir/tokens\""));
    std::fs::write(blocked.path().join("not-a-dir"), "a file").unwrap();
    let store = run(&blocked, &["token", "-p", "api"]);
    store.expect_code(5);
    assert!(store.stderr().contains("not-a-dir"), "{}", store.stderr());
    // A device-code profile never signed in: a script is not left waiting.
    let unsigned = run(&home, &["token", "-p", "app"]);
    unsigned.expect_code(3);
    assert!(
        unsigned.stderr().contains("tokenwarden login -p app"),
        "{}",
        unsigned.stderr()
    );
    // A sign-in nobody completes: 6, and a hint of its own (not "unreachable").
    let web = Home::with_config(&format!(
        "[profiles.web]\nissuer = \"{}\"\ngrant = \"authorization_code\"\nclient_id = \"cli\"\nscope = \"openid\"\n",
        oidc.issuer
    ));
    let abandoned = Run::checked(
        web.command(&["login", "-p", "web", "--timeout", "1"])
            .env("TOKENWARDEN_NO_BROWSER", "1")
            .output()
            .unwrap(),
        &[],
    );
    let said = abandoned.expect_code(6).stderr();
    assert!(said.contains("nobody signed in within 1s"), "{said}");
    assert!(
        said.contains("hint: the sign-in was not completed (it timed out or was denied)"),
        "{said}"
    );
}

/// Runs `login -p profile`, reads stderr until `page` finds the page to open in
/// it, approves there in the headless browser, and waits for a successful end.
/// Returns stderr up to the page, and the rest.
fn sign_in(home: &Home, profile: &str, page: impl Fn(&str) -> Option<String>) -> (String, String) {
    let mut login = home
        .command(&["login", "-p", profile])
        .env("TOKENWARDEN_NO_BROWSER", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(login.stderr.take().unwrap());
    let mut said = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no page to open: {said}"
        );
        said.push_str(&line);
        if let Some(url) = page(line.trim()) {
            break url;
        }
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(browser::approve(&url));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(login.wait().unwrap().success(), "{said}{rest}");
    (said, rest)
}

#[test]
fn device_login_then_tokens_without_the_user() {
    let Some(oidc) = oidc::server() else { return };
    let home = Home::with_config(&config(oidc, ""));
    let (said, rest) = sign_in(&home, "app", |line| {
        line.strip_prefix("(or open ")
            .and_then(|l| l.strip_suffix(')'))
            .map(str::to_owned)
    });
    assert!(said.contains("enter the code"), "{said}");
    assert!(rest.contains("signed in"), "{rest}");

    let token = run(&home, &["token", "-p", "app"]);
    token.expect_code(0);
    let status = run(&home, &["status", "-p", "app"]).stdout();
    assert!(status.contains("refresh token  yes"), "{status}");
    run(&home, &["logout", "-p", "app"]).expect_code(0);
    run(&home, &["token", "-p", "app"]).expect_code(3);
}

#[test]
fn browser_login_with_pkce_then_tokens() {
    let Some(oidc) = oidc::server() else { return };
    let home = Home::with_config(&format!(
        "[profiles.web]\nissuer = \"{}\"\ngrant = \"authorization_code\"\nclient_id = \"cli\"\n\
         scope = \"openid offline_access read\"\n",
        oidc.issuer
    ));
    let (said, _) = sign_in(&home, "web", |line| {
        line.strip_prefix("To sign in, open ").map(str::to_owned)
    });
    assert!(said.contains("code_challenge="), "PKCE: {said}");
    let status = home.run(&["status", "-p", "web"]);
    let text = status.expect_code(0).stdout();
    assert!(
        text.contains("authenticated  yes") && text.contains("refresh token  yes"),
        "{text}"
    );
    home.run(&["token", "-p", "web"]).expect_code(0);
}

/// A resource server: `/echo` answers with the method and body, `/reject-once`
/// answers 401 to its first request (as if that token had been revoked), anything
/// else 404; it records every Authorization value.
fn resource_server() -> (String, Arc<Mutex<Vec<String>>>, tokio::runtime::Runtime) {
    use axum::{extract::Request, response::IntoResponse, routing::any, Router};
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let record = |seen: Arc<Mutex<Vec<String>>>, request: &Request| {
        let auth = request
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        seen.lock().unwrap().push(auth);
    };
    let rejected = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, b) = (seen.clone(), seen.clone());
    let app = Router::new()
        .route(
            "/echo",
            any(move |request: Request| async move {
                record(a, &request);
                let method = request.method().to_string();
                let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                    .await
                    .unwrap();
                format!("{method} {}", String::from_utf8_lossy(&body))
            }),
        )
        .route(
            "/reject-once",
            any(move |request: Request| async move {
                record(b, &request);
                if !rejected.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    (
                        http::StatusCode::UNAUTHORIZED,
                        [("www-authenticate", "Bearer error=\"invalid_token\"")],
                        "",
                    )
                        .into_response()
                } else {
                    "accepted".into_response()
                }
            }),
        );
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen, runtime)
}

#[test]
fn curl_sends_the_token_replays_after_a_401_and_fails_like_curl() {
    let Some(oidc) = oidc::server() else { return };
    let (api, seen, _server) = resource_server();
    let home = Home::with_config(&config(
        oidc,
        &format!("base_url = \"{api}\"\nstore = \"memory\""),
    ));
    let echo = run(
        &home,
        &[
            "curl",
            "-p",
            "api",
            "-X",
            "PUT",
            "-d",
            "hello",
            "-H",
            "X-Test: 1",
            "/echo",
        ],
    );
    assert_eq!(echo.expect_code(0).stdout(), "PUT hello");
    assert!(
        seen.lock().unwrap()[0].starts_with("Bearer "),
        "the token was sent"
    );

    let replayed = run(&home, &["curl", "-p", "api", "-i", "/reject-once"]);
    let out = replayed.expect_code(0).stdout();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(out.ends_with("accepted"), "{out}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        3,
        "one echo, then a 401 and its replay: {seen:?}"
    );
    assert_ne!(seen[1], seen[2], "the replay carried a new token");
    for value in &seen {
        let token = value.trim_start_matches("Bearer ");
        assert!(!replayed.stderr().contains(token) && !echo.stderr().contains(token));
    }

    let body = home.path().join("body.json");
    std::fs::write(&body, "{\"from\":\"file\"}").unwrap();
    let from_file = run(
        &home,
        &[
            "curl",
            "-p",
            "api",
            "--data-file",
            body.to_str().unwrap(),
            "/echo",
        ],
    );
    assert_eq!(
        from_file.expect_code(0).stdout(),
        "POST {\"from\":\"file\"}"
    );
    run(&home, &["curl", "-p", "api", "/missing"]).expect_code(0);
    let failed = run(&home, &["curl", "-p", "api", "--fail", "/missing"]);
    failed.expect_code(22);
    assert_eq!(failed.stdout(), "", "no body with --fail, as curl");
    // No token to another origin than the profile's.
    let elsewhere = run(
        &home,
        &["curl", "-p", "api", "http://127.0.0.1:1/elsewhere"],
    );
    elsewhere.expect_code(4);
}

#[test]
fn completions_for_each_shell() {
    let home = Home::with_config("");
    for shell in ["bash", "zsh", "fish"] {
        let run = home.run(&["completions", shell]);
        assert!(
            run.expect_code(0).stdout().contains("tokenwarden"),
            "{shell}"
        );
    }
}

#[test]
fn private_key_jwt_client_authentication() {
    let Some(oidc) = oidc::server() else { return };
    let home = Home::with_config(&format!(
        "[profiles.signed]\nissuer = \"{}\"\nclient_id = \"cc-jwt\"\nclient_auth = \"private_key_jwt\"\n\
         private_key = \"keys/es256.pem\"\nprivate_key_alg = \"ES256\"\nscope = \"read\"\nstore = \"memory\"\n",
        oidc.issuer
    ));
    std::fs::create_dir(home.path().join("keys")).unwrap();
    std::fs::write(home.path().join("keys/es256.pem"), &oidc.keys["ES256"]).unwrap();
    home.run(&["token", "-p", "signed"]).expect_code(0);
    // The key path is relative to the configuration file; a missing one is named.
    std::fs::remove_file(home.path().join("keys/es256.pem")).unwrap();
    let missing = home.run(&["token", "-p", "signed"]);
    missing.expect_code(2);
    assert!(
        missing.stderr().contains("es256.pem"),
        "{}",
        missing.stderr()
    );
}

/// The signing algorithm follows from the key (RSA, EC P-256, EC P-384,
/// Ed25519), against the real server; `private_key_alg` only overrides, and a
/// key of another kind than it names is an error that says what to set.
#[test]
fn private_key_jwt_takes_the_algorithm_from_the_key() {
    let Some(oidc) = oidc::server() else { return };
    let mut config = String::new();
    for alg in ["RS256", "ES256", "ES384", "EdDSA"] {
        config += &format!(
            "[profiles.{alg}]\nissuer = \"{}\"\nclient_id = \"cc-jwt\"\nclient_auth = \"private_key_jwt\"\n\
             private_key = \"keys/{alg}.pem\"\nscope = \"read\"\nstore = \"memory\"\n",
            oidc.issuer
        );
    }
    config += &format!(
        "[profiles.mismatch]\nissuer = \"{}\"\nclient_id = \"cc-jwt\"\nclient_auth = \"private_key_jwt\"\n\
         private_key = \"keys/ES256.pem\"\nprivate_key_alg = \"RS256\"\nstore = \"memory\"\n",
        oidc.issuer
    );
    let home = Home::with_config(&config);
    std::fs::create_dir(home.path().join("keys")).unwrap();
    for alg in ["RS256", "ES256", "ES384", "EdDSA"] {
        std::fs::write(home.path().join(format!("keys/{alg}.pem")), &oidc.keys[alg]).unwrap();
        home.run(&["token", "-p", alg]).expect_code(0);
    }
    let mismatch = home.run(&["token", "-p", "mismatch"]);
    mismatch.expect_code(2);
    let said = mismatch.stderr();
    assert!(
        said.contains("an EC P-256 key, for ES256, not RS256")
            && said.contains("use ES256")
            && said.contains("private_key_alg = \"RS256\": change it, or remove it"),
        "{said}"
    );
}

/// `args` run with `$REFRESH_TOKEN` set to `value`.
fn with_refresh_token(home: &Home, args: &[&str], value: &str) -> Run {
    Run::checked(
        home.command(args)
            .env("REFRESH_TOKEN", value)
            .output()
            .unwrap(),
        &[],
    )
}

/// A refresh token of the `app` client from a device login through the library,
/// approved in the headless browser.
fn device_refresh_token(issuer: &str) -> String {
    use tokenwarden::source::oauth2::{ClientAuth, OAuth2Client};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let source = OAuth2Client::builder()
            .issuer(issuer)
            .client_id("app")
            .auth(ClientAuth::SecretBasic(tokenwarden::ClientSecret::new(
                "app-TOPSECRET",
            )))
            .build()
            .unwrap()
            .device_code()
            .scope("openid offline_access read")
            .on_prompt(|prompt| {
                let page = prompt.verification_uri_complete.clone().unwrap();
                tokio::spawn(async move { browser::approve(&page).await });
            });
        let token = tokenwarden::TokenSource::fetch(&source).await.unwrap();
        token.refresh_token.unwrap().secret().to_owned()
    })
}

#[test]
fn a_refresh_token_from_the_environment_seeds_a_profile() {
    let Some(oidc) = oidc::server() else { return };
    // A refresh token obtained elsewhere (here: a device login through the library).
    let refresh_token = device_refresh_token(&oidc.issuer);
    let home = Home::with_config(&format!(
        "[profiles.seeded]\nissuer = \"{}\"\ngrant = \"refresh_token\"\nclient_id = \"app\"\n\
         client_secret = \"app-TOPSECRET\"\nrefresh_token = \"${{REFRESH_TOKEN}}\"\n",
        oidc.issuer
    ));
    let first = Run::checked(
        home.command(&["token", "-p", "seeded"])
            .env("REFRESH_TOKEN", &refresh_token)
            .output()
            .unwrap(),
        &[],
    );
    let token = first.expect_code(0).stdout();
    assert!(!first.stderr().contains(&refresh_token));
    // The rotated refresh token was stored: the next call does not need the variable.
    let again = home.run(&["token", "-p", "seeded", "--json"]);
    let json = again.expect_code(2);
    assert!(
        json.stderr().contains("REFRESH_TOKEN is not set"),
        "{}",
        json.stderr()
    );
    let again = Run::checked(
        home.command(&["token", "-p", "seeded"])
            .env("REFRESH_TOKEN", "spent-TOPSECRET")
            .output()
            .unwrap(),
        &[],
    );
    assert_eq!(
        again.expect_code(0).stdout(),
        token,
        "the stored token, not a new refresh"
    );
    let status = with_refresh_token(&home, &["status", "-p", "seeded"], "x");
    assert!(status
        .expect_code(0)
        .stdout()
        .contains("refresh token  yes"));
    assert!(!status.stdout().contains(&refresh_token) && !status.stdout().contains(token.trim()));
}

/// Issue 12, scenario 3 through the CLI: a Redis store keeps a token as long as
/// its refresh token, so a new process after each access token's expiry
/// refreshes with the rotated refresh token instead of resending the spent one.
#[test]
fn a_redis_store_keeps_the_rotated_refresh_token_past_the_access_tokens_expiry() {
    let Some(oidc) = oidc::server() else { return };
    if std::net::TcpStream::connect("127.0.0.1:6379").is_err() {
        assert!(!required(), "CI needs Redis on 127.0.0.1:6379");
        eprintln!("skipped: no Redis on 127.0.0.1:6379");
        return;
    }
    let refresh_token = device_refresh_token(&oidc.issuer);
    let home = Home::with_config(&format!(
        "[profiles.seeded]\nissuer = \"{}\"\ngrant = \"refresh_token\"\nclient_id = \"app\"\n\
         client_secret = \"app-TOPSECRET\"\nrefresh_token = \"${{REFRESH_TOKEN}}\"\n\
         store = \"redis://127.0.0.1:6379/0\"\n",
        oidc.issuer
    ));
    let token = || {
        let run = with_refresh_token(&home, &["token", "-p", "seeded"], &refresh_token);
        run.expect_no_secret(false);
        run.expect_code(0).stdout()
    };
    let mut seen = std::collections::HashSet::new();
    for expiry in 0..3 {
        assert!(seen.insert(token()), "expiry {expiry}: a new access token");
        // The test server's access tokens live 5 s; Redis keeps the entry longer.
        std::thread::sleep(std::time::Duration::from_millis(5_500));
    }
    let status = with_refresh_token(&home, &["status", "-p", "seeded"], "x");
    assert!(status
        .expect_code(0)
        .stdout()
        .contains("refresh token  yes"));
    let logout = home
        .command(&["logout", "-p", "seeded"])
        .env("REFRESH_TOKEN", "x")
        .output()
        .unwrap();
    assert!(
        logout.status.success(),
        "logged out, the Redis entry removed"
    );
}

/// The Redis entries of the profile named `profile` (keys and raw values).
fn redis_entries(profile: &str) -> Vec<(String, Vec<u8>)> {
    let cli = |args: &[&str]| {
        std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", "6379"])
            .args(args)
            .output()
            .expect("redis-cli (from the redis-tools package)")
            .stdout
    };
    let keys = String::from_utf8(cli(&[
        "--scan",
        "--pattern",
        &format!("tokenwarden:*{profile}*"),
    ]))
    .unwrap();
    keys.lines()
        .filter(|key| {
            ![":fence", ":lease", ":waiters", ":holder"]
                .iter()
                .any(|suffix| key.contains(suffix))
        })
        .map(|key| (key.to_owned(), cli(&["--raw", "GET", key])))
        .filter(|(_, value)| value.len() > 1)
        .collect()
}

/// Tokens in Redis are sealed: the entry holds no token in clear. Without a key
/// the profile does not start (the error names the variable and how to make a
/// key); with another key the entry is reported unreadable and kept, and the
/// right key reads it again.
#[test]
fn redis_tokens_are_sealed_and_a_missing_or_wrong_key_is_named() {
    let Some(oidc) = oidc::server() else { return };
    if std::net::TcpStream::connect("127.0.0.1:6379").is_err() {
        assert!(!required(), "CI needs Redis on 127.0.0.1:6379");
        eprintln!("skipped: no Redis on 127.0.0.1:6379");
        return;
    }
    let profile = format!("sealed{}", std::process::id());
    let home = Home::with_config(&format!(
        "[profiles.{profile}]\nissuer = \"{}\"\nclient_id = \"cc-basic\"\n\
         client_secret = \"cc-basic-TOPSECRET\"\nscope = \"read\"\nstore = \"redis://127.0.0.1:6379/0\"\n",
        oidc.issuer
    ));
    let token = home.run(&["token", "-p", &profile]).expect_code(0).stdout();
    let token = token.trim();
    let entries = redis_entries(&profile);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let (_, value) = &entries[0];
    assert!(value.starts_with(b"TWTK"), "sealed");
    assert!(
        !String::from_utf8_lossy(value).contains(token),
        "no token in clear"
    );

    let keyless = Run::checked(
        home.command(&["token", "-p", &profile])
            .env_remove("TOKENWARDEN_STORE_KEY")
            .output()
            .unwrap(),
        &[],
    );
    let said = keyless.expect_code(2).stderr();
    assert!(
        said.contains("TOKENWARDEN_STORE_KEY") && said.contains("openssl rand -base64 32"),
        "{said}"
    );

    let other_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let wrong = Run::checked(
        home.command(&["token", "-p", &profile])
            .env("TOKENWARDEN_STORE_KEY", other_key)
            .output()
            .unwrap(),
        &[],
    );
    let said = wrong.expect_code(5).stderr();
    assert!(said.contains("does not decrypt with this key"), "{said}");
    assert_eq!(
        redis_entries(&profile),
        entries,
        "the entry is kept as it was"
    );
    let again = home.run(&["token", "-p", &profile]).expect_code(0).stdout();
    assert_eq!(again.trim(), token, "the right key reads it again");
    // `logout` does not remove what it cannot read (it could not revoke it)
    // unless forced.
    let logout = |args: &[&str]| {
        Run::checked(
            home.command(args)
                .env("TOKENWARDEN_STORE_KEY", other_key)
                .output()
                .unwrap(),
            &[],
        )
    };
    let kept = logout(&["logout", "-p", &profile]);
    let said = kept.expect_code(5).stderr();
    assert!(said.contains("cannot be read here, so it stays"), "{said}");
    assert!(said.contains("logout --force"), "{said}");
    assert_eq!(redis_entries(&profile), entries);
    let forced = logout(&["logout", "-p", &profile, "--force"]);
    let said = forced.expect_code(0).stderr();
    assert!(said.contains("it was not revoked at the server"), "{said}");
    assert!(redis_entries(&profile).is_empty());
}

#[test]
fn a_custom_login_api_profile() {
    use axum::{routing::post, Json, Router};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/login", listener.local_addr().unwrap());
    let app = Router::new().route(
        "/login",
        post(|Json(body): Json<serde_json::Value>| async move {
            if body["username"] == "alice" && body["password"] == "pw-TOPSECRET" {
                Ok(Json(serde_json::json!({
                    "access_token": "custom-access-token",
                    "refresh_token": "custom-refresh-token",
                    "expires_in": 3600
                })))
            } else {
                Err(http::StatusCode::UNAUTHORIZED)
            }
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    let home = Home::with_config(&format!(
        "[profiles.custom]\ngrant = \"custom\"\nlogin_url = \"{url}\"\nusername = \"alice\"\n\
         password = \"${{API_PASSWORD}}\"\nstore = \"memory\"\n"
    ));
    let with = |password: &str| {
        Run::checked(
            home.command(&["token", "-p", "custom"])
                .env("API_PASSWORD", password)
                .output()
                .unwrap(),
            &[],
        )
    };
    let ok = with("pw-TOPSECRET");
    assert_eq!(ok.expect_code(0).stdout().trim(), "custom-access-token");
    ok.expect_no_secret(false);
    let refused = with("wrong-TOPSECRET");
    refused.expect_code(3).expect_no_secret(false);
}

#[test]
fn redis_and_keyring_stores_keep_the_token_between_invocations() {
    let Some(oidc) = oidc::server() else { return };
    let redis_up = std::net::TcpStream::connect("127.0.0.1:6379").is_ok();
    if !redis_up && required() {
        panic!("CI needs Redis on 127.0.0.1:6379");
    }
    let mut stores = vec!["keyring"];
    if redis_up {
        stores.push("redis://127.0.0.1:6379/0");
    } else {
        eprintln!("skipped the Redis half: no Redis on 127.0.0.1:6379");
    }
    for store in stores {
        // The stores outlive the home; the key holds the issuer, whose port is new each run.
        let home = Home::with_config(&config(oidc, &format!("store = \"{store}\"")));
        let first = run(&home, &["token", "-p", "api"]);
        let token = first.expect_code(0).stdout();
        assert_eq!(
            run(&home, &["token", "-p", "api"]).expect_code(0).stdout(),
            token,
            "{store}"
        );
        let status = run(&home, &["status", "-p", "api"]).stdout();
        assert!(status.contains("authenticated  yes"), "{store}: {status}");
        run(&home, &["logout", "-p", "api"]).expect_code(0);
        let after = run(&home, &["status", "-p", "api"]).stdout();
        assert!(after.contains("authenticated  no"), "{store}: {after}");
    }
}
