//! Test doubles: a manual clock and a scripted iDenfy (feature `testing`).

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use crate::{
    AuthToken, Clock, IdenfyApi, IdenfyError, IdenfyErrorKind, MintedToken, ParentId, ScanRef,
    StatusReport, SystemClock, Timestamp, VerificationStatus, memory::Delay,
};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A clock that moves only when told to. Clones share the same instant.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<Timestamp>>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// Moves the clock forward by `by` (saturating at the largest timestamp).
    pub fn advance(&self, by: Duration) {
        let by = chrono::TimeDelta::from_std(by).unwrap_or(chrono::TimeDelta::MAX);
        let mut now = lock(&self.0);
        *now = now.checked_add_signed(by).unwrap_or(Timestamp::MAX_UTC);
    }

    /// Moves the clock to `to`, forward or backward.
    pub fn set(&self, to: Timestamp) {
        *lock(&self.0) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *lock(&self.0)
    }

    /// Advances the clock by `duration` and returns at once.
    fn sleep(&self, duration: Duration) -> futures::future::BoxFuture<'static, ()> {
        self.advance(duration);
        Box::pin(std::future::ready(()))
    }
}

/// Lifetime of a scripted token, like iDenfy's default `expiryTime`.
pub const SCRIPTED_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct Script {
    minted: u64,
    mint_calls: u64,
    mints_by_client: HashMap<ParentId, u64>,
    mint_errors: VecDeque<IdenfyErrorKind>,
    statuses: HashMap<ScanRef, VerificationStatus>,
    status_errors: VecDeque<IdenfyErrorKind>,
    status_calls: HashMap<ScanRef, u64>,
}

/// A scripted [`IdenfyApi`]. Clones share the script and the counters.
///
/// - `mint` pops the next scripted error, if any; otherwise it mints `AUTH_NEW_<n>` /
///   `SCAN_NEW_<n>` (n = 1, 2, …) expiring [`SCRIPTED_TOKEN_LIFETIME`] after the clock's now,
///   whose status is then `ACTIVE`.
/// - `status` pops the next scripted error, if any; otherwise it answers the status set for
///   the scanRef, or `NotFound` for a scanRef it never minted nor was told about.
/// - `data` answers [`ScriptedIdenfy::DATA`] for any scanRef.
#[derive(Clone)]
pub struct ScriptedIdenfy {
    script: Arc<Mutex<Script>>,
    clock: Arc<dyn Clock>,
    mint_delay: Option<Delay>,
    status_delay: Option<Delay>,
}

impl fmt::Debug for ScriptedIdenfy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let script = lock(&self.script);
        f.debug_struct("ScriptedIdenfy")
            .field("minted", &script.minted)
            .field("mint_calls", &script.mint_calls)
            .field("queued_mint_errors", &script.mint_errors)
            .field("queued_status_errors", &script.status_errors)
            .finish_non_exhaustive()
    }
}

impl Default for ScriptedIdenfy {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedIdenfy {
    /// The document fields `data` returns.
    pub const DATA: [(&'static str, &'static str); 3] = [
        ("docFirstName", "JOHN"),
        ("docLastName", "DOE"),
        ("docNationality", "LT"),
    ];

    /// On the wall clock.
    pub fn new() -> Self {
        Self {
            script: Arc::default(),
            clock: Arc::new(SystemClock),
            mint_delay: None,
            status_delay: None,
        }
    }

