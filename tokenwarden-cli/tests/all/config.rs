//! Bad configurations: each a usage error (exit 2) naming the file, line and key,
//! before any network.

use crate::common::*;

fn fails_with(config: &str, args: &[&str], expected: &[&str]) {
    let home = Home::with_config(config);
    let run = home.run(args);
    run.expect_code(2).expect_no_secret(false);
    let stderr = run.stderr();
    for part in expected {
        assert!(stderr.contains(part), "`{part}` not in: {stderr}");
    }
    assert!(stderr.contains("hint:"), "a hint: {stderr}");
}

#[test]
fn unknown_keys_wrong_types_and_unknown_values_name_the_line_and_key() {
    let cc = "[profiles.api]\ntoken_url = \"http://127.0.0.1:1/token\"\nclient_id = \"c\"\n";
    fails_with(
        &format!("{cc}colour = \"blue\"\n"),
        &["token", "-p", "api"],
        &["config.toml:4:", "colour"],
    );
    fails_with(
        &format!("{cc}redirect_port = \"x\"\n"),
        &["token", "-p", "api"],
        &["config.toml:4:"],
    );
    fails_with(
        &format!("{cc}grant = \"magic\"\n"),
        &["token", "-p", "api"],
        &["config.toml:4:", "`grant`", "magic", "client_credentials"],
    );
    fails_with(
        &format!("{cc}store = \"floppy\"\n"),
        &["token", "-p", "api"],
        &["config.toml:4:", "`store`", "floppy"],
    );
    // A mistyped Redis URL: its scheme is quoted, never its password.
    fails_with(
        &format!("{cc}store = \"redis+sentinal://tw:TOPSECRET@h:26379/m\"\n"),
        &["token", "-p", "api"],
        &["config.toml:4:", "`store`", "redis+sentinal://…"],
    );
    let home = Home::with_config(&format!("{cc}store = \"Redis://tw:TOPSECRET@h:6379\"\n"));
    let said = home.run(&["token", "-p", "api"]).stderr();
    assert!(!said.contains("TOPSECRET"), "{said}");
    fails_with(
        "[profiles.api\n",
        &["token", "-p", "api"],
        &["config.toml:1:"],
    );
}

#[test]
fn missing_fields_and_variables_are_named() {
    fails_with(
        "[profiles.api]\ntoken_url = \"http://127.0.0.1:1/token\"\ngrant = \"password\"\nclient_id = \"c\"\n",
        &["token", "-p", "api"],
        &["config.toml:1:", "password grant needs username, password"],
    );
    fails_with(
        "[profiles.api]\nclient_id = \"c\"\n",
        &["token", "-p", "api"],
        &["issuer", "token_url"],
    );
    fails_with(
        "[profiles.api]\ntoken_url = \"http://127.0.0.1:1/token\"\nclient_id = \"c\"\nclient_secret = \"${TW_TEST_UNSET_SECRET}\"\n",
        &["token", "-p", "api"],
        &["config.toml:4:", "`client_secret`", "TW_TEST_UNSET_SECRET is not set"],
    );
}

#[test]
fn missing_files_and_profiles_say_what_exists() {
    fails_with(
        "[profiles.one]\ntoken_url = \"http://x/t\"\nclient_id = \"c\"\n",
        &["token", "-p", "two"],
        &["no profile `two`", "one"],
    );
    let home = Home::with_config("");
    let run = home.run(&["token", "--config", "/nonexistent/tokenwarden.toml"]);
    run.expect_code(2);
    assert!(
        run.stderr().contains("/nonexistent/tokenwarden.toml"),
        "{}",
        run.stderr()
    );
    // Usage errors of the command line itself are 2 as well.
    home.run(&["token", "--no-such-flag"]).expect_code(2);
    home.run(&["frobnicate"]).expect_code(2);
}

#[test]
fn the_profile_comes_from_the_flag_the_environment_or_default() {
    let home = Home::with_config(
        "[profiles.default]\ntoken_url = \"http://127.0.0.1:1/token\"\nclient_id = \"c\"\nstore = \"memory\"\n\
         [profiles.other]\nclient_id = \"c\"\n",
    );
    // `default` is complete: it gets as far as the (unreachable) token endpoint.
    home.run(&["token"]).expect_code(4);
    // `other` is not: the environment chose it.
    let run = Run::checked(
        home.command(&["token"])
            .env("TOKENWARDEN_PROFILE", "other")
            .output()
            .unwrap(),
        &[],
    );
    run.expect_code(2);
    assert!(run.stderr().contains("`other`"), "{}", run.stderr());
}

/// A provider's own parameters go where the grant sends them, and nowhere
/// else: `params` with the token request's grants, `auth_params` with the
/// browser sign-in, `grant_type` with client credentials.
#[test]
fn provider_parameters_go_with_the_grants_that_send_them() {
    let web = "[profiles.web]\ntoken_url = \"http://127.0.0.1:1/token\"\nclient_id = \"c\"\n\
               grant = \"authorization_code\"\nauthorization_url = \"http://127.0.0.1:1/authorize\"\n";
    fails_with(
        &format!("{web}params = {{ account_id = \"x\" }}\n"),
        &["login", "-p", "web"],
        &["profile `web`", "sends no params", "auth_params"],
    );
    let cc = "[profiles.api]\ntoken_url = \"http://127.0.0.1:1/token\"\nclient_id = \"c\"\n";
    fails_with(
        &format!("{cc}auth_params = {{ access_type = \"offline\" }}\n"),
        &["token", "-p", "api"],
        &["profile `api`", "authorization_code grant only"],
    );
    fails_with(
        &format!(
            "{cc}grant = \"password\"\nusername = \"u\"\npassword = \"p\"\ngrant_type = \"x\"\n"
        ),
        &["token", "-p", "api"],
        &["grant_type goes with the client_credentials grant only"],
    );
    fails_with(
        &format!("{cc}params = {{ account_id = \"${{TW_NO_SUCH_VARIABLE}}\" }}\n"),
        &["token", "-p", "api"],
        &["TW_NO_SUCH_VARIABLE"],
    );
    fails_with(
        &format!("{cc}params = {{ client_secret = \"x\" }}\n"),
        &["token", "-p", "api"],
        &["`client_secret` is not a parameter to add"],
    );
    fails_with(
        &format!("{cc}store_key = \"x\"\n"),
        &["token", "-p", "api"],
        &["store_key seals a Redis store"],
    );
    fails_with(
        &format!("{cc}token_lifetime = 0\n"),
        &["token", "-p", "api"],
        &["token_lifetime must be at least 1 second"],
    );

    // A browser sign-in's authorization URL carries them (and the audience).
    let home = Home::with_config(&format!(
        "{web}scope = \"read\"\naudience = \"https://api.example.com\"\n\
         auth_params = {{ access_type = \"offline\", prompt = \"consent\" }}\n"
    ));
    let run = Run::checked(
        home.command(&["login", "-p", "web", "--timeout", "1"])
            .env("TOKENWARDEN_NO_BROWSER", "1")
            .output()
            .unwrap(),
        &[],
    );
    let said = run.expect_code(6).stderr();
    let url = said
        .lines()
        .find_map(|l| l.strip_prefix("To sign in, open "))
        .unwrap_or_else(|| panic!("{said}"));
    let url = url::Url::parse(url).unwrap();
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["access_type"], "offline");
    assert_eq!(query["prompt"], "consent");
    assert_eq!(query["audience"], "https://api.example.com");
}
