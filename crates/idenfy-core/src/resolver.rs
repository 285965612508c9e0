//! The resolver (`docs/resolver.md`): status with expired-session recovery.
//!
//! The numbered steps of the contract are marked in the code. The guard against double
//! minting is the MongoDB claim (step 5e); the in-process single flight and the Valkey
//! lock in front of it only save work.

use std::time::Duration;

use tracing::{debug, error, info, warn};

use crate::{
    Backend, Claim, Clock, ErrorClass, IdenfyApi, IdenfyRow, MintFailure, MintedToken, Nonce,
    OrphanedMint, ParentId, ParentStatus, ParentStore, RecreateLock, Recreated, RecreationLimits,
    RowId, RowStore, ScanRef, SessionView, Sessions, SigDigest, StatusUpdate, StatusV2, StoreError,
    Timestamp, VerificationStatus,
    interest::Interest,
    journal::{JournaledMint, MintTarget, ReplayReport},
    reasons,
};

/// How long a poll that found a peer asking iDenfy about its row waits for that answer
/// (measured from the peer's claim).
pub const PEER_POLL_WAIT: Duration = Duration::from_secs(1);
/// The first pause between re-reads while waiting for a peer's poll; it doubles.
const PEER_POLL_FIRST_PAUSE: Duration = Duration::from_millis(50);

/// Why a resolution failed. Every business outcome is a view; only these are errors.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Unknown id, malformed id, or somebody else's row: indistinguishable on purpose
    /// (no existence oracle).
    #[error("iDenfy session not found")]
    NotFound,
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a view came about (for metrics and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A final decision from the row, no I/O.
    Final,
    /// The stored in-progress state (poll not due, or a peer is polling).
    Cached,
    /// iDenfy was asked just now.
    Polled,
    /// The status call failed; the cached state is shown with `lastCheckedAt`.
    PollFailed,
    /// This request minted and persisted a fresh token.
    Recovered,
    /// A peer had already refreshed the row.
    RecoveredByPeer,
    /// Recovery is under way elsewhere, backing off, or just failed transiently.
    Pending,
    /// Nothing left to resume.
    GaveUp,
}

impl Outcome {
    /// Snake-case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Final => "final",
            Self::Cached => "cached",
            Self::Polled => "polled",
            Self::PollFailed => "poll_failed",
            Self::Recovered => "recovered",
            Self::RecoveredByPeer => "recovered_by_peer",
            Self::Pending => "pending",
            Self::GaveUp => "gave_up",
        }
    }
}

/// A view plus how it came about.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    /// What the caller is shown.
    pub view: SessionView,
    /// How the view came about.
    pub outcome: Outcome,
}

impl<B: Backend> Sessions<B> {
    /// `GET /idenfy-sessions/{id}/status`: the row's view for its owner.
    pub async fn resolve(
        &self,
        raw_row_id: &str,
        caller: &SigDigest,
    ) -> Result<Resolution, ResolveError> {
        self.resolve_with(raw_row_id, caller, &Interest::new())
            .await
    }

    /// [`Self::resolve`], committing to `interest` before its first write: run it with
    /// [`Interest::run`] so that it stops when its caller leaves before that.
    pub async fn resolve_with(
        &self,
        raw_row_id: &str,
        caller: &SigDigest,
        interest: &Interest,
    ) -> Result<Resolution, ResolveError> {
        // Step 1: owner check; every miss looks the same.
        let id = RowId::parse(raw_row_id).map_err(|_| ResolveError::NotFound)?;
        let row = self.rows().get(&id).await?.ok_or(ResolveError::NotFound)?;
        if !row.sig_digest.matches(caller) {
            return Err(ResolveError::NotFound);
        }
        Ok(self.resolve_counted(row, interest).await?)
    }

    /// `GET /session-status/v2?sid=`: the same resolver, keyed by the parent.
    pub async fn status_v2(
        &self,
        raw_parent_id: &str,
        caller: &SigDigest,
    ) -> Result<StatusV2, ResolveError> {
        self.status_v2_with(raw_parent_id, caller, &Interest::new())
            .await
    }

