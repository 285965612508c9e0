//! The stored records: iDenfy rows, parents and creation intents (PRODUCT.md §3).

use serde::{Deserialize, Serialize};

use crate::{
    AuthToken, Flow, Nonce, ParentId, ParentStatus, RowId, RowStatus, ScanRef, SigDigest,
    Timestamp, VerificationStatus,
};

/// One `idenfysessions` document: the CURRENT iDenfy token of a paid parent session, plus
/// what we track to recover it when it expires. Fields id-server does not write are optional
/// or defaulted, so its documents load.
#[derive(Clone, Debug, PartialEq)]
pub struct IdenfyRow {
    pub id: RowId,
    pub sig_digest: SigDigest,
    pub auth_token: AuthToken,
    pub scan_ref: ScanRef,
    pub verification_status: Option<VerificationStatus>,
    pub failure_reason: Option<String>,
    pub status: RowStatus,
    pub flow: Flow,
    pub parent_id: ParentId,
    pub created_at: Timestamp,
    /// Replacement tokens persisted for this row (id-server's `recreationCount`).
    pub recreation_count: u32,
    /// The current decision came from `/api/v2/status` or a webhook with `final: true`.
    pub is_final: bool,
    /// When the current token was minted, when known.
    pub token_minted_at: Option<Timestamp>,
    /// Mint time + iDenfy `expiryTime`, when known.
    pub token_expires_at: Option<Timestamp>,
    /// When a poller last claimed the right to call `/api/v2/status`.
    pub last_polled_at: Option<Timestamp>,
    /// When iDenfy last answered a status call for the current scanRef.
    pub last_checked_at: Option<Timestamp>,
    /// Every token call we started for this row, billed or not.
    pub mint_attempts: u32,
    /// `mintUnknownOutcomes`: token calls of this row whose outcome is unknown (each may
    /// have billed a token we never saw); at `Settings::max_unknown_mint_outcomes` the row
    /// gives up. Never reset.
    pub unknown_mint_outcomes: u32,
    /// `lastMintUnknownAt`: when the last of those happened.
    pub last_unknown_mint_at: Option<Timestamp>,
    pub recreation: Recreation,
    pub scan_ref_history: Vec<SupersededScanRef>,
    pub orphaned_mints: Vec<OrphanedMint>,
    pub updated_at: Option<Timestamp>,
}

impl IdenfyRow {
    /// A new row for a freshly minted token.
    pub fn new(
        id: RowId,
        sig_digest: SigDigest,
        flow: Flow,
        parent_id: ParentId,
        token: &MintedToken,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            sig_digest,
            auth_token: token.auth_token.clone(),
            scan_ref: token.scan_ref.clone(),
            verification_status: None,
            failure_reason: None,
            status: RowStatus::InProgress,
            flow,
            parent_id,
            created_at: now,
            recreation_count: 0,
            is_final: false,
            token_minted_at: Some(token.minted_at),
            token_expires_at: token.expires_at,
            last_polled_at: None,
            last_checked_at: None,
            mint_attempts: 1,
            unknown_mint_outcomes: 0,
            last_unknown_mint_at: None,
            recreation: Recreation::default(),
            scan_ref_history: Vec::new(),
            orphaned_mints: Vec::new(),
            updated_at: Some(now),
        }
    }

    /// A decision that will not change any more: cached, never polled again.
    pub fn final_decision(&self) -> Option<&VerificationStatus> {
        self.verification_status
            .as_ref()
            .filter(|status| self.is_final && status.is_decision())
    }

    /// The EXPIRED marker is set: the current token is known to be expired. Exactly
    /// `EXPIRED` (what the claim matches on); other expiry values that reach a row some
    /// other way are re-polled and then marked.
    pub fn is_expired(&self) -> bool {
        self.verification_status == Some(VerificationStatus::Expired)
    }

    /// Recovery gave up for good (cap reached or attempts exhausted): failed, expired, and
    /// failed by us for that reason. A row id-server failed on its own EXPIRED webhook
    /// (`status: failed`, its own reason, no `recreationCount`) did not give up: it recovers
    /// like any expired row.
    pub fn gave_up(&self) -> bool {
        self.status == RowStatus::Failed
            && self.is_expired()
            && self.failure_reason.as_deref() == Some(crate::reasons::RECREATION_LIMIT)
    }
}

