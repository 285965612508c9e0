//! id-server's own recovery scenarios (U1–U17 in `docs/differences-from-id-server.md`),
//! restated where our contract differs: the cap fails the parent, and a stale token is never
//! handed out.

use std::time::Duration;

use idenfy_core::{
    Flow, ParentStatus, RecreateLock, RowId, RowStatus, ScanRef, VerificationStatus,
    memory::MemoryLock,
    reasons,
    resolver::{Outcome, ResolveError},
    testing::ManualClock,
};

use crate::support::{Harness, NowForTests, Seed, owner, start_time};

const TTL: Duration = Duration::from_secs(30);

/// U1.
#[tokio::test]
async fn lock_is_exclusive_until_released() {
    let lock = MemoryLock::new(ManualClock::new(start_time()));
    let row = RowId::generate(start_time());
    let first = lock.acquire(&row, TTL).await.expect("lock answers");
    assert!(first.is_some());
    assert!(
        lock.acquire(&row, TTL)
            .await
            .expect("lock answers")
            .is_none()
    );
    assert!(
        lock.release(&first.expect("held"))
            .await
            .expect("lock answers")
    );
    assert!(
        lock.acquire(&row, TTL)
            .await
            .expect("lock answers")
            .is_some()
    );
}

/// U2, restated: each environment has its own lock (the Valkey adapter prefixes
/// sandbox keys), so holding live `row-1` does not block sandbox `row-1`.
#[tokio::test]
async fn live_and_sandbox_locks_are_independent() {
    let clock = ManualClock::new(start_time());
    let (live, sandbox) = (MemoryLock::new(clock.clone()), MemoryLock::new(clock));
    let row = RowId::generate(start_time());
    assert!(
        live.acquire(&row, TTL)
            .await
            .expect("lock answers")
            .is_some()
    );
    assert!(
        sandbox
            .acquire(&row, TTL)
            .await
            .expect("lock answers")
            .is_some()
    );
}

/// U3.
#[tokio::test]
async fn cached_expired_row_under_cap_recovers_with_one_mint() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(r.outcome, Outcome::Recovered);
    assert_eq!(h.idenfy.mint_calls(), 1);
    assert_eq!(
        h.idenfy.mints_for(&row.parent_id),
        1,
        "minted for the same paid parent"
    );
    assert_eq!(
        r.view.idenfy_auth_token.as_ref().map(|t| t.expose()),
        Some("AUTH_NEW_1")
    );
    assert_eq!(r.view.idenfy_scan_ref, Some(ScanRef::new("SCAN_NEW_1")));
    assert_eq!(r.view.status, RowStatus::InProgress);
    assert_eq!(r.view.idenfy_verification_status, None);
    assert_eq!(r.view.recreation_count, 1);
    let stored = h.row(&row.id).await;
    assert_eq!(stored.scan_ref, ScanRef::new("SCAN_NEW_1"));
    assert_eq!(stored.recreation_count, 1);
    assert_eq!(stored.scan_ref_history.len(), 1);
    assert_eq!(
        stored.scan_ref_history[0].scan_ref,
        ScanRef::new("SCAN_OLD")
    );
    assert!(stored.recreation.claim.is_none(), "claim cleared");
    assert!(h.lock.held().is_empty(), "lock released");
}

/// U4.
#[tokio::test]
async fn poll_reporting_expired_marks_the_row_then_recovers() {
    let h = Harness::new();
    let row = h
        .seed(Seed {
            idenfy_says: Some(VerificationStatus::Expired),
            ..Seed::default()
        })
        .await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(r.outcome, Outcome::Recovered);
    assert_eq!(h.idenfy.mint_calls(), 1);
    assert_eq!(
        r.view.idenfy_auth_token.as_ref().map(|t| t.expose()),
        Some("AUTH_NEW_1")
    );
    let stored = h.row(&row.id).await;
    assert_eq!(
        stored.status,
        RowStatus::InProgress,
        "the row never became failed"
    );
    assert_eq!(
        stored.scan_ref_history[0].last_status,
        Some(VerificationStatus::Expired)
    );
}

