//! A paid token is never dropped: the write that records a mint is retried through store
//! faults while the claim is ours, and past that the token is journaled and attached later
//! (or recorded as an orphan), never minted again by this process.

use std::time::Duration;

use idenfy_core::{
    Clock, Flow, IdenfyErrorKind, IdenfyRow, IntentState, IntentStore, ParentStatus, RowStatus,
    ScanRef, StoreError,
    creation::{CreateError, CreateRequest},
    journal::MintJournal,
    resolver::{Outcome, Resolution},
};

use crate::support::{Harness, Seed, owner};

/// A poll of `row` by its owner.
async fn resolve(h: &Harness, row: &IdenfyRow) -> Resolution {
    h.sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves")
}

fn create(key: &str) -> CreateRequest {
    CreateRequest {
        sig_digest: owner(),
        flow: Flow::GovId,
        idempotency_key: Some(key.to_owned()),
    }
}

#[tokio::test]
async fn a_store_fault_right_after_a_recovery_mint_is_retried_and_the_row_carries_the_token() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    h.rows.fail_next("persist_recreation", 5);

    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("the persist succeeds on a retry");

    assert_eq!(r.outcome, Outcome::Recovered);
    assert_eq!(h.idenfy.mint_calls(), 1, "one billed token");
    let stored = h.row(&row.id).await;
    assert_eq!(
        stored.scan_ref,
        ScanRef::new("SCAN_NEW_1"),
        "the row carries it"
    );
    assert!(stored.orphaned_mints.is_empty());
    assert!(h.journal.pending().is_empty(), "nothing needed the journal");
}

#[tokio::test]
async fn a_store_away_past_the_claim_journals_the_token_and_it_is_attached_when_the_store_returns()
{
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    h.rows.fail_next("persist_recreation", u32::MAX);

    let err = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect_err("the store never took the token");
    assert!(matches!(
        err,
        idenfy_core::resolver::ResolveError::Store(StoreError::Unavailable(_))
    ));
    let journaled = h.journal.pending();
    assert_eq!(journaled.len(), 1, "the paid token is journaled");
    assert_eq!(journaled[0].scan_ref, ScanRef::new("SCAN_NEW_1"));
    assert!(
        !format!("{journaled:?}").contains("AUTH_NEW_1"),
        "Debug never shows the token"
    );
    assert_eq!(h.row(&row.id).await.scan_ref, ScanRef::new("SCAN_OLD"));

    // The store is back; the claim has lapsed meanwhile.
    h.rows.fail_next("persist_recreation", 0);
    h.clock.advance(Duration::from_secs(120));
    let report = h.sessions.replay_journal().await;
    assert_eq!(report.attached, 1, "{report:?}");
    assert!(h.journal.pending().is_empty());
    let stored = h.row(&row.id).await;
    assert_eq!(stored.scan_ref, ScanRef::new("SCAN_NEW_1"));
    assert_eq!(stored.status, RowStatus::InProgress);
    assert_eq!(stored.recreation_count, 1);
    let r = resolve(&h, &row).await;
    assert_eq!(
        r.view.idenfy_auth_token.as_ref().map(|t| t.expose()),
        Some("AUTH_NEW_1"),
        "the user gets the journaled token"
    );
    assert_eq!(h.idenfy.mint_calls(), 1, "and nothing was minted again");
}

#[tokio::test]
async fn the_next_poll_of_this_process_attaches_a_journaled_token_instead_of_minting() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    h.rows.fail_next("persist_recreation", u32::MAX);
    let _ = h.sessions.resolve(row.id.as_str(), &owner()).await;
    assert_eq!(h.journal.pending().len(), 1);

    h.rows.fail_next("persist_recreation", 0);
    h.clock.advance(Duration::from_secs(120));
    let r = resolve(&h, &row).await;
    assert_eq!(r.view.idenfy_scan_ref, Some(ScanRef::new("SCAN_NEW_1")));
    assert_eq!(h.idenfy.mint_calls(), 1, "one billed token");
    assert!(h.journal.pending().is_empty(), "settled");
}

#[tokio::test]
async fn a_journaled_token_whose_row_was_recovered_by_a_peer_is_recorded_as_an_orphan() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    h.rows.fail_next("persist_recreation", u32::MAX);
    let _ = h.sessions.resolve(row.id.as_str(), &owner()).await;
    h.rows.fail_next("persist_recreation", 0);
    h.clock.advance(Duration::from_secs(120));
    // Another replica (no journal of ours) recovers the row first.
    let r = h
        .replica()
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(r.outcome, Outcome::Recovered);

    let report = h.sessions.replay_journal().await;
    assert_eq!(report.orphaned, 1, "{report:?}");
    let stored = h.row(&row.id).await;
    assert_eq!(
        stored.scan_ref,
        ScanRef::new("SCAN_NEW_2"),
        "the peer's token stays"
    );
    let orphans: Vec<_> = stored
        .orphaned_mints
        .iter()
        .map(|o| o.scan_ref.clone())
        .collect();
    assert_eq!(
        orphans,
        vec![ScanRef::new("SCAN_NEW_1")],
        "recorded, not silent"
    );
    assert!(h.journal.pending().is_empty());
}

