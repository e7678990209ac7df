//! `tokenwarden proxy`'s `/metrics` and `/healthz`, scraped by a real Prometheus
//! server (Debian's `prometheus` package; `.ci/run` installs it) through a
//! scripted sequence: the first token, a refresh ahead of expiry, a 401 and its
//! replay, an outage of the token endpoint, the recovery. Then Prometheus's
//! HTTP API is asked for the series, and `status` for the last refresh.

use crate::common::*;
use crate::oidc;
use crate::proxy::{resource_server, Api, Proxy};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// A TCP relay to the authorization server that can be cut (an outage: open
/// connections are closed, and new ones closed at once) and restored.
struct Relay {
    address: SocketAddr,
    down: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn to(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (down, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if *watch.borrow() {
                    continue; // dropped: the connection is closed
                }
                let mut cut = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        Self { address, down }
    }

    fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }
}

/// A Prometheus server scraping `target` every second, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Started and ready; `None` (after printing why) where Prometheus is not
    /// installed and `CI` is not set.
    async fn scraping(target: &str) -> Option<Self> {
        let version = Command::new("prometheus").arg("--version").output();
        if version.is_err() {
            let why = "prometheus is not installed (apt-get install prometheus)";
            assert!(!required(), "Prometheus is required under CI: {why}");
            eprintln!("skipped: {why}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: tokenwarden\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        // A free port: bound, read and let go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let prometheus = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let ready = format!("{}/-/ready", prometheus.url);
        eventually("Prometheus is ready", || async {
            let response = reqwest::get(&ready).await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        Some(prometheus)
    }

    /// The value of the one series `query` selects (summed if several).
    async fn value(&self, query: &str) -> Option<f64> {
        let url = format!("{}/api/v1/query", self.url);
        let response = reqwest::Client::new()
            .get(url)
            .query(&[("query", query)])
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        let result = body["data"]["result"].as_array()?;
        let values = result
            .iter()
            .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok());
        let values: Vec<f64> = values.collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// Waits until `query`'s value satisfies `ok` (30 s at most: Prometheus
    /// scrapes every second).
    async fn until(&self, query: &str, ok: impl Fn(f64) -> bool) -> f64 {
        eventually(query, || async {
            self.value(query).await.filter(|v| ok(*v))
        })
        .await
    }
}

/// Polls `check` until it gives a value (30 s of real time at most: a hang,
/// not a timing check).
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    check: impl Fn() -> F,
) -> T {
    let polled = async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), polled).await {
        Ok(value) => value,
        Err(_) => panic!("never: {what}"),
    }
}

/// A home whose profile `api` gets client-credentials tokens (5 s lifetime)
/// through `relay`, for the resource server at `upstream`, stored in a file.
fn home(relay: &Relay, upstream: SocketAddr) -> Home {
    Home::with_config(&format!(
        "[profiles.api]\ntoken_url = \"http://{}/token\"\ngrant = \"client_credentials\"\n\
         client_id = \"cc-basic\"\nclient_secret = \"cc-basic-TOPSECRET\"\nscope = \"read\"\n\
         store = \"file\"\nbase_url = \"http://{upstream}/api\"\n",
        relay.address
    ))
}

