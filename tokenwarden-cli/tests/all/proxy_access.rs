//! Who may use `tokenwarden proxy`, and where it sends tokens (issue 13, items
//! 1 to 3): the upstream's origin rules are `curl`'s; web pages of other sites and
//! DNS-rebinding hosts get 403; request smuggling shapes get 400. Each through the
//! running binary, with a real client (reqwest, or raw TCP for what reqwest will
//! not send).

use crate::common::*;
use crate::oidc;
use crate::proxy::{api_home, config, Proxy};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A plain-http upstream that is not loopback: the proxy refuses to start, with
/// the error `tokenwarden curl` gives for the same profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_refuses_a_plain_http_upstream_as_curl_does() {
    let Some(oidc) = oidc::server() else { return };
    let home = Home::with_config(&config(
        &oidc.issuer,
        "api",
        "cc-basic-TOPSECRET",
        "http://0.0.0.0:9/api",
    ));
    let curl = home.run(&["curl", "-p", "api", "/x"]);
    let proxy = home.run(&["proxy", "-p", "api", "--listen", "127.0.0.1:0"]);
    proxy.expect_code(curl.code());
    assert_eq!(curl.code(), 2, "{}", curl.stderr());
    let first_line = |text: String| text.lines().next().unwrap_or_default().to_owned();
    assert_eq!(first_line(proxy.stderr()), first_line(curl.stderr()));
    assert!(proxy.stderr().contains("plain http"), "{}", proxy.stderr());
}

/// Requests that a browser makes (a page of another site, a page the proxy
/// served, a typed URL, or through DNS rebinding) get 403 and never reach the
/// upstream; tools pass, and so do the pages of an origin allowed with
/// `--allow-origin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_pages_of_other_sites_cannot_use_the_proxy() {
    let Some(oidc) = oidc::server() else { return };
    let (api, _, home) = api_home(oidc, "memory").await;
    let proxy = Proxy::start_with(
        &home,
        "api",
        &[
            "--allow-origin",
            "http://localhost:3000",
            "--allow-host",
            "api.test",
        ],
    );
    let client = reqwest::Client::new();
    let url = format!("{}/hello", proxy.url);
    let port = proxy.url.rsplit(':').next().unwrap().to_owned();
    let own = proxy.url.clone();
    let refused: [&[(&str, &str)]; 7] = [
        &[("origin", "https://evil.example")],
        &[("origin", "null")],
        &[("sec-fetch-site", "cross-site")],
        &[
            ("sec-fetch-site", "same-site"),
            ("origin", "http://localhost:4000"),
        ],
        // A typed URL, or a link opened from another program: still a browser.
        &[("sec-fetch-site", "none")],
        // A page the proxy served (the upstream's) calling back: refused too.
        &[("sec-fetch-site", "same-origin"), ("origin", &own)],
        &[("host", "evil.example")],
    ];
    for headers in refused {
        let mut request = client.post(&url).body("x");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{headers:?}");
        let body = response.text().await.unwrap();
        assert!(body.starts_with("tokenwarden proxy: "), "{body}");
    }
    // DNS rebinding: the attacker's name, on the proxy's own port.
    let rebound = format!("evil.example:{port}");
    let response = client
        .get(&url)
        .header("host", &rebound)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        api.seen("/hello").is_empty(),
        "nothing reached the upstream"
    );

    let allowed: [&[(&str, &str)]; 3] = [
        &[],
        &[
            ("sec-fetch-site", "same-site"),
            ("origin", "http://localhost:3000"),
        ],
        &[("host", &format!("api.test:{port}"))],
    ];
    for headers in allowed {
        let mut request = client.get(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        assert_eq!(request.send().await.unwrap().status(), 200, "{headers:?}");
    }
    assert_eq!(api.seen("/hello").len(), 3);
    let (_, stderr) = proxy.stop();
    assert!(stderr.contains("refused a request"), "{stderr}");
    assert!(!stderr.contains(MARKER), "{stderr}");
}

/// Sends `shape` (headers and body) as a POST to `/smuggle`; the proxy's answer,
/// and whether it closed the connection after it.
async fn send_raw(address: &str, shape: &str) -> (String, bool) {
    let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("POST /smuggle HTTP/1.1\r\nHost: {address}\r\n{shape}");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut answer),
    )
    .await;
    (String::from_utf8_lossy(&answer).into_owned(), read.is_ok())
}

