//! In-memory adapters of the store and lock ports, for dev mode and tests (feature `testing`).
//!
//! Each adapter is a cheap `Clone` handle on shared state (`Arc<Mutex<..>>`); every
//! operation takes the mutex once and never holds it across an `.await`, so each call is
//! atomic exactly like the single server-side operation the ports require. They pass the
//! same conformance suite as the MongoDB and Valkey adapters.
//!
//! For concurrency tests every adapter accepts an optional [`Delay`], awaited at the start
//! of each operation (before the mutex is taken), to shuffle interleavings.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::{
    Claim, Clock, CreationIntent, Flow, IdenfyRow, IntentState, IntentStore, LockError, LockGuard,
    MintFailure, MintedToken, Nonce, OrphanedMint, Parent, ParentId, ParentStatus, ParentStore,
    RecreateLock, Recreated, Recreation, RecreationLimits, RowId, RowStatus, RowStore, ScanRef,
    SigDigest, StatusUpdate, StoreError, SupersededScanRef, SystemClock, Timestamp,
    VerificationStatus, Write,
    journal::{JournalError, JournaledMint, MintJournal},
};

/// An async hook awaited at the start of every operation of an adapter (tests only).
pub type Delay = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Wraps a closure returning any `Send` future as a [`Delay`]:
/// `delay(|| tokio::time::sleep(Duration::from_millis(1)))`.
pub fn delay<F, Fut>(f: F) -> Delay
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

async fn pause(delay: Option<&Delay>) {
    if let Some(delay) = delay {
        delay().await;
    }
}

/// A poisoned mutex only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn written(applied: bool) -> Write {
    if applied {
        Write::Applied
    } else {
        Write::NotMatched
    }
}

/// Store faults a test asks for: the next `n` calls of an operation fail `Unavailable`.
#[derive(Clone, Debug, Default)]
struct Faults(Arc<Mutex<HashMap<&'static str, u32>>>);

impl Faults {
    fn set(&self, operation: &'static str, times: u32) {
        lock(&self.0).insert(operation, times);
    }

    /// `Err(Unavailable)` while `operation` has failures left.
    fn check(&self, operation: &'static str) -> Result<(), StoreError> {
        let mut faults = lock(&self.0);
        match faults.get_mut(operation) {
            Some(left) if *left > 0 => {
                *left -= 1;
                Err(StoreError::Unavailable(
                    format!("injected fault: {operation}").into(),
                ))
            }
            _ => Ok(()),
        }
    }
}

fn is_exactly_expired(status: Option<&VerificationStatus>) -> bool {
    status == Some(&VerificationStatus::Expired)
}

// ---------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------

/// [`RowStore`] in memory. Rows are keyed by id; the current scanRef is unique.
#[derive(Clone, Default)]
pub struct MemoryRowStore {
    rows: Arc<Mutex<BTreeMap<RowId, IdenfyRow>>>,
    delay: Option<Delay>,
    recreation_claims: Arc<std::sync::atomic::AtomicUsize>,
    faults: Faults,
}

impl fmt::Debug for MemoryRowStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRowStore")
            .field("rows", &lock(&self.rows).len())
            .field("delayed", &self.delay.is_some())
            .finish()
    }
}

