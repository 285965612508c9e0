//! Test harness: a `Sessions` service on the in-memory adapters, a manual clock and the
//! scripted iDenfy, plus fixtures shaped like upstream's (`SCAN_OLD`/`AUTH_OLD`).

use std::sync::Arc;

use chrono::TimeZone;
use idenfy_core::{
    AuthToken, Environment, Flow, IdenfyRow, Parent, ParentId, ParentStatus, ParentStore, Ports,
    RowId, RowStatus, RowStore, ScanRef, Sessions, Settings, SigDigest, Timestamp,
    VerificationStatus, WebhookKey,
    memory::{
        Delay, MemoryIntentStore, MemoryJournal, MemoryLock, MemoryParentStore, MemoryRowStore,
    },
    testing::{ManualClock, ScriptedIdenfy},
    webhook::{WebhookAck, WebhookError, WebhookRequest, sign},
};

/// The adapters of the harness.
pub type TestPorts = Ports<
    MemoryRowStore,
    MemoryParentStore,
    MemoryIntentStore,
    MemoryLock,
    ScriptedIdenfy,
    ManualClock,
>;

pub type TestSessions = Sessions<TestPorts>;

pub const SIG: &str = "sig-digest-of-the-owner";
pub const SIGNING_KEY: &[u8] = b"test-webhook-signing-key";
pub const REDIRECT_BASE: &str = "https://ivs.idenfy.com";

pub fn owner() -> SigDigest {
    SigDigest::parse(SIG).expect("valid identity")
}

pub fn start_time() -> Timestamp {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 30, 12, 0, 0)
        .single()
        .expect("valid time")
}

/// How to build the harness.
#[derive(Default)]
pub struct Options {
    pub lock_unavailable: bool,
    pub store_delay: Option<Delay>,
    pub lock_delay: Option<Delay>,
    pub mint_delay: Option<Delay>,
    pub status_delay: Option<Delay>,
}

/// The service under test plus handles on every adapter (clones share state).
#[derive(Clone)]
pub struct Harness {
    pub sessions: Arc<TestSessions>,
    pub clock: ManualClock,
    pub idenfy: ScriptedIdenfy,
    pub rows: MemoryRowStore,
    pub parents: MemoryParentStore,
    pub intents: MemoryIntentStore,
    pub lock: MemoryLock,
    /// This service's mint journal (replicas have none).
    pub journal: MemoryJournal,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(Options::default())
    }

    pub fn with(options: Options) -> Self {
        let clock = ManualClock::new(start_time());
        let mut idenfy = ScriptedIdenfy::new().with_clock(clock.clone());
        if let Some(delay) = options.mint_delay {
            idenfy = idenfy.with_mint_delay(delay);
        }
        if let Some(delay) = options.status_delay {
            idenfy = idenfy.with_status_delay(delay);
        }
        let mut rows = MemoryRowStore::new();
        let mut parents = MemoryParentStore::new();
        let mut intents = MemoryIntentStore::new();
        if let Some(delay) = options.store_delay {
            rows = rows.with_delay(delay.clone());
            parents = parents.with_delay(delay.clone());
            intents = intents.with_delay(delay);
        }
        let mut lock = MemoryLock::new(clock.clone());
        if let Some(delay) = options.lock_delay {
            lock = lock.with_delay(delay);
        }
        if options.lock_unavailable {
            lock.set_unavailable(true);
        }
        let settings = Settings::new(
            Environment::Live,
            REDIRECT_BASE,
            WebhookKey::new(SIGNING_KEY),
        );
        let journal = MemoryJournal::new();
        let sessions = Arc::new(
            Sessions::builder(
                Ports {
                    rows: rows.clone(),
                    parents: parents.clone(),
                    intents: intents.clone(),
                    lock: lock.clone(),
                    idenfy: idenfy.clone(),
                    clock: clock.clone(),
                },
                settings,
            )
            .journal(Arc::new(journal.clone()))
            .build(),
        );
        Self {
            sessions,
            clock,
            idenfy,
            rows,
            parents,
            intents,
            lock,
            journal,
        }
    }

    /// Another replica: a fresh service (its own in-process state) over the same stores,
    /// lock, iDenfy and clock.
    pub fn replica(&self) -> Arc<TestSessions> {
        Arc::new(Sessions::builder(self.ports(), self.sessions.settings().clone()).build())
    }

    /// The harness's adapters (clones share their state), for a service of other settings.
    pub fn ports(&self) -> TestPorts {
        Ports {
            rows: self.rows.clone(),
            parents: self.parents.clone(),
            intents: self.intents.clone(),
            lock: self.lock.clone(),
            idenfy: self.idenfy.clone(),
            clock: self.clock.clone(),
        }
    }

    /// Stores a parent and its row as `seed` describes; returns the row.
    pub async fn seed(&self, seed: Seed) -> IdenfyRow {
        let now = self.clock.now_for_tests();
        let parent_id = ParentId::generate(now);
        let row_id = RowId::generate(now);
        let parent = Parent {
            id: parent_id.clone(),
            flow: seed.flow,
            sig_digest: Some(owner()),
            status: seed.parent_status,
            idenfy_session_id: Some(row_id.clone()),
            failure_reason: None,
            created_at: Some(now),
        };
        self.parents.insert(&parent).await.expect("parent inserted");
        let row = IdenfyRow {
            id: row_id,
            sig_digest: owner(),
            auth_token: AuthToken::new(seed.token.clone()),
            scan_ref: ScanRef::new(seed.scan_ref.clone()),
            verification_status: seed.verification.clone(),
            failure_reason: seed.failure_reason.map(str::to_owned),
            status: seed.status,
            flow: seed.flow,
            parent_id,
            created_at: now,
            recreation_count: seed.recreation_count,
            is_final: seed.is_final,
            // Minted a minute ago: older than the poll interval, so the first poll asks
            // iDenfy (a fresher token needs no status call yet).
            token_minted_at: Some(now - chrono::Duration::minutes(1)),
            token_expires_at: Some(now + chrono::Duration::minutes(59)),
            last_polled_at: None,
            last_checked_at: None,
            mint_attempts: seed.recreation_count + 1,
            unknown_mint_outcomes: 0,
            last_unknown_mint_at: None,
            recreation: Default::default(),
            scan_ref_history: Vec::new(),
            orphaned_mints: Vec::new(),
            updated_at: Some(now),
        };
        self.rows.insert(&row).await.expect("row inserted");
        if let Some(status) = seed.idenfy_says {
            self.idenfy.set_status(&row.scan_ref, status);
        }
        row
    }

    /// The row as stored now.
    pub async fn row(&self, id: &RowId) -> IdenfyRow {
        self.rows
            .get(id)
            .await
            .expect("store answers")
            .expect("row exists")
    }

    pub async fn parent(&self, row: &IdenfyRow) -> Parent {
        self.parents
            .get(row.flow, &row.parent_id)
            .await
            .expect("store answers")
            .expect("parent exists")
    }

    /// Delivers a correctly signed webhook.
    pub async fn webhook(
        &self,
        event: &str,
        body: serde_json::Value,
    ) -> Result<WebhookAck, WebhookError> {
        let raw = serde_json::to_vec(&body).expect("json");
        let signature = sign(SIGNING_KEY, &raw);
        self.sessions
            .handle_webhook(WebhookRequest {
                signature: Some(&signature),
                event_type: Some(event),
                body: &raw,
            })
            .await
    }
}

