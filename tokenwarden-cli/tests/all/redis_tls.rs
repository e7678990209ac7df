//! A profile on Redis over TLS (`rediss://`): the CA and client certificate from
//! files named in the profile, or the platform's roots (`SSL_CERT_FILE`) when it
//! names no CA; the ACL password from the environment; a certificate that does
//! not check out is a store error (exit 5) that says why and what to check,
//! without the password.

use crate::common::*;
use crate::oidc;
use crate::tls_redis::{Pki, TlsRedis};

/// What rustls says of a server certificate from a CA the client does not trust.
/// (The hint appended to every `rediss://` connection failure names
/// "certificate" and `tls_ca` whatever the cause: the assertions look for the
/// cause itself.)
const UNKNOWN_ISSUER: &str = "could not connect to Redis: invalid peer certificate: UnknownIssuer";

/// A client-credentials profile `name` on the store `url`, with `tls` (lines of
/// `redis_*` settings) appended.
fn profile(issuer: &str, name: &str, url: &str, tls: &str) -> String {
    format!(
        "[profiles.{name}]\nissuer = \"{issuer}\"\nclient_id = \"cc-basic\"\n\
         client_secret = \"cc-basic-TOPSECRET\"\nscope = \"read\"\nstore = \"{url}\"\n{tls}"
    )
}

/// The server's `rediss://` URL with the password left to the environment.
fn url(redis: &TlsRedis) -> String {
    format!("rediss://tw:${{REDIS_PASSWORD}}@localhost:{}/0", redis.port)
}

fn assert_no_password(outputs: &[String]) {
    for output in outputs {
        assert!(
            !output.contains("pw-TOPSECRET"),
            "the password shows: {output}"
        );
    }
}

#[test]
fn a_profile_keeps_its_tokens_in_redis_over_tls() {
    let Some(oidc) = oidc::server() else { return };
    let pki = Pki::new("tokenwarden test CA");
    let Some(redis) = TlsRedis::start(&pki, &pki.issue(&["localhost"]), true) else {
        return;
    };
    // A server whose certificate (from the right CA) is for another name.
    let Some(misnamed) = TlsRedis::start(&pki, &pki.issue(&["redis.other.example"]), false) else {
        return;
    };
    let client = "redis_client_cert = \"tls/client.pem\"\nredis_client_key = \"tls/client.key\"\n";
    let config = [
        profile(
            &oidc.issuer,
            "tls",
            &url(&redis),
            &format!("redis_ca_file = \"tls/ca.pem\"\n{client}"),
        ),
        profile(
            &oidc.issuer,
            "stranger",
            &url(&redis),
            &format!("redis_ca_file = \"tls/other-ca.pem\"\n{client}"),
        ),
        profile(
            &oidc.issuer,
            "misnamed",
            &url(&misnamed),
            "redis_ca_file = \"tls/ca.pem\"\n",
        ),
    ]
    .concat();
    let home = Home::with_config(&config);
    let tls = home.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    let (cert, key) = pki.issue(&["tokenwarden-cli"]);
    std::fs::write(tls.join("ca.pem"), &pki.ca).unwrap();
    std::fs::write(tls.join("other-ca.pem"), Pki::new("another CA").ca).unwrap();
    std::fs::write(tls.join("client.pem"), cert).unwrap();
    std::fs::write(tls.join("client.key"), key).unwrap();
    let run = |args: &[&str]| {
        Run::checked(
            home.command(args)
                .env("REDIS_PASSWORD", "pw-TOPSECRET")
                .output()
                .unwrap(),
            args,
        )
    };

    let first = run(&["token", "-p", "tls"]);
    first.expect_code(0);
    assert!(!first.stdout().trim().is_empty(), "no token printed");
    let again = run(&["token", "-p", "tls"]);
    again.expect_code(0);
    assert_eq!(
        again.stdout(),
        first.stdout(),
        "the stored token, from Redis over TLS"
    );
    let status = run(&["status", "-p", "tls"]);
    status.expect_code(0);

    // The server's certificate from a CA the profile does not trust.
    let refused = run(&["token", "-p", "stranger"]);
    refused.expect_code(5);
    assert!(
        refused.stderr().contains(UNKNOWN_ISSUER),
        "{}",
        refused.stderr()
    );
    assert!(refused.stderr().contains("tls_ca"), "{}", refused.stderr());
    assert!(refused.stdout().is_empty(), "{}", refused.stdout());

    // The right CA, a certificate for another name.
    let misnamed_run = run(&["token", "-p", "misnamed"]);
    misnamed_run.expect_code(5);
    let said = misnamed_run.stderr();
    assert!(
        said.contains(
            "invalid peer certificate: certificate not valid for name \"localhost\"; \
             certificate is only valid for DnsName(\"redis.other.example\")"
        ),
        "{said}"
    );
    assert!(!said.contains("UnknownIssuer"), "{said}");

    assert_no_password(&[
        first.stderr(),
        again.stderr(),
        refused.stderr(),
        misnamed_run.stderr(),
        status.stdout(),
        status.stderr(),
    ]);
}

/// A profile that names no CA trusts the platform's roots, which rustls-native-certs
/// (used by the redis crate's `tls-rustls`) reads from `SSL_CERT_FILE` when it is
/// set: given the test's CA there, the store works; without it, the same profile
/// is refused for an unknown issuer.
#[test]
fn a_profile_without_a_ca_file_trusts_the_platforms_roots() {
    let Some(oidc) = oidc::server() else { return };
    let pki = Pki::new("tokenwarden test CA");
    let Some(redis) = TlsRedis::start(&pki, &pki.issue(&["localhost"]), false) else {
        return;
    };
    let home = Home::with_config(&profile(&oidc.issuer, "roots", &url(&redis), ""));
    let roots = home.path().join("roots.pem");
    std::fs::write(&roots, &pki.ca).unwrap();
    let run = |args: &[&str], roots: Option<&std::path::Path>| {
        let mut command = home.command(args);
        command.env("REDIS_PASSWORD", "pw-TOPSECRET");
        if let Some(roots) = roots {
            command.env("SSL_CERT_FILE", roots);
        }
        Run::checked(command.output().unwrap(), args)
    };

    // Without the CA among the platform's roots: refused, nothing stored.
    let refused = run(&["token", "-p", "roots"], None);
    refused.expect_code(5);
    assert!(
        refused.stderr().contains(UNKNOWN_ISSUER),
        "{}",
        refused.stderr()
    );

    // With it (`SSL_CERT_FILE`): the token is stored, then read back by the
    // next process.
    let first = run(&["token", "-p", "roots"], Some(&roots));
    first.expect_code(0);
    assert!(!first.stdout().trim().is_empty(), "no token printed");
    let again = run(&["token", "-p", "roots"], Some(&roots));
    again.expect_code(0);
    assert_eq!(
        again.stdout(),
        first.stdout(),
        "the stored token, from Redis over TLS through the platform's roots"
    );
    let status = run(&["status", "-p", "roots"], Some(&roots));
    status.expect_code(0);

    assert_no_password(&[
        refused.stderr(),
        first.stderr(),
        again.stderr(),
        status.stdout(),
        status.stderr(),
    ]);
}