    /// [`Self::status_v2`] under `interest`, like [`Self::resolve_with`].
    pub async fn status_v2_with(
        &self,
        raw_parent_id: &str,
        caller: &SigDigest,
        interest: &Interest,
    ) -> Result<StatusV2, ResolveError> {
        let id = ParentId::parse(raw_parent_id).map_err(|_| ResolveError::NotFound)?;
        let parent = self
            .parents()
            .find_any(&id)
            .await?
            .ok_or(ResolveError::NotFound)?;
        if let Some(owner) = &parent.sig_digest
            && !owner.matches(caller)
        {
            return Err(ResolveError::NotFound);
        }
        let Some(row_id) = parent.idenfy_session_id else {
            return Ok(StatusV2::from_view(id, None));
        };
        let row = self
            .rows()
            .get(&row_id)
            .await?
            .ok_or(ResolveError::NotFound)?;
        if !row.sig_digest.matches(caller) {
            return Err(ResolveError::NotFound);
        }
        let resolution = self.resolve_counted(row, interest).await?;
        Ok(StatusV2::from_view(id, Some(&resolution.view)))
    }

    /// [`Self::resolve_row`], counted by outcome.
    async fn resolve_counted(
        &self,
        row: IdenfyRow,
        interest: &Interest,
    ) -> Result<Resolution, StoreError> {
        let resolution = self.resolve_row_with(row, interest).await?;
        metrics::counter!("idenfy_resolutions_total", "outcome" => resolution.outcome.as_str())
            .increment(1);
        Ok(resolution)
    }

    /// `GET /idenfy-sessions`: the caller's recent rows, without tokens.
    pub async fn list(&self, caller: &SigDigest) -> Result<Vec<crate::ListedSession>, StoreError> {
        let since = before(self.clock().now(), self.settings.reuse_window);
        let rows = self
            .rows()
            .list_recent(caller, since, self.settings.list_limit)
            .await?;
        Ok(rows.iter().map(crate::ListedSession::from).collect())
    }

    /// Steps 2–5 for a row the caller owns.
    pub async fn resolve_row(&self, row: IdenfyRow) -> Result<Resolution, StoreError> {
        self.resolve_row_with(row, &Interest::new()).await
    }

    /// [`Self::resolve_row`] under `interest`, like [`Self::resolve_with`].
    pub async fn resolve_row_with(
        &self,
        row: IdenfyRow,
        interest: &Interest,
    ) -> Result<Resolution, StoreError> {
        // Step 2: a final decision is cached for good.
        if row.final_decision().is_some() {
            return Ok(self.current(&row, Outcome::Final));
        }
        if row.gave_up() {
            // Re-assert the parent failure: a crash between the two writes must not leave
            // the parent IN_PROGRESS (and so unrefundable) forever.
            if row.failure_reason.as_deref() == Some(reasons::RECREATION_LIMIT) {
                interest.commit();
                let _ = self
                    .parents()
                    .fail(row.flow, &row.parent_id, reasons::RECREATION_LIMIT)
                    .await?;
            }
            return Ok(gave_up(&row));
        }
        // Step 3: a known expiry goes straight to recovery.
        if row.is_expired() {
            return self.recover(row, interest).await;
        }
        // Step 4: reconcile, do not poll.
        let now = self.clock().now();
        let due_before = self.poll_due_before(&row, now);
        // A token minted (or polled) within the interval needs no status call yet: its
        // state is known from the mint, and the herd right after a recovery would
        // otherwise start with a poll of a brand-new token.
        let last_known = row.last_polled_at.max(row.token_minted_at);
        if last_known.is_none_or(|t| t < due_before) {
            // The claim is a write: from here the poll finishes even if its caller leaves,
            // so that peers waiting for its answer get one.
            interest.commit();
            if self
                .rows()
                .claim_poll(&row.id, &row.scan_ref, due_before, now)
                .await?
                .applied()
            {
                return self.poll(row, interest).await;
            }
            // A peer is polling, or the row moved on since our read: trust the store, not
            // the snapshot.
            debug!(row = %row.id, "status poll claimed by a peer");
            let fresh = self.reread(&row.id).await?;
            return self.after_peer_poll(fresh, &row.scan_ref, interest).await;
        }
        // Not due: the stored state, unless a peer's answer is about to land.
        let polled = row.scan_ref.clone();
        self.after_peer_poll(row, &polled, interest).await
    }