#[tokio::test]
async fn a_journal_entry_stays_while_the_store_still_fails() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    h.rows.fail_next("persist_recreation", u32::MAX);
    let _ = h.sessions.resolve(row.id.as_str(), &owner()).await;

    let report = h.sessions.replay_journal().await;
    assert_eq!(report.kept, 1, "{report:?}");
    assert_eq!(h.journal.pending().len(), 1);
}

#[tokio::test]
async fn a_store_fault_right_after_a_creation_mint_is_retried_and_the_intent_carries_the_token() {
    let h = Harness::new();
    h.intents.fail_next("record_mint", 3);
    let created = h
        .sessions
        .create_session(create("k-1"))
        .await
        .expect("created after retries");
    assert_eq!(h.idenfy.mint_calls(), 1);
    let replay = h
        .sessions
        .create_session(create("k-1"))
        .await
        .expect("replayed");
    assert!(replay.replayed);
    assert_eq!(replay.idenfy_session_id, created.idenfy_session_id);
    assert_eq!(h.idenfy.mint_calls(), 1, "one billed token");
}

#[tokio::test]
async fn a_creation_whose_intent_the_store_will_not_take_is_journaled_and_its_retry_uses_the_token()
{
    let h = Harness::new();
    h.intents.fail_next("record_mint", u32::MAX);
    let err = h
        .sessions
        .create_session(create("k-2"))
        .await
        .expect_err("the store never took the token");
    assert!(
        matches!(err, CreateError::Store(StoreError::Unavailable(_))),
        "{err:?}"
    );
    assert_eq!(h.journal.pending().len(), 1, "the paid token is journaled");

    h.intents.fail_next("record_mint", 0);
    // The client retries with the same key once the first attempt's claim has lapsed.
    h.clock.advance(Duration::from_secs(120));
    let created = h
        .sessions
        .create_session(create("k-2"))
        .await
        .expect("the retry finishes");
    assert_eq!(
        created.idenfy.idenfy_scan_ref,
        Some(ScanRef::new("SCAN_NEW_1")),
        "with the journaled token"
    );
    assert_eq!(h.idenfy.mint_calls(), 1, "one billed token");
    assert!(h.journal.pending().is_empty());
}

#[tokio::test]
async fn a_journaled_creation_token_is_replayed_into_its_intent() {
    let h = Harness::new();
    h.intents.fail_next("record_mint", u32::MAX);
    let _ = h.sessions.create_session(create("k-3")).await;
    h.intents.fail_next("record_mint", 0);

    let report = h.sessions.replay_journal().await;
    assert_eq!(report.attached, 1, "{report:?}");
    let intent = h
        .intents
        .get("create:k-3")
        .await
        .expect("read")
        .expect("the intent exists");
    assert_eq!(intent.state, IntentState::Pending);
    assert_eq!(
        intent.minted.map(|token| token.scan_ref),
        Some(ScanRef::new("SCAN_NEW_1"))
    );
    // A retry after the claim lapsed finishes with it.
    h.clock.advance(Duration::from_secs(120));
    let created = h
        .sessions
        .create_session(create("k-3"))
        .await
        .expect("the retry finishes");
    assert_eq!(
        created.idenfy.idenfy_scan_ref,
        Some(ScanRef::new("SCAN_NEW_1"))
    );
    assert_eq!(h.idenfy.mint_calls(), 1);
    let _ = h.clock.now();
}

#[tokio::test]
async fn a_token_call_with_an_unknown_outcome_is_recorded_and_backs_off_longer() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    h.idenfy.push_mint_error(IdenfyErrorKind::Timeout);

    let r = resolve(&h, &row).await;
    assert_eq!(
        r.outcome,
        Outcome::Pending,
        "never EXPIRED while recovery is possible"
    );
    let stored = h.row(&row.id).await;
    assert_eq!(stored.unknown_mint_outcomes, 1, "recorded on the row");
    assert_eq!(stored.last_unknown_mint_at, Some(h.clock.now()));
    let backoff = h.sessions.settings().unknown_outcome_backoff;
    assert!(
        r.view.retry_after_ms >= Some(u64::try_from(backoff.as_millis()).expect("ms")),
        "{:?}",
        r.view.retry_after_ms
    );

    // Within the long back-off nothing is minted, even though a normal failure's back-off
    // (2 s) has passed.
    h.clock.advance(Duration::from_secs(10));
    let r = resolve(&h, &row).await;
    assert_eq!(r.outcome, Outcome::Pending);
    assert_eq!(h.idenfy.mint_calls(), 1, "only the lost call");

    h.clock.advance(backoff);
    let r = resolve(&h, &row).await;
    assert_eq!(r.outcome, Outcome::Recovered);
    assert_eq!(h.idenfy.mint_calls(), 2);
}

