//! Real processes sharing one Redis: this test binary runs itself as the children
//! (selected by `TW_REDIS_CHILD`), each one instance of a service with its own
//! manager, store connection and `ManualClock`. The clocks stand at the same time
//! and the parent moves them in step, one line on each child's stdin per step; each
//! child answers with a `child: ` line on stdout.

use crate::servers::{self, Server};
use crate::{browser, required, URL};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;
use tokenwarden::source::oauth2::{ClientAuth, DeviceCode, OAuth2Client};
use tokenwarden::store::TokenCipher;
use tokenwarden::{source::from_fn, ClientSecret, ManualClock, Token, TokenManager};
use tokenwarden_redis::RedisStore;
use tokio::io::AsyncBufReadExt as _;

/// Set in children: the Redis prefix the test shares.
const CHILD: &str = "TW_REDIS_CHILD";
/// Set in children of the lease test: `hang` or `take`.
const MODE: &str = "TW_REDIS_MODE";
/// Set in children of the rotation test: how to sign in at the authorization
/// server (JSON: [`sign_in`]).
const SERVER: &str = "TW_AUTH_SERVER";
/// Set in children (and the parent) of the failover test: the store's URL.
const REDIS_URL: &str = "TW_REDIS_URL";

/// One child process, killed when dropped.
struct Instance {
    process: std::process::Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Instance {
    /// Runs this binary's test `test` as a child on `prefix`.
    fn start(test: &str, prefix: &str, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, prefix)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut process = command.spawn().unwrap();
        Self {
            stdin: process.stdin.take().unwrap(),
            stdout: BufReader::new(process.stdout.take().unwrap()),
            process,
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// What the child says next (a line with `child: `), without the prefix.
    fn said(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let read = self.stdout.read_line(&mut line).unwrap();
            assert!(read > 0, "the child ended before answering");
            // The test harness starts its own line ("test <name> ... ") first.
            if let Some((_, said)) = line.trim_end().split_once("child: ") {
                return said.to_owned();
            }
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.process.kill(); // SIGKILL
        let _ = self.process.wait();
    }
}

/// In a child: says `line` to the parent.
fn say(line: impl std::fmt::Display) {
    println!("child: {line}");
}

/// In a child: the parent's lines.
fn orders() -> tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>> {
    tokio::io::BufReader::new(tokio::io::stdin()).lines()
}

/// In the parent: a fresh prefix and a connection, or `None` (skip) without Redis.
async fn parent() -> Option<(String, redis::aio::MultiplexedConnection)> {
    let connection = match redis::Client::open(URL.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
    {
        Ok(connection) => connection,
        Err(error) if required() => panic!("Redis is required under CI: {error}"),
        Err(error) => {
            eprintln!("skipped: {error}");
            return None;
        }
    };
    Some((
        format!("tokenwarden-test-{:016x}", fastrand::u64(..)),
        connection,
    ))
}

async fn get<T: redis::FromRedisValue>(
    redis: &mut redis::aio::MultiplexedConnection,
    command: &str,
    key: &str,
) -> T {
    redis::cmd(command)
        .arg(key)
        .query_async(redis)
        .await
        .unwrap()
}

/// In a child: a manager of `source` on the shared store (or the deployment the
/// parent names in `TW_REDIS_URL`), its clock at the common start.
async fn instance<S: tokenwarden::TokenSource + 'static>(
    prefix: &str,
    source: S,
    cipher: Option<TokenCipher>,
) -> (TokenManager, ManualClock) {
    let url = std::env::var(REDIS_URL).unwrap_or_else(|_| URL.to_owned());
    instance_at(&url, prefix, source, cipher).await
}

/// The lease TTL of the children: 2 s (the takeover test waits for one to
/// end), or `TW_LEASE_TTL_SECS`, which the failover test sets longer than a
/// failover takes (docs/design/004: a lease must outlive the failover for its
/// holder to save under it on the promoted replica).
fn lease_ttl() -> Duration {
    let secs = std::env::var(LEASE_TTL).ok().and_then(|s| s.parse().ok());
    Duration::from_secs(secs.unwrap_or(2))
}

/// Set in children of the failover test: their lease TTL, in seconds.
const LEASE_TTL: &str = "TW_LEASE_TTL_SECS";

/// A manager of `source` on the store at `url`, its clock at the common start.
async fn instance_at<S: tokenwarden::TokenSource + 'static>(
    url: &str,
    prefix: &str,
    source: S,
    cipher: Option<TokenCipher>,
) -> (TokenManager, ManualClock) {
    let clock = ManualClock::default();
    let mut store = RedisStore::builder(url).prefix(prefix).clock(clock.clone());
    if let Some(cipher) = cipher {
        store = store.cipher(cipher);
    }
    let manager = TokenManager::builder(source)
        .clock(clock.clone())
        .store(store.build().await.unwrap())
        .lease_ttl(lease_ttl())
        .build()
        .unwrap();
    (manager, clock)
}

/// In a child: a token source that counts its requests in Redis (`<prefix>:logins`),
/// so that the parent counts them across all processes. With `hang`, the request
/// never ends (the process is killed in it).
fn counted(prefix: &str, hang: bool) -> impl tokenwarden::TokenSource {
    let client = redis::Client::open(URL.as_str()).unwrap();
    let counter = format!("{prefix}:logins");
    from_fn("fleet", move || {
        let (client, counter) = (client.clone(), counter.clone());
        async move {
            let mut redis = client.get_multiplexed_async_connection().await.unwrap();
            let n: u64 = get(&mut redis, "INCR", &counter).await;
            if hang {
                say("refreshing");
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // the token endpoint
            Ok(Token::new(format!("fleet-{n}")).with_expires_in(Duration::from_secs(600)))
        }
    })
}

const SIXTEEN: &str = "processes::sixteen_processes_make_one_token_request_per_expiry";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_processes_make_one_token_request_per_expiry() {
    let _h = crate::leaks::harness();
    if let Ok(prefix) = std::env::var(CHILD) {
        let (manager, clock) = instance(&prefix, counted(&prefix, false), None).await;
        say("ready");
        let mut orders = orders();
        while orders.next_line().await.unwrap().is_some() {
            let callers: Vec<_> = (0..50)
                .map(|_| {
                    let manager = manager.clone();
                    tokio::spawn(
                        async move { manager.token().await.unwrap().fingerprint().to_owned() },
                    )
                })
                .collect();
            let mut seen = HashSet::new();
            for caller in callers {
                seen.insert(caller.await.unwrap());
            }
            say(seen.into_iter().collect::<Vec<_>>().join(","));
            clock.advance(Duration::from_secs(600));
        }
        return;
    }
    let Some((prefix, mut redis)) = parent().await else {
        return;
    };
    let mut instances: Vec<_> = (0..16)
        .map(|_| Instance::start(SIXTEEN, &prefix, &[]))
        .collect();
    for instance in &mut instances {
        assert_eq!(instance.said(), "ready");
    }
    let mut tokens = HashSet::new();
    for expiry in 1..=10u64 {
        instances.iter_mut().for_each(|i| i.send("expiry"));
        let said: HashSet<String> = instances.iter_mut().map(Instance::said).collect();
        assert_eq!(
            said.len(),
            1,
            "expiry {expiry}: one token in all 16 processes: {said:?}"
        );
        assert!(
            tokens.insert(said.into_iter().next().unwrap()),
            "a new token each expiry"
        );
        let logins: u64 = get(&mut redis, "GET", &format!("{prefix}:logins")).await;
        assert_eq!(
            logins, expiry,
            "expiry {expiry}: one token request for 16 × 50 callers"
        );
    }
}

const TAKEOVER: &str = "processes::a_lease_holder_killed_mid_refresh_is_taken_over_after_its_ttl";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_killed_mid_refresh_is_taken_over_after_its_ttl() {
    let _h = crate::leaks::harness();
    if let Ok(prefix) = std::env::var(CHILD) {
        let hang = std::env::var(MODE).unwrap() == "hang";
        let (manager, _clock) = instance(&prefix, counted(&prefix, hang), None).await;
        say(format!("key {}", manager.key().as_str()));
        orders().next_line().await.unwrap();
        let token = manager.token().await.unwrap();
        say(format!("token {}", token.fingerprint()));
        return;
    }
    let Some((prefix, mut redis)) = parent().await else {
        return;
    };
    let mut holder = Instance::start(TAKEOVER, &prefix, &[(MODE, "hang")]);
    let key = holder.said().strip_prefix("key ").unwrap().to_owned();
    holder.send("go");
    assert_eq!(
        holder.said(),
        "refreshing",
        "the holder took the lease and asked for a token"
    );
    drop(holder); // SIGKILL, mid-refresh, the lease still held
    let lease = format!("{prefix}:{{{key}}}:lease");
    let left: i64 = get(&mut redis, "PTTL", &lease).await;
    assert!(
        left > 0,
        "the dead holder's lease is still in Redis: {left}"
    );

    let mut taker = Instance::start(TAKEOVER, &prefix, &[(MODE, "take")]);
    taker.said();
    taker.send("go");
    let said = taker.said();
    assert!(said.starts_with("token "), "{said}");
    let logins: u64 = get(&mut redis, "GET", &format!("{prefix}:logins")).await;
    assert_eq!(logins, 2, "the dead holder's request, then the taker's");
    let stored: Option<Vec<u8>> = get(&mut redis, "GET", &format!("{prefix}:{{{key}}}")).await;
    assert!(stored.is_some(), "the taker stored its token");
    let held: i64 = get(&mut redis, "EXISTS", &lease).await;
    assert_eq!(held, 0, "the taker released the lease");
}

/// How a child signs in at `server` with the device flow: its issuer, device
/// client and scope (the child has no `Server` of its own).
fn sign_in(server: &Server) -> serde_json::Value {
    serde_json::json!({
        "issuer": server.issuer,
        "client": server.device_client.0,
        "confidential": server.device_client.1,
        "scope": server.sign_in_scope,
        "device_url": server.device_authorization_url,
    })
}

/// The device login that `sign_in` describes.
fn device_login(
    sign_in: &serde_json::Value,
    on_prompt: impl Fn(String) + Send + Sync + 'static,
) -> DeviceCode {
    let client = sign_in["client"].as_str().unwrap();
    let mut builder = OAuth2Client::builder()
        .issuer(sign_in["issuer"].as_str().unwrap())
        .client_id(client);
    if sign_in["confidential"].as_bool() == Some(true) {
        builder = builder.auth(ClientAuth::SecretBasic(ClientSecret::new(format!(
            "{client}-TOPSECRET"
        ))));
    }
    if let Some(url) = sign_in["device_url"].as_str() {
        builder = builder.device_authorization_url(url);
    }
    if sign_in["dpop"] == true {
        builder = builder.dpop(tokenwarden::dpop::DpopAlgorithm::Es256);
    }
    builder
        .build()
        .unwrap()
        .device_code()
        .scope(sign_in["scope"].as_str().unwrap())
        .on_prompt(move |prompt| {
            on_prompt(prompt.verification_uri_complete.clone().unwrap_or_else(|| {
                format!("{}?user_code={}", prompt.verification_uri, prompt.user_code)
            }))
        })
}

/// The fleet's counters, summed over its processes: fetches, refreshes,
/// failures.
fn fleet_totals(instances: &mut [Instance]) -> (u64, u64, u64) {
    let (mut fetches, mut refreshes, mut failures) = (0, 0, 0);
    for instance in instances {
        instance.send("stats");
        let said = instance.said();
        let n: Vec<u64> = said.split(' ').map(|n| n.parse().unwrap()).collect();
        (fetches, refreshes, failures) = (fetches + n[0], refreshes + n[1], failures + n[2]);
    }
    (fetches, refreshes, failures)
}

const ROTATION: &str =
    "processes::eight_processes_share_rotating_refresh_tokens_without_a_rejection";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_share_rotating_refresh_tokens_without_a_rejection() {
    let _h = crate::leaks::harness();
    let cipher = || Some(TokenCipher::new([5; 32]));
    if let Ok(prefix) = std::env::var(CHILD) {
        let sign_in: serde_json::Value =
            serde_json::from_str(&std::env::var(SERVER).unwrap()).unwrap();
        let source = device_login(&sign_in, |_| say("prompted: a login was needed"));
        let (manager, clock) = instance(&prefix, source, cipher()).await;
        say("ready");
        let mut orders = orders();
        while let Some(order) = orders.next_line().await.unwrap() {
            if order == "stats" {
                let stats = manager.stats();
                say(format!(
                    "{} {} {}",
                    stats.fetches, stats.refreshes, stats.failures
                ));
                continue;
            }
            if order == "touch" {
                // After a failover: the store's next command finds the new primary.
                let _ = manager.info().await;
                say("touched");
                continue;
            }
            clock.advance(Duration::from_secs(60)); // past the server's 5 s lifetime
            let callers: Vec<_> = (0..10)
                .map(|_| {
                    let manager = manager.clone();
                    tokio::spawn(async move {
                        match manager.token().await {
                            Ok(token) => token.fingerprint().to_owned(),
                            Err(error) => format!("error: {error}"),
                        }
                    })
                })
                .collect();
            let mut seen = HashSet::new();
            for caller in callers {
                seen.insert(caller.await.unwrap());
            }
            say(seen.into_iter().collect::<Vec<_>>().join(","));
        }
        return;
    }
    for server in servers::supporting(|s| s.device && s.rotation) {
        eight_processes_rotate_at(server, cipher(), false).await;
    }
}

/// Issue 20: the same fleet with a DPoP-bound grant (oidc-provider's public
/// client `cli-dpop`, whose refresh tokens are bound to the key of the sign-in):
/// each process refreshes with the key that came with the token through Redis,
/// or the server would refuse the refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_share_a_dpop_bound_token_and_its_key() {
    let _h = crate::leaks::harness();
    let Some(server) = servers::all()
        .into_iter()
        .find(|s| s.name == "oidc-provider")
    else {
        return;
    };
    eight_processes_rotate_at(server, Some(TokenCipher::new([5; 32])), true).await;
}

/// The rotation test's parent on `server`: one sign-in, then eight processes
/// through 20 expiries.
async fn eight_processes_rotate_at(
    server: &'static Server,
    cipher: Option<TokenCipher>,
    dpop: bool,
) {
    let name = server.name;
    let Some((prefix, _redis)) = parent().await else {
        return;
    };
    // The user logs in once (device flow, approved in the headless browser).
    let mut sign_in = sign_in(server);
    if dpop {
        sign_in["client"] = "cli-dpop".into();
        sign_in["confidential"] = false.into();
        sign_in["dpop"] = true.into();
    }
    let login = device_login(&sign_in, move |page| {
        let (user, password) = &server.user;
        tokio::spawn(async move {
            browser::approve_as(&page, (user.as_str(), password.as_str())).await
        });
    });
    let cipher_again = cipher.clone();
    let sign_in_json = sign_in.clone();
    let (first, _clock) = instance(&prefix, login, cipher).await;
    let signed_in = first
        .token()
        .await
        .unwrap_or_else(|e| panic!("{name}: approved: {e}"))
        .to_token();
    let key = signed_in
        .dpop_key
        .as_ref()
        .map(|k| k.thumbprint().to_owned());
    assert_eq!(key.is_some(), dpop, "{name}");
    let signed_in = signed_in.fingerprint();

    let sign_in = sign_in.to_string();
    let env = [(SERVER, sign_in.as_str())];
    let mut instances: Vec<_> = (0..8)
        .map(|_| Instance::start(ROTATION, &prefix, &env))
        .collect();
    for instance in &mut instances {
        assert_eq!(instance.said(), "ready", "{name}");
    }
    let mut tokens = HashSet::from([signed_in]);
    for round in 1..=20 {
        instances.iter_mut().for_each(|i| i.send("expiry"));
        one_new_token(
            &mut instances,
            &mut tokens,
            &format!("{name}: round {round}"),
        );
    }
    assert_eq!(
        fleet_totals(&mut instances),
        (0, 20, 0),
        "{name}: 20 refreshes in all, no login, no refresh token refused"
    );
    // The last token, read from the store by an instance that never held it:
    // bound to the sign-in's key still, which came with it.
    drop(instances);
    let nobody = device_login(&sign_in_json, |_| {
        panic!("no sign-in: the store has the token")
    });
    let (reader, _clock) = instance(&prefix, nobody, cipher_again).await;
    let last = reader.token().await.unwrap().to_token();
    assert_eq!(last.is_dpop(), dpop, "{name}");
    assert_eq!(
        last.dpop_key.as_ref().map(|k| k.thumbprint().to_owned()),
        key
    );
    drop(first);
}

/// Issue 16: the same fleet on Redis Sentinel (a primary, a replica, three
/// sentinels), the primary SIGKILLed three times, at rounds and moments drawn
/// from a seed (`TW_FAILOVER_SEED` replays the schedule): right after a round's
/// refresh was saved, or while the fleet is refreshing (a random delay after
/// the expiry); each time a new replica is started. Every process keeps getting
/// the one token of each expiry outside the rounds a primary died in, nobody
/// signs in again, and no refresh token is refused (the server would refuse a
/// spent one, and revoke the grant: the replica wait kept each rotated one, and
/// a lease held in a refresh the primary died in stays held on the replica
/// promoted until its holder saved there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_keep_rotating_through_sentinel_failovers() {
    let _h = crate::leaks::harness();
    if std::env::var(CHILD).is_ok() {
        return; // the children run the rotation test's child part
    }
    let Some(server) = servers::supporting(|s| s.device && s.rotation)
        .into_iter()
        .next()
    else {
        return;
    };
    let Some(mut deployment) = crate::sentinels::Sentinels::start() else {
        return;
    };
    let Some((prefix, _redis)) = parent().await else {
        return;
    };
    let (mut instances, _) = signed_in_fleet(server, &deployment.url(), &prefix).await;
    let seed = seed("TW_FAILOVER_SEED");
    eprintln!("failover schedule: seed {seed} (TW_FAILOVER_SEED={seed} replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    // Three rounds of 3..=18, at least two apart; in each, the primary dies
    // after the round or `Some(delay)` into it.
    let mut kills = std::collections::BTreeMap::new();
    while kills.len() < 3 {
        let round = rng.u32(3..=18);
        if kills.keys().all(|k: &u32| k.abs_diff(round) >= 2) {
            let during = rng.bool().then(|| Duration::from_millis(rng.u64(0..40)));
            kills.insert(round, during);
        }
    }
    eprintln!("failover schedule: {kills:?}");
    let mut tokens = HashSet::new();
    let mid_refresh = kills.values().filter(|k| k.is_some()).count() as u64;
    for round in 1..=20 {
        instances.iter_mut().for_each(|i| i.send("expiry"));
        let kill = kills.get(&round).copied();
        if let Some(Some(delay)) = kill {
            tokio::time::sleep(delay).await;
            // Mid-refresh: answers of this round may be errors (transient),
            // and it may cost a refresh more than one.
            tokio::task::block_in_place(|| deployment.fail_over());
            let said: Vec<String> = instances.iter_mut().map(Instance::said).collect();
            for answer in &said {
                assert!(
                    !answer.contains("login"),
                    "round {round} (seed {seed}): {answer}"
                );
            }
        } else {
            let context = format!("round {round} (seed {seed})");
            one_new_token(&mut instances, &mut tokens, &context);
            if kill.is_some() {
                // The primary dies right after this round's refresh was saved.
                tokio::task::block_in_place(|| deployment.fail_over());
            }
        }
        if kill.is_some() {
            for _ in 0..2 {
                instances.iter_mut().for_each(|i| i.send("touch"));
                for instance in &mut instances {
                    assert_eq!(instance.said(), "touched");
                }
            }
        }
    }
    let (fetches, refreshes, _failures) = fleet_totals(&mut instances);
    assert_eq!(fetches, 0, "seed {seed}: nobody signed in again");
    assert!(
        (20 - mid_refresh..=20 + mid_refresh).contains(&refreshes),
        "seed {seed}: {refreshes} refreshes: one per expiry, give or take one per round a primary died in"
    );
}

/// On `server`, a user signs in once (device flow, approved in the headless
/// browser) through the store at `url`; then eight processes share that token
/// there (`ready`). Also the token's key.
async fn signed_in_fleet(
    server: &'static Server,
    url: &str,
    prefix: &str,
) -> (Vec<Instance>, String) {
    let sign_in = sign_in(server);
    let login = device_login(&sign_in, move |page| {
        let (user, password) = &server.user;
        tokio::spawn(async move {
            browser::approve_as(&page, (user.as_str(), password.as_str())).await
        });
    });
    let cipher = Some(TokenCipher::new([5; 32]));
    let (first, _clock) = instance_at(url, prefix, login, cipher).await;
    first.token().await.expect("approved");
    let sign_in = sign_in.to_string();
    // Leases longer than a failover takes, even on a loaded machine.
    let env = [
        (SERVER, sign_in.as_str()),
        (REDIS_URL, url),
        (LEASE_TTL, "20"),
    ];
    let mut instances: Vec<_> = (0..8)
        .map(|_| Instance::start(ROTATION, prefix, &env))
        .collect();
    for instance in &mut instances {
        assert_eq!(instance.said(), "ready");
    }
    (instances, first.key().as_str().to_owned())
}

/// Issue 16: the same fleet on a Redis Cluster of three primaries, the slot of
/// the token's keys migrated to another node twice: between two expiries, and
/// while the fleet refreshes (a delay drawn from a seed, `TW_MIGRATION_SEED`).
/// The scripts of the protocol are answered `ASK`, `TRYAGAIN` and `MOVED`
/// meanwhile; every round still gives one new token in all eight processes,
/// one refresh per expiry, and no refresh token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_keep_rotating_through_cluster_slot_migrations() {
    let _h = crate::leaks::harness();
    if std::env::var(CHILD).is_ok() {
        return; // the children run the rotation test's child part
    }
    let Some(server) = servers::supporting(|s| s.device && s.rotation)
        .into_iter()
        .next()
    else {
        return;
    };
    let Some(cluster) = crate::cluster::Cluster::start() else {
        return;
    };
    let Some((prefix, _redis)) = parent().await else {
        return;
    };
    let (mut instances, key) = signed_in_fleet(server, &cluster.url(), &prefix).await;
    let seed = seed("TW_MIGRATION_SEED");
    let delay = Duration::from_millis(fastrand::Rng::with_seed(seed).u64(0..40));
    eprintln!(
        "slot migration: {delay:?} into round 14, seed {seed} (TW_MIGRATION_SEED replays it)"
    );
    let slot = cluster.slot_of(&format!("{prefix}:{{{key}}}"));
    let mut tokens = HashSet::new();
    for round in 1..=20 {
        instances.iter_mut().for_each(|i| i.send("expiry"));
        if round == 14 {
            tokio::time::sleep(delay).await;
            let to = (cluster.owner_of(slot) + 1) % 3;
            tokio::task::block_in_place(|| cluster.migrate_slot(slot, to));
        }
        one_new_token(
            &mut instances,
            &mut tokens,
            &format!("round {round} (seed {seed})"),
        );
        if round == 7 {
            let to = (cluster.owner_of(slot) + 1) % 3;
            tokio::task::block_in_place(|| cluster.migrate_slot(slot, to));
        }
    }
    assert_eq!(
        fleet_totals(&mut instances),
        (0, 20, 0),
        "seed {seed}: 20 refreshes in all through two slot migrations, no login, no refresh token refused"
    );
}

/// Each instance's answer to a round: one token, the same in all, new, and no
/// error (else a failure naming `context`).
fn one_new_token(instances: &mut [Instance], tokens: &mut HashSet<String>, context: &str) {
    let said: HashSet<String> = instances.iter_mut().map(Instance::said).collect();
    assert_eq!(said.len(), 1, "{context}: one token in all 8: {said:?}");
    let token = said.into_iter().next().unwrap();
    assert!(
        !token.contains("error") && !token.contains(','),
        "{context}: {token}"
    );
    assert!(tokens.insert(token), "{context}: a new token");
}

/// The seed in the environment variable `name` (to replay a run), else a new one.
fn seed(name: &str) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}
