//! Domain, ports and the resolver for iDenfy verification sessions; no I/O of its own.
//!
//! - [`ids`], [`status`], [`model`]: the data model (`docs/data-model.md`).
//! - [`ports`]: what storage, the lock, iDenfy and the clock MUST do; [`Backend`] gathers
//!   one implementation of each ([`Ports`] for any six adapters).
//! - [`Sessions`]: the service over a backend, built with [`Sessions::builder`]:
//!   [`Sessions::resolve`] (expired-session recovery,
//!   `docs/resolver.md`), [`Sessions::handle_webhook`] (`docs/webhooks.md`),
//!   [`Sessions::create_session`].
//! - [`memory`]: in-memory adapters (dev mode, tests); [`testing`]: a scripted iDenfy and
//!   a manual clock; [`conformance`]: the suite every adapter must pass. These three are
//!   test support, compiled only with the `testing` feature (see below).
//!
//! # Features
//!
//! - `testing`: the [`memory`], [`testing`] and [`conformance`] modules and the
//!   `*_conformance!` macros. Off by default; turn it on in `[dev-dependencies]` for tests,
//!   or in `[dependencies]` behind a feature of your own for a dev mode (idenfy-app's `dev`
//!   does this), so that a production build does not compile them.
//! - `openapi`: `utoipa::ToSchema` on the types the HTTP API returns.
//!
//! # How to implement a store
//!
//! The core does no I/O: [`Sessions::builder`] takes a [`Backend`], one implementation of
//! each port of [`ports`] (usually a [`Ports`]), all built for ONE environment (collection
//! names and key prefixes are chosen at construction, so no method takes an
//! [`Environment`]):
//!
//! | port | holds | adapters in this workspace |
//! |---|---|---|
//! | [`RowStore`] | iDenfy rows (`idenfysessions`) | `store_mongo::MongoRowStore`, [`memory::MemoryRowStore`] |
//! | [`ParentStore`] | parent sessions of both flows | `store_mongo::MongoParentStore`, [`memory::MemoryParentStore`] |
//! | [`IntentStore`] | creation intents | `store_mongo::MongoIntentStore`, [`memory::MemoryIntentStore`] |
//! | [`RecreateLock`] | the per-row recreate lock | `lock_valkey::ValkeyLock`, [`memory::MemoryLock`] |
//! | [`IdenfyApi`] | iDenfy's token, status and data calls | `idenfy_client::IdenfyClient`, [`testing::ScriptedIdenfy`] |
//! | [`Clock`] | the time | [`SystemClock`], [`testing::ManualClock`] |
//! | [`journal::MintJournal`] (optional, [`SessionsBuilder::journal`]) | paid tokens the store could not take | idenfy-app's file journal, [`memory::MemoryJournal`] |
//!
//! The in-memory adapters are the smallest complete implementations; read them first.
//! Which document and field each port method reads and writes, and the indexes the
//! queries need, are in `docs/data-model.md`.
//!
//! What every store method must guarantee (each method's documentation states its exact
//! condition and changes):
//!
//! - **Atomic conditional writes.** A conditional write is a compare-and-set: its
//!   condition is checked and its changes made in ONE atomic operation on one document
//!   (an update whose filter is exactly the documented condition, such as MongoDB's
//!   `update_one` or SQL's `UPDATE … WHERE`). Reading, checking in the process and then
//!   writing is not enough: two callers would both see the condition hold, and the
//!   claims that keep a token from being minted twice would let both through. There are
//!   no multi-document transactions.
//! - **`NotMatched` is an answer, not an error.** When the condition does not hold, or the
//!   document does not exist, a write returns `Ok(`[`Write::NotMatched`]`)` (for
//!   [`RowStore::apply_status`], `Ok(None)`) and changes nothing; `Ok(`[`Write::Applied`]`)`
//!   only when it made the change. Callers read `NotMatched` as "a peer got there first".
//! - **Errors by kind.** [`StoreError::Conflict`] only from an `insert` whose key (row id or
//!   scanRef, parent id, intent key) exists. [`StoreError::Unavailable`] for transient
//!   failures: no connection, a timeout, a failover, a "not now" answer of the server; the
//!   caller may retry. [`StoreError::Corrupt`] for a stored document that cannot be read
//!   as the model (never a panic). [`StoreError::Backend`] for anything else.
//! - **Bounded time.** The core puts no timeout around a port call: every method must end
//!   within a bounded time (store-mongo's is `operation_timeout`, 5 s by default) and
//!   report `Unavailable` when it does not. A write that timed out may still have been
//!   applied; report it as an error all the same, never guess `Applied` or `NotMatched`.
//!   The core retries the writes that record a paid token and copes with an earlier
//!   attempt having landed.
//! - **Field-level writes.** A write changes only the fields it names; fields the model
//!   does not know (id-server's) survive. Optional fields may be absent on read.
//! - **Millisecond timestamps** are enough; "earlier than" in a condition is strict.
//!
//! The lock ([`RecreateLock`]) only saves work in front of the row store's claim:
//! `acquire` sets the key only if absent, with a TTL and a fresh owner token; `release`
//! deletes it only if it still holds that token. It should fail fast with
//! [`LockError::Unavailable`] rather than wait: the resolver then relies on the claim. An
//! [`IdenfyApi`] MUST NOT retry `mint` (every call may bill a credit) and reports failures
//! by [`IdenfyErrorKind`], which decides retries and back-off.
//!
//! ## Running the conformance suite against your adapter
//!
//! [`conformance`] turns every MUST of [`ports`] into a test. Enable the `testing`
//! feature for your tests, with tokio (macros, rt) to run them:
//!
//! ```toml
//! [dev-dependencies]
//! idenfy-core = { version = "…", features = ["testing"] }
//! tokio = { version = "1", features = ["macros", "rt", "time"] }
//! ```
//!
//! Then give each macro an expression of a future that builds a fresh, empty subject;
//! each expands to a module with one `#[tokio::test]` per behaviour, evaluating the
//! expression once per test. Fixtures use random ids, so the subjects may share one
//! database. A `return` in the expression ends the test early, which is how store-mongo's
//! and lock-valkey's `tests/it/conformance.rs` skip when no server is configured. Here
//! with the in-memory adapters standing in for yours:
//!
//! ```
//! use std::future::ready;
//!
//! use idenfy_core::memory::{MemoryIntentStore, MemoryLock, MemoryParentStore, MemoryRowStore};
//!
//! /// A fresh store on the test server, or `None` when no server is configured.
//! async fn connect() -> Option<MemoryRowStore> {
//!     Some(MemoryRowStore::new())
//! }
//!
//! idenfy_core::row_store_conformance!(match connect().await {
//!     Some(store) => ready(store),
//!     None => return,
//! });
//! idenfy_core::parent_store_conformance!(async { MemoryParentStore::new() });
//! idenfy_core::intent_store_conformance!(async { MemoryIntentStore::new() });
//! // The lock suite also needs a real-time sleep, for its TTL cases.
//! idenfy_core::recreate_lock_conformance!(
//!     async { MemoryLock::new(idenfy_core::SystemClock) },
//!     |d| tokio::time::sleep(d),
//! );
//! # fn main() {}
//! ```
//!
//! The macros are [`row_store_conformance!`], [`parent_store_conformance!`],
//! [`intent_store_conformance!`] and [`recreate_lock_conformance!`]. Every case is also a
//! plain `pub async fn` taking the subject (e.g. [`conformance::row_store`]), for a
//! harness of your own. The suite runs against the in-memory adapters in
//! `cargo test -p idenfy-core`, and against the MongoDB-protocol servers (mongo-java-server,
//! FerretDB) and Valkey in `cargo xtask test`.

