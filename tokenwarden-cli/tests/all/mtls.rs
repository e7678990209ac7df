//! Mutual TLS (RFC 8705) through the CLI: a profile with `client_auth =
//! "tls_client_auth"`, `client_cert`, `client_key` and `ca_file` gets a token
//! bound to its certificate at the provider's mutual-TLS listener, and `curl`
//! and the proxy present the same certificate to the API, which takes the token
//! only so.

use crate::common::*;
use crate::mtls_resource::{self as resource, Checks};
use crate::oidc;
use crate::proxy::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_the_proxy_present_the_profiles_certificate() {
    let Some(oidc) = oidc::server() else { return };
    let checks = Checks::new(&oidc.issuer);
    let app = axum::Router::new().route("/v1/items", axum::routing::get(|| async { "items" }));
    let base = resource::serve(&oidc.mtls.pki, checks.clone(), app).await;
    let home = Home::with_config(&format!(
        "[profiles.api]\nissuer = \"{}\"\ngrant = \"client_credentials\"\nclient_id = \"mtls-pki\"\n\
         client_auth = \"tls_client_auth\"\nclient_cert = \"client.pem\"\nclient_key = \"client.key\"\n\
         ca_file = \"ca.pem\"\nscope = \"read\"\nstore = \"file\"\nbase_url = \"{base}\"\n",
        oidc.issuer
    ));
    let (cert, key) = &oidc.mtls.pki_client;
    for (name, pem) in [
        ("client.pem", cert),
        ("client.key", key),
        ("ca.pem", &oidc.mtls.pki.ca),
    ] {
        std::fs::write(home.path().join(name), pem).unwrap();
    }
    let curl = home.run(&["curl", "-p", "api", &format!("{base}/v1/items")]);
    curl.expect_code(0);
    assert_eq!(curl.stdout(), "items", "{:?}", checks.refusals());

    let proxy = Proxy::start(&home, "api");
    let answer = reqwest::get(format!("{}/v1/items", proxy.url))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{:?}", checks.refusals());
    let (_, log) = proxy.stop();
    assert!(!log.contains("PRIVATE KEY"), "{log}");
    assert_eq!(checks.served(), 2);

    // Half a certificate is an error that says what to add.
    std::fs::write(
        home.config_path(),
        format!(
            "[profiles.api]\nissuer = \"{}\"\nclient_id = \"mtls-pki\"\n\
             client_auth = \"tls_client_auth\"\nclient_cert = \"client.pem\"\n",
            oidc.issuer
        ),
    )
    .unwrap();
    let half = home.run(&["token", "-p", "api"]);
    assert_ne!(half.code(), 0);
    assert!(
        half.stderr()
            .contains("client_cert and client_key go together"),
        "{}",
        half.stderr()
    );
}
