//! Failures below the HTTP layer: a store that goes down (503 / webhook 500, never a leak of
//! the cause) and handlers slower than the route timeouts (503 JSON).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use idenfy_app::dev::memory_sessions;
use idenfy_client::Secret;
use idenfy_core::{
    Claim, Environment, Flow, IdenfyRow, MintFailure, Nonce, OrphanedMint, Ports, Recreated,
    RecreationLimits, RowId, RowStore, ScanRef, Sessions, SigDigest, StatusUpdate, StoreError,
    Timestamp, VerificationStatus, Write,
    memory::{MemoryRowStore, delay},
};
use idenfy_http::{AppState, Timeouts};
use idenfy_sim::{Sim, SimConfig};
use insta::assert_json_snapshot;
use serde_json::json;

use crate::support::{TOKEN, USER, send, serve, sessions_with_rows};

/// A [`RowStore`] that fails every call while `down` is set.
#[derive(Clone, Debug)]
struct Flaky {
    inner: MemoryRowStore,
    down: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable(
                "connection refused by test-secret-host".into(),
            ))
        } else {
            Ok(())
        }
    }
}

impl RowStore for Flaky {
    async fn get(&self, id: &RowId) -> Result<Option<IdenfyRow>, StoreError> {
        self.check()?;
        self.inner.get(id).await
    }
    async fn find_by_scan_ref(&self, s: &ScanRef) -> Result<Option<IdenfyRow>, StoreError> {
        self.check()?;
        self.inner.find_by_scan_ref(s).await
    }
    async fn find_by_superseded_scan_ref(
        &self,
        s: &ScanRef,
    ) -> Result<Option<IdenfyRow>, StoreError> {
        self.check()?;
        self.inner.find_by_superseded_scan_ref(s).await
    }
    async fn insert(&self, row: &IdenfyRow) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert(row).await
    }
    async fn find_reusable(
        &self,
        sig: &SigDigest,
        flow: Flow,
        since: Timestamp,
    ) -> Result<Option<IdenfyRow>, StoreError> {
        self.check()?;
        self.inner.find_reusable(sig, flow, since).await
    }
    async fn list_recent(
        &self,
        sig: &SigDigest,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<IdenfyRow>, StoreError> {
        self.check()?;
        self.inner.list_recent(sig, since, limit).await
    }
    async fn claim_poll(
        &self,
        id: &RowId,
        s: &ScanRef,
        due: Timestamp,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        self.check()?;
        self.inner.claim_poll(id, s, due, now).await
    }
    async fn apply_status(
        &self,
        id: &RowId,
        s: &ScanRef,
        u: &StatusUpdate,
        now: Timestamp,
    ) -> Result<Option<IdenfyRow>, StoreError> {
        self.check()?;
        self.inner.apply_status(id, s, u, now).await
    }
    async fn mark_expired(
        &self,
        id: &RowId,
        s: &ScanRef,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        self.check()?;
        self.inner.mark_expired(id, s, now).await
    }
    async fn claim_recreation(
        &self,
        id: &RowId,
        s: &ScanRef,
        l: RecreationLimits,
        c: &Claim,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        self.check()?;
        self.inner.claim_recreation(id, s, l, c, now).await
    }
    async fn release_claim(
        &self,
        id: &RowId,
        c: &Nonce,
        f: &MintFailure,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        self.check()?;
        self.inner.release_claim(id, c, f, now).await
    }
    async fn persist_recreation(
        &self,
        id: &RowId,
        s: &ScanRef,
        c: &Nonce,
        r: &Recreated,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        self.check()?;
        self.inner.persist_recreation(id, s, c, r, now).await
    }
    async fn record_orphaned_mint(
        &self,
        id: &RowId,
        o: &OrphanedMint,
    ) -> Result<Write, StoreError> {
        self.check()?;
        self.inner.record_orphaned_mint(id, o).await
    }
    async fn give_up(
        &self,
        id: &RowId,
        s: &ScanRef,
        reason: &str,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        self.check()?;
        self.inner.give_up(id, s, reason, now).await
    }
    async fn update_superseded(
        &self,
        id: &RowId,
        s: &ScanRef,
        v: &VerificationStatus,
        f: bool,
    ) -> Result<Write, StoreError> {
        self.check()?;
        self.inner.update_superseded(id, s, v, f).await
    }
}

