//! The stored records: iDenfy rows, parents and creation intents (`docs/data-model.md`).

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
    /// `_id`: the row id.
    pub id: RowId,
    /// `sigDigest`: the owner.
    pub sig_digest: SigDigest,
    /// `idenfyAuthToken`: the current token the browser opens.
    pub auth_token: AuthToken,
    /// `idenfyScanRef`: the current iDenfy verification; webhooks find the row by it.
    pub scan_ref: ScanRef,
    /// `idenfyVerificationStatus`: iDenfy's overall status, verbatim; `EXPIRED` marks the
    /// current token as dead. `None` before the first status and after a recovery.
    pub verification_status: Option<VerificationStatus>,
    /// `verificationFailureReason` (see [`crate::reasons`]).
    pub failure_reason: Option<String>,
    /// `status`: the row lifecycle.
    pub status: RowStatus,
    /// `createdByFlow`: which parent collection holds the parent.
    pub flow: Flow,
    /// `createdBySessionId`: the parent; also the iDenfy `clientId` of every token minted
    /// for the row.
    pub parent_id: ParentId,
    /// `createdAt`: never changed (the ObjectId's time when the document has none).
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
    /// `recreation`: the state of the expired-token recovery.
    pub recreation: Recreation,
    /// `scanRefHistory`: the scanRefs recoveries replaced, oldest first.
    pub scan_ref_history: Vec<SupersededScanRef>,
    /// `orphanedMints`: tokens minted for the row but never attached.
    pub orphaned_mints: Vec<OrphanedMint>,
    /// `updatedAt`: the last write by this service.
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

/// A time-limited claim: whoever knows `claim_id` may act until `claimed_until`.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// The claim's random id; conditional writes of the holder match on it.
    pub claim_id: Nonce,
    /// When the claim lapses and a peer may take it over.
    pub claimed_until: Timestamp,
}

/// A scanRef replaced by a recreation, kept so its late webhooks are acknowledged and recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SupersededScanRef {
    /// The replaced scanRef.
    pub scan_ref: ScanRef,
    /// When its token was minted, when known.
    pub minted_at: Option<Timestamp>,
    /// When the recovery replaced it.
    pub superseded_at: Timestamp,
    /// The last status known for it (normally `EXPIRED`; late webhooks update it).
    pub last_status: Option<VerificationStatus>,
    /// `last_status` will not change any more.
    pub is_final: bool,
}

/// A token minted under a claim that had expired and was taken by a peer: billed, never
/// used. Recorded for audit and for deleting its data at iDenfy.
#[derive(Clone, Debug, PartialEq)]
pub struct OrphanedMint {
    /// The orphaned token's scanRef.
    pub scan_ref: ScanRef,
    /// When it was minted.
    pub minted_at: Timestamp,
}

/// A token iDenfy just minted.
#[derive(Clone, Debug, PartialEq)]
pub struct MintedToken {
    /// The token that opens the hosted UI (secret).
    pub auth_token: AuthToken,
    /// iDenfy's id of the new verification.
    pub scan_ref: ScanRef,
    /// Where the browser opens the hosted UI.
    pub redirect_url: String,
    /// Mint time + `expiryTime`, when the client knows it.
    pub expires_at: Option<Timestamp>,
    /// When the token call returned.
    pub minted_at: Timestamp,
}

/// A parent session (gov-id `sessions` or clean-hands `amlcheckssessions`). Only the
/// fields this subsystem reads or writes; stores must leave every other field alone.
#[derive(Clone, Debug, PartialEq)]
pub struct Parent {
    /// `_id`.
    pub id: ParentId,
    /// Which collection holds it.
    pub flow: Flow,
    /// `sigDigest`: the owner, when recorded.
    pub sig_digest: Option<SigDigest>,
    /// `status`.
    pub status: ParentStatus,
    /// `idenfySessionId`: the linked iDenfy row, if any.
    pub idenfy_session_id: Option<RowId>,
    /// `verificationFailureReason`.
    pub failure_reason: Option<String>,
    /// `createdAt`, when present.
    pub created_at: Option<Timestamp>,
}

/// The durable record of one session-creation request, keyed by its idempotency key: it
/// makes retries return the first result and keeps a minted token even if a later write
/// fails, so nothing is minted twice and nothing billed is lost (`docs/data-model.md`).
#[derive(Clone, Debug, PartialEq)]
pub struct CreationIntent {
    /// Scoped key: `<scope>:<idempotency key>`.
    pub key: String,
    /// The owner the request was made for; a replay must name the same one.
    pub sig_digest: SigDigest,
    /// The flow the request was made for; a replay must name the same one.
    pub flow: Flow,
    /// Allocated up front; the iDenfy `clientId`.
    pub parent_id: ParentId,
    /// Allocated up front, so a retry re-uses it.
    pub row_id: RowId,
    /// Where the intent is in its life.
    pub state: IntentState,
    /// The holder of this claim may mint until then.
    pub claimed_until: Timestamp,
    /// The current claim's random id; the holder's writes match on it.
    pub claim_id: Nonce,
    /// The token minted for it, saved before the row is written.
    pub minted: Option<MintedToken>,
    /// When the intent was first inserted.
    pub created_at: Timestamp,
    /// `mintUnknownOutcomes`: token calls for it whose outcome is unknown (each may have
    /// billed a token we never saw).
    pub unknown_mint_outcomes: u32,
    /// `lastMintUnknownAt`: when the last of those happened.
    pub last_unknown_mint_at: Option<Timestamp>,
}

/// The state of a [`CreationIntent`] (`docs/data-model.md#creation-intents`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntentState {
    /// Claimed; a mint may be in flight.
    Pending,
    /// Parent and row are written (or an existing row was reused).
    Done,
    /// The mint failed; a retry may claim it again.
    Failed,
}
