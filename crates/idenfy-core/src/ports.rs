//! Ports: what the core needs from storage, the lock, iDenfy and time, and what an
//! implementation MUST do. The conformance suite ([`crate::conformance`], feature `testing`)
//! checks exactly this.
//!
//! Every store/lock is built for ONE environment (collections and key prefixes are chosen at
//! construction), so no method takes an `Environment`.

use std::{error::Error as StdError, fmt, future::Future, time::Duration};

use crate::{
    Claim, CreationIntent, Flow, IdenfyRow, MintedToken, Nonce, OrphanedMint, Parent, ParentId,
    RowId, RowStatus, ScanRef, SigDigest, Timestamp, VerificationStatus,
};

/// Any error, as the source of a port error.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Whether a conditional write found its document. `NotMatched` is a business outcome (a
/// peer got there first), never an error.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// The condition held and the write was made.
    Applied,
    /// The condition did not hold (or the document does not exist); nothing was written.
    NotMatched,
}

impl Write {
    /// Whether the write was made.
    pub fn applied(self) -> bool {
        self == Self::Applied
    }
}

/// Errors of the store ports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key (scanRef, row id, idempotency key) already exists.
    #[error("duplicate key")]
    Conflict,
    /// The database could not be reached or timed out; the caller may retry later.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),
    /// A stored document could not be read as our model.
    #[error("stored document {id} is malformed: {reason}")]
    Corrupt {
        /// The document's `_id`.
        id: String,
        /// What could not be read, without secrets.
        reason: String,
    },
    /// Any other backend failure.
    #[error("store backend error")]
    Backend(#[source] BoxError),
}

/// A status iDenfy reported for the current scanRef, to be stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusUpdate {
    /// iDenfy's overall status.
    pub status: VerificationStatus,
    /// The decision will not change (status API decision, or webhook `final: true`).
    pub is_final: bool,
    /// New row lifecycle, when the status decides it.
    pub row_status: Option<RowStatus>,
    /// `verificationFailureReason` to store, when the status decides one.
    pub failure_reason: Option<String>,
    /// Set when the update comes from a status call (`lastCheckedAt`: the age of the answer).
    pub checked_at: Option<Timestamp>,
}

/// What `persist_recreation` writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Recreated {
    /// The replacement token.
    pub token: MintedToken,
    /// When the superseded token was minted, if known (for the history entry).
    pub old_minted_at: Option<Timestamp>,
    /// Last status known for the superseded scanRef (normally EXPIRED).
    pub old_status: Option<VerificationStatus>,
}

/// A failed mint, recorded when the claim is released.
#[derive(Clone, Debug, PartialEq)]
pub struct MintFailure {
    /// Short, secret-free description (error class and iDenfy identifier).
    pub last_error: String,
    /// No new attempt before this instant (the back-off).
    pub next_attempt_at: Timestamp,
    /// The token call's outcome is unknown (timeout, connection lost after sending): a token
    /// may have been minted and billed. Counted on the row with its time.
    pub outcome_unknown: bool,
}

