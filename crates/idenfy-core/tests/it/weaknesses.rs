//! One test per difference from id-server that our contract makes, named by its item in
//! `docs/differences-from-id-server.md` (D1, D2, ...). Each would fail against id-server's
//! behaviour. The `wN_` prefixes of the test names are an older numbering, not the items.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use idenfy_core::{
    IdenfyErrorKind, ParentStatus, ParentStore, RecreateLock, RowStatus, RowStore, ScanRef,
    SigDigest, VerificationStatus, reasons,
    resolver::{Outcome, ResolveError},
    webhook::{WebhookError, WebhookOutcome, WebhookRequest, sign},
};
use serde_json::json;

use crate::{
    scenarios::refresh_as_peer,
    support::{Harness, NowForTests, Options, SIGNING_KEY, Seed, owner},
};

/// D2: a holder that overran its TTL cannot delete its successor's lock.
#[tokio::test]
async fn w1_release_never_deletes_a_successors_lock() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    let stale = h
        .lock
        .acquire(&row.id, Duration::from_secs(30))
        .await
        .expect("lock")
        .expect("free");
    h.clock.advance(Duration::from_secs(31));
    let successor = h
        .lock
        .acquire(&row.id, Duration::from_secs(30))
        .await
        .expect("lock");
    assert!(successor.is_some(), "expired lock is free again");
    assert!(
        !h.lock.release(&stale).await.expect("lock"),
        "stale owner's release is refused"
    );
    assert!(
        h.lock
            .acquire(&row.id, Duration::from_secs(30))
            .await
            .expect("lock")
            .is_none(),
        "successor still holds it"
    );
}

/// D1: a poller whose EXPIRED snapshot predates a peer's recovery does not mint again.
#[tokio::test]
async fn w2_stale_snapshot_after_a_peer_recovered_does_not_mint_again() {
    let h = Harness::new();
    let stale = h.seed(Seed::expired()).await;
    h.sessions
        .resolve(stale.id.as_str(), &owner())
        .await
        .expect("first poller recovers");
    assert_eq!(h.idenfy.mint_calls(), 1);
    // The lock is free again; the second poller still holds the old EXPIRED snapshot.
    let r = h.sessions.resolve_row(stale).await.expect("resolves");
    assert_eq!(h.idenfy.mint_calls(), 1, "no second, billed mint");
    assert_eq!(
        r.view.idenfy_auth_token.as_ref().map(|t| t.expose()),
        Some("AUTH_NEW_1")
    );
}

/// D3: the EXPIRED marker is conditional on the scanRef that was polled, so it never lands
/// on a token a peer minted while our status call was in flight.
#[tokio::test]
async fn w3_expired_marker_never_lands_on_a_fresh_scan_ref() {
    type Slot = Arc<Mutex<Option<(Harness, idenfy_core::IdenfyRow)>>>;
    let slot: Slot = Arc::new(Mutex::new(None));
    let hook = slot.clone();
    let h = Harness::with(Options {
        status_delay: Some(idenfy_core::memory::delay(move || {
            let hook = hook.clone();
            async move {
                let taken = hook.lock().expect("slot").take();
                if let Some((peer, row)) = taken {
                    // While our status call is in flight, a peer recovers the row.
                    mark_expired_and_refresh(&peer, &row).await;
                }
            }
        })),
        ..Default::default()
    });
    let row = h
        .seed(Seed {
            idenfy_says: Some(VerificationStatus::Expired),
            ..Seed::default()
        })
        .await;
    *slot.lock().expect("slot") = Some((h.clone(), row.clone()));
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    let stored = h.row(&row.id).await;
    assert_eq!(stored.scan_ref, ScanRef::new("SCAN_PEER"));
    assert_eq!(
        stored.verification_status, None,
        "the fresh session is not marked EXPIRED"
    );
    assert_eq!(
        r.view.idenfy_auth_token.as_ref().map(|t| t.expose()),
        Some("AUTH_PEER")
    );
    assert_eq!(h.idenfy.mint_calls(), 0);
}

