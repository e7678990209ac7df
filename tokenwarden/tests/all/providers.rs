//! The hosted providers' documented answers (`tests/fixtures/providers/`, one
//! file per provider, written from their public docs), each served by a local
//! mock server and run through the real grant code: the token it gives, or the
//! typed error. A case marked `today` is a known gap (what the library does
//! instead is written there): it must still fail its expectation, so that the
//! day it passes, its mark is taken off.

use crate::common::*;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokenwarden::source::oauth2::{DevicePrompt, OAuth2Client};
use tokenwarden::{Clock, ManualClock, Token, TokenSource};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// An answer of the fixture: status, content type, body as sent.
fn template(answer: &Value) -> ResponseTemplate {
    ResponseTemplate::new(answer["status"].as_u64().unwrap_or(200) as u16).set_body_raw(
        answer["body"]
            .as_str()
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
        answer["content_type"]
            .as_str()
            .unwrap_or("application/json"),
    )
}

/// Serves `first` once, then `then`, and notes the manual clock's time of each
/// request (the device flow's polls).
struct Polls {
    first: Mutex<Option<ResponseTemplate>>,
    then: ResponseTemplate,
    clock: ManualClock,
    at: Arc<Mutex<Vec<SystemTime>>>,
}

impl Respond for Polls {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.at.lock().unwrap().push(self.clock.now());
        self.first
            .lock()
            .unwrap()
            .take()
            .unwrap_or_else(|| self.then.clone())
    }
}

/// What running one case gave.
struct Outcome {
    result: tokenwarden::Result<Token>,
    prompt: Option<DevicePrompt>,
    /// The clock's time at the start, and at each token request.
    started: SystemTime,
    polls: Vec<SystemTime>,
    /// Whether every token request asked for JSON.
    asked_json: bool,
    /// The parameters of the first request the case's go to: the device
    /// authorization request, the authorization URL, or the token request.
    form: Vec<(String, String)>,
}

