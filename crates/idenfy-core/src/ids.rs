//! Identifier newtypes: row, parent and claim ids, scanRefs, auth tokens and the caller identity.

use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// A malformed identifier supplied from outside the process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: expected 24 lowercase or uppercase hex characters")]
pub struct InvalidId {
    /// What the identifier was meant to be (e.g. "session id").
    pub what: &'static str,
}

macro_rules! object_id_newtype {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses a 24-hex-character id (a MongoDB ObjectId rendered as hex); normalises to lowercase.
            pub fn parse(raw: &str) -> Result<Self, InvalidId> {
                if raw.len() == 24 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(Self(raw.to_ascii_lowercase()))
                } else {
                    Err(InvalidId { what: $what })
                }
            }

            /// A fresh id shaped like a MongoDB ObjectId: 4 bytes of seconds, 8 random bytes.
            pub fn generate(now: Timestamp) -> Self {
                let mut bytes = [0u8; 12];
                let secs = u32::try_from(now.timestamp().max(0)).unwrap_or(u32::MAX);
                bytes[..4].copy_from_slice(&secs.to_be_bytes());
                rand::rng().fill_bytes(&mut bytes[4..]);
                Self(hex::encode(bytes))
            }

            /// The id as 24 lowercase hex characters.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(raw: String) -> Result<Self, InvalidId> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

object_id_newtype!(
    /// The `_id` of an iDenfy row (`idenfysessions`).
    RowId,
    "iDenfy session id"
);
object_id_newtype!(
    /// The `_id` of a parent session (gov-id `sessions` or clean-hands `amlcheckssessions`);
    /// also the iDenfy `clientId` of every token minted for it.
    ParentId,
    "session id"
);

/// iDenfy's name for one verification (one minted token). Not secret; safe to log.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScanRef(String);

impl ScanRef {
    /// Wraps a scanRef as iDenfy or the store gave it; no validation.
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The scanRef as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScanRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ScanRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScanRef({})", self.0)
    }
}

/// The bearer token that opens iDenfy's hosted UI. Serialises as the plain string (it is
/// what the browser needs) but never shows itself in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuthToken(String);

impl AuthToken {
    /// Wraps a token as iDenfy or the store gave it; no validation.
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The secret value; call only where it leaves the process on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken([redacted])")
    }
}

/// The caller's identity (`X-Holo-User-Id`, a.k.a. sigDigest). It is a bearer secret
/// (whoever presents it acts as the user), so `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SigDigest(String);

impl SigDigest {
    /// Accepts the value of an identity header: non-empty, not only whitespace, not a
    /// comma-joined list (which is what a repeated header turns into).
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.trim().is_empty() || raw.contains(',') {
            None
        } else {
            Some(Self(raw.to_owned()))
        }
    }

    /// Wraps a value read back from our own store.
    pub fn from_stored(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The secret value; call only where it leaves the process on purpose (storage, the
    /// iDenfy API).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time equality, so ownership checks do not leak through timing.
    pub fn matches(&self, other: &SigDigest) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == other.0.len() && bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

impl fmt::Debug for SigDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigDigest([redacted])")
    }
}

/// A random 128-bit token in hex: recreation claim ids and lock owner tokens.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Nonce(String);

impl Nonce {
    /// A fresh nonce: 16 random bytes as 32 lowercase hex characters.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        Self(hex::encode(bytes))
    }

    /// Wraps a value read back from a store or the lock service; no validation.
    pub fn from_stored(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The full value. Secret to the holder: whoever knows it can release the claim or lock.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Nonce {
    /// Only a prefix: enough to correlate in logs, not enough to forge a release.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({}…)", self.0.get(..6).unwrap_or_default())
    }
}

/// The identifiers the HTTP API shows, as OpenAPI schemas: JSON strings.
#[cfg(feature = "openapi")]
mod openapi {
    use utoipa::openapi::{ObjectBuilder, RefOr, Type, schema::Schema};

    macro_rules! string_schema {
        ($name:ty, $description:literal $(, pattern = $pattern:literal)?) => {
            impl utoipa::PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some($description))
                        $(.pattern(Some($pattern)))?
                        .into()
                }
            }

            impl utoipa::ToSchema for $name {}
        };
    }

    string_schema!(
        super::RowId,
        "Id of an iDenfy session (24 lowercase hex characters).",
        pattern = "^[0-9a-f]{24}$"
    );
    string_schema!(
        super::ParentId,
        "Id of a parent session (24 lowercase hex characters).",
        pattern = "^[0-9a-f]{24}$"
    );
    string_schema!(super::ScanRef, "iDenfy's reference of one verification.");
    string_schema!(
        super::AuthToken,
        "The token that opens iDenfy's hosted verification page."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_accept_24_hex_and_normalise_case() {
        let id = RowId::parse("65A1B2C3D4E5F60718293A4B").expect("valid");
        assert_eq!(id.as_str(), "65a1b2c3d4e5f60718293a4b");
        for bad in [
            "",
            "xyz",
            "65a1b2c3d4e5f60718293a4",
            "65a1b2c3d4e5f60718293a4bz",
            "65a1b2c3d4e5f60718293a4g",
        ] {
            assert!(RowId::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn generated_ids_parse_back() {
        let id = ParentId::generate(chrono::Utc::now());
        assert_eq!(ParentId::parse(id.as_str()).expect("round trip"), id);
    }

    #[test]
    fn secrets_redact_themselves_in_debug() {
        let token = AuthToken::new("secret-token-value");
        let sig = SigDigest::parse("secret-sig").expect("valid");
        assert!(!format!("{token:?}").contains("secret-token-value"));
        assert!(!format!("{sig:?}").contains("secret-sig"));
    }

    #[test]
    fn identity_header_rejects_empty_whitespace_and_comma_joined() {
        for bad in ["", "   ", "a,b", "abc, def"] {
            assert!(SigDigest::parse(bad).is_none(), "{bad:?}");
        }
        assert!(
            SigDigest::parse(" abc ").is_some(),
            "value is not trimmed, like id-server"
        );
    }
}