/// State of the expired-token recovery of one row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recreation {
    /// An in-flight claim: the holder may mint until `claimed_until`.
    pub claim: Option<Claim>,
    /// Back-off after a failed mint: no new attempt before this instant.
    pub next_attempt_at: Option<Timestamp>,
    /// Class and short text of the last failed mint (no secrets, no payload).
    pub last_error: Option<String>,
    /// Consecutive failed mints, drives the exponential back-off.
    pub consecutive_failures: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub claim_id: Nonce,
    pub claimed_until: Timestamp,
}

/// A scanRef replaced by a recreation, kept so its late webhooks are acknowledged (W8).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SupersededScanRef {
    pub scan_ref: ScanRef,
    pub minted_at: Option<Timestamp>,
    pub superseded_at: Timestamp,
    pub last_status: Option<VerificationStatus>,
    pub is_final: bool,
}

/// A token minted under a claim that had expired and was taken by a peer: billed, never
/// used. Recorded for audit and for deleting its data at iDenfy (W5, W8).
#[derive(Clone, Debug, PartialEq)]
pub struct OrphanedMint {
    pub scan_ref: ScanRef,
    pub minted_at: Timestamp,
}

/// A token iDenfy just minted.
#[derive(Clone, Debug, PartialEq)]
pub struct MintedToken {
    pub auth_token: AuthToken,
    pub scan_ref: ScanRef,
    /// Where the browser opens the hosted UI.
    pub redirect_url: String,
    /// Mint time + `expiryTime`, when the client knows it.
    pub expires_at: Option<Timestamp>,
    pub minted_at: Timestamp,
}

/// A parent session (gov-id `sessions` or clean-hands `amlcheckssessions`). Only the
/// fields this subsystem reads or writes; stores must leave every other field alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Parent {
    pub id: ParentId,
    pub flow: Flow,
    pub sig_digest: Option<SigDigest>,
    pub status: ParentStatus,
    pub idenfy_session_id: Option<RowId>,
    pub failure_reason: Option<String>,
    pub created_at: Option<Timestamp>,
}

/// The durable record of one session-creation request, keyed by its idempotency key: it
/// makes retries return the first result and keeps a minted token even if a later write
/// fails, so nothing is minted twice and nothing billed is lost (W25, W26).
#[derive(Clone, Debug, PartialEq)]
pub struct CreationIntent {
    /// Scoped key: `<scope>:<idempotency key>`.
    pub key: String,
    pub sig_digest: SigDigest,
    pub flow: Flow,
    /// Allocated up front; the iDenfy `clientId`.
    pub parent_id: ParentId,
    /// Allocated up front, so a retry re-uses it.
    pub row_id: RowId,
    pub state: IntentState,
    /// The holder of this claim may mint until then.
    pub claimed_until: Timestamp,
    pub claim_id: Nonce,
    /// The token minted for it, saved before the row is written.
    pub minted: Option<MintedToken>,
    pub created_at: Timestamp,
    /// `mintUnknownOutcomes`: token calls for it whose outcome is unknown (each may have
    /// billed a token we never saw).
    pub unknown_mint_outcomes: u32,
    /// `lastMintUnknownAt`: when the last of those happened.
    pub last_unknown_mint_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntentState {
    /// Claimed; a mint may be in flight.
    Pending,
    /// Parent and row are written (or an existing row was reused).
    Done,
    /// The mint failed; a retry may claim it again.
    Failed,
}
