//! Behaviour of tokenwarden through its public API. One test binary (tests/all/).
//!
//! Every test secret contains `TOPSECRET`; all tracing output of the whole binary
//! is captured at TRACE level and any line containing it fails the tests.

mod browser;
mod common;
mod dot;
#[path = "../support/dpop_resource.rs"]
mod dpop_resource;
#[path = "../support/gated_store.rs"]
mod gated_store;
#[path = "../support/grant_server.rs"]
mod grant_server;
#[path = "../support/mtls_resource.rs"]
mod mtls_resource;
mod oidc;
#[path = "../support/pki.rs"]
mod pki;
#[path = "../support/recorder.rs"]
mod recorder;
mod servers;

mod background;
mod blocking;
mod contention;
mod coordination;
mod dpop;
mod dpop_hostile;
mod file_processes;
mod file_store;
mod hostile_server;
mod id_tokens;
mod keyring_store;
mod listener;
mod login_source;
mod metadata_and_retries;
mod metrics;
mod mtls;
mod oauth2_edges;
mod oauth2_requests;
mod oauth2_server;
mod persist_listener;
mod providers;
mod reasons;
mod recovery;
mod registry;
mod runtimes;
mod secrets;
mod sources;
mod tonic_channel;
mod tower_layer;
mod user_keys;
mod windows;
