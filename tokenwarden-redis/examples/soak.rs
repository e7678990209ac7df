//! The soak test, run by hand outside CI (its figures are in
//! `tokenwarden/tests/faults/README.md`): 2 processes × 200 tasks call a local
//! API through `TokenMiddleware` for 10 minutes, sharing 5-second tokens through
//! Redis, while the token endpoint fails at random (one request in five: 500,
//! 502, 503 or 429 with and without `Retry-After`, garbage, answers slower than
//! the client's timeout) and goes down for 4 s every 90 s.
//!
//! ```text
//! cargo run --release -p tokenwarden-redis --features encryption --example soak -- 600
//! ```
//!
//! Tokens are JWT-shaped with an `exp` to the millisecond and no `expires_in`,
//! so the API and the clients agree on the instant each token expires. Each
//! request carries the time it left (stamped after the token was attached), so
//! the API tells a token sent expired (a failure) from one that expired on the
//! way (a race no client can win on a loaded machine, which the middleware's
//! replay absorbs).
//!
//! It fails (exit 1) if any request was sent with an expired or unknown token,
//! if any error was not the token endpoint's fault or came while the fleet held
//! a valid token (issued 300 ms before, with 500 ms left), or if a process's memory
//! is not flat: the floor of its live heap (the lowest level in each 10 s,
//! sampled every 100 ms, which leaves out the buffers of requests in flight)
//! over the last two minutes is more than 20% above its floor over minutes 1-3.
//! Needs Redis on 127.0.0.1:6379.

// A soak runs on real time, end to end: the servers' token expiries included.
#![allow(clippy::disallowed_methods)]

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokenwarden::source::oauth2::OAuth2Client;
use tokenwarden::{ErrorKind, TokenManager};
use tokenwarden_redis::RedisStore;
use tokenwarden_reqwest::{AllowedOrigins, TokenMiddleware};

// Counts live heap bytes: the memory figure that a leak moves and the
// allocator's caching does not.
#[global_allocator]
static HEAP: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

fn live_heap_kib() -> u64 {
    let stats = HEAP.stats();
    // `realloc` is counted in both of these already.
    stats
        .bytes_allocated
        .saturating_sub(stats.bytes_deallocated) as u64
        / 1024
}

fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

const PROCESSES: usize = 2;
const TASKS: usize = 200;
const LIFETIME: Duration = Duration::from_secs(5);
const FAULT_RATE: f64 = 0.2;
const OUTAGE_EVERY: u64 = 90;
const OUTAGE: u64 = 4;
const REDIS: &str = "redis://127.0.0.1:6379/0";

fn main() {
    let seconds = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("the duration in seconds"))
        .unwrap_or(600);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ok = match std::env::var("TW_SOAK_WORKER") {
        Ok(urls) => runtime.block_on(worker(&urls, seconds)),
        Err(_) => runtime.block_on(parent(seconds)),
    };
    std::process::exit(if ok { 0 } else { 1 });
}

/// The token endpoint and the API, in the parent process.
#[derive(Default)]
struct Servers {
    started: Mutex<Option<Instant>>,
    /// Each issued token: when it was issued and when it expires, in Unix
    /// milliseconds.
    tokens: Mutex<HashMap<String, (u64, u64)>>,
    token_requests: AtomicU64,
    tokens_issued: AtomicU64,
    faults: AtomicU64,
    api_ok: AtomicU64,
    api_sent_expired: AtomicU64,
    api_expired_on_the_way: AtomicU64,
    api_longest_way_ms: AtomicU64,
    api_unknown: AtomicU64,
}

impl Servers {
    fn in_outage(&self) -> bool {
        let started = self.started.lock().unwrap().expect("started");
        started.elapsed().as_secs() % OUTAGE_EVERY >= OUTAGE_EVERY - OUTAGE
    }
}