async fn run(case: &Value) -> Outcome {
    let server = MockServer::start().await;
    let clock = ManualClock::default();
    let started = clock.now();
    let expect = &case["expect"];
    let polling = expect["poll"].is_string();
    let then = if polling {
        // After the polling answer, one that ends the wait.
        ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "access_denied"}))
    } else {
        template(&case["answer"])
    };
    let at = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(Polls {
            first: Mutex::new(Some(template(&case["answer"]))),
            then,
            clock: clock.clone(),
            at: at.clone(),
        })
        .mount(&server)
        .await;
    if let Some(device) = case.get("device_authorization") {
        Mock::given(method("POST"))
            .and(path("/device"))
            .respond_with(template(device))
            .mount(&server)
            .await;
    }
    let client = OAuth2Client::builder()
        .token_url(format!("{}/token", server.uri()))
        .device_authorization_url(format!("{}/device", server.uri()))
        .authorization_url(format!("{}/authorize", server.uri()))
        .client_id("client")
        .client_secret(format!("{MARKER}-client-secret"))
        .clock(clock.clone())
        .build()
        .unwrap();
    let request = &case["request"];
    let text = |key: &str| request[key].as_str().map(str::to_owned);
    let params: Vec<(String, String)> = request["params"]
        .as_object()
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    macro_rules! shaped {
        ($grant:expr) => {{
            let mut grant = $grant;
            if let Some(scope) = text("scope") {
                grant = grant.scope(scope);
            }
            if let Some(audience) = text("audience") {
                grant = grant.audience(audience);
            }
            if let Some(resource) = text("resource") {
                grant = grant.resource(resource);
            }
            for (name, value) in &params {
                grant = grant.param(name, value);
            }
            grant
        }};
    }
    let prompt = Arc::new(Mutex::new(None));
    let authorize = Arc::new(Mutex::new(Vec::new()));
    let source: Box<dyn TokenSource> = match case["grant"].as_str().unwrap() {
        "client_credentials" => {
            let mut grant = client.client_credentials();
            if let Some(grant_type) = text("grant_type") {
                grant = grant.grant_type(grant_type);
            }
            Box::new(shaped!(grant))
        }
        "password" => Box::new(shaped!(
            client.password("user", format!("{MARKER}-password"))
        )),
        "refresh_token" => Box::new(shaped!(client.refresh_token(
            text("refresh_token").unwrap_or_else(|| format!("{MARKER}-refresh-token"))
        ))),
        "device_code" => {
            let seen = prompt.clone();
            Box::new(shaped!(client.device_code().on_prompt(move |p| {
                *seen.lock().unwrap() = Some(p.clone());
            })))
        }
        "authorization_code" => {
            let opened = authorize.clone();
            let mut grant = client.authorization_code().on_open(move |url| {
                *opened.lock().unwrap() = url.query_pairs().into_owned().collect();
                let find = |key: &str| query_param(url, key);
                let mut callback = url::Url::parse(&find("redirect_uri")).unwrap();
                callback
                    .query_pairs_mut()
                    .append_pair("code", "code")
                    .append_pair("state", &find("state"));
                tokio::spawn(reqwest::get(callback));
            });
            if let Some(scope) = text("scope") {
                grant = grant.scope(scope);
            }
            Box::new(grant)
        }
        other => panic!("unknown grant {other}"),
    };
    // The device flow waits on the manual clock: moved a second at a time, and
    // only while the flow sleeps on it (no request in flight), so the times
    // its polls come at are exact.
    let fetch = tokio::spawn(async move { source.fetch().await });
    let mover = {
        let clock = clock.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                if clock.sleepers() > 0 {
                    clock.advance(Duration::from_secs(1));
                }
            }
        })
    };
    let result = fetch.await.unwrap();
    mover.abort();
    let requests = server.received_requests().await.unwrap_or_default();
    let asked_json = requests
        .iter()
        .filter(|r| r.url.path() == "/token")
        .all(|r| {
            r.headers
                .get("accept")
                .is_some_and(|a| a.to_str().unwrap_or_default().contains("application/json"))
        });
    let first = if case["grant"] == "device_code" {
        "/device"
    } else {
        "/token"
    };
    let mut form: Vec<(String, String)> = requests
        .iter()
        .find(|r| r.url.path() == first)
        .map(|r| {
            url::form_urlencoded::parse(&r.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    // A browser sign-in's scope and parameters go in the authorization URL.
    if case["grant"] == "authorization_code" {
        form = authorize.lock().unwrap().clone();
    }
    let polls = at.lock().unwrap().clone();
    let prompt = prompt.lock().unwrap().clone();
    Outcome {
        result,
        prompt,
        started,
        polls,
        asked_json,
        form,
    }
}

/// Where the outcome differs from `expect` (empty: as expected).
fn differences(case: &Value, outcome: &Outcome) -> Vec<String> {
    let expect = &case["expect"];
    let mut wrong = Vec::new();
    let mut check = |what: &str, same: bool, detail: String| {
        if !same {
            wrong.push(format!("{what}: {detail}"));
        }
    };
    if case["request_accept_json_required"].as_bool() == Some(true) {
        check(
            "Accept: application/json",
            outcome.asked_json,
            "not sent".into(),
        );
    }
    // What the provider needs in the request went there.
    let request = &case["request"];
    let mut needed: Vec<(String, String)> = ["scope", "audience", "resource", "grant_type"]
        .iter()
        .filter_map(|k| Some((k.to_string(), request[*k].as_str()?.to_owned())))
        .collect();
    for (name, value) in request["params"].as_object().into_iter().flatten() {
        needed.push((name.clone(), value.as_str().unwrap_or_default().to_owned()));
    }
    for (name, value) in needed {
        let sent: Vec<&str> = outcome
            .form
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        check(&name, sent == [value.as_str()], format!("sent {sent:?}"));
    }
    let secs = |v: &Value| v.as_u64();
    match (&outcome.result, expect["ok"].as_bool() == Some(true)) {
        (Ok(token), true) => {
            let text = |v: &Value| v.as_str().map(str::to_owned);
            check(
                "access_token",
                Some(token.access_token.secret().to_owned()) == text(&expect["access_token"]),
                String::new(),
            );
            let refresh = token.refresh_token.as_ref().map(|r| r.secret().to_owned());
            check(
                "refresh_token",
                refresh == text(&expect["refresh_token"]),
                format!("{}", refresh.is_some()),
            );
            let lifetime = token.lifetime().map(|d| d.as_secs());
            check(
                "expires_in",
                lifetime == secs(&expect["expires_in"]),
                format!("{lifetime:?}"),
            );
            let mut issued = token.clone();
            issued.issued_at = Some(SystemTime::UNIX_EPOCH);
            let refresh_end = issued
                .refresh_expires_at()
                .map(|at| at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs());
            check(
                "refresh_expires_in",
                refresh_end == secs(&expect["refresh_expires_in"]),
                format!("{refresh_end:?}"),
            );
            check(
                "scope",
                token.scope == text(&expect["scope"]),
                format!("{:?}", token.scope),
            );
            if let Some(kind) = text(&expect["token_type"]) {
                check(
                    "token_type",
                    token.token_type == kind,
                    token.token_type.clone(),
                );
            }
            for field in expect["extra_kept"].as_array().into_iter().flatten() {
                let field = field.as_str().unwrap();
                check(field, token.extra.contains_key(field), "not kept".into());
            }
            if let Some(id) = expect["id_token"].as_bool() {
                check("id_token", token.id_token.is_some() == id, String::new());
            }
        }
        // A polling answer: the loop went on to the next poll (answered
        // `access_denied`, which ends the test's wait), at the right interval.
        (Err(error), false) if expect["poll"] == "continue" => {
            check(
                "poll",
                outcome.polls.len() >= 2
                    && error
                        .oauth_error()
                        .is_some_and(|e| e.error == "access_denied"),
                format!("{} polls, then {error}", outcome.polls.len()),
            );
            if let (Some(after), [first, second, ..]) =
                (secs(&expect["interval_after"]), outcome.polls.as_slice())
            {
                let waited = second.duration_since(*first).unwrap().as_secs();
                check("interval_after", waited >= after, format!("{waited} s"));
            }
        }
        (Err(error), false) => {
            let shown = error.to_string();
            if let Some(kind) = expect["error_kind"].as_str() {
                let last = error.last_attempt().unwrap_or(error);
                check(
                    "error_kind",
                    format!("{:?}", last.kind()) == kind,
                    format!("{:?}: {shown}", last.kind()),
                );
            }
            if !expect["oauth_error"].is_null() {
                let code = error.oauth_error().map(|e| e.error.clone());
                check(
                    "oauth_error",
                    code.as_deref() == expect["oauth_error"].as_str(),
                    format!("{code:?}"),
                );
            }
            for text in expect["message_contains"].as_array().into_iter().flatten() {
                let text = text.as_str().unwrap();
                check(
                    "message",
                    shown.contains(text),
                    format!("no {text:?} in {shown}"),
                );
            }
            for (key, value) in [
                ("invalid_grant", error.is_invalid_grant()),
                ("transient", error.is_transient()),
                ("sign_in_refused", error.is_unfinished_sign_in()),
            ] {
                if let Some(expected) = expect[key].as_bool() {
                    check(key, value == expected, format!("{value}: {shown}"));
                }
            }
            if expect["poll"] == "stop" {
                check(
                    "poll",
                    outcome.polls.len() == 1,
                    format!("{} polls", outcome.polls.len()),
                );
            }
        }
        (Ok(token), false) => wrong.push(format!(
            "a token ({}) where an error was expected",
            token.fingerprint()
        )),
        (Err(error), true) => wrong.push(format!("an error: {error}")),
    }
    if let (Some(expected), Some(shown)) = (
        case["expect"]["device_prompt"].as_object(),
        outcome.prompt.as_ref(),
    ) {
        let same = |key: &str, value: Option<String>| {
            expected.get(key).map(|v| v.as_str().map(str::to_owned)) == Some(value)
        };
        check_prompt(
            &mut wrong,
            "user_code",
            same("user_code", Some(shown.user_code.clone())),
        );
        check_prompt(
            &mut wrong,
            "verification_uri",
            same("verification_uri", Some(shown.verification_uri.clone())),
        );
        check_prompt(
            &mut wrong,
            "verification_uri_complete",
            same(
                "verification_uri_complete",
                shown.verification_uri_complete.clone(),
            ),
        );
        check_prompt(
            &mut wrong,
            "message",
            same("message", shown.message.clone()),
        );
        check_prompt(
            &mut wrong,
            "prompt expires_in",
            expected.get("expires_in").and_then(Value::as_u64) == Some(shown.expires_in),
        );
        if let Some(first) = outcome.polls.first() {
            let waited = first.duration_since(outcome.started).unwrap().as_secs();
            let interval = expected
                .get("interval")
                .and_then(Value::as_u64)
                .unwrap_or(5);
            check_prompt(
                &mut wrong,
                &format!("interval {interval}, the first poll after {waited} s"),
                waited == interval,
            );
        }
    }
    wrong
}

fn check_prompt(wrong: &mut Vec<String>, what: &str, same: bool) {
    if !same {
        wrong.push(format!("device prompt: {what}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_providers_documented_answers() {
    let _h = harness();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/providers");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let (mut cases, mut gaps, mut failures) = (0, Vec::new(), Vec::new());
    for file in &files {
        let fixture: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let provider = fixture["provider"].as_str().unwrap();
        for case in fixture["cases"].as_array().unwrap() {
            cases += 1;
            let name = format!("{provider}: {}", case["name"].as_str().unwrap());
            let outcome = run(case).await;
            if let Err(error) = &outcome.result {
                assert_clean(&name, &format!("{error} {error:?}"));
            }
            let wrong = differences(case, &outcome);
            match (case.get("today").is_some(), wrong.is_empty()) {
                (false, true) => {}
                (false, false) => failures.push(format!("{name}: {}", wrong.join("; "))),
                (true, false) => gaps.push(name),
                (true, true) => {
                    failures.push(format!("{name}: passes now; take its `today` mark off"))
                }
            }
        }
    }
    println!(
        "{cases} documented answers of {} providers; {} known gaps:\n  {}",
        files.len(),
        gaps.len(),
        gaps.join("\n  ")
    );
    assert!(files.len() >= 14 && cases >= 100, "{cases} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
