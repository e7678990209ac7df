//! `tokenwarden proxy` against the real authorization server and a local resource
//! server: the token on every request, one replay after a 401, streamed uploads
//! and downloads, kept-alive connections, and the errors (502, 503, address in use).

use crate::common::*;
use crate::oidc;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{stream, StreamExt as _};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A request the resource server got.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) authorization: String,
    host: String,
    /// The body, whole up to 1 MiB; only its `length` beyond.
    pub(crate) body: Bytes,
    length: usize,
    /// The proxy's connection it came on.
    peer: SocketAddr,
    /// The names of the headers it carried, lower case.
    pub(crate) names: Vec<String>,
}

#[derive(Default)]
pub(crate) struct Api {
    seen: Mutex<Vec<Seen>>,
    /// The `/reject-once/*` paths that have rejected their first request.
    rejected: Mutex<HashSet<String>>,
}

impl Api {
    pub(crate) fn seen(&self, path: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.path == path).cloned().collect()
    }
}

/// FNV-1a, which both sides compute.
fn checksum(hash: u64, bytes: &[u8]) -> u64 {
    let step = |h: u64, b: &u8| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    bytes.iter().fold(hash, step)
}
const FNV: u64 = 0xcbf2_9ce4_8422_2325;

/// The `i`-th chunk of 64 KiB of a pattern that differs from chunk to chunk.
fn chunk(i: usize) -> Bytes {
    let byte = |j: usize| ((i * 7919 + j * 31 + j / 251) % 256) as u8;
    (0..65536).map(byte).collect::<Vec<_>>().into()
}

/// `n` chunks as a stream, and their checksum.
fn chunks(
    n: usize,
) -> (
    impl futures_util::Stream<Item = std::io::Result<Bytes>>,
    u64,
) {
    let sum = (0..n).fold(FNV, |sum, i| checksum(sum, &chunk(i)));
    (stream::iter((0..n).map(|i| Ok(chunk(i)))), sum)
}

/// The API under `/api`: `hello` answers `hello <query>`, `reject-once/*` rejects
/// its first request with a 401 then echoes bodies, `upload` answers `<length>
/// <checksum>` of a body read as it streams, `download/<n>` streams n chunks.
async fn api(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().trim_start_matches("/api").to_owned();
    let text = |name| {
        parts
            .headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap())
            .to_owned()
    };
    let (authorization, host) = (text(header::AUTHORIZATION), text(header::HOST));
    let (mut kept, mut length, mut sum) = (Vec::new(), 0, FNV);
    let mut body = body.into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        (length, sum) = (length + chunk.len(), checksum(sum, &chunk));
        if length <= 1 << 20 {
            kept.extend_from_slice(&chunk);
        }
    }
    let body = if length <= 1 << 20 {
        Bytes::from(kept)
    } else {
        Bytes::new()
    };
    let seen = Seen {
        path: path.clone(),
        authorization,
        host,
        body: body.clone(),
        length,
        peer,
        names: parts
            .headers
            .keys()
            .map(|n| n.as_str().to_owned())
            .collect(),
    };
    api.seen.lock().unwrap().push(seen);
    if let Some(n) = path.strip_prefix("/download/") {
        return Body::from_stream(chunks(n.parse().unwrap()).0).into_response();
    }
    if path.starts_with("/reject-once/") && api.rejected.lock().unwrap().insert(path.clone()) {
        let challenge = [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)];
        return (StatusCode::UNAUTHORIZED, challenge, "rejected").into_response();
    }
    match path.as_str() {
        "/hello" => format!("hello {}", parts.uri.query().unwrap_or_default()).into_response(),
        "/upload" => format!("{length} {sum:016x}").into_response(),
        _ => body.into_response(),
    }
}

