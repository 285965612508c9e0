//! Domain, ports and the resolver for iDenfy verification sessions; no I/O of its own.
//!
//! - [`ids`], [`status`], [`model`]: the data model of PRODUCT.md §3.
//! - [`ports`]: what storage, the lock, iDenfy and the clock MUST do.
//! - [`Sessions`]: the service: [`Sessions::resolve`] (§4, expired-session recovery),
//!   [`Sessions::handle_webhook`] (§5), [`Sessions::create_session`] (§6).
//! - [`memory`]: in-memory adapters (dev mode, tests); [`testing`]: a scripted iDenfy and
//!   a manual clock; `conformance` (feature): the suite every adapter must pass.

pub mod creation;
pub mod ids;
mod inflight;
pub mod interest;
pub mod journal;
pub mod memory;
pub mod model;
pub mod ports;
pub mod resolver;
pub mod settings;
pub mod status;
pub mod testing;
pub mod view;
pub mod webhook;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use ids::{AuthToken, InvalidId, Nonce, ParentId, RowId, ScanRef, SigDigest};
pub use interest::Interest;
pub use model::{
    Claim, CreationIntent, IdenfyRow, IntentState, MintedToken, OrphanedMint, Parent, Recreation,
    SupersededScanRef,
};
pub use ports::{
    BoxError, Clock, ErrorClass, IdenfyApi, IdenfyError, IdenfyErrorKind, IntentStore, LockError,
    LockGuard, MintFailure, ParentStore, RecreateLock, Recreated, RecreationLimits, RowStore,
    StatusReport, StatusUpdate, StoreError, SystemClock, Write,
};
pub use settings::{Settings, WebhookKey};
pub use status::{Environment, Flow, ParentStatus, RowStatus, VerificationStatus, reasons};
pub use view::{ListedSession, SessionView, StatusV2, StatusV2Body};

/// Instants, UTC, millisecond precision in storage.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The iDenfy session service of ONE environment: every port it needs plus its settings.
/// Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct Sessions<R, P, I, L, A, C> {
    pub rows: R,
    pub parents: P,
    pub intents: I,
    pub lock: L,
    pub idenfy: A,
    pub clock: C,
    pub settings: Settings,
    /// Where minted tokens go when the store cannot take them in time (none: they are
    /// only logged at ERROR).
    journal: Option<std::sync::Arc<dyn journal::MintJournal>>,
    /// Rows this instance is recovering right now (the in-process layer of step 5d).
    recovering: inflight::InFlight,
}

impl<R, P, I, L, A, C> Sessions<R, P, I, L, A, C>
where
    R: RowStore,
    P: ParentStore,
    I: IntentStore,
    L: RecreateLock,
    A: IdenfyApi,
    C: Clock,
{
    pub fn new(
        rows: R,
        parents: P,
        intents: I,
        lock: L,
        idenfy: A,
        clock: C,
        settings: Settings,
    ) -> Self {
        Self {
            rows,
            parents,
            intents,
            lock,
            idenfy,
            clock,
            settings,
            journal: None,
            recovering: inflight::InFlight::default(),
        }
    }

    /// Keeps minted tokens the store cannot take in `journal` (see [`journal`]).
    pub fn with_journal(mut self, journal: std::sync::Arc<dyn journal::MintJournal>) -> Self {
        self.journal = Some(journal);
        self
    }
}
