//! Session creation: one mint per logical request, reuse of a recent APPROVED row, and no
//! half-made session when the mint fails (D23 and D24 in `docs/differences-from-id-server.md`).

use std::time::Duration;

use idenfy_core::{
    CreationIntent, Flow, IdenfyErrorKind, IntentState, IntentStore, MintedToken, Nonce, ParentId,
    ParentStatus, ParentStore, RowId, ScanRef, VerificationStatus,
    creation::{CreateError, CreateRequest},
};

use crate::support::{Harness, NowForTests, Seed, owner};

fn request(key: Option<&str>) -> CreateRequest {
    CreateRequest {
        sig_digest: owner(),
        flow: Flow::GovId,
        idempotency_key: key.map(str::to_owned),
    }
}

#[tokio::test]
async fn creates_a_parent_and_its_row_with_one_mint() {
    let h = Harness::new();
    let created = h
        .sessions
        .create_session(request(None))
        .await
        .expect("created");
    assert_eq!(h.idenfy.mint_calls(), 1);
    assert_eq!(
        h.idenfy.mints_for(&created.session_id),
        1,
        "clientId is the parent id"
    );
    let parent = h
        .parents
        .get(Flow::GovId, &created.session_id)
        .await
        .expect("store")
        .expect("parent");
    assert_eq!(parent.status, ParentStatus::InProgress);
    assert_eq!(
        parent.idenfy_session_id.as_ref(),
        Some(&created.idenfy_session_id)
    );
    let row = h.row(&created.idenfy_session_id).await;
    assert_eq!(row.parent_id, created.session_id);
    assert_eq!(
        created
            .idenfy
            .idenfy_auth_token
            .as_ref()
            .map(|t| t.expose()),
        Some("AUTH_NEW_1")
    );
    assert!(!created.reused && !created.replayed);
}