/// Rows of one environment (`idenfysessions` / `sandboxidenfysessions`).
///
/// Every conditional write MUST be one atomic server-side operation whose filter is exactly
/// the documented condition, and MUST report `NotMatched` (not an error) when the condition
/// does not hold. Writes MUST be field-level: fields the model does not know survive.
pub trait RowStore: Send + Sync + 'static {
    /// The row with this id, or `None`.
    fn get(&self, id: &RowId)
    -> impl Future<Output = Result<Option<IdenfyRow>, StoreError>> + Send;

    /// The row whose CURRENT scanRef is `scan_ref`.
    fn find_by_scan_ref(
        &self,
        scan_ref: &ScanRef,
    ) -> impl Future<Output = Result<Option<IdenfyRow>, StoreError>> + Send;

    /// The row that has `scan_ref` in its `scanRefHistory` (superseded by a recreation).
    fn find_by_superseded_scan_ref(
        &self,
        scan_ref: &ScanRef,
    ) -> impl Future<Output = Result<Option<IdenfyRow>, StoreError>> + Send;

    /// Inserts a new row. MUST return `Conflict` when the id or the scanRef exists.
    fn insert(&self, row: &IdenfyRow) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The newest row of `sig_digest` and `flow` with status `complete`, verification
    /// `APPROVED`, created at or after `since` (for reuse instead of minting).
    fn find_reusable(
        &self,
        sig_digest: &SigDigest,
        flow: Flow,
        since: Timestamp,
    ) -> impl Future<Output = Result<Option<IdenfyRow>, StoreError>> + Send;

    /// Rows of `sig_digest` created at or after `since`, newest first, at most `limit`.
    fn list_recent(
        &self,
        sig_digest: &SigDigest,
        since: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<IdenfyRow>, StoreError>> + Send;

    /// The per-row poll claim (`docs/resolver.md`, step 4b). Condition: `_id`, current
    /// scanRef == `scan_ref`, `final` not true, and `lastPolledAt` absent, null or earlier
    /// than `due_before`.
    /// Sets `lastPolledAt = now`. `NotMatched` when the condition does not hold: callers
    /// treat it as "lost the race" and re-read the row.
    fn claim_poll(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        due_before: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<Write, StoreError>> + Send;

    /// Stores a status for the current scanRef, monotonically (`docs/webhooks.md#transitions`).
    /// Condition: `_id`, current scanRef == `scan_ref`, `final` not true; and, when
    /// `update.status` is not a decision, the stored status is not an expiry (an ACTIVE
    /// that lost a race never un-expires a row). Sets `idenfyVerificationStatus`, `final`,
    /// `status` (when `row_status` is set), `verificationFailureReason` (when set),
    /// `lastCheckedAt` (when set), `updatedAt = now`.
    /// Returns the row AFTER the write, or `None` when not matched.
    fn apply_status(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        update: &StatusUpdate,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<IdenfyRow>, StoreError>> + Send;

    /// The EXPIRED marker (status only; row `status` untouched). Condition: `_id`, current
    /// scanRef == `scan_ref`, `final` not true. Sets verification `EXPIRED`, `updatedAt`.
    fn mark_expired(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        now: Timestamp,
    ) -> impl Future<Output = Result<Write, StoreError>> + Send;

    /// Claims the right to mint a replacement (`docs/resolver.md`, step 5e).
    /// Condition: `_id`, current scanRef == `scan_ref`, verification `EXPIRED`, `final` not
    /// true, not given up (row
    /// `status` `failed` with reason [`crate::reasons::RECREATION_LIMIT`]; a row id-server
    /// failed on its own expiry webhook may be claimed), `recreationCount < cap` (absent
    /// counts as 0), `mintAttempts <
    /// max_attempts` (absent counts as 0), and no live claim (`recreation.claimedUntil`
    /// absent or earlier than `now`). Sets `recreation.claimId/claimedUntil` from `claim`,
    /// increments `mintAttempts`, sets `updatedAt`. `NotMatched` when the condition does
    /// not hold (see [`RowStore::claim_poll`]).
    fn claim_recreation(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        limits: RecreationLimits,
        claim: &Claim,
        now: Timestamp,
    ) -> impl Future<Output = Result<Write, StoreError>> + Send;

    /// Releases a claim after a failed mint. Condition: `_id`, `recreation.claimId ==
    /// claim_id`. Unsets the claim, sets `recreation.lastError/nextAttemptAt` from
    /// `failure`, increments `recreation.consecutiveFailures`; when the failure's outcome is
    /// unknown, also increments `mintUnknownOutcomes` and sets `lastMintUnknownAt = now`.
    fn release_claim(
        &self,
        id: &RowId,
        claim_id: &Nonce,
        failure: &MintFailure,
        now: Timestamp,
    ) -> impl Future<Output = Result<Write, StoreError>> + Send;

    /// Persists a replacement token. Condition: `_id`, current scanRef == `old_scan_ref`,
    /// verification `EXPIRED`, `recreation.claimId == claim_id`. Sets the new token,
    /// scanRef, `tokenMintedAt` and `tokenExpiresAt`; `status in_progress`; verification, reason, `final`,
    /// `lastPolledAt`, `lastCheckedAt` cleared; `recreationCount + 1`; pushes the old
    /// scanRef to `scanRefHistory`; clears the claim, `nextAttemptAt`, `lastError` and
    /// `consecutiveFailures`; sets `updatedAt`.
    fn persist_recreation(
        &self,
        id: &RowId,
        old_scan_ref: &ScanRef,
        claim_id: &Nonce,
        recreated: &Recreated,
        now: Timestamp,
    ) -> impl Future<Output = Result<Write, StoreError>> + Send;

    /// Appends to `orphanedMints` (unconditionally, by `_id`).
    fn record_orphaned_mint(
        &self,
        id: &RowId,
        orphan: &OrphanedMint,
    ) -> impl Future<Output = Result<Write, StoreError>> + Send;

    /// Gives up recovery for good. Condition: `_id`, current scanRef == `scan_ref`,
    /// verification `EXPIRED`, `final` not true. Sets `status failed`, the reason,
    /// `updatedAt`; unsets any claim.
    fn give_up(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Write, StoreError>> + Send;

    /// Records a status reported for a SUPERSEDED scanRef in its history entry, without
    /// touching the current session. Condition: `_id` and a history entry with that
    /// scanRef whose `final` is not true. Sets the entry's `lastStatus` and `final`.
    fn update_superseded(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        status: &VerificationStatus,
        is_final: bool,
    ) -> impl Future<Output = Result<Write, StoreError>> + Send;
}

/// Bounds for `claim_recreation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecreationLimits {
    /// Max persisted recreations (`recreationCount`).
    pub cap: u32,
    /// Max token calls ever started for the row (`mintAttempts`), billed or not.
    pub max_attempts: u32,
}

/// Parent sessions of one environment, both flows. Writes MUST be field-level and touch
/// only `status`, `verificationFailureReason` and `idenfySessionId`.
pub trait ParentStore: Send + Sync + 'static {
    /// The parent of `flow` with this id.
    fn get(
        &self,
        flow: Flow,
        id: &ParentId,
    ) -> impl Future<Output = Result<Option<Parent>, StoreError>> + Send;

    /// Looks in the gov-id collection first, then clean-hands (as `/session-status/v2` does).
    fn find_any(
        &self,
        id: &ParentId,
    ) -> impl Future<Output = Result<Option<Parent>, StoreError>> + Send;

    /// Inserts a new parent. MUST return `Conflict` when the id exists.
    fn insert(&self, parent: &Parent) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Links a row. Condition: `_id`, and `idenfySessionId` absent, null or already `row`.
    fn link_row(
        &self,
        flow: Flow,
        id: &ParentId,
        row: &RowId,
    ) -> impl Future<Output = Result<Write, StoreError>> + Send;

    /// VERIFICATION_FAILED with `reason`. Condition: `_id`, status `IN_PROGRESS`.
    fn fail(
        &self,
        flow: Flow,
        id: &ParentId,
        reason: &str,
    ) -> impl Future<Output = Result<Write, StoreError>> + Send;

    /// Fails every IN_PROGRESS parent of either flow whose `idenfySessionId` is `row`
    /// (idempotent: already-failed parents are not matched). Returns how many changed.
    fn fail_all_linked(
        &self,
        row: &RowId,
        reason: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Creation intents of one environment (idempotent session creation, `docs/data-model.md`).
pub trait IntentStore: Send + Sync + 'static {
    /// Inserts a new intent. MUST return `Conflict` when the key exists.
    fn insert(
        &self,
        intent: &CreationIntent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The intent with this key, or `None`.
    fn get(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<CreationIntent>, StoreError>> + Send;

    /// Takes over an intent for a new attempt. Condition: `key`, and state `Failed`, or
    /// state `Pending` with `claimedUntil` earlier than `now`. Sets state `Pending`,
    /// `claimId`, `claimedUntil`.
    fn reclaim(
        &self,
        key: &str,
        claim_id: &Nonce,
        claimed_until: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<Write, StoreError>> + Send;

    /// Saves the minted token. Condition: `key`, `claimId == claim_id`.
    fn record_mint(
        &self,
        key: &str,
        claim_id: &Nonce,
        minted: &MintedToken,
    ) -> impl Future<Output = Result<Write, StoreError>> + Send;

    /// Marks the intent `Done` or `Failed`. Condition: `key`, `claimId == claim_id`.
    fn finish(
        &self,
        key: &str,
        claim_id: &Nonce,
        state: crate::IntentState,
    ) -> impl Future<Output = Result<Write, StoreError>> + Send;

    /// After a token call whose outcome is unknown: `Failed`, `claimedUntil = retry_at`
    /// (the earliest next attempt), `mintUnknownOutcomes` incremented, `lastMintUnknownAt =
    /// now`. Condition: `key`, `claimId == claim_id`.
    fn record_unknown_mint(
        &self,
        key: &str,
        claim_id: &Nonce,
        retry_at: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<Write, StoreError>> + Send;
}

/// Errors of the lock port.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Valkey could not be reached or did not answer in time. The resolver degrades to the
    /// MongoDB claim; it never fails a request because of this.
    #[error("lock service unavailable")]
    Unavailable(#[source] BoxError),
}

/// Proof of holding a lock: the key's owner token.
#[derive(Clone, PartialEq, Eq)]
pub struct LockGuard {
    /// The row whose lock is held.
    pub row: RowId,
    /// The random owner token stored as the key's value.
    pub owner: Nonce,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

/// The per-row recreate lock (`[sandbox:]idenfy:recreate-lock:<rowId>`), an optimisation in
/// front of the MongoDB claim.
pub trait RecreateLock: Send + Sync + 'static {
    /// Tries once: MUST set the key to a fresh random owner token only if absent, with a
    /// TTL of `ttl` (`SET NX PX`). `Ok(None)` when another owner holds it.
    fn acquire(
        &self,
        row: &RowId,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<LockGuard>, LockError>> + Send;

    /// MUST delete the key only if it still holds `guard.owner` (compare-and-delete).
    /// `Ok(false)` when it had expired or belongs to someone else.
    fn release(&self, guard: &LockGuard) -> impl Future<Output = Result<bool, LockError>> + Send;
}

/// The kinds of iDenfy failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdenfyErrorKind {
    /// 401/403: wrong credentials or environment.
    Unauthorized,
    /// 402, or 400 `PERMISSIONS_ERROR` "Partner reached token limit.": needs an operator.
    Money,
    /// 429 / `TOO_MANY_REQUESTS`.
    RateLimited,
    /// 409.
    Conflict,
    /// 404 (unknown scanRef).
    NotFound,
    /// Other 4xx: our request is wrong.
    InvalidRequest,
    /// 5xx.
    Server,
    /// No answer in time: the request may have been processed (for a token call, minted
    /// and billed).
    Timeout,
    /// The connection could not be made: the request never left, nothing happened.
    Connect,
    /// The connection broke after the request was sent (reset, unreadable body): the
    /// request may have been processed.
    Transport,
    /// 2xx with a body we cannot use (missing fields, mismatched scanRef).
    UnexpectedPayload,
}

/// Transient failures may succeed on retry; money failures need an operator; permanent
/// ones need a code or configuration change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// May succeed on retry (after a back-off).
    Transient,
    /// The iDenfy account cannot pay for tokens: an operator must act.
    Money,
    /// Retrying will not help: credentials, configuration or a bug.
    Permanent,
}

impl ErrorClass {
    /// Lowercase name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Money => "money",
            Self::Permanent => "permanent",
        }
    }
}

impl IdenfyErrorKind {
    /// Whether a call that failed this way may still have taken effect at iDenfy: for a
    /// token call, a token that may have been minted and billed although we never saw it.
    pub fn outcome_unknown(self) -> bool {
        matches!(self, Self::Timeout | Self::Transport)
    }

    /// How to react to this kind of failure.
    pub fn class(self) -> ErrorClass {
        match self {
            Self::RateLimited
            | Self::Server
            | Self::Timeout
            | Self::Connect
            | Self::Transport
            | Self::Conflict => ErrorClass::Transient,
            Self::Money => ErrorClass::Money,
            Self::Unauthorized
            | Self::NotFound
            | Self::InvalidRequest
            | Self::UnexpectedPayload => ErrorClass::Permanent,
        }
    }

    /// Snake-case name, for logs, stored errors and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Money => "money",
            Self::RateLimited => "rate_limited",
            Self::Conflict => "conflict",
            Self::NotFound => "not_found",
            Self::InvalidRequest => "invalid_request",
            Self::Server => "server",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Transport => "transport",
            Self::UnexpectedPayload => "unexpected_payload",
        }
    }
}

/// A failed iDenfy call. Carries iDenfy's `identifier` and message (never credentials,
/// tokens or personal data) and the source error.
#[derive(Debug, thiserror::Error)]
#[error("iDenfy {}{}: {message}", kind.as_str(), identifier.as_deref().map(|i| format!(" ({i})")).unwrap_or_default())]
pub struct IdenfyError {
    /// What kind of failure it was.
    pub kind: IdenfyErrorKind,
    /// The HTTP status of iDenfy's answer, when there was one.
    pub http_status: Option<u16>,
    /// iDenfy's error `identifier` (e.g. `PERMISSIONS_ERROR`), when it sent one.
    pub identifier: Option<String>,
    /// iDenfy's error message, or a description of the failure.
    pub message: String,
    /// The underlying error (transport, decoding), if any.
    #[source]
    pub source: Option<BoxError>,
}

impl IdenfyError {
    /// An error of `kind` with `message`, no HTTP status, identifier or source.
    pub fn new(kind: IdenfyErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            http_status: None,
            identifier: None,
            message: message.into(),
            source: None,
        }
    }

    /// The class of its kind.
    pub fn class(&self) -> ErrorClass {
        self.kind.class()
    }
}