    /// When a peer claimed the row's status poll less than [`PEER_POLL_WAIT`] ago and its
    /// answer has not landed yet: the time until which it is worth waiting for it.
    fn peer_poll_in_flight(&self, row: &IdenfyRow, now: Timestamp) -> Option<Timestamp> {
        let claimed = row.last_polled_at?;
        if row
            .last_checked_at
            .is_some_and(|checked| checked >= claimed)
        {
            return None;
        }
        let until = after(claimed, PEER_POLL_WAIT);
        (until > now).then_some(until)
    }

    /// A peer is asking iDenfy about this row (or just did): wait, re-reading with short
    /// pauses, until its answer lands or [`PEER_POLL_WAIT`] after its claim, then show the
    /// row as it is. The stored token is what the peer may be about to find expired, so it
    /// is not handed out before the peer's answer unless that is late.
    async fn after_peer_poll(
        &self,
        mut row: IdenfyRow,
        polled: &ScanRef,
        interest: &Interest,
    ) -> Result<Resolution, StoreError> {
        let mut pause = PEER_POLL_FIRST_PAUSE;
        // Never longer than the bound from here either, whatever the peer's clock said.
        let latest = after(self.clock().now(), PEER_POLL_WAIT);
        loop {
            if row.scan_ref != *polled || row.is_expired() || row.final_decision().is_some() {
                return self.settle(row, polled, interest).await;
            }
            let now = self.clock().now();
            let Some(until) = self
                .peer_poll_in_flight(&row, now)
                .map(|until| until.min(latest))
                .filter(|until| *until > now)
            else {
                return Ok(self.cached_or_pending(&row, now));
            };
            metrics::counter!("idenfy_peer_poll_waits_total").increment(1);
            self.clock().sleep(pause.min(to_std(until - now))).await;
            pause = pause.saturating_mul(2);
            row = self.reread(&row.id).await?;
        }
    }

    /// The stored in-progress state, unless its token is past expiry (a peer is checking
    /// it): a stale token is never handed out.
    fn cached_or_pending(&self, row: &IdenfyRow, now: Timestamp) -> Resolution {
        if row.token_expires_at.is_some_and(|t| t <= now)
            && !row
                .verification_status
                .as_ref()
                .is_some_and(VerificationStatus::is_decision)
        {
            return self.pending(row, self.settings.pending_retry_after);
        }
        self.current(row, Outcome::Cached)
    }

    /// A poll is due when the last one is older than the interval, or older than the
    /// token's expiry once that has passed.
    fn poll_due_before(&self, row: &IdenfyRow, now: Timestamp) -> Timestamp {
        let by_interval = before(now, self.settings.poll_interval);
        match row.token_expires_at {
            Some(expiry) if expiry <= now => by_interval.max(expiry),
            _ => by_interval,
        }
    }

    /// Step 4 after winning the poll claim: one `/api/v2/status` call, written back
    /// conditionally on the polled scanRef.
    async fn poll(&self, row: IdenfyRow, interest: &Interest) -> Result<Resolution, StoreError> {
        let report = match self.idenfy().status(&row.scan_ref).await {
            Ok(report) => report,
            Err(err) => {
                // Show what we have and say how old it is, never an error page.
                warn!(row = %row.id, scan_ref = %row.scan_ref, error = %err, "status poll failed; serving the cached view");
                metrics::counter!("idenfy_status_polls_total", "outcome" => "error").increment(1);
                let mut resolution = self.current(&row, Outcome::PollFailed);
                if row
                    .token_expires_at
                    .is_some_and(|t| t <= self.clock().now())
                {
                    resolution = self.pending(&row, self.settings.pending_retry_after);
                }
                resolution.view.last_checked_at = row.last_checked_at;
                return Ok(resolution);
            }
        };
        metrics::counter!("idenfy_status_polls_total", "outcome" => "ok").increment(1);
        let now = self.clock().now();
        if report.status.is_expiry() {
            // The EXPIRED marker, only on the scanRef we polled (never on a peer's new token).
            if self
                .rows()
                .mark_expired(&row.id, &row.scan_ref, now)
                .await?
                .applied()
            {
                let mut expired = row;
                expired.verification_status = Some(VerificationStatus::Expired);
                return self.recover(expired, interest).await;
            }
            return self.after_race(&row.id, &row.scan_ref, interest).await;
        }
        let update = StatusUpdate {
            is_final: report.status.is_decision(),
            row_status: report.status.decided_row_status(),
            failure_reason: report.status.failure_reason().map(str::to_owned),
            checked_at: Some(now),
            status: report.status,
        };
        match self
            .rows()
            .apply_status(&row.id, &row.scan_ref, &update, now)
            .await?
        {
            Some(updated) => {
                self.propagate_denial(&updated).await?;
                Ok(self.current(&updated, Outcome::Polled))
            }
            None => self.after_race(&row.id, &row.scan_ref, interest).await,
        }
    }

