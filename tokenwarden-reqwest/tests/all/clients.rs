//! The API of `resource_server`, and an `AuthClient` for it.

pub use crate::resource_server::*;

/// An `AuthClient` for the API with tokens from `manager`.
pub fn client(
    servers: &Servers,
    manager: tokenwarden::TokenManager,
) -> tokenwarden_reqwest::AuthClient {
    tokenwarden_reqwest::AuthClient::builder()
        .base_url(&servers.base)
        .token_manager(manager)
        .build()
        .unwrap()
}
