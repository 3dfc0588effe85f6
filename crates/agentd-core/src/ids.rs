//! Newtype identifiers, so a tenant id can never be passed where a key id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }
    };
}

id_type!(
    /// A tenant: the unit of isolation (keys, threads, spend). Keys default to `default`.
    TenantId
);
id_type!(
    /// A user inside a tenant, optional on a key; budgets can key on it.
    UserId
);
id_type!(
    /// The public id of an API key (`key_…`), never the secret.
    KeyId
);

impl TenantId {
    pub const DEFAULT: &'static str = "default";

    pub fn default_tenant() -> Self {
        Self::new(Self::DEFAULT)
    }
}

/// Checks a tenant or user name: 1–64 chars of `[A-Za-z0-9._-]`. Returns why not.
pub fn validate_name(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 64 {
        return Err(format!("{what} must be 1 to 64 characters long"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "{what} {value:?} may only contain letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("tenant", "acme-eu.1").is_ok());
        assert!(validate_name("tenant", "").is_err());
        assert!(validate_name("tenant", "a b")
            .unwrap_err()
            .contains("may only contain"));
        assert!(validate_name("tenant", &"x".repeat(65)).is_err());
    }
}