    /// A final DENIED fails every IN_PROGRESS parent linked to the row (idempotent).
    pub(crate) async fn propagate_denial(&self, row: &IdenfyRow) -> Result<(), StoreError> {
        if row.final_decision() == Some(&VerificationStatus::Denied) {
            let failed = self
                .parents()
                .fail_all_linked(&row.id, reasons::DENIED)
                .await?;
            if failed > 0 {
                info!(row = %row.id, parents = failed, "denied verification failed its parent sessions");
            }
        }
        Ok(())
    }

    /// A conditional write missed: somebody changed the row. Show what it is now, without
    /// polling again; recover if it is expired.
    async fn after_race(
        &self,
        id: &RowId,
        polled: &ScanRef,
        interest: &Interest,
    ) -> Result<Resolution, StoreError> {
        let row = self.reread(id).await?;
        self.settle(row, polled, interest).await
    }

    /// Shows a freshly read row to a poller whose snapshot is out of date: recover it if it
    /// is expired, else classify it.
    async fn settle(
        &self,
        row: IdenfyRow,
        polled: &ScanRef,
        interest: &Interest,
    ) -> Result<Resolution, StoreError> {
        if row.is_expired() && !row.gave_up() && row.final_decision().is_none() {
            return self.recover(row, interest).await;
        }
        Ok(self.classify(&row, polled))
    }

    /// Step 5: recover an expired row.
    async fn recover(&self, row: IdenfyRow, interest: &Interest) -> Result<Resolution, StoreError> {
        let now = self.clock().now();
        // Recovery already under way, seen without another read: a live claim (a peer is
        // minting), or this process recovering the row. Pending; the recovery in progress
        // settles the rest (parent, cap, back-off). In a herd this keeps most polls at one
        // store read.
        if let Some(claim) = &row.recreation.claim
            && claim.claimed_until > now
        {
            return Ok(self.pending(&row, self.settings.pending_retry_after));
        }
        // 5d, first layer: one recovery per row in this process.
        let Some(_in_flight) = self.recovering.enter(&row.id) else {
            metrics::counter!("idenfy_recreate_lock_total", "outcome" => "busy_here").increment(1);
            return Ok(self.pending(&row, self.settings.pending_retry_after));
        };
        // 5a: only a paid, unfinished parent is resumed.
        let parent = self.parents().get(row.flow, &row.parent_id).await?;
        if !parent
            .as_ref()
            .is_some_and(|p| p.status == ParentStatus::InProgress)
        {
            debug!(row = %row.id, "expired row whose parent is not in progress: nothing to resume");
            return Ok(gave_up(&row));
        }
        // Every path below writes (a give-up, an attach, the lock and the claim): it runs to
        // its end whether or not the caller waits.
        interest.commit();
        // 5b: cap (and the error budget) → give up for good, parent refundable.
        if row.recreation_count >= self.settings.recreation_cap
            || row.mint_attempts >= self.settings.max_mint_attempts
            || row.unknown_mint_outcomes >= self.settings.max_unknown_mint_outcomes
        {
            return self.give_up(&row).await;
        }
        // 5c: back-off after a failed mint.
        if let Some(next) = row.recreation.next_attempt_at
            && next > now
        {
            return Ok(self.pending(&row, to_std(next - now)));
        }
        // A token this process minted for this very scanRef and could not persist: attach
        // it instead of paying for another.
        if let Some(entry) = self.journaled_for_row(&row) {
            self.attach_journaled(&entry).await?;
            self.settle_journaled(&entry);
            return self.reread_and_classify(&row.id, &row.scan_ref).await;
        }
        // 5d, second layer: the Valkey lock between processes. Like the first, it only
        // saves work; losing it means a peer is minting.
        // Never longer than the claim: a holder that dies mid-mint blocks the row for at
        // most the claim's TTL.
        let lock_ttl = self.settings.lock_ttl.min(self.settings.claim_ttl);
        let guard = match self.lock().acquire(&row.id, lock_ttl).await {
            Ok(Some(guard)) => {
                metrics::counter!("idenfy_recreate_lock_total", "outcome" => "won").increment(1);
                Some(guard)
            }
            Ok(None) => {
                metrics::counter!("idenfy_recreate_lock_total", "outcome" => "lost").increment(1);
                return self.reread_and_classify(&row.id, &row.scan_ref).await;
            }
            Err(err) => {
                // The claim below is the guard; Valkey trouble only costs efficiency.
                warn!(row = %row.id, error = %err, "recreate lock unavailable; relying on the store claim");
                metrics::counter!("idenfy_recreate_lock_total", "outcome" => "unavailable")
                    .increment(1);
                None
            }
        };
        let result = self.claim_and_mint(&row).await;
        // 5h: releasing never changes the outcome.
        if let Some(guard) = guard {
            match self.lock().release(&guard).await {
                Ok(true) => {}
                Ok(false) => warn!(row = %row.id, "recreate lock had expired before release"),
                Err(err) => warn!(row = %row.id, error = %err, "recreate lock release failed"),
            }
        }
        result
    }