async fn mark_expired_and_refresh(h: &Harness, row: &idenfy_core::IdenfyRow) {
    let now = h.clock.now_for_tests();
    assert!(
        h.rows
            .mark_expired(&row.id, &row.scan_ref, now)
            .await
            .expect("store")
            .applied()
    );
    refresh_as_peer(h, row, "AUTH_PEER", "SCAN_PEER").await;
}

/// D4: a poller that loses the claim classifies the re-read row; it never returns an
/// EXPIRED row verbatim.
#[tokio::test]
async fn w4_losing_the_claim_never_returns_the_expired_row_verbatim() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    // A peer holds a live claim (mint in flight); Valkey says nothing (lock free).
    let now = h.clock.now_for_tests();
    let claim = idenfy_core::Claim {
        claim_id: idenfy_core::Nonce::random(),
        claimed_until: now + chrono::Duration::seconds(60),
    };
    let limits = idenfy_core::RecreationLimits {
        cap: 10,
        max_attempts: 30,
    };
    assert!(
        h.rows
            .claim_recreation(&row.id, &row.scan_ref, limits, &claim, now)
            .await
            .expect("store")
            .applied()
    );
    // Stale snapshot without the claim: the resolver must go through the store claim.
    let r = h.sessions.resolve_row(row).await.expect("resolves");
    assert_eq!(r.outcome, Outcome::Pending);
    assert_eq!(r.view.idenfy_verification_status, None, "no EXPIRED flash");
    assert_eq!(r.view.idenfy_auth_token, None, "no stale token");
    assert_eq!(h.idenfy.mint_calls(), 0);
}

/// D5: the cap is enforced atomically by the claim, and every mint attempt is counted.
#[tokio::test]
async fn w5_cap_is_atomic_and_every_attempt_is_counted() {
    let h = Harness::with(Options {
        lock_unavailable: true,
        ..Default::default()
    });
    let row = h
        .seed(Seed {
            recreation_count: 9,
            ..Seed::expired()
        })
        .await;
    let mut tasks = Vec::new();
    // One replica per task: the store claim, not the in-process layer, decides.
    for _ in 0..16 {
        let (sessions, stale) = (h.replica(), row.clone());
        tasks.push(tokio::spawn(
            async move { sessions.resolve_row(stale).await },
        ));
    }
    for task in tasks {
        task.await.expect("joined").expect("resolves");
    }
    assert_eq!(h.idenfy.mint_calls(), 1, "one claim at count 9 of 10");
    let stored = h.row(&row.id).await;
    assert_eq!(stored.recreation_count, 10);
    // The next expiry is beyond the cap: no more mints.
    h.idenfy
        .set_status(&stored.scan_ref, VerificationStatus::Expired);
    h.clock.advance(Duration::from_secs(3601));
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(r.outcome, Outcome::GaveUp);
    assert_eq!(h.idenfy.mint_calls(), 1);
    // A failed mint is an attempt too.
    let other = h.seed(Seed::expired()).await;
    h.idenfy.push_mint_error(IdenfyErrorKind::Timeout);
    h.sessions
        .resolve(other.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(
        h.row(&other.id).await.mint_attempts,
        other.mint_attempts + 1
    );
}

/// D12: a late webhook for a superseded scanRef cannot clobber the recreated session.
#[tokio::test]
async fn w6_late_webhook_for_the_old_scan_ref_leaves_the_fresh_session_alone() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    h.sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("recovers");
    let ack = h
        .webhook(
            "IDENTIFICATION_EXPIRED",
            json!({"scanRef": "SCAN_OLD", "final": false, "status": {"overall": "EXPIRED"}}),
        )
        .await
        .expect("acknowledged");
    assert_eq!(ack.outcome, WebhookOutcome::Superseded);
    let stored = h.row(&row.id).await;
    assert_eq!(stored.scan_ref, ScanRef::new("SCAN_NEW_1"));
    assert_eq!(stored.verification_status, None);
    assert_eq!(stored.status, RowStatus::InProgress);
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(
        r.view.idenfy_auth_token.as_ref().map(|t| t.expose()),
        Some("AUTH_NEW_1")
    );
    assert_eq!(h.idenfy.mint_calls(), 1, "no extra billed mint");
}

