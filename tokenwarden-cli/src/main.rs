//! `tokenwarden`: access tokens for any OAuth2 API from scripts, curl and any
//! language. See `tokenwarden --help` and the README.

#![forbid(unsafe_code)]

#[cfg(unix)]
mod agent;
mod cli;
mod commands;
mod config;
mod demo;
mod describe;
mod exit;
mod last_refresh;
mod profile;
mod proxy;
mod tls;
mod token_file;
#[cfg(unix)]
mod unix_socket;

use clap::{CommandFactory as _, Parser as _};
use cli::{Cli, Command};
use commands::Context;
use exit::CliError;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Run as `docker-credential-tokenwarden` (a link Docker finds on PATH): the
    // `docker-credential` command.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked = (args.first())
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|name| name.to_string_lossy().starts_with("docker-credential-"));
    if invoked {
        args.insert(1, "docker-credential".into());
    }
    let cli = Cli::parse_from(args); // usage errors exit with 2, as the contract says
                                     // `token` through the agent: one round trip, before anything else is set up.
    #[cfg(target_os = "linux")]
    if let Command::Token {
        profile,
        json: false,
    } = &cli.command
    {
        if agent::fast::token(cli.config.as_deref(), profile.profile.as_deref()) {
            return ExitCode::SUCCESS;
        }
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOKENWARDEN_LOG")
                // Quiet unless asked: a failure is one line and a hint (below).
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .init();
    // One thread is enough (and starts fastest) for the commands that make one
    // request; the demo and the proxy serve many at once.
    let runtime = match cli.command {
        Command::Demo { .. } | Command::Proxy { .. } => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => Err(CliError::new(
            exit::UNAVAILABLE,
            format!("cannot start the runtime: {e}"),
        )),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            error.print();
            ExitCode::from(error.code)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, CliError> {
    let ctx = Context {
        config_flag: cli.config,
    };
    match cli.command {
        Command::Token { profile, json } => {
            commands::token::run(&ctx, profile.profile.as_deref(), json).await
        }
        Command::Curl(args) => commands::curl::run(&ctx, &args).await,
        Command::Status { profile, json } => {
            commands::status::run(&ctx, profile.as_deref(), json).await
        }
        Command::Login { profile, timeout } => {
            let timeout = std::time::Duration::from_secs(timeout);
            commands::login::run(&ctx, profile.profile.as_deref(), timeout).await
        }
        Command::Logout { profile, force } => {
            commands::logout::run(&ctx, profile.profile.as_deref(), force).await
        }
        Command::Demo { seconds, workers } => demo::run(seconds, workers).await,
        Command::Proxy {
            profile,
            listen,
            #[cfg(unix)]
            unix_socket,
            allow_hosts,
            allow_origins,
            metrics_listen,
        } => {
            let profile = ctx.profile(profile.profile.as_deref())?;
            let base_url = profile.base_url()?.ok_or_else(|| {
                CliError::usage(format!(
                    "profile `{}` has no base_url to forward to",
                    profile.name
                ))
                .hint("add base_url = \"https://api.example.com\" to the profile")
            })?;
            let manager = profile.service_manager().await?;
            #[cfg(not(unix))]
            let unix_socket = None;
            let access = proxy::Access {
                listen,
                unix_socket,
                allow_hosts,
                allow_origins,
                metrics_listen,
                profile: profile.name.clone(),
                identity: tls::certificate(&profile)?.map(|c| c.identity()),
                ca: tls::ca(&profile)?,
            };
            proxy::run(manager, base_url, access).await
        }
        #[cfg(unix)]
        Command::Agent { socket, print_env } => agent::run(ctx, socket, print_env).await,
        Command::Exec(args) => commands::exec::run(&ctx, &args).await,
        Command::Kubectl { profile } => {
            commands::kubectl::run(&ctx, profile.profile.as_deref()).await
        }
        Command::GitCredential { profile, operation } => {
            commands::git_credential::run(&ctx, profile.profile.as_deref(), &operation).await
        }
        Command::DockerCredential { operation } => {
            commands::docker_credential::run(&ctx, &operation).await
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "tokenwarden",
                &mut std::io::stdout(),
            );
            Ok(exit::OK)
        }
    }
}
