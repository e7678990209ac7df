//! Running the binary in a temporary home with a configuration of our own.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every secret in these tests contains it; no output but `token`'s stdout may.
pub const MARKER: &str = "TOPSECRET";

/// A temporary home (config, data and cache directories inside) and a config file.
/// The key Redis stores seal the tests' tokens with (32 bytes, base64).
pub const STORE_KEY: &str = "dG9rZW53YXJkZW4tdGVzdHMtc3RvcmUta2V5LTMyYiE=";

pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    /// A home whose configuration file holds `config`.
    pub fn with_config(config: &str) -> Self {
        let home = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(home.config_path(), config).unwrap();
        home
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.toml")
    }

    /// `tokenwarden <args>` in this home: `HOME` and the XDG directories point
    /// inside it, `TOKENWARDEN_CONFIG` at its file, nothing inherited that could
    /// change the outcome; [`STORE_KEY`] is the key Redis stores seal tokens with.
    pub fn command(&self, args: &[&str]) -> Command {
        self.tool(env!("CARGO_BIN_EXE_tokenwarden"), args)
    }

    /// Another program (git, kubectl) in this home, with the same environment:
    /// the helpers it runs are `tokenwarden` in this home too.
    pub fn tool(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join("xdg-config"))
            .env("XDG_DATA_HOME", self.path().join("xdg-data"))
            .env("XDG_CACHE_HOME", self.path().join("xdg-cache"))
            .env("TOKENWARDEN_CONFIG", self.config_path())
            // An agent of this home's own, if a test starts one: never the
            // developer's.
            .env("TOKENWARDEN_AGENT_SOCK", self.path().join("agent.sock"))
            // Every run logs everything; `run` fails it if a secret shows there.
            .env("TOKENWARDEN_LOG", "trace")
            .env("TOKENWARDEN_STORE_KEY", STORE_KEY);
        command
    }

    /// Runs `tokenwarden <args>` to the end.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::checked(self.command(args).output().unwrap(), args)
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Run(pub Output);

impl Run {
    /// The run of `tokenwarden <args>`; fails if a secret shows on stderr,
    /// where the trace log goes.
    pub fn checked(output: Output, args: &[&str]) -> Self {
        let run = Run(output);
        assert!(
            !run.stderr().contains(MARKER),
            "a secret in the trace log or on stderr of `tokenwarden {}`:\n{}",
            args.join(" "),
            run.stderr()
        );
        run
    }

    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Asserts the exit code, showing both outputs when it differs.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Asserts that stderr (and stdout, unless `stdout_may` is set) has no secret.
    pub fn expect_no_secret(&self, stdout_may: bool) -> &Self {
        assert!(
            !self.stderr().contains(MARKER),
            "a secret on stderr: {}",
            self.stderr()
        );
        if !stdout_may {
            assert!(
                !self.stdout().contains(MARKER),
                "a secret on stdout: {}",
                self.stdout()
            );
        }
        self
    }
}

/// Whether servers this machine lacks must be there (under `CI`).
pub fn required() -> bool {
    std::env::var_os("CI").is_some()
}

/// Polls `done` (10 s of real time at most: a hang, not a timing check).
pub async fn wait_for(done: impl Fn() -> bool) {
    let polled = async {
        while !done() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), polled)
        .await
        .expect("the condition came true");
}

/// Runs `command` to its end with `input` on its stdin, its stdout and
/// stderr captured.
pub fn with_input(mut command: Command, input: &[u8]) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// A long-running `tokenwarden` (the proxy, the agent), killed when dropped;
/// everything it writes to stderr is collected.
pub struct Daemon {
    child: std::process::Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts `command` and waits for its stderr line that starts with
    /// `ready`: the daemon, that line, and the lines before it.
    pub fn start(mut command: Command, ready: &str) -> (Self, String, String) {
        use std::io::{BufRead as _, BufReader};
        use std::process::Stdio;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut before = String::new();
        let line = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("it did not start: {before}")
            };
            if line.starts_with(ready) {
                break line;
            }
            before += &format!("{line}\n");
        };
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(before.clone() + &line + "\n"));
        let collected = stderr.clone();
        let drain = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                *collected.lock().unwrap() += &format!("{line}\n");
            }
        });
        let daemon = Self {
            child,
            stderr,
            drain: Some(drain),
        };
        (daemon, line, before)
    }

    /// Sends it a signal (`TERM`, `HUP`...).
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for it to end: its exit code and all its stderr.
    pub fn end(mut self) -> (Option<i32>, String) {
        let code = self.child.wait().unwrap().code();
        self.drain.take().unwrap().join().unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        (code, stderr)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `n` of `command()` at once and waits for all: what each printed,
/// every one checked to succeed and to show no secret but on stdout.
pub fn at_once(n: usize, command: impl Fn() -> Command) -> std::collections::HashSet<String> {
    use std::process::Stdio;
    let children: Vec<_> = (0..n)
        .map(|_| {
            let mut command = command();
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    let outputs = children.into_iter().map(|c| c.wait_with_output().unwrap());
    outputs
        .map(|output| Run::checked(output, &[]).expect_code(0).stdout())
        .collect()
}