/// A row to store. Defaults: upstream's fixture (`AUTH_OLD`/`SCAN_OLD`, gov-id, count 0),
/// in progress, parent IN_PROGRESS.
#[derive(Clone)]
pub struct Seed {
    pub token: String,
    pub scan_ref: String,
    pub verification: Option<VerificationStatus>,
    pub status: RowStatus,
    pub failure_reason: Option<&'static str>,
    pub is_final: bool,
    pub recreation_count: u32,
    pub flow: Flow,
    pub parent_status: ParentStatus,
    /// What the scripted `/api/v2/status` answers for the seeded scanRef.
    pub idenfy_says: Option<VerificationStatus>,
}

impl Default for Seed {
    fn default() -> Self {
        Self {
            token: "AUTH_OLD".into(),
            scan_ref: "SCAN_OLD".into(),
            verification: None,
            status: RowStatus::InProgress,
            failure_reason: None,
            is_final: false,
            recreation_count: 0,
            flow: Flow::GovId,
            parent_status: ParentStatus::InProgress,
            idenfy_says: Some(VerificationStatus::Active),
        }
    }
}

impl Seed {
    /// A row whose EXPIRED marker is cached (upstream's default fixture).
    pub fn expired() -> Self {
        Self {
            verification: Some(VerificationStatus::Expired),
            idenfy_says: Some(VerificationStatus::Expired),
            ..Self::default()
        }
    }

    /// A row with a final decision.
    pub fn decided(status: VerificationStatus) -> Self {
        let row_status = status.decided_row_status().expect("a decision");
        Self {
            failure_reason: status.failure_reason(),
            verification: Some(status.clone()),
            idenfy_says: Some(status),
            status: row_status,
            is_final: true,
            ..Self::default()
        }
    }
}

/// Reads the manual clock without advancing it.
pub trait NowForTests {
    fn now_for_tests(&self) -> Timestamp;
}

impl NowForTests for ManualClock {
    fn now_for_tests(&self) -> Timestamp {
        idenfy_core::Clock::now(self)
    }
}
