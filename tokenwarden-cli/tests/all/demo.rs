//! `tokenwarden demo`: the embedded authorization server and API, concurrent
//! workers sharing one token, and the summary the README quotes.

use crate::common::Home;

/// The number on the summary line that starts with `label`.
fn figure(stdout: &str, label: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|line| line.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` line in\n{stdout}"));
    let rest = line.trim_start()[label.len()..].trim_start();
    let number = rest.split_whitespace().next().unwrap_or_default();
    number
        .parse()
        .unwrap_or_else(|_| panic!("`{label}` is not followed by a number: {line}"))
}

/// Whether `text` holds something shaped like the demo's tokens (64 hex digits).
fn has_token_shape(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .any(|word| word.len() >= 64)
}

#[test]
fn workers_share_one_token_refreshed_per_expiry_and_replay_revoked_ones() {
    let (seconds, workers) = (4, 16);
    let home = Home::with_config("");
    let run = home.run(&[
        "demo",
        "--seconds",
        &seconds.to_string(),
        "--workers",
        &workers.to_string(),
    ]);
    run.expect_code(0);
    let stdout = run.stdout();

    assert!(stdout.contains(&format!("{workers} workers")), "{stdout}");
    assert_eq!(figure(&stdout, "failures"), 0, "{stdout}");
    assert!(figure(&stdout, "requests") > 100, "{stdout}");
    // One login for all the workers, then refreshes by the refresh token.
    assert!(stdout.contains("(1 login, "), "{stdout}");
    // Tokens live 3 s and are refreshed 1 s ahead: at most one token request per
    // 2 s of run, plus the login, the revocation (2 s in) and one of slack; in any
    // case far fewer than one per worker.
    let token_requests = figure(&stdout, "token requests");
    assert!(
        (2..=seconds / 2 + 3).contains(&token_requests),
        "{token_requests} token requests\n{stdout}"
    );
    assert!(token_requests < workers, "{stdout}");
    // The live token is revoked 2 s in: the requests that carried it got a 401,
    // and the client refreshed and replayed them (none failed, see above).
    assert!(figure(&stdout, "401s replayed") >= 1, "{stdout}");

    let output = format!("{stdout}{}", run.stderr());
    assert!(
        !has_token_shape(&output),
        "a token in the output:\n{output}"
    );
}

#[test]
fn zero_workers_is_a_usage_error() {
    let home = Home::with_config("");
    let run = home.run(&["demo", "--seconds", "1", "--workers", "0"]);
    run.expect_code(2);
    assert!(run.stderr().contains("--workers"), "{}", run.stderr());
}
