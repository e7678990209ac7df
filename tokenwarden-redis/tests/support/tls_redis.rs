//! Redis over TLS for tests: a CA and certificates (`support/pki.rs`), and a real
//! `redis-server` with TLS only on a free loopback port, with an ACL user `tw`
//! whose password is `pw-TOPSECRET`. Used by the Redis crate's tests and the CLI's.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use crate::pki::Pki;

/// A `redis-server` with TLS only, on a free loopback port; killed when dropped.
pub struct TlsRedis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    /// Started with the certificate `(cert, key)` issued by `pki`; `clients`:
    /// whether it asks for client certificates (`tls-auth-clients`). `None` (after
    /// printing why) where there is no `redis-server` and `CI` is not set.
    pub fn start(pki: &Pki, (cert, key): &(String, String), clients: bool) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (cert, key, ca) = (
            write("server.pem", cert),
            write("server.key", key),
            write("ca.pem", &pki.ca),
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let arg = |p: &Path| p.display().to_string();
        let spawned = Command::new(crate::replicated::server_program())
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--tls-port", &port.to_string()])
            .args(["--tls-cert-file", &arg(&cert), "--tls-key-file", &arg(&key)])
            .args(["--tls-ca-cert-file", &arg(&ca)])
            .args(["--tls-auth-clients", if clients { "yes" } else { "no" }])
            .args(["--user", "tw", "on", ">pw-TOPSECRET", "~*", "&*", "+@all"])
            .args(["--user", "default", "off"])
            .current_dir(dir.path())
            .stdout(std::fs::File::create(dir.path().join("redis.log")).unwrap())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!(
                    "{} is required under CI: {e}",
                    crate::replicated::server_program()
                )
            }
            Err(e) => {
                eprintln!("skipped: no redis-server to run with TLS: {e}");
                return None;
            }
        };
        let log = dir.path().join("redis.log");
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!("redis-server with TLS did not listen on {port}:\n{log}");
    }

    /// A `rediss://` URL for `host`, with the ACL user and password.
    pub fn url(&self, host: &str) -> String {
        format!("rediss://tw:pw-TOPSECRET@{host}:{}/0", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
