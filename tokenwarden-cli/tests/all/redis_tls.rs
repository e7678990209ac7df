//! A profile on Redis over TLS (`rediss://`): the CA and client certificate from
//! files named in the profile, the ACL password from the environment; a
//! certificate that does not check out is a store error (exit 5) that says what
//! to check, without the password.

use crate::common::*;
use crate::oidc;
use crate::tls_redis::{Pki, TlsRedis};

#[test]
fn a_profile_keeps_its_tokens_in_redis_over_tls() {
    let Some(oidc) = oidc::server() else { return };
    let pki = Pki::new("tokenwarden test CA");
    let Some(redis) = TlsRedis::start(&pki, &pki.issue(&["localhost"]), true) else {
        return;
    };
    let url = format!("rediss://tw:${{REDIS_PASSWORD}}@localhost:{}/0", redis.port);
    let profile = |name: &str, ca: &str| {
        format!(
            "[profiles.{name}]\nissuer = \"{}\"\nclient_id = \"cc-basic\"\nclient_secret = \"cc-basic-TOPSECRET\"\n\
             scope = \"read\"\nstore = \"{url}\"\nredis_ca_file = \"{ca}\"\n\
             redis_client_cert = \"tls/client.pem\"\nredis_client_key = \"tls/client.key\"\n",
            oidc.issuer
        )
    };
    let home = Home::with_config(
        &(profile("tls", "tls/ca.pem") + &profile("stranger", "tls/other-ca.pem")),
    );
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
    let again = run(&["token", "-p", "tls"]);
    assert_eq!(
        again.stdout(),
        first.stdout(),
        "the stored token, from Redis over TLS"
    );
    let status = run(&["status", "-p", "tls"]);
    status.expect_code(0);

    let refused = run(&["token", "-p", "stranger"]);
    refused.expect_code(5);
    assert!(
        refused.stderr().contains("certificate"),
        "{}",
        refused.stderr()
    );
    for output in [first.stderr(), refused.stderr(), status.stdout()] {
        assert!(
            !output.contains("pw-TOPSECRET"),
            "the password shows: {output}"
        );
    }
}
