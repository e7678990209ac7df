//! tokenwarden-reqwest against a local resource server that accepts only the
//! tokens it was told about, counts requests per token, can revoke, and redirects
//! to a second local origin.

mod clients;
#[path = "../../../tokenwarden/tests/support/dpop_resource.rs"]
mod dpop_resource;
#[allow(dead_code)] // not every binary uses every helper
#[path = "../../../tokenwarden/tests/support/leaks.rs"]
mod leaks;
#[allow(dead_code)] // its keys and token URL are for other tests
#[path = "../../../tokenwarden/tests/all/oidc.rs"]
mod oidc;
#[allow(dead_code)] // the Redis and CLI tests use the rest
#[path = "../../../tokenwarden/tests/support/pki.rs"]
mod pki;
mod resource_server;

mod blocking;
mod dpop;
mod origins;
mod placements;
mod replay;
mod services;