#[tokio::test]
async fn a_connect_failure_is_a_known_outcome_with_the_normal_back_off() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    h.idenfy.push_mint_error(IdenfyErrorKind::Connect);
    let _ = h.sessions.resolve(row.id.as_str(), &owner()).await;
    assert_eq!(h.row(&row.id).await.unknown_mint_outcomes, 0);
    h.clock.advance(Duration::from_secs(3));
    let r = resolve(&h, &row).await;
    assert_eq!(r.outcome, Outcome::Recovered);
}

#[tokio::test]
async fn unknown_outcomes_are_bounded_per_row_then_it_gives_up_and_fails_the_parent() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    let max = h.sessions.settings().max_unknown_mint_outcomes;
    for _ in 0..max {
        h.idenfy.push_mint_error(IdenfyErrorKind::Transport);
        let r = resolve(&h, &row).await;
        assert_eq!(r.outcome, Outcome::Pending);
        h.clock
            .advance(h.sessions.settings().unknown_outcome_backoff + Duration::from_secs(1));
    }
    let r = resolve(&h, &row).await;
    assert_eq!(r.outcome, Outcome::GaveUp);
    assert_eq!(
        h.idenfy.mint_calls(),
        u64::from(max),
        "at most one possibly billed token per unknown outcome, and no more calls"
    );
    let stored = h.row(&row.id).await;
    assert_eq!(stored.status, RowStatus::Failed);
    assert_eq!(
        h.parent(&stored).await.status,
        ParentStatus::VerificationFailed
    );
}

#[tokio::test]
async fn a_creation_token_call_with_an_unknown_outcome_defers_its_retries_and_is_bounded() {
    let h = Harness::new();
    h.idenfy.push_mint_error(IdenfyErrorKind::Timeout);
    let err = h
        .sessions
        .create_session(create("k-4"))
        .await
        .expect_err("no answer");
    assert!(matches!(err, CreateError::Idenfy(_)), "{err:?}");
    let intent = h
        .intents
        .get("create:k-4")
        .await
        .expect("read")
        .expect("the intent exists");
    assert_eq!(intent.unknown_mint_outcomes, 1, "recorded on the intent");
    assert_eq!(intent.last_unknown_mint_at, Some(h.clock.now()));

    // A retry soon after must not pay again.
    h.clock.advance(Duration::from_secs(5));
    let err = h
        .sessions
        .create_session(create("k-4"))
        .await
        .expect_err("backing off");
    assert!(matches!(err, CreateError::BackingOff { .. }), "{err:?}");
    assert_eq!(h.idenfy.mint_calls(), 1);

    // After the back-off it mints; lost answers beyond the bound give up for good.
    let max = h.sessions.settings().max_unknown_mint_outcomes;
    for _ in 1..max {
        h.clock
            .advance(h.sessions.settings().unknown_outcome_backoff + Duration::from_secs(1));
        h.idenfy.push_mint_error(IdenfyErrorKind::Timeout);
        let _ = h.sessions.create_session(create("k-4")).await;
    }
    h.clock
        .advance(h.sessions.settings().unknown_outcome_backoff + Duration::from_secs(1));
    let err = h
        .sessions
        .create_session(create("k-4"))
        .await
        .expect_err("bounded");
    assert!(
        matches!(err, CreateError::UnknownOutcomes { count } if count == max),
        "{err:?}"
    );
    assert_eq!(
        h.idenfy.mint_calls(),
        u64::from(max),
        "one possibly billed token per unknown outcome"
    );
}

#[tokio::test]
async fn a_persist_that_landed_although_its_answer_was_lost_is_not_an_orphan() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    h.rows.fail_next("persist_recreation_answer", 1);

    let r = resolve(&h, &row).await;

    assert_eq!(r.outcome, Outcome::Recovered);
    assert_eq!(r.view.idenfy_scan_ref, Some(ScanRef::new("SCAN_NEW_1")));
    let stored = h.row(&row.id).await;
    assert!(
        stored.orphaned_mints.is_empty(),
        "{:?}",
        stored.orphaned_mints
    );
    assert_eq!(h.idenfy.mint_calls(), 1);
}