impl MemoryRowStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same store with `delay` awaited at the start of every operation.
    pub fn with_delay(mut self, delay: Delay) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Makes the next `times` calls of `operation` (`persist_recreation` or
    /// `record_orphaned_mint`) fail `Unavailable`, as a store outage would; with
    /// `persist_recreation_answer`, the persist is applied and then reported `Unavailable`,
    /// as when a timeout fires after the server took the write (tests).
    pub fn fail_next(&self, operation: &'static str, times: u32) {
        self.faults.set(operation, times);
    }

    /// How many `claim_recreation` calls were made, matched or not (tests).
    pub fn recreation_claims(&self) -> usize {
        self.recreation_claims
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every row, ordered by id.
    pub fn all(&self) -> Vec<IdenfyRow> {
        lock(&self.rows).values().cloned().collect()
    }

    /// Runs `write` on the row `id` when `condition` holds; `NotMatched` otherwise.
    async fn update(
        &self,
        id: &RowId,
        condition: impl FnOnce(&IdenfyRow) -> bool,
        write: impl FnOnce(&mut IdenfyRow),
    ) -> Write {
        pause(self.delay.as_ref()).await;
        let mut rows = lock(&self.rows);
        match rows.get_mut(id) {
            Some(row) if condition(row) => {
                write(row);
                Write::Applied
            }
            _ => Write::NotMatched,
        }
    }

    async fn find(&self, predicate: impl Fn(&IdenfyRow) -> bool) -> Option<IdenfyRow> {
        pause(self.delay.as_ref()).await;
        lock(&self.rows)
            .values()
            .find(|row| predicate(row))
            .cloned()
    }

    /// Rows matching `predicate`, newest first (ties: higher id first, like `{createdAt: -1, _id: -1}`).
    async fn newest(&self, predicate: impl Fn(&IdenfyRow) -> bool) -> Vec<IdenfyRow> {
        pause(self.delay.as_ref()).await;
        let mut found: Vec<IdenfyRow> = lock(&self.rows)
            .values()
            .filter(|row| predicate(row))
            .cloned()
            .collect();
        found.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        found
    }
}

fn current(row: &IdenfyRow, id: &RowId, scan_ref: &ScanRef) -> bool {
    &row.id == id && &row.scan_ref == scan_ref
}

impl RowStore for MemoryRowStore {
    async fn get(&self, id: &RowId) -> Result<Option<IdenfyRow>, StoreError> {
        pause(self.delay.as_ref()).await;
        Ok(lock(&self.rows).get(id).cloned())
    }

    async fn find_by_scan_ref(&self, scan_ref: &ScanRef) -> Result<Option<IdenfyRow>, StoreError> {
        Ok(self.find(|row| &row.scan_ref == scan_ref).await)
    }

    async fn find_by_superseded_scan_ref(
        &self,
        scan_ref: &ScanRef,
    ) -> Result<Option<IdenfyRow>, StoreError> {
        Ok(self
            .find(|row| {
                row.scan_ref_history
                    .iter()
                    .any(|entry| &entry.scan_ref == scan_ref)
            })
            .await)
    }

    async fn insert(&self, row: &IdenfyRow) -> Result<(), StoreError> {
        pause(self.delay.as_ref()).await;
        let mut rows = lock(&self.rows);
        if rows.contains_key(&row.id) || rows.values().any(|other| other.scan_ref == row.scan_ref) {
            return Err(StoreError::Conflict);
        }
        rows.insert(row.id.clone(), row.clone());
        Ok(())
    }

    async fn find_reusable(
        &self,
        sig_digest: &SigDigest,
        flow: Flow,
        since: Timestamp,
    ) -> Result<Option<IdenfyRow>, StoreError> {
        let found = self
            .newest(|row| {
                row.sig_digest == *sig_digest
                    && row.flow == flow
                    && row.status == RowStatus::Complete
                    && row.verification_status == Some(VerificationStatus::Approved)
                    && row.created_at >= since
            })
            .await;
        Ok(found.into_iter().next())
    }

    async fn list_recent(
        &self,
        sig_digest: &SigDigest,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<IdenfyRow>, StoreError> {
        let mut found = self
            .newest(|row| row.sig_digest == *sig_digest && row.created_at >= since)
            .await;
        found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(found)
    }

    async fn claim_poll(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        due_before: Timestamp,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        Ok(self
            .update(
                id,
                |row| {
                    current(row, id, scan_ref)
                        && !row.is_final
                        && row.last_polled_at.is_none_or(|polled| polled < due_before)
                },
                |row| row.last_polled_at = Some(now),
            )
            .await)
    }

    async fn apply_status(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        update: &StatusUpdate,
        now: Timestamp,
    ) -> Result<Option<IdenfyRow>, StoreError> {
        pause(self.delay.as_ref()).await;
        let mut rows = lock(&self.rows);
        let Some(row) = rows.get_mut(id) else {
            return Ok(None);
        };
        let unexpires = !update.status.is_decision()
            && row
                .verification_status
                .as_ref()
                .is_some_and(VerificationStatus::is_expiry);
        if !current(row, id, scan_ref) || row.is_final || unexpires {
            return Ok(None);
        }
        row.verification_status = Some(update.status.clone());
        row.is_final = update.is_final;
        if let Some(status) = update.row_status {
            row.status = status;
        }
        if let Some(reason) = &update.failure_reason {
            row.failure_reason = Some(reason.clone());
        }
        if let Some(checked_at) = update.checked_at {
            row.last_checked_at = Some(checked_at);
        }
        row.updated_at = Some(now);
        Ok(Some(row.clone()))
    }

    async fn mark_expired(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        Ok(self
            .update(
                id,
                |row| current(row, id, scan_ref) && !row.is_final,
                |row| {
                    row.verification_status = Some(VerificationStatus::Expired);
                    row.updated_at = Some(now);
                },
            )
            .await)
    }

    async fn claim_recreation(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        limits: RecreationLimits,
        claim: &Claim,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        self.recreation_claims
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self
            .update(
                id,
                |row| {
                    current(row, id, scan_ref)
                        && is_exactly_expired(row.verification_status.as_ref())
                        && !row.is_final
                        && !row.gave_up()
                        && row.recreation_count < limits.cap
                        && row.mint_attempts < limits.max_attempts
                        && row
                            .recreation
                            .claim
                            .as_ref()
                            .is_none_or(|live| live.claimed_until < now)
                },
                |row| {
                    row.recreation.claim = Some(claim.clone());
                    row.mint_attempts += 1;
                    row.updated_at = Some(now);
                },
            )
            .await)
    }

    async fn release_claim(
        &self,
        id: &RowId,
        claim_id: &Nonce,
        failure: &MintFailure,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        Ok(self
            .update(
                id,
                |row| {
                    row.recreation
                        .claim
                        .as_ref()
                        .is_some_and(|held| &held.claim_id == claim_id)
                },
                |row| {
                    row.recreation.claim = None;
                    row.recreation.last_error = Some(failure.last_error.clone());
                    row.recreation.next_attempt_at = Some(failure.next_attempt_at);
                    row.recreation.consecutive_failures += 1;
                    if failure.outcome_unknown {
                        row.unknown_mint_outcomes += 1;
                        row.last_unknown_mint_at = Some(now);
                    }
                    row.updated_at = Some(now);
                },
            )
            .await)
    }

    async fn persist_recreation(
        &self,
        id: &RowId,
        old_scan_ref: &ScanRef,
        claim_id: &Nonce,
        recreated: &Recreated,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        pause(self.delay.as_ref()).await;
        self.faults.check("persist_recreation")?;
        let mut rows = lock(&self.rows);
        let matches = rows.get(id).is_some_and(|row| {
            current(row, id, old_scan_ref)
                && is_exactly_expired(row.verification_status.as_ref())
                && row
                    .recreation
                    .claim
                    .as_ref()
                    .is_some_and(|held| &held.claim_id == claim_id)
        });
        if !matches {
            return Ok(Write::NotMatched);
        }
        // The unique index on the current scanRef, as in MongoDB.
        let token = &recreated.token;
        if rows
            .values()
            .any(|other| &other.id != id && other.scan_ref == token.scan_ref)
        {
            return Err(StoreError::Conflict);
        }
        let Some(row) = rows.get_mut(id) else {
            return Ok(Write::NotMatched);
        };
        row.scan_ref_history.push(SupersededScanRef {
            scan_ref: row.scan_ref.clone(),
            minted_at: recreated.old_minted_at,
            superseded_at: now,
            last_status: recreated.old_status.clone(),
            is_final: false,
        });
        row.auth_token = token.auth_token.clone();
        row.scan_ref = token.scan_ref.clone();
        row.token_minted_at = Some(token.minted_at);
        row.token_expires_at = token.expires_at;
        row.status = RowStatus::InProgress;
        row.verification_status = None;
        row.failure_reason = None;
        row.is_final = false;
        row.last_polled_at = None;
        row.last_checked_at = None;
        row.recreation_count += 1;
        row.recreation = Recreation::default();
        row.updated_at = Some(now);
        drop(rows);
        // A write that landed but whose answer was lost (the store's timeout fired).
        self.faults.check("persist_recreation_answer")?;
        Ok(Write::Applied)
    }

    async fn record_orphaned_mint(
        &self,
        id: &RowId,
        orphan: &OrphanedMint,
    ) -> Result<Write, StoreError> {
        self.faults.check("record_orphaned_mint")?;
        Ok(self
            .update(id, |_| true, |row| row.orphaned_mints.push(orphan.clone()))
            .await)
    }

    async fn give_up(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        reason: &str,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        Ok(self
            .update(
                id,
                |row| {
                    current(row, id, scan_ref)
                        && is_exactly_expired(row.verification_status.as_ref())
                        && !row.is_final
                },
                |row| {
                    row.status = RowStatus::Failed;
                    row.failure_reason = Some(reason.to_owned());
                    row.recreation.claim = None;
                    row.updated_at = Some(now);
                },
            )
            .await)
    }

    async fn update_superseded(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        status: &VerificationStatus,
        is_final: bool,
    ) -> Result<Write, StoreError> {
        pause(self.delay.as_ref()).await;
        let mut rows = lock(&self.rows);
        // Like MongoDB's positional `$`: the first entry that matches.
        let entry = rows.get_mut(id).and_then(|row| {
            row.scan_ref_history
                .iter_mut()
                .find(|entry| &entry.scan_ref == scan_ref && !entry.is_final)
        });
        Ok(written(entry.is_some_and(|entry| {
            entry.last_status = Some(status.clone());
            entry.is_final = is_final;
            true
        })))
    }
}

// ---------------------------------------------------------------------------------------
// Parents
// ---------------------------------------------------------------------------------------

/// [`ParentStore`] in memory: one "collection" per flow, so an id may exist in both.
#[derive(Clone, Default)]
pub struct MemoryParentStore {
    parents: Arc<Mutex<BTreeMap<(Flow, ParentId), Parent>>>,
    delay: Option<Delay>,
}

impl fmt::Debug for MemoryParentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryParentStore")
            .field("parents", &lock(&self.parents).len())
            .field("delayed", &self.delay.is_some())
            .finish()
    }
}

