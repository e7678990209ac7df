//! [`KeyedAuthClient`]: an [`AuthClient`] whose requests name their registry key
//! by type.

use crate::{AuthClient, AuthClientBuilder, AuthRequestBuilder};
use reqwest::Method;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use tokenwarden::{Result, TokenRegistry};

/// A client for one API with a token per user, tenant or service from a
/// [`TokenRegistry<K>`]: each request takes its key as an argument, of the
/// registry's key type, so a key of the wrong type does not compile (with
/// [`AuthClientBuilder::token_registry`] and `.with_extension(key)`, it fails
/// when the request is sent). Cheap to clone. Made by
/// [`AuthClientBuilder::build_keyed`].
///
/// ```no_run
/// use std::sync::Arc;
/// use tokenwarden::{source::from_fn, Token, TokenManager, TokenRegistry};
/// use tokenwarden_reqwest::AuthClient;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = Arc::new(
///     TokenRegistry::builder(|scope: &String| {
///         let scope = scope.clone();
///         TokenManager::builder(from_fn("api", move || {
///             let scope = scope.clone();
///             async move { Ok(Token::new(format!("token-for-{scope}"))) }
///         }))
///         .build()
///     })
///     .build(),
/// );
/// let client = AuthClient::builder()
///     .base_url("https://api.example.com/v1/")
///     .build_keyed(registry)?;
/// // `&str` becomes the registry's `String` key; a key of another type would
/// // not compile.
/// let response = client.get("api:read", "users").send().await?;
/// # Ok(()) }
/// ```
///
/// Prefer a key type of your own (a newtype such as `UserId`): with `String`
/// keys, anything that converts into a `String` is a key, a `char` as much as
/// the path given where the key goes (`client.get("orders", "alice")`
/// compiles). A key of another type does not compile:
///
/// ```compile_fail
/// use tokenwarden_reqwest::KeyedAuthClient;
///
/// #[derive(Clone, Hash, PartialEq, Eq)]
/// struct Tenant(String);
///
/// fn call(client: &KeyedAuthClient<Tenant>) {
///     let _ = client.get("acme", "users"); // a `&str` is not a `Tenant`
/// }
/// ```
pub struct KeyedAuthClient<K> {
    client: AuthClient,
    key: PhantomData<fn(K)>,
}

impl<K> Clone for KeyedAuthClient<K> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            key: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for KeyedAuthClient<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedAuthClient")
            .field("key", &std::any::type_name::<K>())
            .field("client", &self.client)
            .finish()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedAuthClient<K> {
    /// A request to `path` (as [`AuthClient::request`]) with the token of `key`.
    pub fn request(&self, key: impl Into<K>, method: Method, path: &str) -> AuthRequestBuilder {
        self.client.request(method, path).with_extension(key.into())
    }

    /// A GET to `path` with the token of `key`.
    pub fn get(&self, key: impl Into<K>, path: &str) -> AuthRequestBuilder {
        self.request(key, Method::GET, path)
    }

    /// A POST to `path` with the token of `key`.
    pub fn post(&self, key: impl Into<K>, path: &str) -> AuthRequestBuilder {
        self.request(key, Method::POST, path)
    }

    /// A PUT to `path` with the token of `key`.
    pub fn put(&self, key: impl Into<K>, path: &str) -> AuthRequestBuilder {
        self.request(key, Method::PUT, path)
    }

    /// A PATCH to `path` with the token of `key`.
    pub fn patch(&self, key: impl Into<K>, path: &str) -> AuthRequestBuilder {
        self.request(key, Method::PATCH, path)
    }

    /// A DELETE to `path` with the token of `key`.
    pub fn delete(&self, key: impl Into<K>, path: &str) -> AuthRequestBuilder {
        self.request(key, Method::DELETE, path)
    }

    /// The client underneath, whose requests name their key with
    /// `.with_extension(key)`.
    pub fn as_client(&self) -> &AuthClient {
        &self.client
    }
}

impl AuthClientBuilder {
    /// Builds a [`KeyedAuthClient`] with tokens from `registry`: each request
    /// takes its key, of the registry's key type. Replaces
    /// [`token_manager`](Self::token_manager) and
    /// [`token_registry`](Self::token_registry).
    pub fn build_keyed<K>(self, registry: Arc<TokenRegistry<K>>) -> Result<KeyedAuthClient<K>>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
    {
        Ok(KeyedAuthClient {
            client: self.token_registry(registry).build()?,
            key: PhantomData,
        })
    }
}