/// Serves [`api`] on 127.0.0.1.
pub(crate) async fn resource_server(state: Arc<Api>) -> SocketAddr {
    let app = axum::Router::new().fallback(api).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

pub(crate) fn config(issuer: &str, profile: &str, secret: &str, base_url: &str) -> String {
    format!(
        "[profiles.{profile}]\nissuer = \"{issuer}\"\ngrant = \"client_credentials\"\n\
         client_id = \"cc-basic\"\nclient_secret = \"{secret}\"\nscope = \"read\"\n\
         store = \"memory\"\nbase_url = \"{base_url}\"\n"
    )
}

/// A resource server, and a home whose profile `api` forwards to it (tokens in
/// `store`).
pub(crate) async fn api_home(oidc: &oidc::Oidc, store: &str) -> (Arc<Api>, SocketAddr, Home) {
    let api = Arc::new(Api::default());
    let upstream = resource_server(api.clone()).await;
    let base_url = format!("http://{upstream}/api");
    let profile = config(&oidc.issuer, "api", "cc-basic-TOPSECRET", &base_url)
        .replace("store = \"memory\"", &format!("store = \"{store}\""));
    (api, upstream, Home::with_config(&profile))
}

/// A running `tokenwarden proxy` (with debug logs), killed when dropped.
pub(crate) struct Proxy {
    daemon: Daemon,
    pub(crate) url: String,
    /// Where `--metrics-listen` serves `/metrics` and `/healthz`, if given.
    pub(crate) metrics: Option<String>,
}

impl Proxy {
    pub(crate) fn start(home: &Home, profile: &str) -> Self {
        Self::start_with(home, profile, &[])
    }

    /// Started with more arguments.
    pub(crate) fn start_with(home: &Home, profile: &str, more: &[&str]) -> Self {
        let args = [&["proxy", "-p", profile, "--listen", "127.0.0.1:0"], more].concat();
        let mut command = home.command(&args);
        command.env("TOKENWARDEN_LOG", "tokenwarden=debug");
        let (daemon, line, before) = Daemon::start(command, "tokenwarden proxy: listening on ");
        let url = (line.strip_prefix("tokenwarden proxy: listening on "))
            .and_then(|rest| rest.split_once(", forwarding to "))
            .expect(&line)
            .0
            .to_owned();
        let metrics = (before.lines())
            .find_map(|l| l.strip_prefix("tokenwarden proxy: metrics on "))
            .and_then(|rest| rest.split_once("/metrics"))
            .map(|(url, _)| url.to_owned());
        Self {
            daemon,
            url,
            metrics,
        }
    }

    /// Stops it with SIGTERM: its exit code and all its stderr.
    pub(crate) fn stop(self) -> (Option<i32>, String) {
        self.daemon.signal("TERM");
        self.daemon.end()
    }
}

/// Two requests on one TCP connection: both answered, so the proxy kept it open.
async fn two_requests_on_one_connection(proxy: &str) -> Vec<String> {
    let mut tcp = tokio::net::TcpStream::connect(&proxy["http://".len()..])
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for query in ["a=1", "b=2"] {
        let host = &proxy["http://".len()..];
        let request = format!("GET /hello?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let length = head
            .split("content-length: ")
            .nth(1)
            .and_then(|l| l.lines().next());
        let mut body = vec![0; length.expect(&head).parse().unwrap()];
        tcp.read_exact(&mut body).await.unwrap();
        bodies.push(String::from_utf8(body).unwrap());
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_adds_tokens_replays_once_and_streams() {
    let Some(oidc) = oidc::server() else { return };
    let (api, upstream, home) = api_home(oidc, "memory").await;
    let proxy = Proxy::start(&home, "api");
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", proxy.url);
    let get = |path: &str| client.get(url(path)).send();

    // (1) The token replaces the client's own; path, query and Host are the upstream's.
    let hello = client
        .get(url("/hello?x=1&y=%20"))
        .bearer_auth("mine")
        .send()
        .await
        .unwrap();
    assert_eq!(hello.status(), 200);
    assert_eq!(hello.text().await.unwrap(), "hello x=1&y=%20");
    let first = api.seen("/hello").pop().unwrap();
    assert!(first.authorization.starts_with("Bearer ") && first.authorization.len() > 27);
    assert_eq!(first.host, upstream.to_string());

    // (2) A small body (whole or streamed), rejected once: replayed with a fresh token.
    let streamed = reqwest::Body::wrap_stream(chunks(3).0);
    for (name, body) in [
        ("small", reqwest::Body::from("a small body")),
        ("streamed", streamed),
    ] {
        let path = format!("/reject-once/{name}");
        let response = client.post(url(&path)).body(body).send().await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let echoed = response.bytes().await.unwrap();
        let seen = api.seen(&path);
        assert_eq!(seen.len(), 2, "{name}: rejected, then replayed once");
        assert_ne!(
            seen[0].authorization, seen[1].authorization,
            "{name}: a fresh token"
        );
        assert_eq!(seen[0].body, seen[1].body, "{name}: the same body twice");
        assert_eq!(seen[1].body, echoed);
    }
    assert_eq!(api.seen("/reject-once/small")[0].body, "a small body");
    assert_eq!(api.seen("/reject-once/streamed")[0].length, 3 * 65536);

    // (3) An 8 MiB streamed upload, and 2 MiB with a Content-Length, arrive whole.
    let (stream, sum) = chunks(128);
    let whole: Vec<u8> = (0..32).flat_map(|i| chunk(i).to_vec()).collect();
    let bodies = [
        (reqwest::Body::wrap_stream(stream), 128, sum),
        (whole.into(), 32, chunks(32).1),
    ];
    for (body, n, sum) in bodies {
        let upload = client.post(url("/upload")).body(body).send().await.unwrap();
        assert_eq!(upload.status(), 200);
        assert_eq!(
            upload.text().await.unwrap(),
            format!("{} {sum:016x}", n * 65536)
        );
    }

    // A large streamed body is not kept: its rejection comes back as it is, and the
    // next request carries a fresh token.
    let large = reqwest::Body::wrap_stream(chunks(32).0);
    let large = client
        .put(url("/reject-once/large"))
        .body(large)
        .send()
        .await
        .unwrap();
    assert_eq!(large.status(), 401);
    assert!(large.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    let rejected = api.seen("/reject-once/large");
    assert_eq!((rejected.len(), rejected[0].length), (1, 32 * 65536));
    assert_eq!(get("/hello").await.unwrap().status(), 200);
    assert_ne!(
        api.seen("/hello").pop().unwrap().authorization,
        rejected[0].authorization
    );

    // (4) A 6 MiB streamed download arrives whole.
    let download = get("/download/96").await.unwrap();
    assert_eq!(download.status(), 200);
    let got = download.bytes().await.unwrap();
    assert_eq!((got.len(), checksum(FNV, &got)), (96 * 65536, chunks(96).1));

    // (5) Kept alive: requests on one client connection, upstream connections reused.
    assert_eq!(
        two_requests_on_one_connection(&proxy.url).await,
        ["hello a=1", "hello b=2"]
    );
    for _ in 0..10 {
        assert_eq!(get("/hello").await.unwrap().status(), 200);
    }
    let hellos = api.seen("/hello");
    let peers: HashSet<_> = hellos[hellos.len() - 10..].iter().map(|s| s.peer).collect();
    assert!(
        peers.len() < 10,
        "some upstream connection served several requests"
    );

    // SIGTERM stops it cleanly; no token it sent is on its stderr (debug logs included).
    drop(client);
    let (code, stderr) = proxy.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let seen = api.seen.lock().unwrap();
    let sent: HashSet<_> = seen
        .iter()
        .map(|s| &s.authorization["Bearer ".len()..])
        .collect();
    assert!(sent.len() >= 4, "{sent:?}");
    for token in sent {
        assert!(!stderr.contains(token), "a token on stderr: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_errors_are_a_502_a_503_and_a_busy_address() {
    let Some(oidc) = oidc::server() else { return };
    // A port nothing listens on (any more).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr();
    let closed = format!("http://{}/", closed.unwrap());
    let down = config(&oidc.issuer, "down", "cc-basic-TOPSECRET", &closed);
    let refused = config(&oidc.issuer, "refused", "wrong-TOPSECRET", &closed);
    let home = Home::with_config(&format!("{down}\n{refused}"));

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    let run = home.run(&["proxy", "-p", "down", "--listen", &busy]);
    assert!(
        run.expect_code(2).stderr().contains("in use"),
        "{}",
        run.stderr()
    );

    let client = reqwest::Client::new();
    let cases = [
        ("down", 502, "the upstream request failed"),
        ("refused", 503, "no access token"),
    ];
    for (profile, status, says) in cases {
        let proxy = Proxy::start(&home, profile);
        let response = client.get(format!("{}/x", proxy.url)).send().await.unwrap();
        assert_eq!(response.status(), status, "{profile}");
        let body = response.text().await.unwrap();
        assert!(
            body.starts_with(&format!("tokenwarden proxy: {says}")),
            "{body}"
        );
        assert!(!body.contains(MARKER), "{body}");
        let (code, stderr) = proxy.stop();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains(says), "a warning: {stderr}");
        assert!(!stderr.contains(MARKER), "a secret on stderr: {stderr}");
    }
}

/// A `logout` run in another process reaches the running proxy: once it has
/// returned, the proxy sends no token issued before it (its copy of the stored
/// token lapses within a second, the wait `logout` makes after its delete).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_in_another_process_reaches_a_running_proxy() {
    let Some(oidc) = oidc::server() else { return };
    let (api, _, home) = api_home(oidc, "file").await;
    let home = Arc::new(home);
    let proxy = Proxy::start(&home, "api");
    let client = reqwest::Client::new();
    let hello = || client.get(format!("{}/hello", proxy.url)).send();

    assert_eq!(hello().await.unwrap().status(), 200);
    let before = api.seen("/hello").pop().unwrap().authorization;
    assert_eq!(hello().await.unwrap().status(), 200);
    assert_eq!(
        api.seen("/hello").pop().unwrap().authorization,
        before,
        "served from the proxy's cache"
    );
    let logout = tokio::task::spawn_blocking({
        let home = home.clone();
        move || home.run(&["logout", "-p", "api"])
    });
    let logout = logout.await.unwrap();
    logout.expect_code(0);

    assert_eq!(hello().await.unwrap().status(), 200);
    let after = api.seen("/hello").pop().unwrap().authorization;
    assert_ne!(after, before, "the proxy dropped the logged-out token");
    let (_, stderr) = proxy.stop();
    assert!(
        stderr.contains("the store no longer holds this token"),
        "{stderr}"
    );
}