/// U5, restated: our persist is guarded by the claim; when a peer took over an
/// expired claim and persisted first, we return the peer's token, never our orphan, and
/// the orphaned mint is recorded.
#[tokio::test]
async fn persist_miss_returns_the_peer_token_and_records_the_orphan() {
    use std::sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    };
    let peer: Arc<OnceLock<Arc<crate::support::TestSessions>>> = Arc::new(OnceLock::new());
    let clock_slot: Arc<OnceLock<ManualClock>> = Arc::new(OnceLock::new());
    let row_slot: Arc<OnceLock<RowId>> = Arc::new(OnceLock::new());
    let first = Arc::new(AtomicBool::new(true));
    let (peer_hook, clock_hook, row_hook) = (peer.clone(), clock_slot.clone(), row_slot.clone());
    let h = Harness::with(crate::support::Options {
        mint_delay: Some(idenfy_core::memory::delay(move || {
            let (peer, clock, row_id, first) = (
                peer_hook.clone(),
                clock_hook.clone(),
                row_hook.clone(),
                first.clone(),
            );
            async move {
                if first.swap(false, Ordering::SeqCst) {
                    // Our mint hangs past the claim; a peer recovers the row meanwhile.
                    clock
                        .get()
                        .expect("clock set")
                        .advance(Duration::from_secs(120));
                    let sessions = peer.get().expect("peer set");
                    let row =
                        idenfy_core::RowStore::get(sessions.rows(), row_id.get().expect("row set"))
                            .await
                            .expect("store")
                            .expect("row");
                    let r = sessions.resolve_row(row).await.expect("peer resolves");
                    assert_eq!(r.outcome, Outcome::Recovered);
                }
            }
        })),
        ..Default::default()
    });
    let _ = peer.set(h.replica());
    let _ = clock_slot.set(h.clock.clone());
    let row = h.seed(Seed::expired()).await;
    let _ = row_slot.set(row.id.clone());

    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(h.idenfy.mint_calls(), 2);
    assert_eq!(
        r.view.idenfy_auth_token.as_ref().map(|t| t.expose()),
        Some("AUTH_NEW_2"),
        "the peer's token"
    );
    assert_eq!(r.outcome, Outcome::RecoveredByPeer);
    let stored = h.row(&row.id).await;
    assert_eq!(stored.scan_ref, ScanRef::new("SCAN_NEW_2"));
    assert_eq!(stored.orphaned_mints.len(), 1);
    assert_eq!(
        stored.orphaned_mints[0].scan_ref,
        ScanRef::new("SCAN_NEW_1")
    );
    assert_eq!(stored.mint_attempts, 3, "the seed token plus both attempts");
    assert!(h.lock.held().is_empty());
}

/// U6, restated: at the cap we give up for good AND fail the parent (D9); no token.
#[tokio::test]
async fn cap_reached_gives_up_and_fails_the_parent() {
    let h = Harness::new();
    let row = h
        .seed(Seed {
            recreation_count: 10,
            ..Seed::expired()
        })
        .await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(r.outcome, Outcome::GaveUp);
    assert_eq!(h.idenfy.mint_calls(), 0);
    assert_eq!(
        r.view.idenfy_verification_status,
        Some(VerificationStatus::Expired)
    );
    assert_eq!(r.view.status, RowStatus::Failed);
    assert_eq!(r.view.idenfy_auth_token, None, "no stale token");
    let stored = h.row(&row.id).await;
    assert_eq!(stored.status, RowStatus::Failed);
    assert_eq!(
        stored.failure_reason.as_deref(),
        Some(reasons::RECREATION_LIMIT)
    );
    let parent = h.parent(&row).await;
    assert_eq!(parent.status, ParentStatus::VerificationFailed);
    assert_eq!(
        parent.failure_reason.as_deref(),
        Some(reasons::RECREATION_LIMIT)
    );
}

/// U7.
#[tokio::test]
async fn count_above_cap_also_gives_up() {
    let h = Harness::new();
    let row = h
        .seed(Seed {
            recreation_count: 11,
            ..Seed::expired()
        })
        .await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(h.idenfy.mint_calls(), 0);
    assert_eq!(
        r.view.idenfy_verification_status,
        Some(VerificationStatus::Expired)
    );
}

