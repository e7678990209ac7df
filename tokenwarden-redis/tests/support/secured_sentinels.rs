//! A Sentinel deployment secured as operators run it: TLS, an ACL user on the
//! nodes, a password on the sentinels (killed when dropped).

use crate::replicated::Server;
use crate::sentinels::MASTER;
use std::time::Duration;

/// The nodes' ACL user and password, and the sentinels' password, of
/// [`SecuredSentinels`].
pub const NODE_LOGIN: (&str, &str) = ("tw", "pw-TOPSECRET");
pub const SENTINEL_PASSWORD: &str = "sentinel-TOPSECRET";

/// A primary, a replica and three sentinels, all over TLS (certificates for
/// 127.0.0.1 from `pki`, replication and monitoring over TLS too), the nodes
/// with an ACL user (`NODE_LOGIN`, the default user off) and the sentinels
/// with a password of their own. Their plain ports serve the readiness checks
/// only; the store talks to the TLS ports.
pub struct SecuredSentinels {
    pub primary: Server,
    pub replica: Server,
    pub sentinels: Vec<Server>,
    /// The TLS ports of the sentinels.
    pub sentinel_ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl SecuredSentinels {
    pub fn start(pki: &crate::tls_redis::Pki) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pki.issue(&["127.0.0.1", "localhost"]);
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let (cert, key, ca) = (
            file("tls.crt", &cert),
            file("tls.key", &key),
            file("ca.crt", &pki.ca),
        );
        let tls = format!(
            "tls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {ca}\n\
             tls-auth-clients no\ntls-replication yes\n"
        );
        let (user, password) = NODE_LOGIN;
        let login = ["--user", user, "--pass", password, "--no-auth-warning"];
        let node = |n: &str, extra: &str| {
            let tls_port = crate::replicated::fresh_port();
            let config = file(
                &format!("{n}.conf"),
                &format!(
                    "{tls}tls-port {tls_port}\nsave \"\"\nappendonly no\nrepl-diskless-sync-delay 0\n\
                     user default off\nuser {user} on >{password} ~* &* +@all\n\
                     masteruser {user}\nmasterauth {password}\n{extra}"
                ),
            );
            let server = Server::start_as(Some(std::path::Path::new(&config)), &[], &login)?;
            Some((server, tls_port))
        };
        let (primary, primary_tls) = node("primary", "")?;
        let (replica, _) = node("replica", &format!("replicaof 127.0.0.1 {primary_tls}\n"))?;
        let mut sentinels = Vec::new();
        let mut sentinel_ports = Vec::new();
        for n in 0..3 {
            let tls_port = crate::replicated::fresh_port();
            let config = file(
                &format!("sentinel-{n}.conf"),
                &format!(
                    "{tls}tls-port {tls_port}\nrequirepass {SENTINEL_PASSWORD}\n\
                     sentinel sentinel-pass {SENTINEL_PASSWORD}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {primary_tls} 2\n\
                     sentinel auth-user {MASTER} {user}\nsentinel auth-pass {MASTER} {password}\n\
                     sentinel down-after-milliseconds {MASTER} 500\n\
                     sentinel failover-timeout {MASTER} 2000\n"
                ),
            );
            let login = ["--pass", SENTINEL_PASSWORD, "--no-auth-warning"];
            let path = std::path::Path::new(&config);
            sentinels.push(Server::start_as(Some(path), &["--sentinel"], &login)?);
            sentinel_ports.push(tls_port);
        }
        let this = Self {
            primary,
            replica,
            sentinels,
            sentinel_ports,
            _dir: dir,
        };
        for _ in 0..1_500 {
            let replicated = this.primary.replication().contains("connected_slaves:1")
                && this.replica.replication().contains("master_link_status:up");
            let found = this
                .sentinels
                .iter()
                .all(|s| s.cli(&["SENTINEL", "replicas", MASTER]).contains("slave"));
            if replicated && found {
                return Some(this);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "the secured deployment never came up:\n{}\n{}",
            this.primary.replication(),
            this.sentinels[0].cli(&["SENTINEL", "replicas", MASTER])
        );
    }

    /// The `rediss+sentinel://` URL, with the nodes' user and password.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let (user, password) = NODE_LOGIN;
        format!(
            "rediss+sentinel://{user}:{password}@{}/{MASTER}",
            hosts.join(",")
        )
    }
}