impl MemoryParentStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same store with `delay` awaited at the start of every operation.
    pub fn with_delay(mut self, delay: Delay) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Every parent, gov-id first, each flow ordered by id.
    pub fn all(&self) -> Vec<Parent> {
        lock(&self.parents).values().cloned().collect()
    }

    async fn update(
        &self,
        flow: Flow,
        id: &ParentId,
        condition: impl FnOnce(&Parent) -> bool,
        write: impl FnOnce(&mut Parent),
    ) -> Write {
        pause(self.delay.as_ref()).await;
        let mut parents = lock(&self.parents);
        match parents.get_mut(&(flow, id.clone())) {
            Some(parent) if condition(parent) => {
                write(parent);
                Write::Applied
            }
            _ => Write::NotMatched,
        }
    }
}

impl ParentStore for MemoryParentStore {
    async fn get(&self, flow: Flow, id: &ParentId) -> Result<Option<Parent>, StoreError> {
        pause(self.delay.as_ref()).await;
        Ok(lock(&self.parents).get(&(flow, id.clone())).cloned())
    }

    async fn find_any(&self, id: &ParentId) -> Result<Option<Parent>, StoreError> {
        pause(self.delay.as_ref()).await;
        let parents = lock(&self.parents);
        Ok([Flow::GovId, Flow::CleanHands]
            .into_iter()
            .find_map(|flow| parents.get(&(flow, id.clone())).cloned()))
    }