/// D13: DENIED propagation runs on every delivery, so a redelivery fails a parent the first
/// (partly failed) delivery did not.
#[tokio::test]
async fn w7_denied_propagation_also_runs_on_redelivery() {
    let h = Harness::new();
    // The first delivery stored the decision but failed before touching the parent.
    let row = h.seed(Seed::decided(VerificationStatus::Denied)).await;
    assert_eq!(h.parent(&row).await.status, ParentStatus::InProgress);
    let ack = h
        .webhook(
            "IDENTIFICATION_MANUAL_FINISHED",
            json!({"scanRef": "SCAN_OLD", "final": true, "status": {"overall": "DENIED"}}),
        )
        .await
        .expect("acknowledged");
    assert_eq!(ack.outcome, WebhookOutcome::Duplicate);
    let parent = h.parent(&row).await;
    assert_eq!(parent.status, ParentStatus::VerificationFailed);
    assert_eq!(parent.failure_reason.as_deref(), Some(reasons::DENIED));
}

/// D14: superseded scanRefs are kept: their webhooks are acknowledged and recorded.
#[tokio::test]
async fn w8_superseded_scan_ref_is_acknowledged_and_recorded() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    h.sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("recovers");
    let ack = h
        .webhook(
            "IDENTIFICATION_AUTO_FINISHED",
            json!({"scanRef": "SCAN_OLD", "final": true, "status": {"overall": "APPROVED"}}),
        )
        .await
        .expect("200, not 404");
    assert_eq!(ack.outcome, WebhookOutcome::Superseded);
    let entry = &h.row(&row.id).await.scan_ref_history[0];
    assert_eq!(entry.last_status, Some(VerificationStatus::Approved));
    assert!(entry.is_final);
}

/// D7: Valkey down never fails a request, and recovery still happens exactly once.
#[tokio::test]
async fn w9_valkey_down_still_recovers() {
    let h = Harness::with(Options {
        lock_unavailable: true,
        ..Default::default()
    });
    let row = h.seed(Seed::expired()).await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("no error surfaced");
    assert_eq!(r.outcome, Outcome::Recovered);
    let again = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("no error surfaced");
    assert_eq!(again.view.idenfy_auth_token, r.view.idenfy_auth_token);
    assert_eq!(h.idenfy.mint_calls(), 1);
}

/// D7: a failing release never turns a persisted recovery into an error.
#[tokio::test]
async fn w9_release_failure_never_changes_the_outcome() {
    let slot: Arc<Mutex<Option<idenfy_core::memory::MemoryLock>>> = Arc::new(Mutex::new(None));
    let hook = slot.clone();
    let h = Harness::with(Options {
        mint_delay: Some(idenfy_core::memory::delay(move || {
            // Valkey goes away while we mint: the release will fail.
            if let Some(lock) = hook.lock().expect("slot").as_ref() {
                lock.set_unavailable(true);
            }
            async {}
        })),
        ..Default::default()
    });
    *slot.lock().expect("slot") = Some(h.lock.clone());
    let row = h.seed(Seed::expired()).await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("no error surfaced");
    assert_eq!(r.outcome, Outcome::Recovered);
    assert_eq!(h.row(&row.id).await.scan_ref, ScanRef::new("SCAN_NEW_1"));
}

/// D20: the status route needs the owner's identity; a stranger learns nothing and cannot
/// trigger a billed recreation.
#[tokio::test]
async fn w11_strangers_cannot_read_or_trigger_recovery() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    let stranger = SigDigest::parse("attacker").expect("valid");
    assert!(matches!(
        h.sessions.resolve(row.id.as_str(), &stranger).await,
        Err(ResolveError::NotFound)
    ));
    assert!(matches!(
        h.sessions
            .status_v2(row.parent_id.as_str(), &stranger)
            .await,
        Err(ResolveError::NotFound)
    ));
    assert_eq!(h.idenfy.mint_calls(), 0);
}