/// U8.
#[tokio::test]
async fn lock_held_elsewhere_and_row_still_expired_is_pending() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    let _held = h
        .lock
        .acquire(&row.id, TTL)
        .await
        .expect("lock")
        .expect("free");
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(r.outcome, Outcome::Pending);
    assert_eq!(h.idenfy.mint_calls(), 0);
    assert_eq!(r.view.idenfy_verification_status, None);
    assert_eq!(r.view.idenfy_auth_token, None);
    assert_eq!(r.view.idenfy_scan_ref, None);
    assert!(r.view.retry_after_ms.is_some());
}

/// U9.
#[tokio::test]
async fn lock_held_elsewhere_and_row_refreshed_returns_the_peer_token() {
    let h = Harness::new();
    let stale = h.seed(Seed::expired()).await;
    // A peer holds the lock and has already written a fresh token.
    let _held = h
        .lock
        .acquire(&stale.id, TTL)
        .await
        .expect("lock")
        .expect("free");
    refresh_as_peer(&h, &stale, "AUTH_PEER", "SCAN_PEER").await;
    let r = h.sessions.resolve_row(stale).await.expect("resolves");
    assert_eq!(h.idenfy.mint_calls(), 0);
    assert_eq!(r.outcome, Outcome::RecoveredByPeer);
    assert_eq!(
        r.view.idenfy_auth_token.as_ref().map(|t| t.expose()),
        Some("AUTH_PEER")
    );
    assert_eq!(r.view.status, RowStatus::InProgress);
}

/// U10, restated: a failed mint is not sticky EXPIRED (D10): pending, back-off, no write
/// of the token, lock released.
#[tokio::test]
async fn mint_failure_is_pending_not_expired() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    h.idenfy
        .push_mint_error(idenfy_core::IdenfyErrorKind::Server);
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(h.idenfy.mint_calls(), 1);
    assert_eq!(r.outcome, Outcome::Pending);
    assert_eq!(r.view.idenfy_verification_status, None);
    assert_eq!(r.view.idenfy_auth_token, None);
    let stored = h.row(&row.id).await;
    assert_eq!(
        stored.scan_ref,
        ScanRef::new("SCAN_OLD"),
        "no token written"
    );
    assert_eq!(stored.recreation.last_error.as_deref(), Some("server"));
    assert!(stored.recreation.next_attempt_at.is_some());
    assert!(stored.recreation.claim.is_none(), "claim released");
    assert!(h.lock.held().is_empty());
}

/// U11.
#[tokio::test]
async fn cached_approved_is_returned_without_any_io() {
    let h = Harness::new();
    let row = h.seed(Seed::decided(VerificationStatus::Approved)).await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(r.outcome, Outcome::Final);
    assert_eq!(
        r.view.idenfy_verification_status,
        Some(VerificationStatus::Approved)
    );
    assert_eq!(r.view.status, RowStatus::Complete);
    assert_eq!(
        (h.idenfy.mint_calls(), h.idenfy.total_status_calls()),
        (0, 0)
    );
    assert_eq!(h.row(&row.id).await, row, "no write");
    assert!(h.lock.held().is_empty());
}

/// U12.
#[tokio::test]
async fn cached_denied_is_returned_without_any_io() {
    let h = Harness::new();
    let row = h.seed(Seed::decided(VerificationStatus::Denied)).await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(
        r.view.idenfy_verification_status,
        Some(VerificationStatus::Denied)
    );
    assert_eq!(r.view.status, RowStatus::Failed);
    assert_eq!(
        (h.idenfy.mint_calls(), h.idenfy.total_status_calls()),
        (0, 0)
    );
}

/// U13.
#[tokio::test]
async fn cached_suspected_is_returned_without_any_io() {
    let h = Harness::new();
    let row = h.seed(Seed::decided(VerificationStatus::Suspected)).await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(
        r.view.idenfy_verification_status,
        Some(VerificationStatus::Suspected)
    );
    assert_eq!(
        (h.idenfy.mint_calls(), h.idenfy.total_status_calls()),
        (0, 0)
    );
    assert_eq!(h.row(&row.id).await, row, "no write");
    assert!(h.lock.held().is_empty());
}