    async fn insert(&self, parent: &Parent) -> Result<(), StoreError> {
        pause(self.delay.as_ref()).await;
        let mut parents = lock(&self.parents);
        let key = (parent.flow, parent.id.clone());
        if parents.contains_key(&key) {
            return Err(StoreError::Conflict);
        }
        parents.insert(key, parent.clone());
        Ok(())
    }

    async fn link_row(&self, flow: Flow, id: &ParentId, row: &RowId) -> Result<Write, StoreError> {
        Ok(self
            .update(
                flow,
                id,
                |parent| {
                    parent
                        .idenfy_session_id
                        .as_ref()
                        .is_none_or(|linked| linked == row)
                },
                |parent| parent.idenfy_session_id = Some(row.clone()),
            )
            .await)
    }

    async fn fail(&self, flow: Flow, id: &ParentId, reason: &str) -> Result<Write, StoreError> {
        Ok(self
            .update(
                flow,
                id,
                |parent| parent.status == ParentStatus::InProgress,
                |parent| fail_parent(parent, reason),
            )
            .await)
    }

    async fn fail_all_linked(&self, row: &RowId, reason: &str) -> Result<u64, StoreError> {
        pause(self.delay.as_ref()).await;
        let mut parents = lock(&self.parents);
        let mut changed = 0;
        for parent in parents.values_mut() {
            if parent.status == ParentStatus::InProgress
                && parent.idenfy_session_id.as_ref() == Some(row)
            {
                fail_parent(parent, reason);
                changed += 1;
            }
        }
        Ok(changed)
    }
}