    /// Steps 5e–5g.
    async fn claim_and_mint(&self, row: &IdenfyRow) -> Result<Resolution, StoreError> {
        let now = self.clock().now();
        let claim = Claim {
            claim_id: Nonce::random(),
            claimed_until: after(now, self.settings.claim_ttl),
        };
        let limits = RecreationLimits {
            cap: self.settings.recreation_cap,
            max_attempts: self.settings.max_mint_attempts,
        };
        // 5e: the claim is the real guard (`docs/resolver.md#exactly-one-mint-per-expired-token`).
        if !self
            .rows()
            .claim_recreation(&row.id, &row.scan_ref, limits, &claim, now)
            .await?
            .applied()
        {
            return self.reread_and_classify(&row.id, &row.scan_ref).await;
        }
        // 5f: mint for the same paid parent (no new payment).
        metrics::counter!("idenfy_mints_total", "cause" => "recovery").increment(1);
        let token = match self.idenfy().mint(&row.parent_id).await {
            Ok(token) => token,
            Err(err) => {
                let class = err.class();
                metrics::counter!("idenfy_mint_failures_total", "class" => class.as_str())
                    .increment(1);
                if class == ErrorClass::Money {
                    error!(row = %row.id, error = %err, "iDenfy refused to mint for lack of credit: operator action needed");
                } else {
                    warn!(row = %row.id, error = %err, "minting a replacement token failed; backing off");
                }
                let outcome_unknown = err.kind.outcome_unknown();
                let mut delay = self
                    .settings
                    .backoff(row.recreation.consecutive_failures + 1);
                if outcome_unknown {
                    // A token may have been minted and billed: wait long enough for a
                    // webhook or a poll to show it before paying for another.
                    delay = delay.max(self.settings.unknown_outcome_backoff);
                    metrics::counter!("idenfy_mint_unknown_outcomes_total", "cause" => "recovery")
                        .increment(1);
                    warn!(row = %row.id, parent = %row.parent_id, attempt = row.mint_attempts + 1, unknown_outcomes = row.unknown_mint_outcomes + 1, "the outcome of a token call is unknown (a token may have been billed); backing off longer");
                }
                let failure = MintFailure {
                    last_error: match &err.identifier {
                        Some(id) => format!("{}: {id}", err.kind.as_str()),
                        None => err.kind.as_str().to_owned(),
                    },
                    next_attempt_at: after(self.clock().now(), delay),
                    outcome_unknown,
                };
                let _ = self
                    .rows()
                    .release_claim(&row.id, &claim.claim_id, &failure, self.clock().now())
                    .await?;
                return Ok(self.pending(row, delay));
            }
        };
        // 5g: persist only while our claim still stands. A store fault is retried while the
        // claim is ours (nobody else can claim the row meanwhile); past that, the token goes
        // to the journal: a paid token is never dropped.
        let recreated = Recreated {
            token: token.clone(),
            old_minted_at: row.token_minted_at,
            old_status: row.verification_status.clone(),
        };
        let retry_until = claim
            .claimed_until
            .min(after(self.clock().now(), self.settings.persist_retry));
        let persisted = self
            .retrying_store(
                retry_until,
                &row.id,
                "persisting a replacement token",
                || {
                    self.rows().persist_recreation(
                        &row.id,
                        &row.scan_ref,
                        &claim.claim_id,
                        &recreated,
                        self.clock().now(),
                    )
                },
            )
            .await;
        match persisted {
            Ok(write) if write.applied() => {
                info!(row = %row.id, old_scan_ref = %row.scan_ref, scan_ref = %token.scan_ref, "recovered an expired iDenfy session");
                Ok(self.current(&recovered(row, token), Outcome::Recovered))
            }
            Ok(_) => {
                // A retried persist may miss because an earlier attempt that timed out was
                // applied after all: then the row already carries this token.
                if let Some(landed) = self.carrying(&row.id, &token.scan_ref).await? {
                    info!(row = %row.id, old_scan_ref = %row.scan_ref, scan_ref = %token.scan_ref, "recovered an expired iDenfy session (an earlier persist attempt had landed)");
                    return Ok(self.current(&landed, Outcome::Recovered));
                }
                warn!(row = %row.id, scan_ref = %token.scan_ref, "claim lost before persisting; recording the orphaned mint");
                if let Err(err) = self
                    .record_orphan(&row.id, &token.scan_ref, token.minted_at)
                    .await
                {
                    error!(row = %row.id, scan_ref = %token.scan_ref, error = %err, "could not record an orphaned mint");
                }
                self.reread_and_classify(&row.id, &row.scan_ref).await
            }
            Err(err) => {
                let target = MintTarget::Recovery {
                    row_id: row.id.clone(),
                    old_scan_ref: row.scan_ref.clone(),
                    claim_id: claim.claim_id.clone(),
                    old_minted_at: row.token_minted_at,
                    old_status: row
                        .verification_status
                        .as_ref()
                        .map(|status| status.as_str().to_owned()),
                };
                self.journal_mint(&row.parent_id, target, &token, &err);
                Err(err)
            }
        }
    }