/// A `MakeWriter` that keeps everything logged, to prove what never gets logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// D17: a webhook without scanRef logs key names only, never the KYC payload.
#[tokio::test]
async fn w15_webhook_without_scan_ref_never_logs_the_payload() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let h = Harness::new();
    let body = json!({"clientId": "c", "data": {"docFirstName": "JOHN-PII", "docDob": "1990-01-01"}, "status": {"overall": "APPROVED"}});
    let err = h
        .webhook("IDENTIFICATION_AUTO_FINISHED", body)
        .await
        .expect_err("rejected");
    assert!(matches!(err, WebhookError::MissingScanRef));
    let logs = String::from_utf8(captured.0.lock().expect("buffer").clone()).expect("utf8");
    assert!(logs.contains("data"), "key names are logged: {logs}");
    assert!(
        !logs.contains("JOHN-PII") && !logs.contains("1990-01-01"),
        "payload values leaked: {logs}"
    );
}

/// D16: a valid digest followed by junk is refused (Node's lenient hex accepted it), before
/// any database access.
#[tokio::test]
async fn w16_signature_with_trailing_junk_is_refused_before_any_write() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    let raw = serde_json::to_vec(
        &json!({"scanRef": "SCAN_OLD", "final": true, "status": {"overall": "DENIED"}}),
    )
    .expect("json");
    let signature = format!("{}zz", sign(SIGNING_KEY, &raw));
    let err = h
        .sessions
        .handle_webhook(WebhookRequest {
            signature: Some(&signature),
            event_type: None,
            body: &raw,
        })
        .await
        .expect_err("refused");
    assert!(matches!(err, WebhookError::Signature(_)));
    assert_eq!(h.row(&row.id).await, row, "nothing written");
}

/// D8: recovery only resumes a parent that is still IN_PROGRESS.
#[tokio::test]
async fn w18_no_recovery_when_the_parent_is_finished() {
    for status in [
        ParentStatus::VerificationFailed,
        ParentStatus::Refunded,
        ParentStatus::Issued,
    ] {
        let h = Harness::new();
        let row = h
            .seed(Seed {
                parent_status: status.clone(),
                ..Seed::expired()
            })
            .await;
        let r = h
            .sessions
            .resolve(row.id.as_str(), &owner())
            .await
            .expect("resolves");
        assert_eq!(r.outcome, Outcome::GaveUp, "{status}");
        assert_eq!(
            r.view.idenfy_verification_status,
            Some(VerificationStatus::Expired)
        );
        assert_eq!(h.idenfy.mint_calls(), 0, "{status}: no billed mint");
    }
}

/// D9: at the cap the parent fails, so the user can be refunded.
#[tokio::test]
async fn w19_cap_fails_the_parent_for_a_refund() {
    let h = Harness::new();
    let row = h
        .seed(Seed {
            recreation_count: 10,
            ..Seed::expired()
        })
        .await;
    h.sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(
        h.parent(&row).await.status,
        ParentStatus::VerificationFailed
    );
}

/// D10: transient iDenfy errors are not sticky: pending, back-off, then recovery.
#[tokio::test]
async fn w20_transient_mint_errors_back_off_and_then_recover() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    h.idenfy.push_mint_error(IdenfyErrorKind::Server);
    let first = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(first.outcome, Outcome::Pending);
    let soon = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(soon.outcome, Outcome::Pending);
    assert_eq!(h.idenfy.mint_calls(), 1, "back-off respected");
    h.clock.advance(Duration::from_secs(3));
    let later = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(later.outcome, Outcome::Recovered);
    assert_eq!(h.idenfy.mint_calls(), 2);
}

/// D11: one state machine: an EXPIRED webhook only marks the row (never `failed`), and the
/// next poll recovers it.
#[tokio::test]
async fn w21_expired_webhook_marks_and_the_next_poll_recovers() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    let ack = h
        .webhook(
            "IDENTIFICATION_EXPIRED",
            json!({"scanRef": "SCAN_OLD", "final": false, "status": {"overall": "EXPIRED"}}),
        )
        .await
        .expect("acknowledged");
    assert_eq!(ack.outcome, WebhookOutcome::Applied);
    let stored = h.row(&row.id).await;
    assert_eq!(stored.status, RowStatus::InProgress);
    assert_eq!(
        stored.verification_status,
        Some(VerificationStatus::Expired)
    );
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(r.outcome, Outcome::Recovered);
}

