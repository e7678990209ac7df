//! The `tokenwarden` binary end to end: each test writes a configuration into a
//! temporary home and runs the real binary against the real authorization server
//! (oidc-provider, from `tokenwarden/tests/oidc`) and local resource servers.

mod agent;
mod common;

#[allow(dead_code)] // the core's OAuth2 tests use the rest
#[path = "../../../tokenwarden/tests/all/browser.rs"]
mod browser;
#[allow(dead_code)]
#[path = "../../../tokenwarden/tests/all/oidc.rs"]
mod oidc;

#[allow(dead_code)]
#[path = "../../../tokenwarden-redis/tests/support/cluster.rs"]
mod cluster;
mod commands;
mod config;
mod demo;
mod dpop;
#[path = "../../../tokenwarden/tests/support/dpop_resource.rs"]
mod dpop_resource;
mod helpers;
mod mtls;
#[path = "../../../tokenwarden/tests/support/mtls_resource.rs"]
mod mtls_resource;
#[allow(dead_code)]
#[path = "../../../tokenwarden/tests/support/pki.rs"]
mod pki;
mod prometheus;
mod proxy;
mod proxy_access;
mod redis_deployments;
mod redis_tls;
#[allow(dead_code)]
#[path = "../../../tokenwarden-redis/tests/support/replicated.rs"]
mod replicated;
mod resource;
#[allow(dead_code)]
#[path = "../../../tokenwarden-redis/tests/support/sentinels.rs"]
mod sentinels;
#[allow(dead_code)]
#[path = "../../../tokenwarden-redis/tests/support/tls_redis.rs"]
mod tls_redis;
