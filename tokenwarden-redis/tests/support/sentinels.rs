//! A primary, a replica and three sentinels of our own on loopback (killed when
//! dropped): a deployment that fails over.

use crate::replicated::{Replicated, Server};
use std::time::Duration;

pub const MASTER: &str = "tw-primary";

pub struct Sentinels {
    pub pair: Replicated,
    pub sentinels: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Sentinels {
    /// Started, once every sentinel knows the primary and its replica.
    pub fn start() -> Option<Self> {
        let pair = Replicated::start()?;
        let dir = tempfile::tempdir().unwrap();
        let mut sentinels = Vec::new();
        for n in 0..3 {
            let config = dir.path().join(format!("sentinel-{n}.conf"));
            std::fs::write(
                &config,
                format!(
                    "sentinel monitor {MASTER} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {MASTER} 500\n\
                     sentinel failover-timeout {MASTER} 2000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    pair.primary.port
                ),
            )
            .unwrap();
            sentinels.push(Server::sentinel(&config)?);
        }
        let this = Self {
            pair,
            sentinels,
            _dir: dir,
        };
        // Ready once each sentinel has found the replica (a readiness poll).
        for _ in 0..1_000 {
            if this
                .sentinels
                .iter()
                .all(|s| s.cli(&["SENTINEL", "replicas", MASTER]).contains("slave"))
            {
                return Some(this);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the sentinels never found the replica");
    }

    /// The `redis+sentinel://` URL of the deployment.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// Whether every sentinel names the node on `port` as the primary, and that
    /// node says it is one: the failover is over.
    pub fn settled_on(&self, port: u16) -> bool {
        let named = self.sentinels.iter().all(|s| {
            let said = s.cli(&["SENTINEL", "get-master-addr-by-name", MASTER]);
            said.lines().nth(1).and_then(|p| p.trim().parse().ok()) == Some(port)
        });
        let role = std::process::Command::new(crate::replicated::cli_program())
            .args(["-p", &port.to_string(), "ROLE"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).starts_with("master"))
            .unwrap_or(false);
        named && role
    }

    /// The port of the primary the sentinels name now.
    pub fn primary_port(&self) -> Option<u16> {
        let said = self.sentinels[0].cli(&["SENTINEL", "get-master-addr-by-name", MASTER]);
        said.lines().nth(1)?.trim().parse().ok()
    }
}

impl Sentinels {
    /// Kills the primary (SIGKILL), waits until the sentinels promoted the
    /// replica and it says it is the primary, then starts a new replica of it
    /// (where the old primary was: a fresh port) once the new primary counts it.
    /// Blocks its thread (readiness polls).
    pub fn fail_over(&mut self) {
        let old = self.pair.primary.port;
        self.pair.primary.kill();
        let promoted = self.pair.replica.port;
        for _ in 0..1_500 {
            if self.settled_on(promoted) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(self.settled_on(promoted), "failed over from {old}");
        let of = promoted.to_string();
        let unsaved = crate::replicated::REPLICABLE;
        let back = Server::start(&[&unsaved[..], &["--replicaof", "127.0.0.1", &of]].concat())
            .expect("a new replica");
        let address = format!("127.0.0.1:{}\n", back.port);
        self.pair.primary = std::mem::replace(&mut self.pair.replica, back);
        // Ready once it caught up, and every sentinel knows it (they read the
        // primary's replicas every 10 s): the next failover can promote it.
        for _ in 0..3_000 {
            let known = self
                .sentinels
                .iter()
                .all(|s| s.cli(&["SENTINEL", "replicas", MASTER]).contains(&address));
            let counted = self
                .pair
                .primary
                .replication()
                .contains("connected_slaves:1");
            // Synced: a save's replica wait is answered.
            let synced = self
                .pair
                .replica
                .replication()
                .contains("master_link_status:up");
            if known && counted && synced {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the new replica never caught up, or the sentinels never found it");
    }
}
