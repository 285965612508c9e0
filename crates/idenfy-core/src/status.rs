//! Enumerations of the domain: environments, flows, iDenfy statuses, row and parent statuses.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Live or sandbox: separate collections, credentials and lock key prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Production: real verifications, billed.
    Live,
    /// iDenfy's sandbox: test verifications (`sandbox` collections and key prefix).
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

    /// `live` or `sandbox`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Sandbox => "sandbox",
        }
    }
}

/// Which product created the row (and so which parent collection holds its parent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Flow {
    /// Government-id verification: parents in `sessions`.
    #[serde(rename = "gov-id")]
    GovId,
    /// Clean-hands (AML) checks: parents in `amlcheckssessions`.
    #[serde(rename = "clean-hands")]
    CleanHands,
}

impl Flow {
    /// Every flow, gov-id first (the order [`crate::ParentStore::find_any`] looks in).
    pub const ALL: [Flow; 2] = [Flow::GovId, Flow::CleanHands];

    /// `gov-id` or `clean-hands`, as stored in `createdByFlow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GovId => "gov-id",
            Self::CleanHands => "clean-hands",
        }
    }

    /// The flow spelled `raw` (`gov-id`, `clean-hands`), if any.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "gov-id" => Some(Self::GovId),
            "clean-hands" => Some(Self::CleanHands),
            _ => None,
        }
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value we do not know, kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// The value as stored and as iDenfy or id-server spell it.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Unknown(raw) => raw,
                }
            }

            /// The variant spelled `raw`; [`Self::Unknown`] for any other value.
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
        /// `ACTIVE`: open, no decision yet (the user has not finished).
        Active => "ACTIVE",
        /// `REVIEWING`: submitted, under manual review at iDenfy.
        Reviewing => "REVIEWING",
        /// `APPROVED`: a decision: verified.
        Approved => "APPROVED",
        /// `DENIED`: a decision: rejected.
        Denied => "DENIED",
        /// `SUSPECTED`: a decision: suspected fraud.
        Suspected => "SUSPECTED",
        /// `EXPIRED`: the token expired before a decision; the marker recovery acts on.
        Expired => "EXPIRED",
        /// `EXPIRED-DELETED`: expired, and its data deleted at iDenfy.
        ExpiredDeleted => "EXPIRED-DELETED",
        /// `DELETED`: its data was deleted at iDenfy.
        Deleted => "DELETED",
        /// `ARCHIVED`: archived at iDenfy.
        Archived => "ARCHIVED",
    }
);

/// A string: the known values are examples, and an unknown one is passed on verbatim.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for VerificationStatus {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{ObjectBuilder, Type};
        let known = [
            Self::Active,
            Self::Reviewing,
            Self::Approved,
            Self::Denied,
            Self::Suspected,
            Self::Expired,
            Self::ExpiredDeleted,
            Self::Deleted,
            Self::Archived,
        ];
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "iDenfy's overall verification status. Known values are listed as examples; \
                 a value iDenfy adds later is passed on as it is.",
            ))
            .examples(known.iter().map(|status| status.as_str()))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for VerificationStatus {}

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
    /// A `DENIED` decision.
    pub const DENIED: &str = "iDenfy: verification denied";
    /// A `SUSPECTED` decision.
    pub const SUSPECTED: &str = "iDenfy: verification suspected";
    /// Expired with nothing left to resume (the parent is no longer in progress).
    pub const EXPIRED: &str = "iDenfy: verification expired";
    /// Recovery gave up for good: the recreation cap, the mint-attempt budget or the bound
    /// on unknown token-call outcomes was reached.
    pub const RECREATION_LIMIT: &str = "iDenfy: verification expired (recreation limit reached)";
}

/// The row lifecycle (`status` of an `idenfysessions` document).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    /// No final outcome yet (also after a recovery).
    InProgress,
    /// Approved.
    Complete,
    /// Denied, suspected, expired for good, or given up.
    Failed,
}

impl RowStatus {
    /// `in_progress`, `complete` or `failed`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Complete => "complete",
            Self::Failed => "failed",
        }
    }

    /// The status spelled `raw`, if any.
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
        /// `NEEDS_PAYMENT`: not paid yet.
        NeedsPayment => "NEEDS_PAYMENT",
        /// `NEEDS_USER_DECLARATION`: waiting for the user's declaration.
        NeedsUserDeclaration => "NEEDS_USER_DECLARATION",
        /// `IN_PROGRESS`: paid, verification under way; the only status recovery resumes.
        InProgress => "IN_PROGRESS",
        /// `ISSUED`: the credential was issued.
        Issued => "ISSUED",
        /// `VERIFICATION_FAILED`: failed (denial, give-up), with a reason.
        VerificationFailed => "VERIFICATION_FAILED",
        /// `REFUNDED`: the payment was refunded.
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