/// Request smuggling shapes (RFC 9112 §6.1, §6.3): never forwarded with two
/// framings. Two `Content-Length`s that differ, or a `Transfer-Encoding` that does
/// not end in `chunked`, are refused with 400. `Transfer-Encoding` with
/// `Content-Length` is read by `Transfer-Encoding` alone, as RFC 9112 §6.1 allows,
/// forwarded with one framing, and the connection is closed after the answer (as
/// it requires), so that nothing left over is read as another request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_request_framing_is_never_forwarded_ambiguously() {
    let Some(oidc) = oidc::server() else { return };
    let (api, _, home) = api_home(oidc, "memory").await;
    let proxy = Proxy::start(&home, "api");
    let address = &proxy.url["http://".len()..];
    let refused = [
        "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "Content-Length: 5, 6\r\n\r\nhello!",
        "Transfer-Encoding: gzip\r\n\r\nhello",
        "Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    for shape in refused {
        let (answer, _) = send_raw(address, shape).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{shape:?}: {answer}");
    }
    assert!(api.seen("/smuggle").is_empty(), "nothing was forwarded");

    // The smuggler's classic: the proxy reads the chunked body ("hello"), the
    // 5 bytes Content-Length would give ("5\r\nhe") never count, and what follows
    // the chunked body is not read as a second request.
    let both = [
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /second HTTP/1.1\r\n\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /second HTTP/1.1\r\n\r\n",
    ];
    for shape in both {
        let (answer, closed) = send_raw(address, shape).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{shape:?}: {answer}");
        assert!(
            closed,
            "{shape:?}: the connection was closed after the answer"
        );
        assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
    }
    let seen = api.seen("/smuggle");
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|s| s.body == "hello"),
        "the chunked body, whole"
    );
    assert!(api.seen("/second").is_empty(), "no smuggled second request");
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) end at the proxy: `Connection`, the
/// headers it names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer` (`Upgrade` too: a unit test in
/// `forward.rs`); the others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded() {
    let Some(oidc) = oidc::server() else { return };
    let (api, _, home) = api_home(oidc, "memory").await;
    let proxy = Proxy::start(&home, "api");
    let address = &proxy.url["http://".len()..];
    let shape = "Connection: close, X-Hop-Named\r\nX-Hop-Named: 1\r\n\
                 Keep-Alive: timeout=5\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n\
                 Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Sum\r\n\
                 X-End-To-End: kept\r\nContent-Length: 5\r\n\r\nhello";
    let (answer, _) = send_raw(address, shape).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = api.seen("/smuggle");
    assert_eq!(seen.len(), 1);
    let names = &seen[0].names;
    for hop in [
        "connection",
        "x-hop-named",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
    ] {
        assert!(
            !names.iter().any(|n| n == hop),
            "{hop} forwarded: {names:?}"
        );
    }
    assert!(names.iter().any(|n| n == "x-end-to-end"), "{names:?}");
    assert!(seen[0].authorization.starts_with("Bearer "));
    assert_eq!(seen[0].body, "hello");
}

/// `--unix-socket`: a socket only this user can connect to (0600), which no
/// web page reaches; any `Host` passes, other sites' pages still do not.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_listens_on_a_private_unix_socket() {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(oidc) = oidc::server() else { return };
    let (api, _, home) = api_home(oidc, "memory").await;
    let socket = home.path().join("proxy.sock");
    let mut child = home
        .command(&[
            "proxy",
            "-p",
            "api",
            "--unix-socket",
            socket.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only this user may connect");
    let ask = |extra: &'static str| {
        let socket = socket.clone();
        async move {
            let mut unix = tokio::net::UnixStream::connect(&socket).await.unwrap();
            let request = format!(
                "GET /hello HTTP/1.1\r\nHost: anything\r\n{extra}Connection: close\r\n\r\n"
            );
            unix.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            unix.read_to_end(&mut answer).await.unwrap();
            String::from_utf8_lossy(&answer).into_owned()
        }
    };
    assert!(ask("").await.starts_with("HTTP/1.1 200"));
    assert!(api.seen("/hello")[0].authorization.starts_with("Bearer "));
    let cross_site = ask("Origin: https://evil.example\r\n").await;
    assert!(cross_site.starts_with("HTTP/1.1 403"), "{cross_site}");
    assert_eq!(api.seen("/hello").len(), 1);
    let _ = child.kill();
    let _ = child.wait();
}
