//! `tokenwarden token` through the agent without the rest of the command:
//! no runtime, no configuration parsed, no manager; one blocking round trip on
//! the socket, the token printed. Anything but a token from the agent (no
//! agent, an error) leaves the command to its usual path, which asks again and
//! reports as it does.

use super::{client, socket, Answer, Request};
use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

/// Prints the profile's token from the agent; `false` where it could not.
pub fn token(config_flag: Option<&Path>, profile: Option<&str>) -> bool {
    if !client::enabled() {
        return false;
    }
    // The profile as this command resolves it: the agent answers only for the same.
    let config = crate::config::Config::path(config_flag)
        .and_then(|path| crate::config::Config::load(&path))
        .and_then(|config| config.profile(&crate::config::Config::chosen_name(profile)));
    let Ok(profile) = config else {
        return false; // the usual path says what is wrong
    };
    let request = Request::about("token", &profile);
    let Some(answer) = ask(&request) else {
        return false;
    };
    let Some(token) = answer.access_token.filter(|_| answer.ok) else {
        return false;
    };
    writeln!(std::io::stdout().lock(), "{token}").is_ok()
}

/// The round trip, blocking; `None` unless an agent of this user answers.
fn ask(request: &Request) -> Option<Answer> {
    let path = socket::path();
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if meta.uid() != socket::uid() || !path.parent().is_some_and(socket::private) {
        return None; // the usual path says why
    }
    let stream = std::os::unix::net::UnixStream::connect(&path).ok()?;
    let peer = rustix::net::sockopt::socket_peercred(&stream).ok()?;
    if peer.uid.as_raw() != socket::uid() {
        return None;
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(40)))
        .ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    let mut line = serde_json::to_vec(request).ok()?;
    line.push(b'\n');
    (&stream).write_all(&line).ok()?;
    let mut answer = String::new();
    let limited = std::io::Read::take(&stream, 1 << 20);
    std::io::BufReader::new(limited)
        .read_line(&mut answer)
        .ok()?;
    serde_json::from_str(&answer).ok()
}