/// D15: a preliminary (non-final) decision is shown but not cached as terminal, and never
/// fails the parent.
#[tokio::test]
async fn w22_non_final_denied_is_not_terminal() {
    let h = Harness::new();
    let row = h
        .seed(Seed {
            idenfy_says: Some(VerificationStatus::Reviewing),
            ..Seed::default()
        })
        .await;
    h.webhook(
        "IDENTIFICATION_AUTO_FINISHED",
        json!({"scanRef": "SCAN_OLD", "final": false, "status": {"overall": "DENIED"}}),
    )
    .await
    .expect("acknowledged");
    assert_eq!(h.parent(&row).await.status, ParentStatus::InProgress);
    let stored = h.row(&row.id).await;
    assert_eq!(stored.status, RowStatus::InProgress);
    assert!(!stored.is_final);
    // Not cached: the resolver re-checks it.
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(h.idenfy.status_calls(&row.scan_ref), 1);
    assert_eq!(
        r.view.idenfy_verification_status,
        Some(VerificationStatus::Reviewing)
    );
    // The manual result decides.
    h.webhook(
        "IDENTIFICATION_MANUAL_FINISHED",
        json!({"scanRef": "SCAN_OLD", "final": true, "status": {"overall": "APPROVED"}}),
    )
    .await
    .expect("acknowledged");
    let stored = h.row(&row.id).await;
    assert_eq!(
        (stored.status, stored.is_final),
        (RowStatus::Complete, true)
    );
    assert_eq!(h.parent(&row).await.status, ParentStatus::InProgress);
}

/// D18: many pollers make at most one iDenfy status call per row per interval.
#[tokio::test]
async fn w24_pollers_share_one_status_call_per_interval() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let sessions = h.sessions.clone();
        let id = row.id.clone();
        tasks.push(tokio::spawn(async move {
            sessions.resolve(id.as_str(), &owner()).await
        }));
    }
    for task in tasks {
        let r = task.await.expect("joined").expect("resolves");
        assert!(r.view.idenfy_auth_token.is_some());
    }
    assert_eq!(h.idenfy.status_calls(&row.scan_ref), 1);
    h.clock.advance(Duration::from_secs(10));
    h.sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(
        h.idenfy.status_calls(&row.scan_ref),
        1,
        "not due within the interval"
    );
    h.clock.advance(Duration::from_secs(6));
    h.sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(h.idenfy.status_calls(&row.scan_ref), 2);
}

/// D21, D4: a malformed id is a clean not-found, and a pending view is consistently in progress
/// even when a webhook had marked the row.
#[tokio::test]
async fn w30_malformed_ids_and_consistent_pending_views() {
    let h = Harness::new();
    assert!(matches!(
        h.sessions.resolve("definitely not an id", &owner()).await,
        Err(ResolveError::NotFound)
    ));
    let row = h.seed(Seed::expired()).await;
    h.idenfy.push_mint_error(IdenfyErrorKind::RateLimited);
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(r.outcome, Outcome::Pending);
    assert_eq!(r.view.status, RowStatus::InProgress);
    assert_eq!(r.view.failure_reason, None);
}

/// D19: a failed poll shows the cached state with its age, never an error.
#[tokio::test]
async fn w34_failed_poll_serves_the_cached_view_with_its_age() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    h.sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("first poll");
    let checked = h.row(&row.id).await.last_checked_at;
    h.clock.advance(Duration::from_secs(20));
    h.idenfy.push_status_error(IdenfyErrorKind::Timeout);
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("no error surfaced");
    assert_eq!(r.outcome, Outcome::PollFailed);
    assert_eq!(r.view.last_checked_at, checked);
    assert!(r.view.idenfy_auth_token.is_some());
}

/// The parent store's failure propagation is idempotent (no double counting on redelivery).
#[tokio::test]
async fn denied_propagation_counts_each_parent_once() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    let first = h
        .parents
        .fail_all_linked(&row.id, reasons::DENIED)
        .await
        .expect("store");
    let second = h
        .parents
        .fail_all_linked(&row.id, reasons::DENIED)
        .await
        .expect("store");
    assert_eq!((first, second), (1, 0));
}
