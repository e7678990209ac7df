//! A Redis Cluster of our own: three primaries on loopback (killed when
//! dropped), their slots assigned by `redis-cli --cluster create`.

use crate::replicated::{cli_program, Server};
use std::process::Command;
use std::time::Duration;

pub struct Cluster {
    pub nodes: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Started, once every node says the cluster is `ok`.
    pub fn start() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for n in 0..3 {
            nodes.push(Server::cluster_node(dir.path(), n)?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new(cli_program())
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("the command-line client");
        if !created.status.success() {
            let nodes: Vec<String> = nodes
                .iter()
                .map(|n| {
                    format!(
                        "{}: {} keys; {}",
                        n.port,
                        n.cli(&["DBSIZE"]).trim(),
                        n.cli(&["CLUSTER", "NODES"]).trim()
                    )
                })
                .collect();
            panic!(
                "{}\n{}",
                String::from_utf8_lossy(&created.stdout),
                nodes.join("\n")
            );
        }
        let this = Self { nodes, _dir: dir };
        for _ in 0..1_000 {
            if this
                .nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            {
                return Some(this);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the cluster never came up");
    }

    /// The `redis+cluster://` URL of two of its nodes (the third is discovered).
    pub fn url(&self) -> String {
        format!(
            "redis+cluster://127.0.0.1:{},127.0.0.1:{}",
            self.nodes[0].port, self.nodes[1].port
        )
    }
}
