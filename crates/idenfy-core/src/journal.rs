//! Paid tokens the store could not take: kept durably until it can.
//!
//! Every token call may bill a credit, so a minted token is never dropped. After a mint the
//! resolver (and creation) retry the write that records it for as long as their claim is
//! theirs. When the store stays away past that, the mint goes to a [`MintJournal`], an
//! append-only record outside the store (the app keeps it as an fsync'd file under its data
//! directory), and is logged at ERROR with row, parent and scanRef, never the token.
//!
//! [`crate::Sessions::replay_journal`] settles the entries once the store answers again (the
//! app calls it at start-up and every second while entries remain): a recovery whose
//! claim nobody took over is attached to its row with the token the user can still use
//! (the same conditional persist as before: old scanRef and the journaled claim id); one
//! that was overtaken is recorded on the row as an orphaned mint. A creation's token is
//! written into its intent, so the client's retry with the same `Idempotency-Key` finishes
//! with it instead of minting again. A recovery or creation of this process also looks in
//! the journal before minting, so it never pays twice for the same row or intent.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    AuthToken, Environment, MintedToken, Nonce, ParentId, RowId, ScanRef, Timestamp,
    VerificationStatus,
};

/// What a journaled token was minted for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum MintTarget {
    /// A replacement for the expired token `old_scan_ref` of `row_id`, under `claim_id`.
    #[serde(rename_all = "camelCase")]
    Recovery {
        /// The row being recovered.
        row_id: RowId,
        /// The row's expired scanRef, the condition of the persist.
        old_scan_ref: ScanRef,
        /// The recreation claim the token was minted under.
        claim_id: Nonce,
        /// When the expired token was minted, if known (for the history entry).
        old_minted_at: Option<Timestamp>,
        /// The last status of the expired scanRef, as stored (for the history entry).
        old_status: Option<String>,
    },
    /// The first token of the creation intent `intent_key`, under `claim_id`.
    #[serde(rename_all = "camelCase")]
    Creation {
        /// The creation intent's key.
        intent_key: String,
        /// The intent claim the token was minted under.
        claim_id: Nonce,
    },
}

/// One minted token waiting for the store. `Debug` never shows the token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournaledMint {
    /// Unique per entry.
    pub id: Nonce,
    /// The environment whose store the token belongs in.
    pub environment: Environment,
    /// The parent the token was minted for (its iDenfy `clientId`).
    pub parent_id: ParentId,
    /// What the token was minted for.
    pub target: MintTarget,
    /// The minted token's scanRef.
    pub scan_ref: ScanRef,
    /// The minted token (secret).
    pub auth_token: AuthToken,
    /// The hosted-UI URL of the minted token.
    pub redirect_url: String,
    /// When the minted token expires, when known.
    pub expires_at: Option<Timestamp>,
    /// When the token was minted.
    pub minted_at: Timestamp,
    /// When the entry was written to the journal.
    pub journaled_at: Timestamp,
}

impl fmt::Debug for JournaledMint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournaledMint")
            .field("id", &self.id.as_str())
            .field("environment", &self.environment)
            .field("parent_id", &self.parent_id)
            .field("target", &self.target)
            .field("scan_ref", &self.scan_ref)
            .field("minted_at", &self.minted_at)
            .finish_non_exhaustive()
    }
}

impl JournaledMint {
    pub(crate) fn new(
        environment: Environment,
        parent_id: &ParentId,
        target: MintTarget,
        token: &MintedToken,
        now: Timestamp,
    ) -> JournaledMint {
        JournaledMint {
            id: Nonce::random(),
            environment,
            parent_id: parent_id.clone(),
            target,
            scan_ref: token.scan_ref.clone(),
            auth_token: token.auth_token.clone(),
            redirect_url: token.redirect_url.clone(),
            expires_at: token.expires_at,
            minted_at: token.minted_at,
            journaled_at: now,
        }
    }

    /// The token as the client returned it.
    pub fn token(&self) -> MintedToken {
        MintedToken {
            auth_token: self.auth_token.clone(),
            scan_ref: self.scan_ref.clone(),
            redirect_url: self.redirect_url.clone(),
            expires_at: self.expires_at,
            minted_at: self.minted_at,
        }
    }

    pub(crate) fn old_status(&self) -> Option<VerificationStatus> {
        match &self.target {
            MintTarget::Recovery { old_status, .. } => {
                old_status.as_deref().map(VerificationStatus::parse)
            }
            MintTarget::Creation { .. } => None,
        }
    }
}

/// Why the journal could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[error("mint journal: {0}")]
pub struct JournalError(pub String);

/// Durable storage of [`JournaledMint`]s, outside the store. Synchronous on purpose: an
/// append is one small fsync'd write on a rare path, and must be done before the caller
/// answers.
pub trait MintJournal: Send + Sync + fmt::Debug + 'static {
    /// Records `mint` durably; `Ok` only once it would survive a crash of this process.
    fn record(&self, mint: &JournaledMint) -> Result<(), JournalError>;
    /// Every entry not yet settled, oldest first.
    fn pending(&self) -> Vec<JournaledMint>;
    /// Forgets the entry `id` (attached, or recorded as an orphan).
    fn settle(&self, id: &Nonce) -> Result<(), JournalError>;
}

/// What one [`crate::Sessions::replay_journal`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Tokens written to their row or intent.
    pub attached: u32,
    /// Tokens whose row or intent had moved on, recorded as orphaned mints.
    pub orphaned: u32,
    /// Entries left for later (the store still failing).
    pub kept: u32,
}