    /// Runs `write` (one store write that records a paid token) until it answers, retrying
    /// store faults with back-off while `until` has not passed. Conflicts and corrupt
    /// documents are answers, not faults.
    pub(crate) async fn retrying_store<T, F, Fut>(
        &self,
        until: Timestamp,
        row: &(dyn std::fmt::Display + Sync),
        what: &str,
        mut write: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt: u32 = 0;
        loop {
            match write().await {
                Err(err @ (StoreError::Unavailable(_) | StoreError::Backend(_))) => {
                    attempt = attempt.saturating_add(1);
                    let delay = crate::Settings::store_retry_backoff(attempt);
                    if after(self.clock().now(), delay) >= until {
                        return Err(err);
                    }
                    warn!(row = %row, attempt, error = %err, "{what} failed; retrying while the claim is ours");
                    metrics::counter!("idenfy_store_write_retries_total").increment(1);
                    self.clock().sleep(delay).await;
                }
                answered => return answered,
            }
        }
    }

    /// The store could not take a paid token in time: journal it (when there is a journal)
    /// and say so at ERROR, with ids and scanRef, never the token.
    pub(crate) fn journal_mint(
        &self,
        parent: &ParentId,
        target: MintTarget,
        token: &MintedToken,
        cause: &StoreError,
    ) {
        metrics::counter!("idenfy_unpersisted_mints_total").increment(1);
        let entry = JournaledMint::new(
            self.settings.environment,
            parent,
            target,
            token,
            self.clock().now(),
        );
        let (row, intent) = match &entry.target {
            MintTarget::Recovery { row_id, .. } => (Some(row_id.to_string()), None),
            MintTarget::Creation { intent_key, .. } => (None, Some(intent_key.as_str())),
        };
        match &self.journal {
            Some(journal) => match journal.record(&entry) {
                Ok(()) => error!(
                    row, intent, parent = %parent, scan_ref = %token.scan_ref, error = %cause,
                    "the store did not take a minted token in time; it is journaled and will be attached when the store answers"
                ),
                Err(journal_err) => error!(
                    row, intent, parent = %parent, scan_ref = %token.scan_ref, error = %cause, journal_error = %journal_err,
                    "the store did not take a minted token in time and the journal failed too: the token is LOST (billed, unused)"
                ),
            },
            None => error!(
                row, intent, parent = %parent, scan_ref = %token.scan_ref, error = %cause,
                "the store did not take a minted token in time and there is no journal: the token is lost (billed, unused)"
            ),
        }
    }