#[tokio::test]
async fn a_store_outage_is_503_and_a_webhook_500_without_details() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim");
    let down = Arc::new(AtomicBool::new(false));
    let sessions = sessions_with_rows(
        &sim,
        Flaky {
            inner: MemoryRowStore::new(),
            down: down.clone(),
        },
    );
    let state = AppState::new(Arc::new(sessions), idenfy_app::metrics::handle())
        .with_internal_token(Secret::new(TOKEN));
    let base = serve(idenfy_http::router(state)).await;
    let http = reqwest::Client::new();
    let (code, created) = send(
        http.post(format!("{base}/internal/sessions"))
            .bearer_auth(TOKEN)
            .json(&json!({ "sigDigest": USER, "flow": "gov-id" })),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let row = created["idenfySessionId"].as_str().expect("row id");
    let scan_ref = created["idenfy"]["idenfyScanRef"]
        .as_str()
        .expect("scanRef");

    down.store(true, Ordering::SeqCst);
    let (code, body) = send(
        http.get(format!("{base}/idenfy-sessions/{row}/status"))
            .header("X-Holo-User-Id", USER),
    )
    .await;
    assert_eq!(code, 503);
    assert_json_snapshot!("store_down_status", body);
    let (code, body) = send(
        http.get(format!("{base}/idenfy-sessions"))
            .header("X-Holo-User-Id", USER),
    )
    .await;
    assert_eq!(code, 503);
    assert_eq!(body, json!({ "error": "Service temporarily unavailable" }));
    let (code, body) = send(
        http.post(format!("{base}/internal/sessions"))
            .bearer_auth(TOKEN)
            .json(&json!({ "sigDigest": "someone-else", "flow": "gov-id" })),
    )
    .await;
    assert_eq!(code, 503, "{body}");
    assert!(!body.to_string().contains("test-secret-host"));

    let payload = serde_json::to_vec(&json!({
        "final": true, "scanRef": scan_ref, "status": { "overall": "APPROVED" }
    }))
    .expect("json");
    let signature =
        idenfy_core::webhook::sign(sim.config().webhook_signing_key.as_bytes(), &payload);
    let (code, body) = send(
        http.post(format!("{base}/idenfy/webhook"))
            .header("Idenfy-Signature", signature)
            .body(payload),
    )
    .await;
    assert_eq!(code, 500, "iDenfy must retry");
    assert_json_snapshot!("store_down_webhook", body);
}

#[tokio::test]
async fn slow_handlers_answer_503_json_within_the_route_timeouts() {
    const HOUR: Duration = Duration::from_secs(3_600);
    let sim = Sim::start(SimConfig::default()).await.expect("sim");
    // Every store call takes an hour, so only a route's own limit can end a request; each
    // app below has one short limit and one of an hour, so a 503 (within the hang guard)
    // says which limit ended it.
    let store_calls = Arc::new(AtomicUsize::new(0));
    let app = |timeouts: Timeouts| {
        let calls = store_calls.clone();
        let rows = MemoryRowStore::new().with_delay(delay(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(HOUR)
        }));
        let state = AppState::new(
            Arc::new(sessions_with_rows(&sim, rows)),
            idenfy_app::metrics::handle(),
        )
        .with_timeouts(timeouts);
        serve(idenfy_http::router(state))
    };
    let http = reqwest::Client::new();

    let base = app(Timeouts {
        webhook: Duration::from_millis(100),
        request: HOUR,
    })
    .await;
    let payload = br#"{"scanRef":"anything","status":{"overall":"APPROVED"}}"#.to_vec();
    let signature =
        idenfy_core::webhook::sign(sim.config().webhook_signing_key.as_bytes(), &payload);
    let (code, body) = hang_guard(send(
        http.post(format!("{base}/idenfy/webhook"))
            .header("Idenfy-Signature", signature)
            .body(payload),
    ))
    .await;
    assert_eq!(code, 503, "the webhook limit applies: {body}");
    assert_json_snapshot!("timeout", body);
    assert_eq!(
        store_calls.load(Ordering::SeqCst),
        1,
        "cut off inside its store call"
    );

    let base = app(Timeouts {
        webhook: HOUR,
        request: Duration::from_millis(200),
    })
    .await;
    let (code, body) = hang_guard(send(
        http.get(format!(
            "{base}/idenfy-sessions/0123456789abcdef01234567/status"
        ))
        .header("X-Holo-User-Id", USER),
    ))
    .await;
    assert_eq!(code, 503, "the request limit applies: {body}");
    assert_eq!(body, json!({ "error": "Request timed out" }));
    assert_eq!(
        store_calls.load(Ordering::SeqCst),
        2,
        "cut off inside its store call"
    );
}

