//! Tokens go only to allowed origins, and never across a redirect to another one.

use crate::clients::*;
use tokenwarden_reqwest::{AllowedOrigins, AuthClient};

#[tokio::test]
async fn another_origin_gets_no_token() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let client = client(&servers, manager(&servers.api));
    let absolute = format!("{}/capture", servers.other);
    assert_eq!(client.get(&absolute).send().await.unwrap().status(), 200);
    assert_eq!(
        client
            .get("redirect")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "captured"
    );
    assert_eq!(
        *servers.api.captured.lock().unwrap(),
        vec![None, None],
        "no Authorization arrived there"
    );
    assert_eq!(
        servers.api.logins.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the redirect's first leg had it"
    );
}

#[tokio::test]
async fn an_explicitly_allowed_origin_gets_the_token() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let origins = AllowedOrigins::of(&servers.base)
        .unwrap()
        .with(&servers.other)
        .unwrap();
    let client = AuthClient::builder()
        .base_url(&servers.base)
        .token_manager(manager(&servers.api))
        .allowed_origins(origins)
        .build()
        .unwrap();
    client
        .get(&format!("{}/capture", servers.other))
        .send()
        .await
        .unwrap();
    let captured = servers.api.captured.lock().unwrap().clone();
    assert!(captured[0]
        .as_deref()
        .is_some_and(|h| h.starts_with("Bearer ")));
}

#[tokio::test]
async fn plain_http_to_a_host_that_is_not_loopback_gets_no_token() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    // `api.example.test` resolves to a loopback server here, but by its name it
    // is a remote host: over http the token would cross a network in clear.
    let base = url::Url::parse(&servers.other).unwrap();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], base.port().unwrap()));
    let remote = format!("http://api.example.test:{}", address.port());
    let http = reqwest::Client::builder()
        .resolve("api.example.test", address)
        .build()
        .unwrap();
    let error = AuthClient::builder()
        .base_url(&remote)
        .token_manager(manager(&servers.api))
        .http_client(http.clone())
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("use https"), "{error}");

    // Through a client for the loopback origin, an absolute http URL to that
    // host goes out without the token.
    let client = AuthClient::builder()
        .base_url(&servers.base)
        .token_manager(manager(&servers.api))
        .http_client(http)
        .build()
        .unwrap();
    let response = client
        .get(&format!("{remote}/capture"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(*servers.api.captured.lock().unwrap(), vec![None]);
}

#[tokio::test]
async fn a_token_in_a_custom_header_does_not_follow_a_redirect_to_another_origin() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let custom = tokenwarden_reqwest::TokenPlacement::Header(
        reqwest::header::HeaderName::from_static("x-api-token"),
    );
    // reqwest's own policy would carry the custom header along: the default
    // client of an AuthClient with this placement stops at the redirect.
    let client = AuthClient::builder()
        .base_url(&servers.base)
        .token_manager(manager(&servers.api))
        .placement(custom)
        .build()
        .unwrap();
    let response = client.get("redirect").send().await.unwrap();
    assert_eq!(response.status(), 307, "the redirect is handed back");
    assert!(
        servers.api.captured.lock().unwrap().is_empty(),
        "nothing reached the other origin"
    );

    // Followed by hand, the request to the other origin has no token either.
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(client.get(&location).send().await.unwrap().status(), 200);
    assert_eq!(*servers.api.captured.lock().unwrap(), vec![None]);
}

/// A 401 from another origin, reached through a redirect (the token did not go
/// there), leaves the token alone: no refresh, no replay, through `AuthClient`
/// and through the middleware.
#[tokio::test]
async fn a_rejection_from_another_origin_after_a_redirect_keeps_the_token() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let manager = manager(&servers.api);
    let client = client(&servers, manager.clone());
    let response = client.get("redirect-to-reject").send().await.unwrap();
    assert_eq!(
        response.status(),
        401,
        "the other origin's answer, handed back"
    );
    let middleware = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(tokenwarden_reqwest::TokenMiddleware::new(
            manager.clone(),
            AllowedOrigins::of(&servers.base).unwrap(),
        ))
        .build();
    let response = middleware
        .get(format!("{}redirect-to-reject", servers.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        servers.api.logins.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one login: the token was never invalidated"
    );
    assert_eq!(manager.stats().refreshes + manager.stats().fetches, 1);
}

/// A redirect chain that leaves the token's origin and comes back (an SSO round
/// trip) is not followed back by `AuthClient`'s client: the request back would
/// carry no token, and its 401 would cost a refresh. The 3xx is handed back.
#[tokio::test]
async fn a_round_trip_through_another_origin_costs_no_refresh() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let manager = manager(&servers.api);
    let client = client(&servers, manager.clone());
    let response = client.get("round-trip").send().await.unwrap();
    assert_eq!(response.status(), 307, "the way back, handed to the caller");
    assert!(
        response.url().as_str().ends_with("/back"),
        "{}",
        response.url()
    );
    assert_eq!(
        servers.api.logins.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one login: the token was never invalidated"
    );
}

/// Through a reqwest client of the caller's, whose hops the middleware cannot
/// see, a 401 after any redirect leaves the token alone: the request that got it
/// may have carried none (A → B → A). One to the very URL sent still counts.
#[tokio::test]
async fn through_a_client_of_yours_only_an_answer_to_the_url_sent_rejects_the_token() {
    let _h = crate::leaks::harness();
    let servers = start().await;
    let manager = manager(&servers.api);
    let middleware = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(tokenwarden_reqwest::TokenMiddleware::new(
            manager.clone(),
            AllowedOrigins::of(&servers.base).unwrap(),
        ))
        .build();
    let response = middleware
        .get(format!("{}round-trip", servers.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        401,
        "A → B → A, followed by the caller's client"
    );
    let logins = || servers.api.logins.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(logins(), 1, "the token stays");
    servers.api.revoke_all();
    let response = middleware
        .get(format!("{}data", servers.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "refreshed and replayed");
    assert_eq!(logins(), 2);
}