async fn token_endpoint(State(servers): State<Arc<Servers>>) -> Response {
    servers.token_requests.fetch_add(1, Relaxed);
    if servers.in_outage() {
        servers.faults.fetch_add(1, Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    if fastrand::f64() < FAULT_RATE {
        servers.faults.fetch_add(1, Relaxed);
        let retry = [(header::RETRY_AFTER, "1")];
        return match fastrand::u8(0..7) {
            0 => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
            1 => (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>").into_response(),
            2 => (StatusCode::SERVICE_UNAVAILABLE, retry, "busy").into_response(),
            3 => (StatusCode::TOO_MANY_REQUESTS, retry, "slow down").into_response(),
            4 => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
            5 => (StatusCode::OK, "<html>not json</html>").into_response(),
            _ => {
                tokio::time::sleep(Duration::from_secs(3)).await; // past the client's timeout
                (StatusCode::SERVICE_UNAVAILABLE, "too late").into_response()
            }
        };
    }
    let n = servers.tokens_issued.fetch_add(1, Relaxed);
    let expires = unix_millis(SystemTime::now() + LIFETIME);
    let claims = format!(
        r#"{{"exp":{}.{:03},"jti":"{n}"}}"#,
        expires / 1000,
        expires % 1000
    );
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let token = format!(
        "{}.{}.soak{:016x}",
        b64(r#"{"alg":"none"}"#),
        b64(&claims),
        fastrand::u64(..)
    );
    {
        let mut tokens = servers.tokens.lock().unwrap();
        let now = unix_millis(SystemTime::now());
        tokens.retain(|_, (_, expiry)| *expiry + 60_000 > now);
        tokens.insert(token.clone(), (now, expires));
    }
    // No `expires_in`: the client reads the lifetime from `exp`, to the millisecond.
    let body = serde_json::json!({ "access_token": token, "token_type": "Bearer" });
    axum::Json(body).into_response()
}

async fn api(State(servers): State<Arc<Servers>>, headers: HeaderMap) -> StatusCode {
    let arrived = unix_millis(SystemTime::now());
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let sent: u64 = headers
        .get("x-sent-at")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(arrived);
    let expiry = servers
        .tokens
        .lock()
        .unwrap()
        .get(token)
        .map(|(_, expiry)| *expiry);
    match expiry {
        Some(expiry) if arrived < expiry => {
            servers.api_ok.fetch_add(1, Relaxed);
            StatusCode::OK
        }
        Some(expiry) if sent < expiry => {
            servers.api_expired_on_the_way.fetch_add(1, Relaxed);
            servers
                .api_longest_way_ms
                .fetch_max(arrived - sent, Relaxed);
            StatusCode::UNAUTHORIZED
        }
        Some(_) => {
            servers.api_sent_expired.fetch_add(1, Relaxed);
            StatusCode::UNAUTHORIZED
        }
        None => {
            servers.api_unknown.fetch_add(1, Relaxed);
            StatusCode::UNAUTHORIZED
        }
    }
}

/// `GET /could-have?at=MS`: whether a token the fleet could have had was valid
/// at `at`: issued at least 300 ms before (a manager that is backing off looks
/// in the store every 100 ms; the rest is time to reach Redis on a loaded
/// machine) and with at least 500 ms left (the expiring window of a 5-second
/// token).
async fn could_have(
    State(servers): State<Arc<Servers>>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, u64>>,
) -> &'static str {
    let at = query.get("at").copied().unwrap_or_default();
    let tokens = servers.tokens.lock().unwrap();
    let could = tokens
        .values()
        .any(|(issued, expiry)| issued + 300 <= at && at + 500 <= *expiry);
    if could {
        "yes"
    } else {
        "no"
    }
}

/// One worker's counters, printed as
/// `STATS requests ok expected unexpected rss_kib heap_floor_kib`.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    requests: u64,
    ok: u64,
    expected: u64,
    unexpected: u64,
    rss_kib: u64,
    heap_kib: u64,
}

impl Counts {
    fn parse(line: &str) -> Option<Self> {
        let mut n = line
            .strip_prefix("STATS ")?
            .split(' ')
            .map(|v| v.parse().ok());
        Some(Self {
            requests: n.next()??,
            ok: n.next()??,
            expected: n.next()??,
            unexpected: n.next()??,
            rss_kib: n.next()??,
            heap_kib: n.next()??,
        })
    }
}

async fn parent(seconds: u64) -> bool {
    let servers = Arc::new(Servers::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/token", post(token_endpoint))
        .route("/data", get(api))
        .route("/could-have", get(could_have))
        .with_state(servers.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    *servers.started.lock().unwrap() = Some(Instant::now());
    let prefix = format!("tokenwarden-soak-{:08x}", fastrand::u32(..));
    println!(
        "soak: {PROCESSES} processes × {TASKS} tasks, {}-second tokens, {seconds} s, \
         endpoint faults {:.0}% and a {OUTAGE} s outage every {OUTAGE_EVERY} s",
        LIFETIME.as_secs(),
        FAULT_RATE * 100.0
    );
    let mut children = Vec::new();
    for _ in 0..PROCESSES {
        children.push(
            Command::new(std::env::current_exe().unwrap())
                .arg(seconds.to_string())
                .env("TW_SOAK_WORKER", format!("http://{address} {prefix}"))
                .stdout(Stdio::piped())
                .spawn()
                .expect("a worker process"),
        );
    }
    // Each worker's lines, read on threads: (seconds since start, counts).
    let readers: Vec<_> = children
        .iter_mut()
        .map(|child| {
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let started = Instant::now();
                BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                    .inspect(|line| {
                        if line.starts_with("MANAGER") {
                            println!("{line}");
                        }
                    })
                    .filter_map(|line| Counts::parse(&line).map(|c| (started.elapsed(), c)))
                    .inspect(|(at, c)| {
                        if at.as_secs() % 60 < 10 {
                            eprintln!("  {:>4} s: {c:?}", at.as_secs());
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut workers_ok = true;
    for mut child in children {
        workers_ok &= tokio::task::spawn_blocking(move || child.wait().unwrap().success())
            .await
            .unwrap();
    }
    let series: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();

    let mut totals = Counts::default();
    let mut memory_ok = true;
    for (i, lines) in series.iter().enumerate() {
        let Some((_, last)) = lines.last() else {
            println!("worker {i} printed no figures");
            return false;
        };
        totals.requests += last.requests;
        totals.ok += last.ok;
        totals.expected += last.expected;
        totals.unexpected += last.unexpected;
        let floor = |from: u64, to: u64| {
            lines
                .iter()
                .filter(|(at, _)| (from..to).contains(&at.as_secs()))
                .map(|(_, c)| c.heap_kib)
                .min()
                .unwrap_or(0)
        };
        let early = floor(60, 180);
        // The last line comes after the tasks ended: not a level under load.
        let late = floor(seconds.saturating_sub(120), seconds);
        let peak_rss = lines.iter().map(|(_, c)| c.rss_kib).max().unwrap_or(0);
        let growth = late as f64 / early.max(1) as f64 - 1.0;
        let floors: Vec<_> = lines
            .iter()
            .filter(|(at, _)| at.as_secs() % 60 < 10)
            .map(|(_, c)| c.heap_kib.to_string())
            .collect();
        println!(
            "worker {i}: live heap floor {early} KiB in minutes 1-3, {late} KiB in the last two \
             ({:+.1}%); each minute: {} KiB; RSS {} KiB at the end, peak {peak_rss} KiB",
            growth * 100.0,
            floors.join(", "),
            last.rss_kib,
        );
        memory_ok &= growth < 0.2;
    }
    let count = |c: &AtomicU64| c.load(Relaxed);
    let expiries = seconds as f64 / LIFETIME.as_secs_f64();
    println!(
        "requests: {} ({:.0}/s), answered 200: {}, expected errors (endpoint failing and no valid token in the fleet): {}, unexpected errors: {}",
        totals.requests,
        totals.requests as f64 / seconds as f64,
        totals.ok,
        totals.expected,
        totals.unexpected
    );
    println!(
        "API: {} valid, {} sent with an expired token, {} expired on the way (valid when sent; \
         longest way {} ms), {} with an unknown token",
        count(&servers.api_ok),
        count(&servers.api_sent_expired),
        count(&servers.api_expired_on_the_way),
        count(&servers.api_longest_way_ms),
        count(&servers.api_unknown)
    );
    let issued = count(&servers.tokens_issued);
    println!(
        "token endpoint: {} requests, {} faults, {issued} tokens issued: one per {:.1} s for \
         both processes ({:.2} per token lifetime; each is replaced in the last half of its life)",
        count(&servers.token_requests),
        count(&servers.faults),
        seconds as f64 / issued.max(1) as f64,
        issued as f64 / expiries
    );
    let ok = workers_ok
        && memory_ok
        && totals.unexpected == 0
        && count(&servers.api_sent_expired) == 0
        && count(&servers.api_unknown) == 0;
    println!("soak: {}", if ok { "passed" } else { "FAILED" });
    ok
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        })
        .unwrap_or(0)
}

struct WorkerCounts {
    requests: AtomicU64,
    ok: AtomicU64,
    expected: AtomicU64,
    unexpected: AtomicU64,
    /// The lowest live heap since the last line.
    heap_floor_kib: AtomicU64,
}

impl WorkerCounts {
    fn line(&self) -> String {
        let c = |a: &AtomicU64| a.load(Relaxed);
        format!(
            "STATS {} {} {} {} {} {}",
            c(&self.requests),
            c(&self.ok),
            c(&self.expected),
            c(&self.unexpected),
            rss_kib(),
            self.heap_floor_kib.swap(u64::MAX, Relaxed)
        )
    }
}

/// Whether a failed request failed for want of a token from the endpoint (it
/// failed or was too slow). Whether a valid token could have been had instead
/// is asked of the parent, which knows every token it issued.
fn endpoint_fault(error: &reqwest_middleware::Error) -> bool {
    let reqwest_middleware::Error::Middleware(error) = error else {
        return false;
    };
    let Some(error) = error.downcast_ref::<tokenwarden::Error>() else {
        return false;
    };
    let cause = error.last_attempt().unwrap_or(error);
    matches!(
        cause.kind(),
        ErrorKind::Transport | ErrorKind::InvalidResponse
    )
}

async fn worker(setup: &str, seconds: u64) -> bool {
    let (base, prefix) = setup.split_once(' ').expect("URL and prefix");
    let oauth = OAuth2Client::builder()
        .client_id("soak")
        .client_secret("soak-secret")
        .token_url(format!("{base}/token"))
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let store = match RedisStore::builder(REDIS).prefix(prefix).build().await {
        Ok(store) => store,
        Err(error) => {
            eprintln!("soak needs Redis on 127.0.0.1:6379: {error}");
            return false;
        }
    };
    let manager = TokenManager::builder(oauth.client_credentials())
        .store(store)
        .build()
        .unwrap();
    let origins = AllowedOrigins::of(base).unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(TokenMiddleware::new(manager.clone(), origins))
        .with(Stamp)
        .build();
    let url = format!("{base}/data");
    let could_have = format!("{base}/could-have");
    let plain = reqwest::Client::new();
    let counts = Arc::new(WorkerCounts {
        requests: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        expected: AtomicU64::new(0),
        unexpected: AtomicU64::new(0),
        heap_floor_kib: AtomicU64::new(u64::MAX),
    });
    let sampler = {
        let counts = counts.clone();
        tokio::spawn(async move {
            loop {
                counts.heap_floor_kib.fetch_min(live_heap_kib(), Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let reporter = {
        let counts = counts.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                println!("{}", counts.line());
            }
        })
    };
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            let (plain, could_have) = (plain.clone(), could_have.clone());
            let counts = counts.clone();
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    counts.requests.fetch_add(1, Relaxed);
                    match client.get(&url).send().await {
                        Ok(response) if response.status() == StatusCode::OK => {
                            counts.ok.fetch_add(1, Relaxed);
                        }
                        Ok(response) => {
                            counts.unexpected.fetch_add(1, Relaxed);
                            eprintln!("unexpected answer: {}", response.status());
                        }
                        Err(error) if endpoint_fault(&error) => {
                            // The endpoint failed; but had the fleet a valid token?
                            let at = unix_millis(SystemTime::now());
                            let answer = plain
                                .get(format!("{could_have}?at={at}"))
                                .send()
                                .await
                                .and_then(|r| r.error_for_status());
                            let could = match answer {
                                Ok(answer) => answer.text().await.unwrap_or_default() == "yes",
                                Err(_) => false,
                            };
                            if could {
                                counts.unexpected.fetch_add(1, Relaxed);
                                eprintln!("an error while the fleet held a valid token: {error:#}");
                            } else {
                                counts.expected.fetch_add(1, Relaxed);
                            }
                        }
                        Err(error) => {
                            counts.unexpected.fetch_add(1, Relaxed);
                            eprintln!("unexpected error: {error:#}");
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(100..300))).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    reporter.abort();
    sampler.abort();
    println!("{}", counts.line());
    println!("MANAGER {:?}", manager.stats());
    true
}

/// Stamps each request with the time it leaves, after the token was attached.
struct Stamp;

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Stamp {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut axum::http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let now = unix_millis(SystemTime::now()).to_string();
        request
            .headers_mut()
            .insert("x-sent-at", now.parse().expect("digits"));
        next.run(request, extensions).await
    }
}
