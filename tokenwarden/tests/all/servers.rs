//! The real authorization servers the conformance scenarios (`oauth2_server.rs`)
//! run against, each from a package registry and of its own lineage, and what
//! each supports. A scenario runs on every server that supports what it needs;
//! adding a server is one more entry in [`all`], not a copy of the scenarios.
//!
//! - oidc-provider (Node.js, npm; a certified OpenID provider): `oidc.rs`.
//! - django-oauth-toolkit (Python, PyPI; on oauthlib): `dot.rs`.
//!
//! A server that cannot run here is skipped with the reason, except under `CI`,
//! where that fails the test.

use crate::oidc;
use std::collections::HashMap;
use std::process::Child;
use std::sync::{Mutex, OnceLock};

/// What a server supports, where servers differ.
#[derive(Debug, Clone, Copy, Default)]
pub struct Supports {
    /// `private_key_jwt` client authentication (with [`Server::keys`]).
    pub private_key_jwt: bool,
    /// The resource owner password grant (client `pw`, user [`Server::user`]).
    pub password: bool,
    /// The device authorization grant (client [`Server::device_client`]).
    pub device: bool,
    /// An ID token from the device flow.
    pub device_id_token: bool,
    /// Rotated refresh tokens, and the spent one refused afterwards.
    pub rotation: bool,
}

/// A running server, as the scenarios see it.
#[derive(Debug)]
pub struct Server {
    pub name: &'static str,
    pub issuer: String,
    pub token_url: String,
    /// The RFC 7662 endpoint, where a scenario checks a token's state.
    pub introspection_url: String,
    /// The device authorization endpoint, where the metadata does not name it.
    pub device_authorization_url: Option<String>,
    /// The client of the device flow, and whether it is confidential (secret
    /// `<id>-TOPSECRET`, sent with Basic authentication).
    pub device_client: (&'static str, bool),
    /// PKCS#8 PEM private keys of the `cc-jwt` client, by algorithm.
    pub keys: HashMap<String, String>,
    /// The user who signs in (browser, device, password): login and password.
    pub user: (String, String),
    /// The scope a person's sign-in asks for: an ID token, a refresh token, `read`.
    pub sign_in_scope: &'static str,
    /// A scope `cc-basic` may not have: asking for it is `invalid_scope`.
    pub refused_scope: &'static str,
    pub supports: Supports,
    /// The server's process, where this entry started it; it ends with the tests.
    pub _process: Option<Mutex<Child>>,
}

/// How a server is started: it, or why it cannot run here.
type Start = fn() -> Result<Server, String>;

/// Every server that runs here, started once per test binary.
pub fn all() -> Vec<&'static Server> {
    static ALL: OnceLock<Vec<Server>> = OnceLock::new();
    let starters: [(&str, Start); 2] = [
        ("oidc-provider", oidc_provider),
        ("django-oauth-toolkit", crate::dot::start),
    ];
    ALL.get_or_init(|| {
        starters
            .into_iter()
            .filter_map(|(name, start)| match start() {
                Ok(server) => Some(server),
                Err(reason) if std::env::var_os("CI").is_some() => {
                    panic!("{name} is required under CI: {reason}")
                }
                Err(reason) => {
                    eprintln!("skipped on {name}: {reason}");
                    None
                }
            })
            .collect()
    })
    .iter()
    .collect()
}

/// The servers that support what `needs` says.
pub fn supporting(needs: impl Fn(&Supports) -> bool) -> Vec<&'static Server> {
    all().into_iter().filter(|s| needs(&s.supports)).collect()
}

fn oidc_provider() -> Result<Server, String> {
    let oidc = oidc::server().ok_or("oidc-provider could not start")?;
    Ok(Server {
        name: "oidc-provider",
        issuer: oidc.issuer.clone(),
        token_url: oidc.token_url(),
        introspection_url: format!("{}/token/introspection", oidc.issuer),
        device_authorization_url: None,
        device_client: ("app", true),
        keys: oidc.keys.clone(),
        user: ("alice".into(), "any password".into()),
        // Refresh tokens only for offline_access (OpenID Core §11).
        sign_in_scope: "openid offline_access read",
        // (It grants a scope it does not know as asked.)
        refused_scope: "offline_access",
        supports: Supports {
            private_key_jwt: true,
            password: false,
            device: true,
            device_id_token: true,
            rotation: true,
        },
        // Started and kept by `oidc.rs`, which other crates' tests share.
        _process: None,
    })
}
