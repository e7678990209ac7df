//! ID tokens from a server of the tests' own (issue 14, item 5): signed with a
//! key it publishes (JWKS), and then altered one way at a time. A new sign-in
//! whose ID token does not validate is refused; one that does keeps it.

use crate::common::*;
use base64::Engine as _;
use std::sync::{Arc, Mutex};
use tokenwarden::source::oauth2::OAuth2Client;
use tokenwarden::{ErrorKind, TokenSource};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// An issuer with an Ed25519 signing key; its token endpoint answers with the
/// ID token set last.
struct Issuer {
    server: MockServer,
    seed: [u8; 32],
    id_token: Arc<Mutex<String>>,
    clock: tokenwarden::ManualClock,
}

impl Issuer {
    async fn start() -> Self {
        let server = MockServer::start().await;
        let seed = random_seed();
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public);
        let uri = server.uri();
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "issuer": uri,
                "authorization_endpoint": format!("{uri}/authorize"),
                "token_endpoint": format!("{uri}/token"),
                "jwks_uri": format!("{uri}/jwks"),
            })))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA", "use": "sig"}],
            })))
            .mount(&server)
            .await;
        let id_token = Arc::new(Mutex::new(String::new()));
        struct Answer(Arc<Mutex<String>>);
        impl wiremock::Respond for Answer {
            fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
                ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "access_token": format!("{MARKER}-at"),
                    "token_type": "Bearer",
                    "expires_in": 600,
                    "id_token": *self.0.lock().unwrap(),
                }))
            }
        }
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(Answer(id_token.clone()))
            .mount(&server)
            .await;
        Self {
            server,
            seed,
            id_token,
            clock: clock(),
        }
    }

    /// An ID token signed with `seed`, with the usual claims changed by `edit`.
    fn signed(&self, seed: &[u8; 32], edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let now = tokenwarden::Clock::now(&self.clock)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = serde_json::json!({
            "iss": self.server.uri(),
            "sub": "alice",
            "aud": "app",
            "iat": now,
            "exp": now + 600,
        });
        edit(&mut claims);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some("k1".into());
        let key = jsonwebtoken::EncodingKey::from_ed_pem(ed25519_pem(seed).as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    async fn fetch_with(&self, id_token: String) -> tokenwarden::Result<tokenwarden::Token> {
        *self.id_token.lock().unwrap() = id_token;
        let client = OAuth2Client::builder()
            .issuer(self.server.uri())
            .client_id("app")
            .clock(self.clock.clone())
            .build()
            .unwrap();
        client.client_credentials().scope("openid").fetch().await
    }
}

#[tokio::test]
async fn an_id_token_is_validated_before_the_token_is_stored() {
    let _h = harness();
    let issuer = Issuer::start().await;
    let good = issuer.signed(&issuer.seed, |_| {});
    let token = issuer.fetch_with(good.clone()).await.unwrap();
    assert_eq!(token.id_token.unwrap().secret(), good, "kept, validated");

    let other_key = random_seed();
    let bad = [
        ("not-a-jwt".to_owned(), "not a JWT"),
        (issuer.signed(&other_key, |_| {}), "signature"),
        (
            issuer.signed(&issuer.seed, |c| c["iss"] = "https://evil.example".into()),
            "`iss`",
        ),
        (
            issuer.signed(&issuer.seed, |c| c["aud"] = "another-app".into()),
            "`aud`",
        ),
        (
            issuer.signed(&issuer.seed, |c| {
                c["aud"] = serde_json::json!(["app", "other"])
            }),
            "no `azp`",
        ),
        (
            issuer.signed(&issuer.seed, |c| c["exp"] = 1_000.into()),
            "expired",
        ),
        (
            issuer.signed(&issuer.seed, |c| c["iat"] = u64::MAX.into()),
            "future",
        ),
    ];
    for (id_token, why) in bad {
        let error = issuer.fetch_with(id_token).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidResponse, "{error}");
        let said = error.to_string();
        assert!(
            said.contains("ID token") && said.contains(why),
            "{why}: {said}"
        );
        assert!(!said.contains(MARKER), "{said}");
    }
}

/// A browser sign-in with `openid` sends a nonce, and an ID token with another
/// (one replayed from an earlier sign-in) is refused; with its own, accepted.
#[tokio::test]
async fn a_browser_sign_in_checks_its_nonce() {
    let _h = harness();
    let issuer = Arc::new(Issuer::start().await);
    for replayed in [true, false] {
        let client = OAuth2Client::builder()
            .issuer(issuer.server.uri())
            .client_id("app")
            .clock(issuer.clock.clone())
            .build()
            .unwrap();
        let answered = Arc::new(Mutex::new(None));
        let source = client.authorization_code().scope("openid").on_open({
            let (issuer, answered) = (issuer.clone(), answered.clone());
            move |url| {
                let find = |key: &str| query_param(url, key);
                let nonce = if replayed {
                    "an-earlier-sign-ins".to_owned()
                } else {
                    find("nonce")
                };
                *issuer.id_token.lock().unwrap() =
                    issuer.signed(&issuer.seed, |c| c["nonce"] = nonce.into());
                let mut callback = url::Url::parse(&find("redirect_uri")).unwrap();
                callback
                    .query_pairs_mut()
                    .append_pair("code", "code")
                    .append_pair("state", &find("state"));
                *answered.lock().unwrap() = Some(tokio::spawn(reqwest::get(callback)));
            }
        });
        let outcome = source.fetch().await;
        let browser = answered.lock().unwrap().take().unwrap();
        let page = browser.await.unwrap().unwrap().text().await.unwrap();
        match replayed {
            true => {
                let error = outcome.unwrap_err().to_string();
                assert!(error.contains("`nonce`"), "{error}");
                assert!(page.contains("Sign-in failed"), "{page}");
            }
            false => {
                assert!(outcome.unwrap().id_token.is_some());
                assert!(page.contains("Signed in"), "{page}");
            }
        }
    }
}

/// A refreshed ID token must continue the sign-in (OpenID Core §12.2): the
/// same `iss` and `sub`. One naming another user is dropped, the refreshed
/// token kept (its refresh token may have rotated); the same user's is kept.
#[tokio::test]
async fn a_refreshed_id_token_for_another_user_is_dropped() {
    let _h = harness();
    let issuer = Issuer::start().await;
    let signed_in = issuer.fetch_with(issuer.signed(&issuer.seed, |_| {})).await;
    let signed_in = signed_in
        .unwrap()
        .with_refresh_token(format!("{MARKER}-rt"));
    let client = OAuth2Client::builder()
        .issuer(issuer.server.uri())
        .client_id("app")
        .clock(issuer.clock.clone())
        .build()
        .unwrap();
    let grant = client.client_credentials().scope("openid");
    // The issuer's metadata and keys, read once as a sign-in does.
    grant.fetch().await.unwrap();
    for (sub, kept) in [("mallory", false), ("alice", true)] {
        let id_token = issuer.signed(&issuer.seed, |c| c["sub"] = sub.into());
        *issuer.id_token.lock().unwrap() = id_token.clone();
        let refreshed = grant.refresh(&signed_in).await.unwrap();
        assert_eq!(refreshed.access_token.secret(), format!("{MARKER}-at"));
        assert_eq!(
            refreshed.id_token.map(|t| t.secret().to_owned()),
            kept.then_some(id_token),
            "{sub}"
        );
    }
    assert!(captured().contains("its `sub` is not the signed-in user's"));
}
