//! The proxy's checks of who sends a request (`Host`, `Origin`,
//! `Sec-Fetch-Site`), on headers from the input: one `name: value` per line. The
//! CLI's module is mounted here; it has no library to link.
#![no_main]

#[path = "../../tokenwarden-cli/src/proxy/guard.rs"]
mod guard;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut headers = http::HeaderMap::new();
    for line in input.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    let callers = guard::Callers::new(
        "127.0.0.1:8790".parse().unwrap(),
        &["api.local".to_owned()],
        &["http://localhost:3000".to_owned()],
    );
    // On a Unix socket any Host passes; only a browser page not allowed is refused.
    let unix = guard::Callers::unix(&["http://localhost:3000".to_owned()]);
    if unix.refuse(&headers).is_some() {
        assert!(
            headers.contains_key(http::header::ORIGIN) || headers.contains_key("sec-fetch-site")
        );
    }
    let refused = callers.refuse(&headers);
    // What passes names the proxy, and no other site's page sent it.
    if refused.is_none() {
        let host = headers[http::header::HOST]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            ["127.0.0.1:8790", "localhost:8790", "api.local:8790"].contains(&host.as_str()),
            "{host}"
        );
        if let Some(site) = headers.get("sec-fetch-site") {
            if matches!(site.to_str(), Ok("cross-site" | "same-site")) {
                assert!(headers.contains_key(http::header::ORIGIN));
            }
        }
    }
});
