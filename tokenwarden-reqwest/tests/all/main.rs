//! tokenwarden-reqwest against a local resource server that accepts only the
//! tokens it was told about, counts requests per token, can revoke, and redirects
//! to a second local origin.

mod clients;
#[allow(dead_code)] // not every binary uses every helper
#[path = "../../../tokenwarden/tests/support/leaks.rs"]
mod leaks;
mod resource_server;

mod blocking;
mod origins;
mod placements;
mod replay;
mod services;
