//! django-oauth-toolkit (Python, on oauthlib; from PyPI), started from
//! `tests/dot/` once per test binary: the second real server of the conformance
//! scenarios. `.ci/run` installs it into `tests/dot/.venv`; see its README for
//! what it supports and what it does its own way.

use crate::oidc::spawn_ready;
use crate::servers::{Server, Supports};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

pub fn start() -> Result<Server, String> {
    // From either crate of the workspace (the Redis tests use this server too).
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tokenwarden/tests/dot");
    let python = dir.join(".venv/bin/python");
    if !python.exists() {
        return Err(format!(
            "django-oauth-toolkit is not installed; run `python3 -m venv {0}/.venv && {0}/.venv/bin/pip install -r {0}/requirements.txt`",
            dir.display()
        ));
    }
    let mut command = Command::new(python);
    command.arg("server.py").current_dir(&dir);
    let (child, ready) = spawn_ready(command, "install Python 3.11 or later")?;
    let text = |key: &str| {
        ready[key]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no `{key}` in the server's ready line"))
    };
    Ok(Server {
        name: "django-oauth-toolkit",
        issuer: text("issuer")?,
        token_url: text("token_endpoint")?,
        introspection_url: text("introspection_endpoint")?,
        // Named in neither metadata document: configured, as a user would.
        device_authorization_url: Some(text("device_authorization_endpoint")?),
        // DOT gives each client one grant: the device flow has clients of its own.
        device_client: ("device-confidential", true),
        keys: Default::default(),
        user: (
            ready["user"]["login"]
                .as_str()
                .unwrap_or("alice")
                .to_owned(),
            ready["user"]["password"]
                .as_str()
                .ok_or("no user in the server's ready line")?
                .to_owned(),
        ),
        // Refresh tokens come without offline_access, which it does not know.
        sign_in_scope: "openid read",
        refused_scope: "offline_access",
        supports: Supports {
            private_key_jwt: false,
            password: true,
            device: true,
            // Its device client is not an OpenID one.
            device_id_token: false,
            rotation: true,
        },
        _process: Some(Mutex::new(child)),
    })
}