fn fail_parent(parent: &mut Parent, reason: &str) {
    parent.status = ParentStatus::VerificationFailed;
    parent.failure_reason = Some(reason.to_owned());
}

// ---------------------------------------------------------------------------------------
// Creation intents
// ---------------------------------------------------------------------------------------

/// [`IntentStore`] in memory, keyed by the scoped idempotency key.
#[derive(Clone, Default)]
pub struct MemoryIntentStore {
    intents: Arc<Mutex<HashMap<String, CreationIntent>>>,
    delay: Option<Delay>,
    faults: Faults,
}

impl fmt::Debug for MemoryIntentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryIntentStore")
            .field("intents", &lock(&self.intents).len())
            .field("delayed", &self.delay.is_some())
            .finish()
    }
}

impl MemoryIntentStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `times` calls of `operation` (`record_mint`) fail `Unavailable`, as a
    /// store outage would (tests).
    pub fn fail_next(&self, operation: &'static str, times: u32) {
        self.faults.set(operation, times);
    }

    /// The same store with `delay` awaited at the start of every operation.
    pub fn with_delay(mut self, delay: Delay) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Every intent, in no particular order.
    pub fn all(&self) -> Vec<CreationIntent> {
        lock(&self.intents).values().cloned().collect()
    }

    async fn update(
        &self,
        key: &str,
        condition: impl FnOnce(&CreationIntent) -> bool,
        write: impl FnOnce(&mut CreationIntent),
    ) -> Write {
        pause(self.delay.as_ref()).await;
        let mut intents = lock(&self.intents);
        match intents.get_mut(key) {
            Some(intent) if condition(intent) => {
                write(intent);
                Write::Applied
            }
            _ => Write::NotMatched,
        }
    }
}