/// What `/api/v2/status` reported.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusReport {
    /// The scanRef iDenfy echoed (equal to the one asked about).
    pub scan_ref: ScanRef,
    /// iDenfy's overall status of it.
    pub status: VerificationStatus,
}

/// The iDenfy API of one environment (its credentials are the implementation's business).
pub trait IdenfyApi: Send + Sync + 'static {
    /// `POST /api/v2/token` for `client_id`. MUST NOT retry: every call may bill a credit.
    fn mint(
        &self,
        client_id: &ParentId,
    ) -> impl Future<Output = Result<MintedToken, IdenfyError>> + Send;

    /// `POST /api/v2/status`. MUST fail with `UnexpectedPayload` when the echoed scanRef
    /// differs or no status is present.
    fn status(
        &self,
        scan_ref: &ScanRef,
    ) -> impl Future<Output = Result<StatusReport, IdenfyError>> + Send;

    /// `POST /api/v2/data`: the document fields (flat, whether iDenfy sent them flat or
    /// nested under `data`).
    fn data(
        &self,
        scan_ref: &ScanRef,
    ) -> impl Future<Output = Result<serde_json::Map<String, serde_json::Value>, IdenfyError>> + Send;
}

/// The time source, and waiting on it.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;

    /// Resolves after `duration` of this clock's time (the back-off between retries of a
    /// write that must not be lost). The default parks a helper thread, so it works on any
    /// executor; a clock for one runtime should use that runtime's timer instead, and a
    /// test clock may simply advance.
    fn sleep(&self, duration: Duration) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(thread_sleep(duration))
    }
}

/// A sleep that needs no runtime: a thread waits, then completes a oneshot.
fn thread_sleep(duration: Duration) -> impl Future<Output = ()> + Send + 'static {
    let (done, wait) = futures::channel::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("idenfy-core-sleep".to_owned())
        .spawn(move || {
            std::thread::sleep(duration);
            let _ = done.send(());
        });
    async move {
        if spawned.is_ok() {
            let _ = wait.await;
        }
    }
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// Lets a shared `Arc` be used wherever a port is expected.
impl<T: Clock + ?Sized> Clock for std::sync::Arc<T> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }

    fn sleep(&self, duration: Duration) -> futures::future::BoxFuture<'static, ()> {
        (**self).sleep(duration)
    }
}