/// U14.
#[tokio::test]
async fn poll_active_stores_the_status_and_takes_no_lock() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(r.outcome, Outcome::Polled);
    assert_eq!(
        r.view.idenfy_verification_status,
        Some(VerificationStatus::Active)
    );
    assert_eq!(
        r.view.idenfy_auth_token.as_ref().map(|t| t.expose()),
        Some("AUTH_OLD")
    );
    assert_eq!(h.idenfy.mint_calls(), 0);
    assert_eq!(h.idenfy.status_calls(&row.scan_ref), 1);
    let stored = h.row(&row.id).await;
    assert_eq!(stored.verification_status, Some(VerificationStatus::Active));
    assert_eq!(stored.last_checked_at, Some(h.clock.now_for_tests()));
    assert!(h.lock.held().is_empty());
}

/// U15.
#[tokio::test]
async fn poll_approved_completes_the_row() {
    let h = Harness::new();
    let row = h
        .seed(Seed {
            idenfy_says: Some(VerificationStatus::Approved),
            ..Seed::default()
        })
        .await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(
        r.view.idenfy_verification_status,
        Some(VerificationStatus::Approved)
    );
    assert_eq!(r.view.status, RowStatus::Complete);
    let stored = h.row(&row.id).await;
    assert_eq!(stored.status, RowStatus::Complete);
    assert!(stored.is_final, "a status-API decision is final");
}

/// U16.
#[tokio::test]
async fn clean_hands_rows_recover_the_same_way() {
    let h = Harness::new();
    let row = h
        .seed(Seed {
            flow: Flow::CleanHands,
            ..Seed::expired()
        })
        .await;
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(r.outcome, Outcome::Recovered);
    assert_eq!(h.idenfy.mints_for(&row.parent_id), 1);
    assert_eq!(r.view.recreation_count, 1);
}

/// U17.
#[tokio::test]
async fn after_recovery_the_lock_is_free_and_rows_are_independent() {
    let h = Harness::new();
    let gov = h.seed(Seed::expired()).await;
    let other = RowId::generate(start_time());
    h.sessions
        .resolve(gov.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert!(h.lock.acquire(&gov.id, TTL).await.expect("lock").is_some());
    assert!(h.lock.acquire(&other, TTL).await.expect("lock").is_some());
}

/// Step 1: somebody else's row, an unknown id and a malformed id all look the same.
#[tokio::test]
async fn owner_check_hides_existence() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    let stranger = idenfy_core::SigDigest::parse("someone-else").expect("valid");
    for (id, who) in [
        (row.id.as_str(), &stranger),
        ("65a1b2c3d4e5f60718293a4b", &owner()),
        ("not-an-id", &owner()),
    ] {
        let err = h
            .sessions
            .resolve(id, who)
            .await
            .expect_err("must not resolve");
        assert!(matches!(err, ResolveError::NotFound), "{id}");
    }
    assert_eq!(
        h.idenfy.mint_calls(),
        0,
        "a stranger cannot trigger a billed mint"
    );
}

/// Writes a fresh token into the row as a peer that won would have.
pub async fn refresh_as_peer(
    h: &Harness,
    row: &idenfy_core::IdenfyRow,
    token: &str,
    scan_ref: &str,
) {
    use idenfy_core::{Claim, MintedToken, Nonce, Recreated, RecreationLimits, RowStore};
    let now = h.clock.now_for_tests();
    let claim = Claim {
        claim_id: Nonce::random(),
        claimed_until: now + chrono::Duration::seconds(60),
    };
    let limits = RecreationLimits {
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
    let token = MintedToken {
        auth_token: idenfy_core::AuthToken::new(token),
        scan_ref: ScanRef::new(scan_ref),
        redirect_url: String::new(),
        expires_at: Some(now + chrono::Duration::hours(1)),
        minted_at: now,
    };
    let recreated = Recreated {
        token,
        old_minted_at: row.token_minted_at,
        old_status: Some(VerificationStatus::Expired),
    };
    assert!(
        h.rows
            .persist_recreation(&row.id, &row.scan_ref, &claim.claim_id, &recreated, now)
            .await
            .expect("store")
            .applied()
    );
}