#![warn(missing_docs)]

use std::{fmt, sync::Arc};

pub mod creation;
pub mod ids;
mod inflight;
pub mod interest;
pub mod journal;
pub mod model;
pub mod ports;
pub mod resolver;
pub mod settings;
pub mod status;
pub mod view;
pub mod webhook;

// Test support: compiled only with the `testing` feature, documented always.
#[cfg(any(feature = "testing", doc))]
pub mod conformance;
#[cfg(any(feature = "testing", doc))]
pub mod memory;
#[cfg(any(feature = "testing", doc))]
pub mod testing;

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

/// The port types of one deployment, gathered so that [`Sessions`] has one type parameter.
///
/// [`Ports`] implements it for any six port types, which is all most code needs:
///
/// ```
/// use idenfy_core::memory::{MemoryIntentStore, MemoryLock, MemoryParentStore, MemoryRowStore};
/// use idenfy_core::testing::{ManualClock, ScriptedIdenfy};
///
/// /// The in-memory backend of a test.
/// type TestBackend = idenfy_core::Ports<
///     MemoryRowStore,
///     MemoryParentStore,
///     MemoryIntentStore,
///     MemoryLock,
///     ScriptedIdenfy,
///     ManualClock,
/// >;
/// type TestSessions = idenfy_core::Sessions<TestBackend>;
/// # fn main() {}
/// ```
///
/// Implement it yourself when one value serves several ports (a store type that is both
/// the [`RowStore`] and the [`ParentStore`], say): each accessor returns the part that
/// plays that port.
pub trait Backend: Send + Sync + 'static {
    /// The store of the iDenfy rows.
    type Rows: RowStore;
    /// The store of the parent sessions of both flows.
    type Parents: ParentStore;
    /// The store of the creation intents.
    type Intents: IntentStore;
    /// The per-row recreate lock.
    type Lock: RecreateLock;
    /// The iDenfy API.
    type Idenfy: IdenfyApi;
    /// The time source.
    type Clock: Clock;

    /// The row store.
    fn rows(&self) -> &Self::Rows;
    /// The parent store.
    fn parents(&self) -> &Self::Parents;
    /// The intent store.
    fn intents(&self) -> &Self::Intents;
    /// The recreate lock.
    fn lock(&self) -> &Self::Lock;
    /// The iDenfy API.
    fn idenfy(&self) -> &Self::Idenfy;
    /// The clock.
    fn clock(&self) -> &Self::Clock;
}

