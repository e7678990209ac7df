//! A primary and a replica of our own (`redis-server` processes on loopback,
//! killed when dropped), for what needs replication: the replica wait, and
//! failovers. `None` (after printing why) where there is no `redis-server` and
//! `CI` is not set.
//!
//! `TW_REDIS_FLAVOR=valkey` runs Valkey's programs (`valkey-server`,
//! `valkey-cli`) instead, for the same tests against Valkey.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A port no server of this test binary has had: a sentinel of another test
/// keeps calling the ports of the servers it saw die, and would take a new
/// server there for its own (and make it a replica).
pub fn fresh_port() -> u16 {
    static USED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut used = USED.lock().unwrap();
        if !used.contains(&port) {
            used.push(port);
            return port;
        }
    }
}

/// The server's program: `redis-server`, or `valkey-server` under
/// `TW_REDIS_FLAVOR=valkey`.
pub fn server_program() -> String {
    format!("{}-server", flavor())
}

/// The command-line client's program: `redis-cli` or `valkey-cli`.
pub fn cli_program() -> String {
    format!("{}-cli", flavor())
}

fn flavor() -> String {
    std::env::var("TW_REDIS_FLAVOR").unwrap_or_else(|_| "redis".into())
}

/// A running `redis-server`.
pub struct Server {
    child: Child,
    pub port: u16,
    /// What `cli` logs in with (`--user`, `--pass`), where the server asks.
    login: Vec<String>,
    /// Its working directory, where a replica writes what it receives (an RDB
    /// file, which a server started later in the same place would load).
    _dir: tempfile::TempDir,
}

impl Server {
    /// Started with `args` on a free port, once it accepts connections.
    pub fn start(args: &[&str]) -> Option<Self> {
        Self::start_with(None, args, &[])
    }

    /// Started from the configuration file `config` (if any) and `args`; its
    /// command-line client logs in with `login` (`--user`, `--pass`).
    pub fn start_as(
        config: Option<&std::path::Path>,
        args: &[&str],
        login: &[&str],
    ) -> Option<Self> {
        Self::start_with(config, args, login)
    }

    /// A sentinel, with its configuration file (which it rewrites) at `config`.
    pub fn sentinel(config: &std::path::Path) -> Option<Self> {
        Self::start_with(Some(config), &["--sentinel"], &[])
    }

    /// A node of a Redis Cluster, keeping its cluster state in `dir`.
    /// With `acl`, its only user is that (user, password): the default one is off.
    pub fn cluster_node(
        dir: &std::path::Path,
        n: usize,
        acl: Option<(&str, &str)>,
    ) -> Option<Self> {
        let state = dir.join(format!("nodes-{n}.conf"));
        let state = state.display().to_string();
        let mut args = vec![
            "--cluster-enabled".to_owned(),
            "yes".into(),
            "--cluster-config-file".into(),
            state,
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
        ];
        let mut login = Vec::new();
        if let Some((user, password)) = acl {
            let rule = format!(">{password}");
            args.extend(["--user", user, "on", &rule, "~*", "&*", "+@all"].map(String::from));
            args.extend(["--user", "default", "off"].map(String::from));
            login.extend(["--user", user, "--pass", password, "--no-auth-warning"]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start_with(None, &args, &login)
    }

    /// Started on a free port: one picked by the OS, tried again with another
    /// where it was taken meanwhile (by another test's server: then ours exits,
    /// or the one answering there is not ours).
    fn start_with(config: Option<&std::path::Path>, args: &[&str], login: &[&str]) -> Option<Self> {
        for _ in 0..10 {
            let port = fresh_port();
            let dir = tempfile::tempdir().unwrap();
            let mut command = Command::new(server_program());
            if let Some(config) = config {
                command.arg(config);
            }
            let spawned = command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .current_dir(dir.path())
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let child = match spawned {
                Ok(child) => child,
                Err(e) if std::env::var_os("CI").is_some() => {
                    panic!("{} is required under CI: {e}", server_program())
                }
                Err(e) => {
                    eprintln!("skipped: no {} to replicate with: {e}", server_program());
                    return None;
                }
            };
            let mut server = Self {
                child,
                port,
                login: login.iter().map(|s| s.to_string()).collect(),
                _dir: dir,
            };
            let pid = format!("process_id:{}", server.child.id());
            for _ in 0..500 {
                if server.child.try_wait().ok().flatten().is_some() {
                    break; // the port was taken: another one
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let info = server.cli(&["INFO", "server"]);
                    if info.contains(&pid) {
                        // Valkey says so (`valkey_version`); Redis does not.
                        assert_eq!(
                            info.contains("valkey_version"),
                            flavor() == "valkey",
                            "{} is not the server asked for:\n{info}",
                            server_program()
                        );
                        return Some(server);
                    }
                    break; // another server answers there
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            server.kill();
        }
        panic!("redis-server found no free port to listen on");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `INFO replication` of this server.
    pub fn replication(&self) -> String {
        self.cli(&["INFO", "replication"])
    }

    /// What `redis-cli` prints for `args` on this server.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(cli_program())
            .args(["-p", &self.port.to_string()])
            .args(&self.login)
            .args(args)
            .output()
            .expect("the command-line client");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Its process id.
    /// The lag (seconds since it last acknowledged) of this primary's first
    /// replica, as its `INFO replication` shows it.
    #[allow(dead_code)] // not every binary waits for replicas
    pub fn replica_lag(&self) -> Option<u64> {
        self.replication()
            .split([',', '\r', '\n'])
            .find_map(|field| field.strip_prefix("lag="))
            .and_then(|n| n.parse().ok())
    }

    /// Waits (a readiness poll on the server's view) until this primary's first
    /// replica acknowledged within `within` seconds.
    #[allow(dead_code)]
    pub fn until_replica_lag(&self, within: u64) {
        for _ in 0..1_000 {
            if self.replica_lag().is_some_and(|lag| lag <= within) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the replica never answered:\n{}", self.replication());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process (SIGKILL): a primary that dies.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process (SIGSTOP) or lets it go on (SIGCONT): a server that
    /// hangs.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The arguments of a server that keeps nothing on disk and, as a primary,
/// sends a new replica its copy at once (not 5 s later, Redis's default wait
/// for more replicas to share it): any of them may be promoted.
pub const REPLICABLE: [&str; 6] = [
    "--save",
    "",
    "--appendonly",
    "no",
    "--repl-diskless-sync-delay",
    "0",
];

/// The replica timeout of the tests' stores: long enough for a replica on a
/// busy machine to answer (300 ms was not, with the whole workspace's tests
/// running on two cores); a stopped replica costs it once per save.
#[allow(dead_code)] // the bench does not stop replicas
pub const REPLICA_TIMEOUT: Duration = Duration::from_secs(3);

/// A primary with one replica that has caught up.
pub struct Replicated {
    pub primary: Server,
    pub replica: Server,
}

impl Replicated {
    pub fn start() -> Option<Self> {
        let unsaved = REPLICABLE;
        let primary = Server::start(&unsaved)?;
        let of = primary.port.to_string();
        let replica = Server::start(&[&unsaved[..], &["--replicaof", "127.0.0.1", &of]].concat())?;
        // Ready once the primary counts it (a readiness poll, not a timing check).
        for _ in 0..1_000 {
            if primary.replication().contains("connected_slaves:1")
                && replica.replication().contains("master_link_status:up")
            {
                return Some(Self { primary, replica });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the replica never caught up:\n{}", replica.replication());
    }
}