    /// A token this process journaled for `row`'s current (expired) scanRef, if any.
    pub(crate) fn journaled_for_row(&self, row: &IdenfyRow) -> Option<JournaledMint> {
        let journal = self.journal.as_ref()?;
        journal.pending().into_iter().find(|entry| {
            entry.environment == self.settings.environment
                && matches!(&entry.target, MintTarget::Recovery { row_id, old_scan_ref, .. }
                    if *row_id == row.id && *old_scan_ref == row.scan_ref)
        })
    }

    /// The row `id` as stored, when it already carries `scan_ref`: a write reported as
    /// missed (or failed) may have landed after all.
    async fn carrying(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
    ) -> Result<Option<IdenfyRow>, StoreError> {
        Ok(self
            .rows()
            .get(id)
            .await?
            .filter(|row| &row.scan_ref == scan_ref))
    }

    /// Writes a journaled token where it belongs: a recovery's onto its row (the persist it
    /// could not make), a creation's into its intent. `Ok(false)` when the row or intent
    /// moved on: the token is then an orphan, recorded as such.
    async fn attach_journaled(&self, entry: &JournaledMint) -> Result<bool, StoreError> {
        let MintTarget::Recovery {
            row_id,
            old_scan_ref,
            claim_id,
            old_minted_at,
            ..
        } = &entry.target
        else {
            return self.attach_journaled_creation(entry).await;
        };
        let recreated = Recreated {
            token: entry.token(),
            old_minted_at: *old_minted_at,
            old_status: entry.old_status(),
        };
        let write = self
            .rows()
            .persist_recreation(
                row_id,
                old_scan_ref,
                claim_id,
                &recreated,
                self.clock().now(),
            )
            .await?;
        if write.applied() || self.carrying(row_id, &entry.scan_ref).await?.is_some() {
            info!(row = %row_id, scan_ref = %entry.scan_ref, "attached a journaled replacement token to its row");
            return Ok(true);
        }
        warn!(row = %row_id, scan_ref = %entry.scan_ref, "a journaled token's row moved on; recording it as an orphaned mint");
        self.record_orphan(row_id, &entry.scan_ref, entry.minted_at)
            .await?;
        Ok(false)
    }

    /// Forgets a journal entry that was attached or recorded as an orphan. A failure only
    /// means it is replayed once more, which finds it settled.
    pub(crate) fn settle_journaled(&self, entry: &JournaledMint) {
        if let Some(journal) = &self.journal
            && let Err(err) = journal.settle(&entry.id)
        {
            error!(scan_ref = %entry.scan_ref, error = %err, "could not settle a journal entry; it will be replayed again (harmlessly)");
        }
    }

    /// Settles what the journal holds for this environment: recoveries are attached to their
    /// rows (or recorded as orphans), creations written into their intents. Entries whose
    /// store write fails stay for the next call.
    pub async fn replay_journal(&self) -> ReplayReport {
        let mut report = ReplayReport::default();
        let Some(journal) = &self.journal else {
            return report;
        };
        for entry in journal.pending() {
            if entry.environment != self.settings.environment {
                continue;
            }
            match self.attach_journaled(&entry).await {
                Ok(attached) => {
                    if attached {
                        report.attached += 1;
                    } else {
                        report.orphaned += 1;
                    }
                    self.settle_journaled(&entry);
                }
                Err(err) => {
                    debug!(scan_ref = %entry.scan_ref, error = %err, "journal replay: the store still fails");
                    report.kept += 1;
                }
            }
        }
        report
    }

