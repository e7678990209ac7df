//! Who may use the proxy: only clients on this machine that name it by its own
//! address, never a web browser unless told.
//!
//! A browser lets any page send requests to `127.0.0.1:PORT`; without these checks
//! such a request would leave with the user's token. Refused with 403:
//!
//! - **Browser requests** (the proxy is for tools): a request with an `Origin`
//!   that is not one allowed with `--allow-origin`, or with fetch metadata
//!   (`Sec-Fetch-Site`, which browsers send to loopback addresses with every
//!   request, even an `<img>` or a typed URL) without such an `Origin`. Not even
//!   the proxy's own origin is trusted: every page it serves is the upstream's,
//!   whose scripts would otherwise run with the user's token. Tools (curl, SDKs)
//!   send neither header and pass.
//! - **DNS rebinding** (a page on `evil.example`, whose name the attacker then
//!   points at 127.0.0.1, so that its requests count as same-origin): the request's
//!   `Host` names `evil.example`. Only `Host` values that name the listening
//!   address (`127.0.0.1:PORT`, `localhost:PORT` for a loopback address,
//!   `[::1]:PORT`; never `0.0.0.0`) or a name allowed with `--allow-host` pass.
//!
//! Browsers send no fetch metadata to an address that is not loopback (a LAN
//! address the proxy was told to listen on): there, a page's blind `GET` cannot be
//! told from a tool's. Keep the proxy on loopback, or on a Unix socket.

use http::header::{HeaderMap, HOST, ORIGIN};
use http::HeaderName;
use std::net::SocketAddr;

static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// The `Host` values and browser origins the proxy answers.
#[derive(Debug, Clone)]
pub(crate) struct Callers {
    /// Lowercase `host:port` (and bare `host` where the port is 80); empty: any
    /// (a Unix socket).
    hosts: Vec<String>,
    /// Lowercase origins (`http://host:port`) whose pages may use the proxy.
    origins: Vec<String>,
}

impl Callers {
    /// The callers of a proxy listening on `local`, plus the names in
    /// `allowed_hosts` (`name` or `name:port`) and the pages of `allowed_origins`.
    pub(crate) fn new(
        local: SocketAddr,
        allowed_hosts: &[String],
        allowed_origins: &[String],
    ) -> Self {
        let port = local.port();
        let mut names = Vec::new();
        // `0.0.0.0` is no host of its own: a page that reaches it cannot be told
        // from a page on a rebound name.
        if !local.ip().is_unspecified() {
            names.push(match local {
                SocketAddr::V4(v4) => v4.ip().to_string(),
                SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
            });
        }
        if local.ip().is_loopback() || local.ip().is_unspecified() {
            names.push("localhost".into());
            names.push("127.0.0.1".into());
        }
        names.sort();
        names.dedup();
        names.extend(allowed_hosts.iter().map(|h| h.to_ascii_lowercase()));
        let mut hosts = Vec::new();
        for name in names {
            if has_port(&name) {
                hosts.push(name);
                continue;
            }
            hosts.push(format!("{name}:{port}"));
            if port == 80 {
                hosts.push(name);
            }
        }
        // Only the pages allowed: not even the proxy's own origin, whose pages
        // are the upstream's.
        let origins = allowed_origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
            .collect();
        Self { hosts, origins }
    }

    /// The callers of a proxy on a Unix socket: any `Host` (no browser reaches a
    /// socket file, so no rebinding either), and the pages of `allowed_origins`.
    pub(crate) fn unix(allowed_origins: &[String]) -> Self {
        let mut callers = Self::new(
            "127.0.0.1:0".parse().expect("an address"),
            &[],
            allowed_origins,
        );
        callers.hosts.clear();
        callers
    }

    /// Why a request with `headers` may not use the proxy, if it may not.
    pub(crate) fn refuse(&self, headers: &HeaderMap) -> Option<String> {
        let host = match headers.get(HOST).map(|h| h.to_str()) {
            Some(Ok(host)) => host.to_ascii_lowercase(),
            _ if self.hosts.is_empty() => String::new(),
            _ => return Some("a request must name the proxy in its Host header".into()),
        };
        if !self.hosts.is_empty() && !self.hosts.contains(&host) {
            return Some(format!(
                "Host `{host}` is not this proxy's address; allow another name with --allow-host"
            ));
        }
        let origin = match headers.get(ORIGIN).map(|o| o.to_str()) {
            None => None,
            Some(Ok(origin)) => Some(origin.to_ascii_lowercase()),
            Some(Err(_)) => return Some("an Origin header that is not text".into()),
        };
        let allowed_origin = match &origin {
            Some(origin) if self.origins.contains(origin) => true,
            Some(origin) => {
                return Some(format!(
                    "requests from pages of `{origin}` are refused; allow them with --allow-origin"
                ))
            }
            None => false,
        };
        if headers.contains_key(&SEC_FETCH_SITE) && !allowed_origin {
            return Some(
                "requests from a browser are refused; allow a site's pages with --allow-origin"
                    .into(),
            );
        }
        None
    }
}

/// Whether `host` ends with a port (`name:8080`, `[::1]:8080`).
fn has_port(host: &str) -> bool {
    match host.rsplit_once(':') {
        Some((name, port)) => {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!name.starts_with('[') || name.ends_with(']'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hosts_that_name_the_listening_address_pass() {
        let callers = Callers::new(
            "127.0.0.1:8790".parse().unwrap(),
            &["api.local".into()],
            &[],
        );
        for host in [
            "127.0.0.1:8790",
            "localhost:8790",
            "LOCALHOST:8790",
            "api.local:8790",
        ] {
            assert_eq!(callers.refuse(&headers(&[("host", host)])), None, "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8790",
            "127.0.0.1:8791",
            "127.0.0.1",
        ] {
            assert!(
                callers.refuse(&headers(&[("host", host)])).is_some(),
                "{host}"
            );
        }
        assert!(callers.refuse(&headers(&[])).is_some(), "no Host");
        let v6 = Callers::new("[::1]:80".parse().unwrap(), &[], &[]);
        for host in ["[::1]:80", "[::1]", "localhost"] {
            assert_eq!(v6.refuse(&headers(&[("host", host)])), None, "{host}");
        }
        let any = Callers::new("0.0.0.0:8790".parse().unwrap(), &[], &[]);
        assert!(
            any.refuse(&headers(&[("host", "0.0.0.0:8790")])).is_some(),
            "0.0.0.0 is no name"
        );
        assert_eq!(any.refuse(&headers(&[("host", "localhost:8790")])), None);
    }

    #[test]
    fn browser_requests_are_refused_unless_their_origin_is_allowed() {
        let callers = Callers::new(
            "127.0.0.1:8790".parse().unwrap(),
            &[],
            &["http://localhost:3000/".into()],
        );
        let host = ("host", "127.0.0.1:8790");
        let refused = [
            vec![host, ("origin", "https://evil.example")],
            vec![host, ("origin", "null")],
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
            vec![host, ("sec-fetch-site", "none")],
            // The proxy's own origin: its pages are the upstream's.
            vec![
                host,
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://127.0.0.1:8790"),
            ],
        ];
        for request in refused {
            assert!(callers.refuse(&headers(&request)).is_some(), "{request:?}");
        }
        let passed = [
            vec![host],
            vec![
                host,
                ("sec-fetch-site", "same-site"),
                ("origin", "http://localhost:3000"),
            ],
            vec![
                host,
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://localhost:3000"),
            ],
        ];
        for request in passed {
            assert_eq!(callers.refuse(&headers(&request)), None, "{request:?}");
        }
    }
}