impl IntentStore for MemoryIntentStore {
    async fn insert(&self, intent: &CreationIntent) -> Result<(), StoreError> {
        pause(self.delay.as_ref()).await;
        let mut intents = lock(&self.intents);
        if intents.contains_key(&intent.key) {
            return Err(StoreError::Conflict);
        }
        intents.insert(intent.key.clone(), intent.clone());
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<CreationIntent>, StoreError> {
        pause(self.delay.as_ref()).await;
        Ok(lock(&self.intents).get(key).cloned())
    }

    async fn reclaim(
        &self,
        key: &str,
        claim_id: &Nonce,
        claimed_until: Timestamp,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        Ok(self
            .update(
                key,
                |intent| match intent.state {
                    IntentState::Failed => true,
                    IntentState::Pending => intent.claimed_until < now,
                    IntentState::Done => false,
                },
                |intent| {
                    intent.state = IntentState::Pending;
                    intent.claim_id = claim_id.clone();
                    intent.claimed_until = claimed_until;
                },
            )
            .await)
    }

    async fn record_mint(
        &self,
        key: &str,
        claim_id: &Nonce,
        minted: &MintedToken,
    ) -> Result<Write, StoreError> {
        self.faults.check("record_mint")?;
        Ok(self
            .update(
                key,
                |intent| &intent.claim_id == claim_id,
                |intent| intent.minted = Some(minted.clone()),
            )
            .await)
    }

    async fn finish(
        &self,
        key: &str,
        claim_id: &Nonce,
        state: IntentState,
    ) -> Result<Write, StoreError> {
        Ok(self
            .update(
                key,
                |intent| &intent.claim_id == claim_id,
                |intent| intent.state = state,
            )
            .await)
    }

    async fn record_unknown_mint(
        &self,
        key: &str,
        claim_id: &Nonce,
        retry_at: Timestamp,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        Ok(self
            .update(
                key,
                |intent| &intent.claim_id == claim_id,
                |intent| {
                    intent.state = IntentState::Failed;
                    intent.claimed_until = retry_at;
                    intent.unknown_mint_outcomes += 1;
                    intent.last_unknown_mint_at = Some(now);
                },
            )
            .await)
    }
}

// ---------------------------------------------------------------------------------------
// Recreate lock
// ---------------------------------------------------------------------------------------

struct Held {
    owner: Nonce,
    expires_at: Timestamp,
}

/// [`RecreateLock`] in memory: `SET NX PX` and compare-and-delete against a [`Clock`]; a key
/// whose TTL has passed counts as absent.
#[derive(Clone)]
pub struct MemoryLock {
    keys: Arc<Mutex<HashMap<RowId, Held>>>,
    clock: Arc<dyn Clock>,
    unavailable: Arc<AtomicBool>,
    delay: Option<Delay>,
}

impl fmt::Debug for MemoryLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Owner tokens are proofs of ownership: never shown.
        f.debug_struct("MemoryLock")
            .field("keys", &lock(&self.keys).len())
            .field("unavailable", &self.unavailable.load(Ordering::SeqCst))
            .field("delayed", &self.delay.is_some())
            .finish_non_exhaustive()
    }
}

impl MemoryLock {
    /// No key held; TTLs are measured on `clock`.
    pub fn new<C: Clock>(clock: C) -> Self {
        Self {
            keys: Arc::default(),
            clock: Arc::new(clock),
            unavailable: Arc::default(),
            delay: None,
        }
    }

    /// A lock whose every call fails with [`LockError::Unavailable`] (Valkey down), until
    /// [`MemoryLock::set_unavailable`]`(false)`.
    pub fn unavailable() -> Self {
        let lock = Self::new(SystemClock);
        lock.set_unavailable(true);
        lock
    }

    /// Makes every call of this lock and its clones fail (or work again).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// The same lock with `delay` awaited at the start of every call.
    pub fn with_delay(mut self, delay: Delay) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Keys currently held (TTL not passed).
    pub fn held(&self) -> Vec<RowId> {
        let now = self.clock.now();
        lock(&self.keys)
            .iter()
            .filter(|(_, held)| held.expires_at > now)
            .map(|(row, _)| row.clone())
            .collect()
    }

    async fn enter(&self) -> Result<(), LockError> {
        pause(self.delay.as_ref()).await;
        if self.unavailable.load(Ordering::SeqCst) {
            Err(LockError::Unavailable("in-memory lock switched off".into()))
        } else {
            Ok(())
        }
    }
}