/// A recovery outlives its request: the route deadline answers 503 while the mint is still
/// running, and the minted token is persisted anyway, so the next poll shows it. (Cut off
/// between mint and persist, the paid token would be lost and the row blocked by the
/// claim for its whole TTL, then minted again.)
#[tokio::test]
async fn a_recovery_cut_off_by_the_deadline_still_persists_its_token() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim");
    let sessions = memory_sessions(&sim, Environment::Live, Duration::from_millis(1)).expect("s");
    let rows = sessions.rows().clone();
    let state = AppState::new(Arc::new(sessions), idenfy_app::metrics::handle())
        .with_internal_token(Secret::new(TOKEN))
        .with_timeouts(Timeouts {
            webhook: Duration::from_secs(8),
            request: Duration::from_millis(300),
        });
    let base = serve(idenfy_http::router(state)).await;
    let http = reqwest::Client::new();

    let (code, body) = send(
        http.post(format!("{base}/internal/sessions"))
            .bearer_auth(TOKEN)
            .json(&json!({ "sigDigest": USER, "flow": "gov-id" })),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let created = crate::support::Created::from(&body);
    assert!(sim.expire_token(&created.scan_ref));
    sim.set_latency(idenfy_sim::Endpoint::Token, Duration::from_millis(800));
    // A token just minted is not polled within the (1 ms) interval: let it pass.
    tokio::time::sleep(Duration::from_millis(10)).await;

    let status = format!("{base}/idenfy-sessions/{}/status", created.row);
    let (code, body) = send(http.get(&status).header("X-Holo-User-Id", USER)).await;
    assert_eq!(code, 503, "the deadline passes during the mint: {body}");
    assert_eq!(sim.counters().token_calls, 2, "creation plus the recovery");

    // The mint answers after its latency, and the recovery then persists the new token:
    // wait for that write itself rather than for a time it usually takes.
    let id = RowId::parse(&created.row).expect("row id");
    hang_guard(async {
        loop {
            let row = rows.get(&id).await.expect("get").expect("the row");
            if row.scan_ref.as_str() != created.scan_ref {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    sim.set_latency(idenfy_sim::Endpoint::Token, Duration::ZERO);
    let (code, body) = send(http.get(&status).header("X-Holo-User-Id", USER)).await;
    assert_eq!(code, 200, "{body}");
    assert_ne!(
        body["idenfyScanRef"],
        json!(created.scan_ref),
        "the token minted during the cut-off request was persisted: {body}"
    );
    assert!(body["idenfyAuthToken"].is_string(), "{body}");
    assert_eq!(
        sim.counters().token_calls,
        2,
        "and nothing was minted again"
    );
}

/// iDenfy's status endpoint stops answering. With the production client (its whole retry
/// budget fits in the request deadline), a due poll answers 200 with the cached view and its
/// `lastCheckedAt`, never a 503 "Request timed out".
#[tokio::test]
async fn a_silent_status_endpoint_gives_the_cached_view_not_a_503() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim");
    let cfg = sim.config();
    let credentials = idenfy_app::config::Credentials {
        api_key: Secret::new(cfg.api_key.clone()),
        api_secret: Secret::new(cfg.api_secret.clone()),
        webhook_key: idenfy_core::WebhookKey::new(cfg.webhook_signing_key.as_bytes()),
    };
    let client = idenfy_app::serve::client(
        &sim.base_url(),
        &credentials,
        &idenfy_client::TokenOptions::default(),
    )
    .expect("client");
    let template = memory_sessions(&sim, Environment::Live, Duration::from_millis(1)).expect("s");
    let sessions = Sessions::builder(
        Ports {
            rows: template.rows().clone(),
            parents: template.parents().clone(),
            intents: template.intents().clone(),
            lock: template.lock().clone(),
            idenfy: client,
            clock: *template.clock(),
        },
        template.settings().clone(),
    )
    .build();
    // The production deadline.
    let state = AppState::new(Arc::new(sessions), idenfy_app::metrics::handle())
        .with_internal_token(Secret::new(TOKEN));
    let base = serve(idenfy_http::router(state)).await;
    let http = reqwest::Client::new();
    let (code, body) = send(
        http.post(format!("{base}/internal/sessions"))
            .bearer_auth(TOKEN)
            .json(&json!({ "sigDigest": USER, "flow": "gov-id" })),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let created = crate::support::Created::from(&body);
    let status = format!("{base}/idenfy-sessions/{}/status", created.row);
    // One answered poll, so there is a `lastCheckedAt` to show (once the 1 ms poll
    // interval has passed since the mint: a token just minted needs no call).
    tokio::time::sleep(Duration::from_millis(10)).await;
    let (code, body) = send(http.get(&status).header("X-Holo-User-Id", USER)).await;
    assert_eq!(code, 200, "{body}");
    let checked = body["lastCheckedAt"].clone();
    assert!(checked.is_string(), "{body}");

    sim.set_latency(idenfy_sim::Endpoint::Status, Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (code, body) = send(http.get(&status).header("X-Holo-User-Id", USER)).await;
    assert_eq!(code, 200, "the cached view, not a timeout: {body}");
    assert_eq!(body["idenfyScanRef"], json!(created.scan_ref), "{body}");
    assert_eq!(body["lastCheckedAt"], checked, "{body}");
    assert!(body["idenfyAuthToken"].is_string(), "{body}");
}

/// Fails the test if `future` hangs. It bounds a hang, not speed: a minute is far beyond
/// what any step here takes on a loaded machine.
async fn hang_guard<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("hang guard: no progress within 60 s")
}
