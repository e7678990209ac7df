//! What the demo shows: the live progress line (stderr, only on a terminal) and
//! the final summary (stdout, stable: tests and the README quote its labels).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fmt::Write as _;
use std::time::Duration;

/// The demo's figures at one moment.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Time since the workers started.
    pub elapsed: Duration,
    /// Concurrent workers.
    pub workers: usize,
    /// How long the server's tokens live.
    pub lifetime: Duration,
    /// API requests the workers sent.
    pub requests: u64,
    /// `client_credentials` grants the authorization server served.
    pub logins: u64,
    /// `refresh_token` grants it served.
    pub refreshes: u64,
    /// 401s the API sent that the client refreshed and replayed.
    pub replayed: u64,
    /// Live tokens the API side revoked.
    pub revoked: u64,
    /// Requests whose final answer was not 2xx, or that failed.
    pub failures: u64,
    /// The fingerprint of the client's current token (never the token).
    pub fingerprint: Option<String>,
}

impl Figures {
    /// Token requests of every grant.
    pub fn token_requests(&self) -> u64 {
        self.logins + self.refreshes
    }
}

/// The live progress line: a bar over the run's length and the figures.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    seconds: u64,
}

impl Progress {
    /// A progress line for a run of `seconds`, drawn on stderr ~10 times a second
    /// (hidden when stderr is not a terminal).
    pub fn new(seconds: u64) -> Self {
        let target = ProgressDrawTarget::stderr_with_hz(10);
        let bar = ProgressBar::with_draw_target(Some(seconds.saturating_mul(10)), target);
        let style =
            ProgressStyle::with_template("{spinner:.green} [{bar:12.cyan/blue}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        Self { bar, seconds }
    }

    /// Shows `figures`.
    pub fn update(&self, figures: &Figures) {
        let tenths = u64::try_from(figures.elapsed.as_millis() / 100).unwrap_or(u64::MAX);
        self.bar.set_position(tenths);
        let fingerprint = figures.fingerprint.as_deref().unwrap_or("--------");
        self.bar.set_message(format!(
            "{:.1}/{} s  requests {}  token requests {}  refreshes {}  401s replayed {}  failures {}  token {fingerprint}",
            figures.elapsed.as_secs_f64(),
            self.seconds,
            figures.requests,
            figures.token_requests(),
            figures.refreshes,
            figures.replayed,
            figures.failures,
        ));
    }

    /// Removes the line, before the summary is printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The few lines printed before the run: what runs where.
pub fn intro(
    workers: usize,
    seconds: u64,
    token_url: &str,
    api_url: &str,
    lifetime: Duration,
) -> String {
    format!(
        "Starting an OAuth2 authorization server and an API on loopback (tokens live {} s).\n\
         \x20 authorization server  {token_url}\n\
         \x20 API                   {api_url}items/{{n}}\n\
         Running {workers} workers for {seconds} s through one AuthClient...",
        lifetime.as_secs()
    )
}

/// The final summary. Each figure's line starts with its label, padded, then the
/// number: `  requests            12345`.
pub fn summary(figures: &Figures) -> String {
    let f = figures;
    let mut out = format!(
        "tokenwarden demo: {:.1} s, {} {}\n",
        f.elapsed.as_secs_f64(),
        f.workers,
        plural(f.workers as u64, "worker")
    );
    let mut line = |label: &str, value: u64, note: String| {
        let text = format!("  {label:<20}{value:<10}{note}");
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line("requests", f.requests, String::new());
    line(
        "token requests",
        f.token_requests(),
        format!(
            "({} {}, {} {}; tokens lived {} s)",
            f.logins,
            plural(f.logins, "login"),
            f.refreshes,
            plural(f.refreshes, "refresh"),
            f.lifetime.as_secs()
        ),
    );
    line(
        "401s replayed",
        f.replayed,
        format!(
            "({} live {} revoked: one refresh each, then every rejected request replayed)",
            f.revoked,
            plural(f.revoked, "token")
        ),
    );
    line("failures", f.failures, String::new());
    let _ = write!(
        out,
        "{} {} shared one token: one token request per expiry or revocation, \
         not one per worker or per request.",
        f.workers,
        plural(f.workers as u64, "worker")
    );
    out
}

/// `word`, or its plural for a `count` other than 1.
fn plural(count: u64, word: &str) -> String {
    match (count, word.ends_with('h')) {
        (1, _) => word.to_owned(),
        (_, true) => format!("{word}es"),
        (_, false) => format!("{word}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_start_with_their_labels() {
        let figures = Figures {
            requests: 12_345,
            logins: 1,
            refreshes: 5,
            replayed: 2,
            lifetime: Duration::from_secs(3),
            ..Figures::default()
        };
        let text = summary(&figures);
        assert!(text.contains("\n  requests            12345"), "{text}");
        assert!(
            text.contains(
                "\n  token requests      6         (1 login, 5 refreshes; tokens lived 3 s)"
            ),
            "{text}"
        );
        assert!(text.contains("\n  401s replayed       2 "), "{text}");
        assert!(text.contains("\n  failures            0"), "{text}");
    }
}