async fn health(metrics: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{metrics}/healthz")).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_proxy_through_refreshes_a_401_and_an_outage() {
    let Some(oidc) = oidc::server() else { return };
    let issuer: url::Url = oidc.issuer.parse().unwrap();
    let server = issuer.socket_addrs(|| None).unwrap()[0];
    let relay = Relay::to(server).await;
    let api = Arc::new(Api::default());
    let upstream = resource_server(api.clone()).await;
    let home = home(&relay, upstream);
    let proxy = Proxy::start_with(&home, "api", &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = proxy.metrics.clone().expect("the metrics listener's line");
    let target = metrics.trim_start_matches("http://");
    let Some(prometheus) = Prometheus::scraping(target).await else {
        return;
    };
    let client = reqwest::Client::new();
    let hello = || client.get(format!("{}/hello", proxy.url)).send();
    let reason = |reason: &str, outcome: &str| {
        format!(
            r#"tokenwarden_refreshes_total{{tokenwarden_reason="{reason}",tokenwarden_outcome="{outcome}"}}"#
        )
    };

    // Nothing under /.tokenwarden/ goes upstream; no other host reads metrics.
    let other = client
        .get(format!("{}/.tokenwarden/other", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    assert!(api.seen("/.tokenwarden/other").is_empty());
    let rebound = client
        .get(format!("{metrics}/metrics"))
        .header("host", "attacker.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);

    // The first token; healthy.
    assert_eq!(hello().await.unwrap().status(), 200);
    assert_eq!(health(&metrics).await.0, 200);
    prometheus
        .until(&reason("first_use", "fetched"), |v| v == 1.0)
        .await;

    // Refreshed ahead of its expiry (the stale window of a 5 s token starts
    // after 2.5 s): a request then is served and starts it.
    eventually("a refresh ahead of expiry", || async {
        assert_eq!(hello().await.unwrap().status(), 200);
        let local = reqwest::get(format!("{metrics}/metrics")).await.ok()?;
        let text = local.text().await.ok()?;
        text.contains(r#"tokenwarden_reason="ahead_of_expiry""#)
            .then_some(())
    })
    .await;

    // The API rejects a token: replayed with a new one.
    let replayed = client
        .get(format!("{}/reject-once/a", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 200);
    assert_eq!(api.seen("/reject-once/a").len(), 2);

    // The token endpoint goes away: once the token expired, no token, unhealthy,
    // backing off.
    relay.set_down(true);
    let (_, body) = eventually("unhealthy", || async {
        let (status, body) = health(&metrics).await;
        (status == 503).then_some(((), body))
    })
    .await;
    assert_eq!(body["status"], "unavailable");
    assert_eq!(hello().await.unwrap().status(), 503);
    // Backing off (the gauge is read at each scrape; each failed attempt
    // doubles the wait, so a scrape soon falls within one).
    eventually("backing off, as scraped", || async {
        let _ = hello().await;
        prometheus
            .value("tokenwarden_backing_off")
            .await
            .filter(|v| *v == 1.0)
    })
    .await;

    // It comes back: healthy again.
    relay.set_down(false);
    eventually("healthy again", || async {
        (health(&metrics).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(hello().await.unwrap().status(), 200);

    // What Prometheus holds.
    let grant = |outcome: &str| {
        format!(
            r#"tokenwarden_token_requests_total{{tokenwarden_grant="client_credentials",tokenwarden_outcome="{outcome}"}}"#
        )
    };
    prometheus
        .until(&reason("first_use", "fetched"), |v| v == 1.0)
        .await;
    prometheus
        .until(&reason("ahead_of_expiry", "fetched"), |v| v >= 1.0)
        .await;
    prometheus
        .until(&reason("invalidated", "fetched"), |v| v == 1.0)
        .await;
    // Failed attempts: ahead of expiry, once expired, or store checks while
    // backing off, as the outage fell.
    prometheus
        .until(
            r#"sum(tokenwarden_refreshes_total{tokenwarden_outcome="failed"})"#,
            |v| v >= 1.0,
        )
        .await;
    prometheus.until(&grant("transport"), |v| v >= 1.0).await;
    let successes = prometheus.until(&grant("success"), |v| v >= 4.0).await;
    prometheus
        .until(
            r#"tokenwarden_failures_total{error_type="transport"}"#,
            |v| v >= 1.0,
        )
        .await;
    prometheus
        .until("tokenwarden_backing_off", |v| v == 0.0)
        .await;
    prometheus
        .until("tokenwarden_hits_total", |v| v >= 1.0)
        .await;
    prometheus
        .until("tokenwarden_token_expires_in_seconds", |v| {
            v > 0.0 && v <= 5.0
        })
        .await;
    prometheus
        .until(r#"tokenwarden_store_operations_total{tokenwarden_operation="save",tokenwarden_outcome="ok"}"#, |v| v >= successes)
        .await;
    prometheus
        .until("sum(tokenwarden_refresh_duration_seconds_count)", |v| {
            v >= 5.0
        })
        .await;
    prometheus
        .until("sum(tokenwarden_wait_duration_seconds_count)", |v| v >= 1.0)
        .await;

    // `status` (another process) shows the proxy's last refresh and the plan.
    // Recovered: the last attempt (a fetch, or a look at the store that found
    // the fetched token) did not fail. The proxy writes the record `status`
    // reads once a second, so the recovery shows there within a second of it.
    let status = eventually("the recovery, in the record status reads", || async {
        let run = home.run(&["status", "-p", "api", "--json"]);
        run.expect_code(0).expect_no_secret(false);
        let status: Value = serde_json::from_str(&run.stdout()).unwrap();
        let outcome = status["last_refresh"]["outcome"]
            .as_str()
            .unwrap_or_default();
        ["fetched", "unchanged", "adopted_from_store"]
            .contains(&outcome)
            .then_some(status)
    })
    .await;
    assert!(status["last_refresh"]["reason"].is_string(), "{status:#}");
    assert!(status["next_refresh_in"].as_u64().is_some(), "{status:#}");
    assert_eq!(status["unsaved"], false);
    let text = home.run(&["status", "-p", "api"]);
    assert!(text.stdout().contains("last refresh"), "{}", text.stdout());
    assert!(text.stdout().contains("next refresh"), "{}", text.stdout());

    // No secret in what it served, nor in its logs.
    let scraped = reqwest::get(format!("{metrics}/metrics")).await.unwrap();
    assert!(!scraped.text().await.unwrap().contains("TOPSECRET"));
    let (_, stderr) = proxy.stop();
    assert!(!stderr.contains("TOPSECRET"), "{stderr}");
}