/// One implementation of each port, all built for ONE environment: the [`Backend`] most
/// code uses. Build it with a struct literal, so that a missing port is a compile error.
#[derive(Debug)]
pub struct Ports<R, P, I, L, A, C> {
    /// The iDenfy rows.
    pub rows: R,
    /// The parent sessions of both flows.
    pub parents: P,
    /// The creation intents.
    pub intents: I,
    /// The per-row recreate lock.
    pub lock: L,
    /// The iDenfy API.
    pub idenfy: A,
    /// The time source.
    pub clock: C,
}

impl<R, P, I, L, A, C> Backend for Ports<R, P, I, L, A, C>
where
    R: RowStore,
    P: ParentStore,
    I: IntentStore,
    L: RecreateLock,
    A: IdenfyApi,
    C: Clock,
{
    type Rows = R;
    type Parents = P;
    type Intents = I;
    type Lock = L;
    type Idenfy = A;
    type Clock = C;

    fn rows(&self) -> &R {
        &self.rows
    }
    fn parents(&self) -> &P {
        &self.parents
    }
    fn intents(&self) -> &I {
        &self.intents
    }
    fn lock(&self) -> &L {
        &self.lock
    }
    fn idenfy(&self) -> &A {
        &self.idenfy
    }
    fn clock(&self) -> &C {
        &self.clock
    }
}

/// The iDenfy session service of ONE environment: its [`Backend`] plus its settings.
/// Built with [`Sessions::builder`]; cheap to share behind an `Arc`; all methods take
/// `&self`.
pub struct Sessions<B> {
    backend: B,
    settings: Settings,
    /// Where minted tokens go when the store cannot take them in time (none: they are
    /// only logged at ERROR).
    journal: Option<Arc<dyn journal::MintJournal>>,
    /// Rows this instance is recovering right now (the in-process layer in front of the
    /// recreate lock, `docs/resolver.md`).
    recovering: inflight::InFlight,
}

impl<B: Backend> Sessions<B> {
    /// Starts building the service over `backend` with `settings` (whose `environment`
    /// must be the one the backend's ports were built for).
    ///
    /// ```
    /// use idenfy_core::memory::{MemoryIntentStore, MemoryLock, MemoryParentStore, MemoryRowStore};
    /// use idenfy_core::testing::ScriptedIdenfy;
    /// use idenfy_core::{Environment, Ports, Sessions, Settings, SystemClock, WebhookKey};
    ///
    /// let sessions = Sessions::builder(
    ///     Ports {
    ///         rows: MemoryRowStore::new(),
    ///         parents: MemoryParentStore::new(),
    ///         intents: MemoryIntentStore::new(),
    ///         lock: MemoryLock::new(SystemClock),
    ///         idenfy: ScriptedIdenfy::new(),
    ///         clock: SystemClock,
    ///     },
    ///     Settings::new(Environment::Live, "https://ivs.idenfy.com", WebhookKey::new("signing key")),
    /// )
    /// .build();
    /// assert_eq!(sessions.settings().environment, Environment::Live);
    /// ```
    pub fn builder(backend: B, settings: Settings) -> SessionsBuilder<B> {
        SessionsBuilder {
            backend,
            settings,
            journal: None,
        }
    }

    /// The row store.
    pub fn rows(&self) -> &B::Rows {
        self.backend.rows()
    }

    /// The parent store.
    pub fn parents(&self) -> &B::Parents {
        self.backend.parents()
    }

    /// The intent store.
    pub fn intents(&self) -> &B::Intents {
        self.backend.intents()
    }

    /// The recreate lock.
    pub fn lock(&self) -> &B::Lock {
        self.backend.lock()
    }

    /// The iDenfy API.
    pub fn idenfy(&self) -> &B::Idenfy {
        self.backend.idenfy()
    }

    /// The clock.
    pub fn clock(&self) -> &B::Clock {
        self.backend.clock()
    }

    /// The tunables and the webhook key.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

impl<B> fmt::Debug for Sessions<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("settings", &self.settings)
            .field("journal", &self.journal.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Sessions`]: the backend and settings are given to [`Sessions::builder`],
/// the optional parts here.
#[must_use = "call `build` to get the service"]
pub struct SessionsBuilder<B> {
    backend: B,
    settings: Settings,
    journal: Option<Arc<dyn journal::MintJournal>>,
}

impl<B: Backend> SessionsBuilder<B> {
    /// Keeps minted tokens the store cannot take in `journal` (see [`journal`]). Without
    /// one they are only logged at ERROR.
    pub fn journal(mut self, journal: Arc<dyn journal::MintJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The service.
    pub fn build(self) -> Sessions<B> {
        Sessions {
            backend: self.backend,
            settings: self.settings,
            journal: self.journal,
            recovering: inflight::InFlight::default(),
        }
    }
}

impl<B> fmt::Debug for SessionsBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionsBuilder")
            .field("settings", &self.settings)
            .field("journal", &self.journal.is_some())
            .finish_non_exhaustive()
    }
}
