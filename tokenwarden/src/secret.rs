//! Secret newtypes: redacted `Debug`/`Display`, zeroized on drop, compared in constant time.
//!
//! Every secret the crate handles (access tokens, refresh tokens, client secrets and
//! ID tokens) is one of these types, so that it can not reach a log line, a `Debug`
//! string or an error message by accident. There is deliberately no `PartialEq`:
//! compare with [`AccessToken::ct_eq`] and friends, which take constant time.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// What `Debug` and `Display` print instead of a secret.
pub const REDACTED: &str = "[redacted]";

macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Default)]
        pub struct $name(Zeroizing<String>);

        impl $name {
            #[doc = concat!("Wraps ", $what, ".")]
            pub fn new(secret: impl Into<String>) -> Self {
                Self(Zeroizing::new(secret.into()))
            }

            #[doc = concat!("The ", $what, " itself.")]
            ///
            /// # Security Warning
            ///
            /// This exposes the secret. Do not log it, print it, put it in an error
            /// message or keep copies of it; pass it straight to where it is needed.
            pub fn secret(&self) -> &str {
                &self.0
            }

            /// Compares two secrets in constant time (in the length of the shorter one).
            pub fn ct_eq(&self, other: &Self) -> bool {
                self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
            }

            /// Whether the secret is the empty string.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), REDACTED)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(REDACTED)
            }
        }

        impl From<String> for $name {
            fn from(secret: String) -> Self {
                Self::new(secret)
            }
        }

        impl From<&str> for $name {
            fn from(secret: &str) -> Self {
                Self::new(secret)
            }
        }

        /// Serializes the secret in clear: only stores (which encrypt) and token
        /// responses should serialize it.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self::new)
            }
        }
    };
}

secret_type!(
    /// An OAuth2 access token, the credential sent to the API.
    AccessToken,
    "an access token"
);
secret_type!(
    /// An OAuth2 refresh token, used to get a new access token without logging in again.
    RefreshToken,
    "a refresh token"
);
secret_type!(
    /// A client secret (or any password-like credential a source sends to its server).
    ClientSecret,
    "a client secret"
);
secret_type!(
    /// An OpenID Connect ID token.
    IdToken,
    "an ID token"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let token = AccessToken::new("TOPSECRET-abc");
        assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
        assert_eq!(token.to_string(), "[redacted]");
        assert_eq!(
            format!("{:?}", RefreshToken::from("TOPSECRET")),
            "RefreshToken([redacted])"
        );
        assert_eq!(token.secret(), "TOPSECRET-abc");
    }

    #[test]
    fn constant_time_comparison() {
        let a = ClientSecret::new("same");
        assert!(a.ct_eq(&ClientSecret::new("same")));
        assert!(!a.ct_eq(&ClientSecret::new("other")));
        assert!(!a.ct_eq(&ClientSecret::new("sam")));
    }

    #[test]
    fn serde_round_trip_keeps_the_value() {
        let json = serde_json::to_string(&IdToken::new("x.y.z")).unwrap();
        assert_eq!(json, "\"x.y.z\"");
        let back: IdToken = serde_json::from_str(&json).unwrap();
        assert_eq!(back.secret(), "x.y.z");
    }
}