#[tokio::test]
async fn a_retry_with_the_same_key_returns_the_first_result_without_minting() {
    let h = Harness::new();
    let first = h
        .sessions
        .create_session(request(Some("key-1")))
        .await
        .expect("created");
    let again = h
        .sessions
        .create_session(request(Some("key-1")))
        .await
        .expect("replayed");
    assert_eq!(h.idenfy.mint_calls(), 1);
    assert_eq!(
        (again.session_id, again.idenfy_session_id),
        (first.session_id, first.idenfy_session_id)
    );
    assert!(again.replayed);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_mint_once() {
    let h = Harness::new();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let sessions = h.sessions.clone();
        tasks.push(tokio::spawn(async move {
            sessions.create_session(request(Some("same-key"))).await
        }));
    }
    let mut sessions = Vec::new();
    for task in tasks {
        match task.await.expect("joined") {
            Ok(created) => sessions.push(created.session_id),
            Err(CreateError::InProgress { .. }) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    let again = h
        .sessions
        .create_session(request(Some("same-key")))
        .await
        .expect("replayed");
    assert_eq!(h.idenfy.mint_calls(), 1);
    assert!(sessions.iter().all(|id| *id == again.session_id));
}

#[tokio::test]
async fn the_same_key_for_another_request_is_refused() {
    let h = Harness::new();
    h.sessions
        .create_session(request(Some("key-2")))
        .await
        .expect("created");
    let other = CreateRequest {
        flow: Flow::CleanHands,
        ..request(Some("key-2"))
    };
    assert!(matches!(
        h.sessions.create_session(other).await,
        Err(CreateError::KeyMismatch)
    ));
    let bad = request(Some("has spaces in it"));
    assert!(matches!(
        h.sessions.create_session(bad).await,
        Err(CreateError::InvalidKey)
    ));
}

#[tokio::test]
async fn a_recent_approved_row_of_the_same_flow_is_reused() {
    let h = Harness::new();
    let approved = h.seed(Seed::decided(VerificationStatus::Approved)).await;
    let created = h
        .sessions
        .create_session(request(None))
        .await
        .expect("created");
    assert!(created.reused);
    assert_eq!(created.idenfy_session_id, approved.id);
    assert_eq!(h.idenfy.mint_calls(), 0);
    // Another flow does not reuse it (D24).
    let other = h
        .sessions
        .create_session(CreateRequest {
            flow: Flow::CleanHands,
            ..request(None)
        })
        .await
        .expect("created");
    assert!(!other.reused);
    assert_eq!(h.idenfy.mint_calls(), 1);
}

#[tokio::test]
async fn an_approved_row_older_than_five_days_is_not_reused() {
    let h = Harness::new();
    h.seed(Seed::decided(VerificationStatus::Approved)).await;
    h.clock.advance(Duration::from_secs(5 * 24 * 3600 + 1));
    let created = h
        .sessions
        .create_session(request(None))
        .await
        .expect("created");
    assert!(!created.reused);
    assert_eq!(h.idenfy.mint_calls(), 1);
}

#[tokio::test]
async fn a_failed_mint_leaves_no_session_and_the_retry_succeeds() {
    let h = Harness::new();
    h.idenfy.push_mint_error(IdenfyErrorKind::Money);
    let err = h
        .sessions
        .create_session(request(Some("key-3")))
        .await
        .expect_err("mint failed");
    assert!(matches!(err, CreateError::Idenfy(e) if e.kind == IdenfyErrorKind::Money));
    assert!(
        h.parents.all().is_empty(),
        "no parent that counts as a session"
    );
    assert!(h.rows.all().is_empty(), "no half-made row");
    let created = h
        .sessions
        .create_session(request(Some("key-3")))
        .await
        .expect("retry works");
    assert_eq!(h.idenfy.mint_calls(), 2);
    assert_eq!(h.parents.all().len(), 1);
    assert_eq!(
        h.row(&created.idenfy_session_id).await.scan_ref,
        ScanRef::new("SCAN_NEW_1")
    );
}

/// A crash after the mint (token saved in the intent, row never written) is finished by
/// the retry with the token already paid for.
#[tokio::test]
async fn a_retry_after_a_crash_uses_the_token_already_minted() {
    let h = Harness::new();
    let now = h.clock.now_for_tests();
    let token = MintedToken {
        auth_token: idenfy_core::AuthToken::new("AUTH_PAID"),
        scan_ref: ScanRef::new("SCAN_PAID"),
        redirect_url: String::new(),
        expires_at: Some(now + chrono::Duration::hours(1)),
        minted_at: now,
    };
    let intent = CreationIntent {
        key: "create:key-4".into(),
        sig_digest: owner(),
        flow: Flow::GovId,
        parent_id: ParentId::generate(now),
        row_id: RowId::generate(now),
        state: IntentState::Pending,
        claimed_until: now + chrono::Duration::seconds(60),
        claim_id: Nonce::random(),
        minted: Some(token),
        created_at: now,
        unknown_mint_outcomes: 0,
        last_unknown_mint_at: None,
    };
    h.intents.insert(&intent).await.expect("stored");
    assert!(
        matches!(
            h.sessions.create_session(request(Some("key-4"))).await,
            Err(CreateError::InProgress { retry_after_ms }) if retry_after_ms <= 1000
        ),
        "a retry soon, not at the end of the 60 s claim"
    );
    h.clock.advance(Duration::from_secs(61));
    let created = h
        .sessions
        .create_session(request(Some("key-4")))
        .await
        .expect("finished");
    assert_eq!(h.idenfy.mint_calls(), 0, "no second payment");
    assert_eq!(created.session_id, intent.parent_id);
    assert_eq!(
        h.row(&created.idenfy_session_id).await.scan_ref,
        ScanRef::new("SCAN_PAID")
    );
}

#[tokio::test]
async fn get_or_create_for_a_parent_made_elsewhere_mints_once() {
    let h = Harness::new();
    let now = h.clock.now_for_tests();
    let parent = idenfy_core::Parent {
        id: ParentId::generate(now),
        flow: Flow::GovId,
        sig_digest: Some(owner()),
        status: ParentStatus::InProgress,
        idenfy_session_id: None,
        failure_reason: None,
        created_at: Some(now),
    };
    h.parents.insert(&parent).await.expect("stored");
    let first = h
        .sessions
        .ensure_idenfy_session(parent.id.as_str(), None)
        .await
        .expect("created");
    let second = h
        .sessions
        .ensure_idenfy_session(parent.id.as_str(), None)
        .await
        .expect("existing");
    assert_eq!(h.idenfy.mint_calls(), 1);
    assert_eq!(first.idenfy_session_id, second.idenfy_session_id);
    assert!(second.replayed);
    let linked = h
        .parents
        .get(Flow::GovId, &parent.id)
        .await
        .expect("store")
        .expect("parent");
    assert_eq!(linked.idenfy_session_id, Some(first.idenfy_session_id));
}

#[tokio::test]
async fn get_or_create_refuses_finished_or_unknown_parents() {
    let h = Harness::new();
    let now = h.clock.now_for_tests();
    let parent = idenfy_core::Parent {
        id: ParentId::generate(now),
        flow: Flow::CleanHands,
        sig_digest: Some(owner()),
        status: ParentStatus::Refunded,
        idenfy_session_id: None,
        failure_reason: None,
        created_at: Some(now),
    };
    h.parents.insert(&parent).await.expect("stored");
    assert!(matches!(
        h.sessions
            .ensure_idenfy_session(parent.id.as_str(), None)
            .await,
        Err(CreateError::ParentNotInProgress)
    ));
    assert!(matches!(
        h.sessions.ensure_idenfy_session("bad", None).await,
        Err(CreateError::ParentNotFound)
    ));
    assert_eq!(h.idenfy.mint_calls(), 0);
}
