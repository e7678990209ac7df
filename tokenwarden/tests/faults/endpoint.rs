//! The token endpoint misbehaving, on a real TCP server on loopback that answers
//! at the socket level (resets, half answers, 100 MB bodies, silence): each fault
//! gives its typed error within a bounded time, a valid token is still served
//! while one is held, and the manager recovers as soon as the endpoint does.
//! A refresh is sent again only when the endpoint surely did not process it.

use crate::common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokenwarden::clock::Sleep;
use tokenwarden::source::oauth2::{OAuth2Client, RetryPolicy};
use tokenwarden::{Clock, Error, ErrorKind, ManualClock, SystemClock, TokenManager, TokenSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the endpoint does with each request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// A good token response.
    Token,
    /// Closes the connection before answering.
    Close,
    /// Half a response, then a TCP reset.
    Reset,
    /// This status with a plain-text body, and `Retry-After` seconds if given.
    Status(u16, Option<u64>),
    /// Reads the request and never answers.
    Hang,
    /// Headers at once, then one byte of body every 100 ms.
    Drip,
    /// A 200 of random bytes.
    Garbage,
    /// A 200 whose body is 100 MB of JSON-looking text.
    Huge,
    /// A `Content-Length` of 1,000 and 10 bytes, then the end of the connection.
    Truncated,
}

const HUGE: u64 = 100 << 20;
const LIFETIME: u64 = 300;

struct Endpoint {
    addr: SocketAddr,
    fault: Mutex<Fault>,
    requests: AtomicUsize,
    /// Where each connection came from, in the order they were accepted.
    peers: Mutex<Vec<SocketAddr>>,
    issued: AtomicUsize,
    /// Bytes of the last huge body the client took before it hung up.
    huge_sent: AtomicU64,
}

