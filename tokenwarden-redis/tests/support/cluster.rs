//! A Redis Cluster of our own: three primaries on loopback (killed when
//! dropped), their slots assigned by `redis-cli --cluster create`.

use crate::replicated::{cli_program, Server};
use std::process::Command;
use std::time::Duration;

pub struct Cluster {
    pub nodes: Vec<Server>,
    /// The nodes' only user, where they have one (the default user off).
    acl: Option<(&'static str, &'static str)>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Started, once every node says the cluster is `ok`.
    pub fn start() -> Option<Self> {
        Self::start_as(None, 0)
    }

    /// Started with `acl` (user, password) as each node's only user, and
    /// `replicas` replicas of each primary (caught up).
    pub fn start_as(acl: Option<(&'static str, &'static str)>, replicas: usize) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for n in 0..3 * (1 + replicas) {
            nodes.push(Server::cluster_node(dir.path(), n, acl)?);
        }
        let login: Vec<&str> = match acl {
            Some((user, password)) => vec!["--user", user, "--pass", password, "--no-auth-warning"],
            None => Vec::new(),
        };
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new(cli_program())
            .args(&login)
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
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
        let this = Self {
            nodes,
            acl,
            _dir: dir,
        };
        for _ in 0..1_000 {
            // Every node knows every replica (gossip spreads it), and each
            // replica caught up.
            let ready = |n: &Server| {
                let replication = n.replication();
                let known = n.cli(&["CLUSTER", "NODES"]).matches("slave").count();
                known == 3 * replicas
                    && n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")
                    && (replication.contains("role:master")
                        || replication.contains("master_link_status:up"))
            };
            if this.nodes.iter().all(ready) {
                return Some(this);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the cluster never came up");
    }

    /// The `redis+cluster://` URL of two of its nodes (the third is discovered).
    pub fn url(&self) -> String {
        let login = self
            .acl
            .map(|(user, password)| format!("{user}:{password}@"))
            .unwrap_or_default();
        format!(
            "redis+cluster://{login}127.0.0.1:{},127.0.0.1:{}",
            self.nodes[0].port, self.nodes[1].port
        )
    }
}

impl Cluster {
    /// The index of the node that serves `slot`.
    pub fn owner_of(&self, slot: u16) -> usize {
        let nodes = self.nodes[0].cli(&["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let owns = fields.iter().skip(8).any(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                match (from.parse::<u16>(), to.parse::<u16>()) {
                    (Ok(from), Ok(to)) => (from..=to).contains(&slot),
                    _ => false,
                }
            });
            if owns {
                let port = fields[1].split(['@', ':']).nth(1).unwrap();
                return self
                    .nodes
                    .iter()
                    .position(|n| n.port.to_string() == port)
                    .unwrap();
            }
        }
        panic!("no node serves slot {slot}:\n{nodes}");
    }

    /// The slot of `key`.
    pub fn slot_of(&self, key: &str) -> u16 {
        self.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .unwrap()
    }

    /// Moves `slot`, with its keys, from the node serving it to the node
    /// `to`, as `redis-cli --cluster reshard` does (IMPORTING and MIGRATING,
    /// MIGRATE in batches, then SETSLOT NODE everywhere): clients meanwhile get
    /// `ASK` and `TRYAGAIN` answers, then `MOVED`.
    pub fn migrate_slot(&self, slot: u16, to: usize) {
        let from = self.owner_of(slot);
        assert_ne!(from, to, "slot {slot} is on node {to} already");
        let id = |n: usize| self.nodes[n].cli(&["CLUSTER", "MYID"]).trim().to_owned();
        let (source, target) = (&self.nodes[from], &self.nodes[to]);
        let number = slot;
        let slot = slot.to_string();
        let ok = |said: String| assert!(said.trim() == "OK", "{said}");
        ok(target.cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &id(from)]));
        ok(source.cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &id(to)]));
        loop {
            let keys = source.cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = target.port.to_string();
            let mut migrate = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            migrate.extend(keys);
            ok(source.cli(&migrate));
        }
        let owner = id(to);
        for node in [target, source] {
            ok(node.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &owner]));
        }
        for (n, node) in self.nodes.iter().enumerate() {
            if n != from && n != to {
                ok(node.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &owner]));
            }
        }
        assert_eq!(self.owner_of(number), to, "slot {slot} moved");
        let left = source.cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot]);
        assert_eq!(left.trim(), "0", "no key of slot {slot} left behind");
    }
}

impl Cluster {
    /// The index of a replica of the node `primary`.
    pub fn replica_of(&self, primary: usize) -> usize {
        let id = self.nodes[primary].cli(&["CLUSTER", "MYID"]);
        let id = id.trim();
        self.nodes
            .iter()
            .position(|n| {
                let replication = n.replication();
                replication.contains("role:slave")
                    && replication.contains(&format!("master_port:{}", self.nodes[primary].port))
            })
            .unwrap_or_else(|| panic!("no replica of {id}"))
    }
}
