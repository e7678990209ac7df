//! The command line: `tokenwarden <command> [options]`.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Access tokens for any OAuth2 API: fetched, stored encrypted, refreshed once per
/// expiry, and put on your requests.
#[derive(Debug, Parser)]
#[command(name = "tokenwarden", version, about, long_about = None)]
pub struct Cli {
    /// The configuration file [default: $TOKENWARDEN_CONFIG, else the platform
    /// config directory's tokenwarden/config.toml].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// Which profile of the configuration file to use.
#[derive(Debug, Args, Clone)]
pub struct ProfileArg {
    /// The profile [default: $TOKENWARDEN_PROFILE, else `default`].
    #[arg(short, long, value_name = "NAME")]
    pub profile: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a valid access token (fetched, refreshed or reused as needed).
    Token {
        #[command(flatten)]
        profile: ProfileArg,
        /// Print the token's description and the token as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make an authenticated HTTP request, like curl.
    Curl(CurlArgs),
    /// Show whether a profile is signed in, and until when (never a secret).
    Status {
        /// One profile; without it, a table of all profiles.
        #[arg(short, long, value_name = "NAME")]
        profile: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign in (device code, browser) or fetch a token now (other grants).
    Login {
        #[command(flatten)]
        profile: ProfileArg,
        /// How long to wait for a browser sign-in, in seconds (a device code
        /// lasts as long as the server says).
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        timeout: u64,
    },
    /// Revoke the tokens where the server supports it, and remove them.
    Logout {
        #[command(flatten)]
        profile: ProfileArg,
        /// Remove a stored token that cannot be read here (another key, or left
        /// in clear by an earlier version), without revoking it.
        #[arg(long)]
        force: bool,
    },
    /// A self-contained demo: a local authorization server and API, concurrent
    /// workers and short-lived tokens.
    Demo {
        /// How long the workers run.
        #[arg(long, default_value_t = 15, value_name = "SECONDS")]
        seconds: u64,
        /// How many workers call the API at once.
        #[arg(long, default_value_t = 16)]
        workers: usize,
    },
    /// A local reverse proxy to the profile's base_url that adds the token.
    Proxy {
        #[command(flatten)]
        profile: ProfileArg,
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8790", value_name = "ADDR:PORT")]
        listen: SocketAddr,
        /// Listen on a Unix socket instead (made 0600: only you can connect).
        #[cfg(unix)]
        #[arg(long, value_name = "PATH", conflicts_with = "listen")]
        unix_socket: Option<std::path::PathBuf>,
        /// Another name clients may use for the proxy in `Host` (repeatable);
        /// by default only the listening address (and `localhost`).
        #[arg(long = "allow-host", value_name = "NAME[:PORT]")]
        allow_hosts: Vec<String>,
        /// A web origin whose pages may use the proxy (repeatable); by default
        /// browser requests from other sites get 403.
        #[arg(long = "allow-origin", value_name = "ORIGIN")]
        allow_origins: Vec<String>,
        /// Also serve /metrics (Prometheus) and /healthz on this address; they
        /// are always on the proxy's own listener under /.tokenwarden/.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics_listen: Option<SocketAddr>,
    },
    /// Hold the profiles' tokens for every other command: one process per user,
    /// on a Unix socket only the user can use (commands use it when it runs).
    #[cfg(unix)]
    Agent {
        /// The socket [default: $TOKENWARDEN_AGENT_SOCK, else
        /// $XDG_RUNTIME_DIR/tokenwarden/agent.sock].
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Print the shell line that points commands at this agent's socket
        /// (`tokenwarden agent --print-env > ~/.tokenwarden-agent.sh &`, then
        /// `. ~/.tokenwarden-agent.sh` in each shell).
        #[arg(long)]
        print_env: bool,
    },
    /// Run a command with the token in its environment, passing its exit code
    /// and signals through; with --token-file, also a 0600 file kept fresh
    /// while it runs.
    Exec(ExecArgs),
    /// kubectl's exec credential plugin: prints an ExecCredential with the token
    /// (client.authentication.k8s.io v1 or v1beta1, as kubectl asks).
    Kubectl {
        #[command(flatten)]
        profile: ProfileArg,
    },
    /// git's credential helper (`git config credential.helper "tokenwarden
    /// git-credential -p P"`): get, store, erase.
    GitCredential {
        #[command(flatten)]
        profile: ProfileArg,
        /// What git asks: get, store or erase.
        operation: String,
    },
    /// Docker's credential helper (also run as `docker-credential-tokenwarden`):
    /// get, store, erase, list; the profile is the one whose `registry` is asked for.
    DockerCredential {
        /// What docker asks: get, store, erase or list.
        operation: String,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// `tokenwarden exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// The environment variable that holds the token.
    #[arg(long = "env", value_name = "NAME", default_value = "ACCESS_TOKEN")]
    pub env: String,
    /// Keep a 0600 file holding the current token, replaced (whole) ahead of
    /// each expiry while the command runs, and removed when it ends.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The command and its arguments, after `--`.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<std::ffi::OsString>,
}

/// `tokenwarden curl`.
#[derive(Debug, Args)]
pub struct CurlArgs {
    #[command(flatten)]
    pub profile: ProfileArg,
    /// The method [default: GET, or POST with data].
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,
    /// A header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// The request body.
    #[arg(
        short = 'd',
        long = "data",
        value_name = "DATA",
        conflicts_with = "data_file"
    )]
    pub data: Option<String>,
    /// The request body, from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub data_file: Option<PathBuf>,
    /// Print the response's status line and headers too.
    #[arg(short = 'i', long = "include")]
    pub include: bool,
    /// Exit with 22 when the status is 400 or more.
    #[arg(short = 'f', long)]
    pub fail: bool,
    /// The URL, absolute or relative to the profile's base_url.
    pub url: String,
}