    async fn record_orphan(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        minted_at: Timestamp,
    ) -> Result<(), StoreError> {
        metrics::counter!("idenfy_orphaned_mints_total").increment(1);
        let orphan = OrphanedMint {
            scan_ref: scan_ref.clone(),
            minted_at,
        };
        self.rows()
            .record_orphaned_mint(id, &orphan)
            .await
            .map(|_| ())
    }

    /// Step 5b: mark the row failed and the parent VERIFICATION_FAILED.
    async fn give_up(&self, row: &IdenfyRow) -> Result<Resolution, StoreError> {
        let now = self.clock().now();
        if !self
            .rows()
            .give_up(&row.id, &row.scan_ref, reasons::RECREATION_LIMIT, now)
            .await?
            .applied()
        {
            return self.reread_and_classify(&row.id, &row.scan_ref).await;
        }
        let _ = self
            .parents()
            .fail(row.flow, &row.parent_id, reasons::RECREATION_LIMIT)
            .await?;
        warn!(row = %row.id, recreations = row.recreation_count, attempts = row.mint_attempts, "recreation limit reached; gave up and failed the parent");
        metrics::counter!("idenfy_gave_up_total").increment(1);
        let mut failed = row.clone();
        failed.status = crate::RowStatus::Failed;
        failed.failure_reason = Some(reasons::RECREATION_LIMIT.to_owned());
        Ok(gave_up(&failed))
    }

    async fn reread_and_classify(
        &self,
        id: &RowId,
        old: &ScanRef,
    ) -> Result<Resolution, StoreError> {
        let row = self.reread(id).await?;
        Ok(self.classify(&row, old))
    }

    /// The row as stored now; it existed a moment ago, so its absence is corruption.
    async fn reread(&self, id: &RowId) -> Result<IdenfyRow, StoreError> {
        self.rows()
            .get(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                id: id.to_string(),
                reason: "row vanished".into(),
            })
    }

    /// How a re-read row looks to someone who did not (or could not) recover it
    /// (`docs/resolver.md#classifying-a-re-read-row`).
    fn classify(&self, row: &IdenfyRow, old: &ScanRef) -> Resolution {
        if row.final_decision().is_some() {
            return self.current(row, Outcome::Final);
        }
        if row.gave_up() {
            return gave_up(row);
        }
        if row.is_expired() {
            let retry = match &row.recreation.next_attempt_at {
                Some(next) if *next > self.clock().now() => to_std(*next - self.clock().now()),
                _ => self.settings.pending_retry_after,
            };
            return self.pending(row, retry);
        }
        let outcome = if &row.scan_ref == old {
            Outcome::Cached
        } else {
            Outcome::RecoveredByPeer
        };
        self.current(row, outcome)
    }

    fn current(&self, row: &IdenfyRow, outcome: Outcome) -> Resolution {
        Resolution {
            view: SessionView::current(row, &self.settings),
            outcome,
        }
    }

    fn pending(&self, row: &IdenfyRow, retry_after: Duration) -> Resolution {
        Resolution {
            view: SessionView::pending(row, retry_after),
            outcome: Outcome::Pending,
        }
    }
}

/// `row` as the persist of `token` leaves it.
fn recovered(row: &IdenfyRow, token: MintedToken) -> IdenfyRow {
    let mut fresh = row.clone();
    fresh.auth_token = token.auth_token;
    fresh.scan_ref = token.scan_ref;
    fresh.token_minted_at = Some(token.minted_at);
    fresh.token_expires_at = token.expires_at;
    fresh.verification_status = None;
    fresh.failure_reason = None;
    fresh.is_final = false;
    fresh.status = crate::RowStatus::InProgress;
    fresh.recreation_count += 1;
    fresh.last_checked_at = None;
    fresh
}

fn gave_up(row: &IdenfyRow) -> Resolution {
    Resolution {
        view: SessionView::gave_up(row),
        outcome: Outcome::GaveUp,
    }
}

/// `t + d`, saturating at the latest representable time instead of panicking on a very long
/// duration.
pub(crate) fn after(t: Timestamp, d: Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// `t - d`, saturating at the earliest representable time instead of panicking.
pub(crate) fn before(t: Timestamp, d: Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

fn to_std(d: chrono::Duration) -> Duration {
    d.to_std().unwrap_or(Duration::ZERO)
}