impl Endpoint {
    async fn start() -> Arc<Self> {
        Self::listen(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// Serves on `listener`, from a task of the current runtime.
    fn listen(listener: std::net::TcpListener) -> Arc<Self> {
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let endpoint = Arc::new(Self {
            addr: listener.local_addr().unwrap(),
            fault: Mutex::new(Fault::Token),
            requests: AtomicUsize::new(0),
            peers: Mutex::new(Vec::new()),
            issued: AtomicUsize::new(0),
            huge_sent: AtomicU64::new(0),
        });
        let serving = endpoint.clone();
        tokio::spawn(async move {
            while let Ok((socket, peer)) = listener.accept().await {
                serving.peers.lock().unwrap().push(peer);
                tokio::spawn(serving.clone().serve(socket));
            }
        });
        endpoint
    }

    fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The connections made to the endpoint so far, each one an attempt (every
    /// answer closes its connection). Exact, not a snapshot of a count that may
    /// lag: a probe connected now is accepted after all of them.
    async fn connections(&self) -> usize {
        let probe = TcpStream::connect(self.addr).await.unwrap();
        let probe = probe.local_addr().unwrap();
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let peers = self.peers.lock().unwrap().clone();
                if let Some(at) = peers.iter().position(|p| *p == probe) {
                    return at;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the probe connection was accepted")
    }

    fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    async fn serve(self: Arc<Self>, mut socket: TcpStream) {
        let fault = *self.fault.lock().unwrap();
        if fault == Fault::Close {
            return;
        }
        if read_request(&mut socket).await.is_none() {
            return;
        }
        self.requests.fetch_add(1, SeqCst);
        let head = |status: u16, extra: &str, length: u64| {
            format!("HTTP/1.1 {status} X\r\ncontent-length: {length}\r\n{extra}connection: close\r\n\r\n")
        };
        match fault {
            Fault::Token | Fault::Close => {
                let n = self.issued.fetch_add(1, SeqCst) + 1;
                let body = format!(
                    r#"{{"access_token":"{MARKER}-endpoint-{n}","token_type":"Bearer","expires_in":{LIFETIME}}}"#
                );
                let head = head(200, "content-type: application/json\r\n", body.len() as u64);
                let _ = socket.write_all(format!("{head}{body}").as_bytes()).await;
            }
            Fault::Reset => {
                let _ = socket.write_all(head(200, "", 500).as_bytes()).await;
                let _ = socket.write_all(br#"{"access_token":"TOPSE"#).await;
                let _ = socket.set_zero_linger();
                drop(socket); // RST, not FIN
            }
            Fault::Status(status, retry_after) => {
                let extra = retry_after
                    .map(|s| format!("retry-after: {s}\r\n"))
                    .unwrap_or_default();
                let body = "upstream trouble";
                let response = format!("{}{body}", head(status, &extra, body.len() as u64));
                let _ = socket.write_all(response.as_bytes()).await;
            }
            Fault::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Fault::Drip => {
                let _ = socket.write_all(head(200, "", 100).as_bytes()).await;
                for _ in 0..100 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if socket.write_all(b" ").await.is_err() {
                        return;
                    }
                }
            }
            Fault::Garbage => {
                let body: Vec<u8> = (0..4096).map(|_| fastrand::u8(..)).collect();
                let _ = socket.write_all(head(200, "", 4096).as_bytes()).await;
                let _ = socket.write_all(&body).await;
            }
            Fault::Huge => {
                let mut sent = 0u64;
                let _ = socket
                    .write_all(head(200, "content-type: application/json\r\n", HUGE).as_bytes())
                    .await;
                let chunk = [b'7'; 64 << 10];
                while sent < HUGE {
                    if socket.write_all(&chunk).await.is_err() {
                        break;
                    }
                    sent += chunk.len() as u64;
                }
                self.huge_sent.store(sent, SeqCst);
            }
            Fault::Truncated => {
                let _ = socket.write_all(head(200, "", 1000).as_bytes()).await;
                let _ = socket.write_all(br#"{"access_"#).await;
            }
        }
    }
}

/// Reads one request (head and `Content-Length` body); `None` if the client left.
async fn read_request(socket: &mut TcpStream) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = socket.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(());
        }
    }
}

const TIMEOUT: Duration = Duration::from_millis(500);

fn manager(endpoint: &Endpoint, clock: &ManualClock) -> TokenManager {
    let client = OAuth2Client::builder()
        .client_id("faults")
        .client_secret(format!("{MARKER}-client-secret"))
        .token_url(format!("http://{}/token", endpoint.addr))
        .timeout(TIMEOUT)
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    TokenManager::builder(client.client_credentials())
        .clock(clock.clone())
        .refresh_ahead(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The error the source gave, under the manager's `NoValidToken` if it wraps one.
fn cause(error: &Error) -> &Error {
    error.last_attempt().unwrap_or(error)
}

/// Each fault and what it must give: the kind, the status, and `Retry-After`.
fn faults() -> Vec<(Fault, ErrorKind, Option<u16>, Option<Duration>)> {
    use ErrorKind::*;
    let mut all = vec![
        (Fault::Close, Transport, None, None),
        (Fault::Reset, Transport, None, None),
        (Fault::Hang, Transport, None, None),
        (Fault::Drip, Transport, None, None),
        (Fault::Garbage, InvalidResponse, Some(200), None),
        (Fault::Huge, InvalidResponse, Some(200), None),
        (Fault::Truncated, Transport, None, None),
    ];
    for status in [500, 502, 503, 429] {
        all.push((Fault::Status(status, None), Transport, Some(status), None));
        let retry = Some(Duration::from_secs(7));
        all.push((
            Fault::Status(status, Some(7)),
            Transport,
            Some(status),
            retry,
        ));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::disallowed_methods)] // times real network waits; token time is the ManualClock's
async fn every_fault_is_a_typed_error_and_the_manager_recovers() {
    let _h = harness();
    let endpoint = Endpoint::start().await;
    let clock = clock();
    let manager = manager(&endpoint, &clock);
    for (fault, kind, status, retry_after) in faults() {
        // No token held: the fault is the caller's error, soon.
        clock.advance(Duration::from_secs(3600));
        endpoint.set(fault);
        let started = Instant::now();
        let error = tokio::time::timeout(Duration::from_secs(20), manager.token())
            .await
            .unwrap_or_else(|_| panic!("{fault:?}: no answer within 20 s"))
            .expect_err("no token while the endpoint fails");
        let took = started.elapsed();
        let source = cause(&error);
        assert_eq!(source.kind(), kind, "{fault:?}: {source}");
        assert_eq!(source.status(), status, "{fault:?}: {source}");
        assert_eq!(source.retry_after(), retry_after, "{fault:?}: {source}");
        assert!(
            took < TIMEOUT * 4,
            "{fault:?}: {took:?}, beyond the client's timeout"
        );
        let text = format!("{error} {error:?}");
        assert_clean(&format!("{fault:?}"), &text);

        // The endpoint is back: the next call after the backoff has a token.
        endpoint.set(Fault::Token);
        clock.advance(Duration::from_secs(3600));
        let token = manager.token().await.expect("recovered");
        assert!(token.access_token.secret().starts_with(MARKER));

        // Held and still valid: a failing refresh costs the callers nothing.
        clock.advance(Duration::from_secs(LIFETIME - 30));
        endpoint.set(fault);
        let failures = manager.stats().failures;
        let still = manager.token().await.expect("the valid token is served");
        assert_eq!(still.fingerprint(), token.fingerprint(), "{fault:?}");
        tokio::time::timeout(Duration::from_secs(20), async {
            while manager.stats().failures == failures {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{fault:?}: the refresh in the background never ended"));
        let still = manager.token().await.expect("the valid token is served");
        assert_eq!(still.fingerprint(), token.fingerprint(), "{fault:?}");
    }
    let huge = endpoint.huge_sent.load(SeqCst);
    assert!(
        huge < 32 << 20,
        "the client read {huge} bytes of the 100 MB body before giving up"
    );
}

#[tokio::test]
async fn connection_refused_is_transient_and_quick() {
    let _h = harness();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // bound, then released: nothing listens there
    let client = OAuth2Client::builder()
        .client_id("faults")
        .client_secret(format!("{MARKER}-client-secret"))
        .token_url(format!("http://127.0.0.1:{port}/token"))
        .timeout(TIMEOUT)
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let manager = TokenManager::builder(client.client_credentials())
        .clock(clock())
        .build()
        .unwrap();
    let error = manager.token().await.unwrap_err();
    assert_eq!(cause(&error).kind(), ErrorKind::Transport, "{error}");
    assert!(cause(&error).is_transient());
    assert_clean("refused", &format!("{error} {error:?}"));
}

/// A client that tries three times, 10 ms apart, with `clock` for its waits.
fn retrying_client(token_url: String, clock: impl Clock) -> OAuth2Client {
    let mut retry = RetryPolicy::default();
    retry.max_attempts = 3;
    retry.initial_delay = Duration::from_millis(10);
    OAuth2Client::builder()
        .client_id("faults")
        .client_secret(format!("{MARKER}-client-secret"))
        .token_url(token_url)
        .timeout(TIMEOUT)
        .retry(retry)
        .clock(clock)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_is_retried_only_when_the_endpoint_surely_did_not_process_it() {
    let _h = harness();
    for (fault, attempts) in [
        // The server says it did not handle the request: sent again.
        (Fault::Status(429, None), 3),
        (Fault::Status(503, None), 3),
        // It may have rotated the refresh token, and the answer was lost: once.
        (Fault::Status(500, None), 1),
        (Fault::Status(502, None), 1),
        (Fault::Status(504, None), 1),
        (Fault::Reset, 1),
        (Fault::Close, 1),
        (Fault::Truncated, 1),
        (Fault::Hang, 1),
    ] {
        let endpoint = Endpoint::start().await;
        endpoint.set(fault);
        let source = retrying_client(endpoint.url(), SystemClock)
            .refresh_token(format!("{MARKER}-refresh-token"));
        let error = source.fetch().await.expect_err("the endpoint fails");
        assert_eq!(endpoint.connections().await, attempts, "{fault:?}: {error}");
        assert!(error.is_transient(), "{fault:?}: {error}");
        assert_eq!(error.kind(), ErrorKind::Transport, "{fault:?}: {error}");
        assert_clean(&format!("{fault:?}"), &format!("{error} {error:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_spends_nothing_is_still_retried_after_a_500() {
    let _h = harness();
    let endpoint = Endpoint::start().await;
    endpoint.set(Fault::Status(500, None));
    let source = retrying_client(endpoint.url(), SystemClock).client_credentials();
    let error = source.fetch().await.expect_err("the endpoint fails");
    assert_eq!(endpoint.connections().await, 3, "{error}");
    assert_eq!(error.status(), Some(500));
    assert!(error.is_transient());
}

/// The system clock, whose first sleep (the wait before a first retry) runs a hook.
struct FirstSleep(Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl std::fmt::Debug for FirstSleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FirstSleep")
    }
}

impl FirstSleep {
    fn run_hook(&self) {
        if let Some(hook) = self.0.lock().unwrap().take() {
            hook();
        }
    }
}

impl Clock for FirstSleep {
    fn now(&self) -> SystemTime {
        SystemClock.now()
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        self.run_hook();
        SystemClock.sleep_until(deadline)
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        self.run_hook();
        SystemClock.sleep(duration)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_is_retried_when_no_connection_could_be_made() {
    let _h = harness();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap(); // bound, then released: nothing listens there
    let started = Arc::new(Mutex::new(None));
    let slot = started.clone();
    // After the first attempt is refused, before the retry: the endpoint comes up.
    let clock = FirstSleep(Mutex::new(Some(Box::new(move || {
        let listener = std::net::TcpListener::bind(addr).expect("the port is still free");
        *slot.lock().unwrap() = Some(Endpoint::listen(listener));
    }))));
    let source = retrying_client(format!("http://{addr}/token"), clock)
        .refresh_token(format!("{MARKER}-refresh-token"));
    let token = source
        .fetch()
        .await
        .expect("the retry reached the endpoint");
    assert!(token.access_token.secret().starts_with(MARKER));
    let endpoint = started.lock().unwrap().clone().expect("one retry");
    assert_eq!(endpoint.connections().await, 1);
}
