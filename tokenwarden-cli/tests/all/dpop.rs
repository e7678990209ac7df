//! DPoP-bound tokens (`dpop = true`) through the CLI: `curl` and `proxy` send a
//! fresh proof with each request to a resource server that verifies proofs with
//! a JOSE library of its own and asks for its nonce, with or without an agent
//! running; `token` prints the token.

use crate::common::*;
use crate::dpop_resource::{self as resource, Checks};
use crate::oidc;
use crate::proxy::Proxy;

fn home(oidc: &oidc::Oidc, base_url: &str, dpop: &str) -> Home {
    Home::with_config(&format!(
        "[profiles.api]\nissuer = \"{}\"\ngrant = \"client_credentials\"\nclient_id = \"cc-dpop\"\n\
         client_secret = \"cc-dpop-TOPSECRET\"\nscope = \"read\"\nstore = \"file\"\n\
         base_url = \"{base_url}\"\ndpop = {dpop}\n",
        oidc.issuer
    ))
}

fn api() -> axum::Router {
    axum::Router::new().route("/v1/items", axum::routing::get(|| async { "items" }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_the_proxy_send_dpop_proofs() {
    let Some(oidc) = oidc::server() else { return };
    let checks = Checks::new(&oidc.issuer, true);
    let base = resource::serve(checks.clone(), api()).await;
    let home = home(oidc, &base, "true");

    // curl: the nonce challenge is answered with one replay.
    let curl = home.run(&["curl", "-p", "api", &format!("{base}/v1/items?page=1")]);
    curl.expect_code(0);
    assert_eq!(curl.stdout(), "items");
    assert_eq!(
        (checks.challenges(), checks.served()),
        (1, 1),
        "{:?}",
        checks.refusals()
    );
    // Another process, the same stored token (and key): a nonce it has not
    // seen. With an agent running too: it keeps the key to itself, and the
    // command does without it.
    let run_dir = home.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    let private = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700);
    std::fs::set_permissions(&run_dir, private).unwrap();
    let socket = run_dir.join("agent.sock");
    let with_agent = |args: &[&str]| {
        let mut command = home.command(args);
        command.env("TOKENWARDEN_AGENT_SOCK", &socket);
        command
    };
    let agent = Daemon::start(with_agent(&["agent"]), "tokenwarden agent: listening on").0;
    let url = format!("{base}/v1/items");
    let args = ["curl", "-p", "api", url.as_str()];
    let again = Run::checked(with_agent(&args).output().unwrap(), &args);
    assert_eq!(again.stdout(), "items", "{}", again.stderr());
    assert_eq!(checks.served(), 2);
    // `token` prints the token (whose key stays in the store).
    let args = ["token", "-p", "api"];
    let token = Run::checked(with_agent(&args).output().unwrap(), &args);
    token.expect_code(0);
    assert!(!token.stdout().trim().is_empty());
    agent.signal("TERM");
    agent.end();

    // The proxy: many requests, each with its own proof.
    let proxy = Proxy::start(&home, "api");
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let answer = client
            .get(format!("{}/v1/items", proxy.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    assert_eq!(checks.served(), 7, "{:?}", checks.refusals());
    let (_, log) = proxy.stop();
    for proof in checks.proofs() {
        assert!(!log.contains(&proof), "a proof in the proxy's log");
    }

    // `token` prints a DPoP-bound token; `status` says so.
    let status = home.run(&["status", "-p", "api", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(status["token_type"], "DPoP", "{status}");
}

#[test]
fn a_dpop_algorithm_that_does_not_exist_is_a_usage_error() {
    let home = Home::with_config(
        "[profiles.api]\ntoken_url = \"https://auth.example.com/token\"\nclient_id = \"c\"\n\
         client_secret = \"s\"\ndpop = \"HS256\"\n",
    );
    let run = home.run(&["token", "-p", "api"]);
    run.expect_code(2);
    assert!(run.stderr().contains("`dpop`"), "{}", run.stderr());
    assert!(
        run.stderr().contains("ES256, EdDSA or RS256"),
        "{}",
        run.stderr()
    );
}

/// The helpers hand the token to programs that would send it without a proof:
/// refused before any token is got, with what to use instead.
#[test]
fn helpers_refuse_dpop_profiles() {
    let home = Home::with_config(
        "[profiles.api]\ntoken_url = \"http://127.0.0.1:9/token\"\nclient_id = \"c\"\n\
         client_secret = \"s\"\ndpop = true\nbase_url = \"https://git.example.com\"\n",
    );
    for args in [
        &["exec", "-p", "api", "--", "true"][..],
        &["kubectl", "-p", "api"],
        &["git-credential", "-p", "api", "get"],
    ] {
        let run = home.run(args);
        run.expect_code(2);
        assert!(
            run.stderr().contains("DPoP-bound"),
            "{args:?}: {}",
            run.stderr()
        );
        assert!(
            run.stderr().contains("tokenwarden curl"),
            "{}",
            run.stderr()
        );
    }
}
