//! Enumerations of the domain: environments, flows, iDenfy statuses, row and parent statuses.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Live or sandbox: separate collections, credentials and lock key prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Live,
    Sandbox,
}

impl Environment {
    /// Prefix of Valkey keys (`sandbox:` for sandbox, nothing for live), as id-server uses.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Self::Live => "",
            Self::Sandbox => "sandbox:",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Sandbox => "sandbox",
        }
    }
}

/// Which product created the row (and so which parent collection holds its parent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Flow {
    #[serde(rename = "gov-id")]
    GovId,
    #[serde(rename = "clean-hands")]
    CleanHands,
}

impl Flow {
    pub const ALL: [Flow; 2] = [Flow::GovId, Flow::CleanHands];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::GovId => "gov-id",
            Self::CleanHands => "clean-hands",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "gov-id" => Some(Self::GovId),
            "clean-hands" => Some(Self::CleanHands),
            _ => None,
        }
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value we do not know, kept verbatim.
            Unknown(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Unknown(raw) => raw,
                }
            }

            pub fn parse(raw: &str) -> Self {
                match raw {
                    $($text => Self::$variant,)+
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Ok(Self::parse(&raw))
            }
        }
    };
}

string_enum!(
    /// iDenfy's overall verification status (`/api/v2/status` `status`, webhook `status.overall`).
    VerificationStatus {
        Active => "ACTIVE",
        Reviewing => "REVIEWING",
        Approved => "APPROVED",
        Denied => "DENIED",
        Suspected => "SUSPECTED",
        Expired => "EXPIRED",
        ExpiredDeleted => "EXPIRED-DELETED",
        Deleted => "DELETED",
        Archived => "ARCHIVED",
    }
);

impl VerificationStatus {
    /// APPROVED, DENIED or SUSPECTED: a decision (final only when iDenfy says so).
    pub fn is_decision(&self) -> bool {
        matches!(self, Self::Approved | Self::Denied | Self::Suspected)
    }

    /// The token can no longer be used and no decision was made: recovery applies.
    pub fn is_expiry(&self) -> bool {
        matches!(self, Self::Expired | Self::ExpiredDeleted)
    }

    /// The row lifecycle a final decision leads to.
    pub fn decided_row_status(&self) -> Option<RowStatus> {
        match self {
            Self::Approved => Some(RowStatus::Complete),
            Self::Denied | Self::Suspected => Some(RowStatus::Failed),
            _ => None,
        }
    }

    /// The failure reason id-server writes for a decision.
    pub fn failure_reason(&self) -> Option<&'static str> {
        match self {
            Self::Denied => Some(reasons::DENIED),
            Self::Suspected => Some(reasons::SUSPECTED),
            _ => None,
        }
    }
}

/// Failure reasons, worded exactly as id-server writes them.
pub mod reasons {
    pub const DENIED: &str = "iDenfy: verification denied";
    pub const SUSPECTED: &str = "iDenfy: verification suspected";
    /// Expired with nothing left to resume (the parent is no longer in progress).
    pub const EXPIRED: &str = "iDenfy: verification expired";
    pub const RECREATION_LIMIT: &str = "iDenfy: verification expired (recreation limit reached)";
}

/// The row lifecycle (`status` of an `idenfysessions` document).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    InProgress,
    Complete,
    Failed,
}

impl RowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Complete => "complete",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "in_progress" => Some(Self::InProgress),
            "complete" => Some(Self::Complete),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

string_enum!(
    /// The parent session's status (gov-id `Session` / clean-hands `AMLChecksSession`).
    ParentStatus {
        NeedsPayment => "NEEDS_PAYMENT",
        NeedsUserDeclaration => "NEEDS_USER_DECLARATION",
        InProgress => "IN_PROGRESS",
        Issued => "ISSUED",
        VerificationFailed => "VERIFICATION_FAILED",
        Refunded => "REFUNDED",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_statuses_are_kept_verbatim() {
        let raw = "\"SOMETHING_NEW\"";
        let status: VerificationStatus = serde_json::from_str(raw).expect("parses");
        assert_eq!(status, VerificationStatus::Unknown("SOMETHING_NEW".into()));
        assert_eq!(serde_json::to_string(&status).expect("serialises"), raw);
    }

    #[test]
    fn every_idenfy_status_round_trips() {
        for raw in [
            "ACTIVE",
            "REVIEWING",
            "APPROVED",
            "DENIED",
            "SUSPECTED",
            "EXPIRED",
            "EXPIRED-DELETED",
            "DELETED",
            "ARCHIVED",
        ] {
            let status = VerificationStatus::parse(raw);
            assert!(!matches!(status, VerificationStatus::Unknown(_)), "{raw}");
            assert_eq!(status.as_str(), raw);
        }
    }

    #[test]
    fn flows_and_row_statuses_use_id_server_spelling() {
        assert_eq!(
            serde_json::to_string(&Flow::CleanHands).expect("json"),
            "\"clean-hands\""
        );
        assert_eq!(
            serde_json::to_string(&RowStatus::InProgress).expect("json"),
            "\"in_progress\""
        );
    }
}