impl RecreateLock for MemoryLock {
    async fn acquire(&self, row: &RowId, ttl: Duration) -> Result<Option<LockGuard>, LockError> {
        self.enter().await?;
        let now = self.clock.now();
        let mut keys = lock(&self.keys);
        if keys.get(row).is_some_and(|held| held.expires_at > now) {
            return Ok(None);
        }
        let ttl = chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::MAX);
        let owner = Nonce::random();
        let expires_at = now.checked_add_signed(ttl).unwrap_or(Timestamp::MAX_UTC);
        keys.insert(
            row.clone(),
            Held {
                owner: owner.clone(),
                expires_at,
            },
        );
        Ok(Some(LockGuard {
            row: row.clone(),
            owner,
        }))
    }

    async fn release(&self, guard: &LockGuard) -> Result<bool, LockError> {
        self.enter().await?;
        let now = self.clock.now();
        let mut keys = lock(&self.keys);
        let Some(held) = keys.get(&guard.row) else {
            return Ok(false);
        };
        if held.expires_at <= now {
            keys.remove(&guard.row);
            return Ok(false);
        }
        if held.owner != guard.owner {
            return Ok(false);
        }
        keys.remove(&guard.row);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ManualClock;

    fn block_on<F: Future>(future: F) -> F::Output {
        futures::executor::block_on(future)
    }

    #[test]
    fn lock_ttl_follows_its_clock() {
        let clock = ManualClock::new(chrono::Utc::now());
        let lock = MemoryLock::new(clock.clone());
        let row = RowId::generate(clock.now());
        let first = block_on(lock.acquire(&row, Duration::from_secs(30)))
            .expect("up")
            .expect("free");
        assert!(
            block_on(lock.acquire(&row, Duration::from_secs(30)))
                .expect("up")
                .is_none()
        );
        clock.advance(Duration::from_secs(30));
        assert!(lock.held().is_empty(), "a key at its TTL counts as absent");
        let second = block_on(lock.acquire(&row, Duration::from_secs(30)))
            .expect("up")
            .expect("expired");
        assert!(
            !block_on(lock.release(&first)).expect("up"),
            "a stale guard deletes nothing"
        );
        assert!(block_on(lock.release(&second)).expect("up"));
    }

    #[test]
    fn unavailable_lock_fails_every_call_until_switched_back() {
        let lock = MemoryLock::unavailable();
        let row = RowId::generate(chrono::Utc::now());
        assert!(matches!(
            block_on(lock.acquire(&row, Duration::from_secs(1))),
            Err(LockError::Unavailable(_))
        ));
        let guard = LockGuard {
            row: row.clone(),
            owner: Nonce::random(),
        };
        assert!(matches!(
            block_on(lock.release(&guard)),
            Err(LockError::Unavailable(_))
        ));
        lock.set_unavailable(false);
        assert!(
            block_on(lock.acquire(&row, Duration::from_secs(1)))
                .expect("up")
                .is_some()
        );
    }

    #[test]
    fn debug_shows_no_tokens() {
        let now = chrono::Utc::now();
        let lock = MemoryLock::new(SystemClock);
        let guard = block_on(lock.acquire(&RowId::generate(now), Duration::from_secs(5)))
            .expect("up")
            .expect("free");
        assert!(!format!("{lock:?}").contains(guard.owner.as_str()));

        let rows = MemoryRowStore::new();
        let token = MintedToken {
            auth_token: crate::AuthToken::new("secret-auth-token"),
            scan_ref: ScanRef::new("scan"),
            redirect_url: String::new(),
            expires_at: None,
            minted_at: now,
        };
        let row = IdenfyRow::new(
            RowId::generate(now),
            SigDigest::from_stored("secret-sig"),
            Flow::GovId,
            ParentId::generate(now),
            &token,
            now,
        );
        block_on(rows.insert(&row)).expect("insert");
        let shown = format!("{rows:?} {:?}", rows.all());
        assert!(
            !shown.contains("secret-auth-token") && !shown.contains("secret-sig"),
            "{shown}"
        );
    }

    #[test]
    fn delay_runs_before_every_operation() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let rows = MemoryRowStore::new().with_delay(delay(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {}
        }));
        let id = RowId::generate(chrono::Utc::now());
        block_on(rows.get(&id)).expect("get");
        block_on(rows.find_by_scan_ref(&ScanRef::new("x"))).expect("find");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}

// ---------------------------------------------------------------------------------------
// Mint journal
// ---------------------------------------------------------------------------------------

/// [`MintJournal`] in memory: durable only as long as the process (tests, dev mode).
#[derive(Clone, Debug, Default)]
pub struct MemoryJournal {
    entries: Arc<Mutex<Vec<JournaledMint>>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }
}

impl MintJournal for MemoryJournal {
    fn record(&self, mint: &JournaledMint) -> Result<(), JournalError> {
        lock(&self.entries).push(mint.clone());
        Ok(())
    }

    fn pending(&self) -> Vec<JournaledMint> {
        lock(&self.entries).clone()
    }

    fn settle(&self, id: &Nonce) -> Result<(), JournalError> {
        lock(&self.entries).retain(|entry| &entry.id != id);
        Ok(())
    }
}