    /// The same double taking mint times from `clock`.
    pub fn with_clock<C: Clock>(mut self, clock: C) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The same double awaiting `delay` inside every mint (after it is counted and its
    /// outcome decided, before it returns), to widen race windows.
    pub fn with_mint_delay(mut self, delay: Delay) -> Self {
        self.mint_delay = Some(delay);
        self
    }

    /// The same double awaiting `delay` inside every status call (after it is counted and
    /// its answer decided, before it returns): a slow answer that may be stale on arrival.
    pub fn with_status_delay(mut self, delay: Delay) -> Self {
        self.status_delay = Some(delay);
        self
    }

    /// What `status` answers for `scan_ref` from now on.
    pub fn set_status(&self, scan_ref: &ScanRef, status: VerificationStatus) {
        lock(&self.script).statuses.insert(scan_ref.clone(), status);
    }

    /// The next mint fails with `kind` (queued, first in first out).
    pub fn push_mint_error(&self, kind: IdenfyErrorKind) {
        lock(&self.script).mint_errors.push_back(kind);
    }

    /// The next status call fails with `kind` (queued, first in first out).
    pub fn push_status_error(&self, kind: IdenfyErrorKind) {
        lock(&self.script).status_errors.push_back(kind);
    }

    /// Every mint call, failed or not.
    pub fn mint_calls(&self) -> u64 {
        lock(&self.script).mint_calls
    }

    /// Tokens actually minted (successful calls) for `client_id`.
    pub fn mints_for(&self, client_id: &ParentId) -> u64 {
        lock(&self.script)
            .mints_by_client
            .get(client_id)
            .copied()
            .unwrap_or(0)
    }

    /// Status calls for `scan_ref`, failed or not.
    pub fn status_calls(&self, scan_ref: &ScanRef) -> u64 {
        lock(&self.script)
            .status_calls
            .get(scan_ref)
            .copied()
            .unwrap_or(0)
    }

    /// Every status call, failed or not.
    pub fn total_status_calls(&self) -> u64 {
        lock(&self.script).status_calls.values().sum()
    }

    fn mint_now(&self, client_id: &ParentId) -> Result<MintedToken, IdenfyError> {
        let mut script = lock(&self.script);
        script.mint_calls += 1;
        if let Some(kind) = script.mint_errors.pop_front() {
            return Err(IdenfyError::new(kind, "scripted mint failure"));
        }
        script.minted += 1;
        let n = script.minted;
        *script.mints_by_client.entry(client_id.clone()).or_default() += 1;
        let scan_ref = ScanRef::new(format!("SCAN_NEW_{n}"));
        script
            .statuses
            .insert(scan_ref.clone(), VerificationStatus::Active);
        let minted_at = self.clock.now();
        let lifetime =
            chrono::TimeDelta::from_std(SCRIPTED_TOKEN_LIFETIME).unwrap_or(chrono::TimeDelta::MAX);
        Ok(MintedToken {
            auth_token: AuthToken::new(format!("AUTH_NEW_{n}")),
            scan_ref,
            redirect_url: format!("https://ivs.idenfy.com/api/v2/redirect?authToken=AUTH_NEW_{n}"),
            expires_at: minted_at.checked_add_signed(lifetime),
            minted_at,
        })
    }
    fn status_now(&self, scan_ref: &ScanRef) -> Result<StatusReport, IdenfyError> {
        let mut script = lock(&self.script);
        *script.status_calls.entry(scan_ref.clone()).or_default() += 1;
        if let Some(kind) = script.status_errors.pop_front() {
            return Err(IdenfyError::new(kind, "scripted status failure"));
        }
        match script.statuses.get(scan_ref) {
            Some(status) => Ok(StatusReport {
                scan_ref: scan_ref.clone(),
                status: status.clone(),
            }),
            None => Err(IdenfyError::new(
                IdenfyErrorKind::NotFound,
                "unknown scanRef",
            )),
        }
    }
}

impl IdenfyApi for ScriptedIdenfy {
    async fn mint(&self, client_id: &ParentId) -> Result<MintedToken, IdenfyError> {
        let outcome = self.mint_now(client_id);
        if let Some(delay) = &self.mint_delay {
            delay().await;
        }
        outcome
    }

    async fn status(&self, scan_ref: &ScanRef) -> Result<StatusReport, IdenfyError> {
        let outcome = self.status_now(scan_ref);
        if let Some(delay) = &self.status_delay {
            delay().await;
        }
        outcome
    }

    async fn data(
        &self,
        _scan_ref: &ScanRef,
    ) -> Result<serde_json::Map<String, serde_json::Value>, IdenfyError> {
        Ok(Self::DATA
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).into()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures::executor::block_on;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = chrono::Utc::now();
        let clock = ManualClock::new(start);
        let shared = clock.clone();
        clock.advance(Duration::from_secs(90));
        assert_eq!(shared.now(), start + chrono::TimeDelta::seconds(90));
        shared.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn scripted_idenfy_mints_in_sequence_and_plays_the_script() {
        let clock = ManualClock::new(chrono::Utc::now());
        let idenfy = ScriptedIdenfy::new().with_clock(clock.clone());
        let client = ParentId::generate(clock.now());

        let first = block_on(idenfy.mint(&client)).expect("mints");
        assert_eq!(first.auth_token.expose(), "AUTH_NEW_1");
        assert_eq!(first.scan_ref.as_str(), "SCAN_NEW_1");
        assert_eq!(
            first.expires_at,
            Some(clock.now() + chrono::TimeDelta::seconds(3600))
        );

        idenfy.push_mint_error(IdenfyErrorKind::Money);
        let failed = block_on(idenfy.mint(&client)).expect_err("scripted");
        assert_eq!(failed.kind, IdenfyErrorKind::Money);
        let second = block_on(idenfy.mint(&client)).expect("mints");
        assert_eq!(second.scan_ref.as_str(), "SCAN_NEW_2");
        assert_eq!((idenfy.mint_calls(), idenfy.mints_for(&client)), (3, 2));

        let report = block_on(idenfy.status(&first.scan_ref)).expect("known");
        assert_eq!(report.status, VerificationStatus::Active);
        idenfy.set_status(&first.scan_ref, VerificationStatus::Expired);
        idenfy.push_status_error(IdenfyErrorKind::Timeout);
        assert_eq!(
            block_on(idenfy.status(&first.scan_ref))
                .expect_err("scripted")
                .kind,
            IdenfyErrorKind::Timeout
        );
        assert_eq!(
            block_on(idenfy.status(&first.scan_ref))
                .expect("known")
                .status,
            VerificationStatus::Expired
        );
        let unknown = ScanRef::new("nobody");
        assert_eq!(
            block_on(idenfy.status(&unknown)).expect_err("unknown").kind,
            IdenfyErrorKind::NotFound
        );
        assert_eq!(
            (
                idenfy.status_calls(&first.scan_ref),
                idenfy.total_status_calls()
            ),
            (3, 4)
        );
        assert_eq!(
            block_on(idenfy.data(&first.scan_ref)).expect("data").len(),
            3
        );
    }
}
