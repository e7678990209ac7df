//! tokenwarden-reqwest against a local resource server that accepts only the
//! tokens it was told about, counts requests per token, can revoke, and redirects
//! to a second local origin.

mod resource_server;

mod origins;
mod replay;
mod services;
