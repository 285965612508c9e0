//! The [`crate::RowStore`] suite.

use futures::future::join_all;

use super::{fixtures, secs};
use crate::{
    Flow, IdenfyRow, MintFailure, Nonce, OrphanedMint, Recreated, Recreation, RecreationLimits,
    RowId, RowStatus, RowStore, StatusUpdate, StoreError, SupersededScanRef, Timestamp,
    VerificationStatus, Write, reasons,
};
use chrono::TimeDelta;

const LIMITS: RecreationLimits = RecreationLimits {
    cap: 10,
    max_attempts: 30,
};

async fn put<S: RowStore>(store: &S, row: IdenfyRow) -> IdenfyRow {
    store.insert(&row).await.expect("insert");
    row
}

async fn reload<S: RowStore>(store: &S, id: &RowId) -> IdenfyRow {
    store.get(id).await.expect("get").expect("the row exists")
}

fn expired(at: Timestamp) -> IdenfyRow {
    let mut row = fixtures::row(at);
    row.verification_status = Some(VerificationStatus::Expired);
    row
}

fn approved(at: Timestamp, flow: Flow, sig: &crate::SigDigest) -> IdenfyRow {
    let mut row = fixtures::row(at);
    row.sig_digest = sig.clone();
    row.flow = flow;
    row.status = RowStatus::Complete;
    row.verification_status = Some(VerificationStatus::Approved);
    row.is_final = true;
    row
}

fn update(status: VerificationStatus, is_final: bool) -> StatusUpdate {
    StatusUpdate {
        status,
        is_final,
        row_status: None,
        failure_reason: None,
        checked_at: None,
    }
}

fn final_update(status: VerificationStatus) -> StatusUpdate {
    StatusUpdate {
        row_status: status.decided_row_status(),
        failure_reason: status.failure_reason().map(str::to_owned),
        status,
        is_final: true,
        checked_at: None,
    }
}

/// EXPIRED marker, claim and persist of a replacement token at `at`; the row after.
async fn recreate<S: RowStore>(store: &S, row: &IdenfyRow, at: Timestamp) -> IdenfyRow {
    let w = store
        .mark_expired(&row.id, &row.scan_ref, at)
        .await
        .expect("mark_expired");
    assert_eq!(w, Write::Applied, "mark_expired on a fresh row");
    let claim = fixtures::claim(at + secs(60));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &claim, at)
        .await
        .expect("claim");
    assert_eq!(w, Write::Applied, "claim_recreation on an EXPIRED row");
    let recreated = Recreated {
        token: fixtures::token(at),
        old_minted_at: row.token_minted_at,
        old_status: Some(VerificationStatus::Expired),
    };
    let w = store
        .persist_recreation(&row.id, &row.scan_ref, &claim.claim_id, &recreated, at)
        .await
        .expect("persist_recreation");
    assert_eq!(w, Write::Applied, "persist_recreation under the claim");
    reload(store, &row.id).await
}

/// `get` returns exactly what `insert` stored (every field, unknown statuses verbatim),
/// and `None` for an unknown id.
pub async fn get_returns_the_inserted_row<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let plain = put(store, fixtures::row(now)).await;
    assert_eq!(
        store.get(&plain.id).await.expect("get"),
        Some(plain.clone())
    );

    let mut rich = fixtures::row(now);
    rich.flow = Flow::CleanHands;
    rich.verification_status = Some(VerificationStatus::Unknown("SOMETHING_NEW".into()));
    rich.failure_reason = Some("an earlier reason".into());
    rich.status = RowStatus::InProgress;
    rich.recreation_count = 3;
    rich.token_minted_at = None;
    rich.token_expires_at = None;
    rich.last_polled_at = Some(now - secs(5));
    rich.last_checked_at = Some(now - secs(4));
    rich.mint_attempts = 5;
    rich.unknown_mint_outcomes = 2;
    rich.last_unknown_mint_at = Some(now - secs(3));
    rich.recreation = Recreation {
        claim: Some(fixtures::claim(now + secs(60))),
        next_attempt_at: Some(now + secs(2)),
        last_error: Some("transient: server".into()),
        consecutive_failures: 2,
    };
    rich.scan_ref_history = vec![
        SupersededScanRef {
            scan_ref: fixtures::scan_ref(),
            minted_at: Some(now - secs(7200)),
            superseded_at: now - secs(3600),
            last_status: Some(VerificationStatus::Expired),
            is_final: false,
        },
        SupersededScanRef {
            scan_ref: fixtures::scan_ref(),
            minted_at: None,
            superseded_at: now - secs(60),
            last_status: None,
            is_final: true,
        },
    ];
    rich.orphaned_mints = vec![OrphanedMint {
        scan_ref: fixtures::scan_ref(),
        minted_at: now - secs(30),
    }];
    rich.updated_at = None;
    let rich = put(store, rich).await;
    assert_eq!(store.get(&rich.id).await.expect("get"), Some(rich));

    let mut decided = approved(now, Flow::GovId, &fixtures::sig_digest());
    decided.status = RowStatus::Failed;
    decided.verification_status = Some(VerificationStatus::Denied);
    decided.failure_reason = Some(reasons::DENIED.into());
    let decided = put(store, decided).await;
    assert_eq!(store.get(&decided.id).await.expect("get"), Some(decided));

    assert_eq!(store.get(&RowId::generate(now)).await.expect("get"), None);
}

/// `insert` MUST return `Conflict` when the id exists, and keep the stored row.
pub async fn insert_rejects_a_duplicate_id<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let first = put(store, fixtures::row(now)).await;
    let mut twin = fixtures::row(now);
    twin.id = first.id.clone();
    let result = store.insert(&twin).await;
    assert!(
        matches!(result, Err(StoreError::Conflict)),
        "duplicate id: {result:?}"
    );
    assert_eq!(reload(store, &first.id).await, first);
    assert_eq!(
        store.find_by_scan_ref(&twin.scan_ref).await.expect("find"),
        None
    );
}

/// `insert` MUST return `Conflict` when the scanRef is some row's current scanRef.
pub async fn insert_rejects_a_duplicate_scan_ref<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let first = put(store, fixtures::row(now)).await;
    let mut twin = fixtures::row(now);
    twin.scan_ref = first.scan_ref.clone();
    let result = store.insert(&twin).await;
    assert!(
        matches!(result, Err(StoreError::Conflict)),
        "duplicate scanRef: {result:?}"
    );
    assert_eq!(store.get(&twin.id).await.expect("get"), None);
    assert_eq!(
        store.find_by_scan_ref(&first.scan_ref).await.expect("find"),
        Some(first)
    );
}

/// `find_by_scan_ref` finds a row by its CURRENT scanRef only.
pub async fn find_by_scan_ref_finds_the_current_scan_ref<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, fixtures::row(now)).await;
    let _other = put(store, fixtures::row(now)).await;
    assert_eq!(
        store.find_by_scan_ref(&row.scan_ref).await.expect("find"),
        Some(row.clone())
    );
    assert_eq!(
        store
            .find_by_scan_ref(&fixtures::scan_ref())
            .await
            .expect("find"),
        None
    );

    let after = recreate(store, &row, now + secs(1)).await;
    assert_eq!(
        store.find_by_scan_ref(&row.scan_ref).await.expect("find"),
        None,
        "superseded"
    );
    assert_eq!(
        store.find_by_scan_ref(&after.scan_ref).await.expect("find"),
        Some(after)
    );
}

/// `find_by_superseded_scan_ref` finds a row by a scanRef in its history, never by the
/// current one.
pub async fn find_by_superseded_scan_ref_finds_history_entries<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, fixtures::row(now)).await;
    assert_eq!(
        store
            .find_by_superseded_scan_ref(&row.scan_ref)
            .await
            .expect("find"),
        None
    );

    let once = recreate(store, &row, now + secs(1)).await;
    let twice = recreate(store, &once, now + secs(2)).await;
    for old in [&row.scan_ref, &once.scan_ref] {
        let found = store.find_by_superseded_scan_ref(old).await.expect("find");
        assert_eq!(found, Some(twice.clone()), "superseded {old}");
    }
    assert_eq!(
        store
            .find_by_superseded_scan_ref(&twice.scan_ref)
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        store
            .find_by_superseded_scan_ref(&fixtures::scan_ref())
            .await
            .expect("find"),
        None
    );
}

/// `find_reusable`: the newest `complete` + `APPROVED` row of the sigDigest and flow
/// created at or after `since`; other flows, sigDigests, statuses and older rows ignored.
pub async fn find_reusable_picks_the_newest_approved_complete_row<S: RowStore>(store: &S) {
    let t0 = fixtures::now();
    let since = t0 - TimeDelta::days(5);
    let sig = fixtures::sig_digest();
    let _too_old = put(store, approved(t0 - TimeDelta::days(6), Flow::GovId, &sig)).await;
    let _older = put(store, approved(t0 - TimeDelta::days(2), Flow::GovId, &sig)).await;
    let newest = put(store, approved(t0 - TimeDelta::days(1), Flow::GovId, &sig)).await;
    let clean_hands = put(store, approved(t0 - secs(3600), Flow::CleanHands, &sig)).await;
    let _other_sig = put(
        store,
        approved(t0 - secs(60), Flow::GovId, &fixtures::sig_digest()),
    )
    .await;
    let mut denied = approved(t0 - secs(1800), Flow::GovId, &sig);
    denied.status = RowStatus::Failed;
    denied.verification_status = Some(VerificationStatus::Denied);
    let _denied = put(store, denied).await;
    let mut not_complete = approved(t0 - secs(1200), Flow::GovId, &sig);
    not_complete.status = RowStatus::InProgress;
    not_complete.is_final = false;
    let _not_complete = put(store, not_complete).await;
    let mut complete_not_approved = approved(t0 - secs(600), Flow::GovId, &sig);
    complete_not_approved.verification_status = Some(VerificationStatus::Reviewing);
    let _complete_not_approved = put(store, complete_not_approved).await;

    let found = store
        .find_reusable(&sig, Flow::GovId, since)
        .await
        .expect("find");
    assert_eq!(found, Some(newest.clone()), "newest approved gov-id row");
    let found = store
        .find_reusable(&sig, Flow::CleanHands, since)
        .await
        .expect("find");
    assert_eq!(found, Some(clean_hands), "flows are separate");
    let found = store
        .find_reusable(&sig, Flow::GovId, newest.created_at)
        .await
        .expect("find");
    assert_eq!(found, Some(newest.clone()), "`since` is inclusive");
    let later = newest.created_at + TimeDelta::milliseconds(1);
    assert_eq!(
        store
            .find_reusable(&sig, Flow::GovId, later)
            .await
            .expect("find"),
        None
    );
    let unknown = fixtures::sig_digest();
    assert_eq!(
        store
            .find_reusable(&unknown, Flow::GovId, since)
            .await
            .expect("find"),
        None
    );
}

/// `list_recent`: rows of the sigDigest (both flows, any status) created at or after
/// `since`, newest first, at most `limit`.
pub async fn list_recent_is_newest_first_within_the_window<S: RowStore>(store: &S) {
    let t0 = fixtures::now();
    let since = t0 - TimeDelta::days(5);
    let sig = fixtures::sig_digest();
    let at = |age: TimeDelta, flow: Flow| {
        let mut row = fixtures::row(t0 - age);
        row.sig_digest = sig.clone();
        row.flow = flow;
        row
    };
    let _too_old = put(store, at(TimeDelta::days(6), Flow::GovId)).await;
    let edge = put(store, at(TimeDelta::days(5), Flow::GovId)).await;
    let d3 = put(store, at(TimeDelta::days(3), Flow::GovId)).await;
    let mut failed = at(TimeDelta::days(2), Flow::CleanHands);
    failed.status = RowStatus::Failed;
    let d2 = put(store, failed).await;
    let d1 = put(store, at(TimeDelta::days(1), Flow::GovId)).await;
    let d0 = put(store, at(TimeDelta::zero(), Flow::GovId)).await;
    let _other_sig = put(store, fixtures::row(t0)).await;

    let listed = store.list_recent(&sig, since, 10).await.expect("list");
    assert_eq!(
        listed,
        vec![d0.clone(), d1.clone(), d2, d3, edge],
        "newest first, `since` inclusive"
    );
    let listed = store.list_recent(&sig, since, 2).await.expect("list");
    assert_eq!(listed, vec![d0, d1], "at most `limit`");
    let unknown = fixtures::sig_digest();
    assert_eq!(
        store.list_recent(&unknown, since, 10).await.expect("list"),
        vec![]
    );
}

/// `claim_poll` matches once, then not again until `lastPolledAt` is strictly earlier
/// than `due_before`; it sets `lastPolledAt = now`.
pub async fn claim_poll_matches_once_per_interval<S: RowStore>(store: &S) {
    let t0 = fixtures::now();
    let interval = secs(15);
    let row = put(store, fixtures::row(t0)).await;
    let poll = |now: Timestamp| store.claim_poll(&row.id, &row.scan_ref, now - interval, now);

    assert_eq!(
        poll(t0).await.expect("poll"),
        Write::Applied,
        "never polled"
    );
    let after = reload(store, &row.id).await;
    assert_eq!(after.last_polled_at, Some(t0));
    assert_eq!(
        IdenfyRow {
            last_polled_at: None,
            ..after
        },
        row,
        "only lastPolledAt changes"
    );
    assert_eq!(
        poll(t0).await.expect("poll"),
        Write::NotMatched,
        "just polled"
    );
    assert_eq!(
        poll(t0 + secs(10)).await.expect("poll"),
        Write::NotMatched,
        "not due"
    );
    assert_eq!(
        poll(t0 + interval).await.expect("poll"),
        Write::NotMatched,
        "strictly earlier"
    );
    let due = t0 + interval + TimeDelta::milliseconds(1);
    assert_eq!(poll(due).await.expect("poll"), Write::Applied, "due");
    assert_eq!(reload(store, &row.id).await.last_polled_at, Some(due));
}

/// `claim_poll` never matches a final row, another scanRef or an unknown id.
pub async fn claim_poll_skips_final_rows_and_other_scan_refs<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let due = now - secs(15);
    let decided = put(store, approved(now, Flow::GovId, &fixtures::sig_digest())).await;
    let w = store
        .claim_poll(&decided.id, &decided.scan_ref, due, now)
        .await
        .expect("poll");
    assert_eq!(w, Write::NotMatched, "final row");
    assert_eq!(reload(store, &decided.id).await, decided);

    let row = put(store, fixtures::row(now)).await;
    let w = store
        .claim_poll(&row.id, &fixtures::scan_ref(), due, now)
        .await
        .expect("poll");
    assert_eq!(w, Write::NotMatched, "other scanRef");
    let w = store
        .claim_poll(&RowId::generate(now), &row.scan_ref, due, now)
        .await
        .expect("poll");
    assert_eq!(w, Write::NotMatched, "unknown id");
    assert_eq!(reload(store, &row.id).await, row);
}

/// Of many concurrent `claim_poll`s for one row, exactly one matches (`docs/resolver.md`,
/// step 4b).
pub async fn claim_poll_admits_one_of_concurrent_pollers<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, fixtures::row(now)).await;
    let results =
        join_all((0..8).map(|_| store.claim_poll(&row.id, &row.scan_ref, now - secs(15), now)))
            .await;
    let applied = results
        .into_iter()
        .filter(|r| matches!(r, Ok(Write::Applied)))
        .count();
    assert_eq!(applied, 1, "exactly one poller wins");
}

/// `apply_status` sets the verification status, `final`, and the row status, reason and
/// `lastCheckedAt` when given, plus `updatedAt`; it returns the row after the write.
pub async fn apply_status_writes_and_returns_the_row<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, fixtures::row(now)).await;
    let mut approve = final_update(VerificationStatus::Approved);
    approve.checked_at = Some(now + secs(1));
    let after = store
        .apply_status(&row.id, &row.scan_ref, &approve, now + secs(2))
        .await
        .expect("apply");
    let expected = IdenfyRow {
        verification_status: Some(VerificationStatus::Approved),
        is_final: true,
        status: RowStatus::Complete,
        last_checked_at: Some(now + secs(1)),
        updated_at: Some(now + secs(2)),
        ..row
    };
    assert_eq!(after, Some(expected.clone()), "the row after the write");
    assert_eq!(reload(store, &expected.id).await, expected);

    let row = put(store, fixtures::row(now)).await;
    let deny = final_update(VerificationStatus::Denied);
    let after = store
        .apply_status(&row.id, &row.scan_ref, &deny, now)
        .await
        .expect("apply");
    let after = after.expect("matched");
    assert_eq!(after.status, RowStatus::Failed);
    assert_eq!(after.failure_reason.as_deref(), Some(reasons::DENIED));
    assert_eq!(after.last_checked_at, None, "checked_at not given");
}

/// Fields whose update is `None` (row status, reason, `lastCheckedAt`) are left alone.
pub async fn apply_status_leaves_unset_fields_alone<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let mut row = fixtures::row(now);
    row.failure_reason = Some("kept".into());
    row.last_checked_at = Some(now - secs(30));
    let row = put(store, row).await;
    let reviewing = update(VerificationStatus::Reviewing, false);
    let after = store
        .apply_status(&row.id, &row.scan_ref, &reviewing, now)
        .await
        .expect("apply");
    let expected = IdenfyRow {
        verification_status: Some(VerificationStatus::Reviewing),
        updated_at: Some(now),
        ..row
    };
    assert_eq!(after, Some(expected));
}

/// A final row is never written again: no status replaces it, and a duplicate of the
/// final decision is a no-op returning `None`.
pub async fn apply_status_never_replaces_a_final_decision<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, fixtures::row(now)).await;
    let deny = final_update(VerificationStatus::Denied);
    let decided = store
        .apply_status(&row.id, &row.scan_ref, &deny, now)
        .await
        .expect("apply");
    let decided = decided.expect("first decision applies");
    for (update, what) in [
        (
            update(VerificationStatus::Active, false),
            "non-final ACTIVE",
        ),
        (update(VerificationStatus::Expired, false), "EXPIRED"),
        (
            update(VerificationStatus::Approved, false),
            "non-final APPROVED",
        ),
        (
            final_update(VerificationStatus::Approved),
            "another final decision",
        ),
        (deny.clone(), "duplicate final decision"),
    ] {
        let result = store
            .apply_status(&row.id, &row.scan_ref, &update, now + secs(1))
            .await;
        assert_eq!(result.expect("apply"), None, "{what}");
    }
    assert_eq!(reload(store, &row.id).await, decided);
}

/// A non-final decision can still be re-checked and made final, once.
pub async fn apply_status_finalises_a_non_final_decision<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, fixtures::row(now)).await;
    let tentative = update(VerificationStatus::Approved, false);
    let after = store
        .apply_status(&row.id, &row.scan_ref, &tentative, now)
        .await
        .expect("apply");
    let after = after.expect("non-final decision applies");
    assert!(!after.is_final);
    assert_eq!(
        after.status,
        RowStatus::InProgress,
        "row status untouched without row_status"
    );
    let approve = final_update(VerificationStatus::Approved);
    let after = store
        .apply_status(&row.id, &row.scan_ref, &approve, now)
        .await
        .expect("apply");
    assert!(after.is_some_and(|row| row.is_final && row.status == RowStatus::Complete));
    let again = store
        .apply_status(&row.id, &row.scan_ref, &approve, now)
        .await
        .expect("apply");
    assert_eq!(again, None, "duplicate is a no-op");
}

/// Over a stored expiry (EXPIRED or EXPIRED-DELETED), a non-decision never applies (an
/// ACTIVE that lost a race never un-expires a row); a decision does.
pub async fn apply_status_never_unexpires_a_row<S: RowStore>(store: &S) {
    let now = fixtures::now();
    for stored in [
        VerificationStatus::Expired,
        VerificationStatus::ExpiredDeleted,
    ] {
        let mut row = fixtures::row(now);
        row.verification_status = Some(stored.clone());
        let row = put(store, row).await;
        for status in [
            VerificationStatus::Active,
            VerificationStatus::Reviewing,
            VerificationStatus::Expired,
            VerificationStatus::ExpiredDeleted,
            VerificationStatus::Unknown("SOMETHING_NEW".into()),
        ] {
            let update = update(status.clone(), false);
            let result = store
                .apply_status(&row.id, &row.scan_ref, &update, now)
                .await;
            assert_eq!(result.expect("apply"), None, "{status} over {stored}");
        }
        assert_eq!(reload(store, &row.id).await, row);
        let approve = final_update(VerificationStatus::Approved);
        let after = store
            .apply_status(&row.id, &row.scan_ref, &approve, now)
            .await
            .expect("apply");
        let after = after.expect("a decision applies over an expiry");
        assert_eq!(
            after.verification_status,
            Some(VerificationStatus::Approved)
        );
        assert_eq!(after.status, RowStatus::Complete);
    }
}

/// `apply_status` for another scanRef (a superseded one included) or an unknown id
/// returns `None` and writes nothing.
pub async fn apply_status_ignores_other_scan_refs<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let approve = final_update(VerificationStatus::Approved);
    let row = put(store, fixtures::row(now)).await;
    let result = store
        .apply_status(&row.id, &fixtures::scan_ref(), &approve, now)
        .await;
    assert_eq!(result.expect("apply"), None, "other scanRef");
    let result = store
        .apply_status(&RowId::generate(now), &row.scan_ref, &approve, now)
        .await;
    assert_eq!(result.expect("apply"), None, "unknown id");
    assert_eq!(reload(store, &row.id).await, row);

    let after = recreate(store, &row, now + secs(1)).await;
    let result = store
        .apply_status(&row.id, &row.scan_ref, &approve, now + secs(2))
        .await;
    assert_eq!(result.expect("apply"), None, "superseded scanRef");
    assert_eq!(reload(store, &row.id).await, after);
}

/// `mark_expired` sets verification EXPIRED and `updatedAt` only (row `status`
/// untouched), on the current scanRef of a non-final row.
pub async fn mark_expired_sets_only_the_verification_status<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let mut row = fixtures::row(now);
    row.verification_status = Some(VerificationStatus::Active);
    row.last_polled_at = Some(now - secs(1));
    row.recreation.last_error = Some("kept".into());
    let row = put(store, row).await;
    let w = store
        .mark_expired(&row.id, &row.scan_ref, now + secs(1))
        .await
        .expect("mark");
    assert_eq!(w, Write::Applied);
    let expected = IdenfyRow {
        verification_status: Some(VerificationStatus::Expired),
        updated_at: Some(now + secs(1)),
        ..row.clone()
    };
    assert_eq!(reload(store, &row.id).await, expected);

    let other = put(store, fixtures::row(now)).await;
    let w = store
        .mark_expired(&other.id, &fixtures::scan_ref(), now)
        .await
        .expect("mark");
    assert_eq!(w, Write::NotMatched, "other scanRef");
    let w = store
        .mark_expired(&RowId::generate(now), &other.scan_ref, now)
        .await
        .expect("mark");
    assert_eq!(w, Write::NotMatched, "unknown id");
    assert_eq!(reload(store, &other.id).await, other);

    let decided = put(store, approved(now, Flow::GovId, &fixtures::sig_digest())).await;
    let w = store
        .mark_expired(&decided.id, &decided.scan_ref, now)
        .await
        .expect("mark");
    assert_eq!(w, Write::NotMatched, "final row");
    assert_eq!(reload(store, &decided.id).await, decided);
}

/// `claim_recreation` sets the claim, increments `mintAttempts` and sets `updatedAt`.
pub async fn claim_recreation_sets_the_claim_and_counts_the_attempt<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, expired(now)).await;
    let claim = fixtures::claim(now + secs(60));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &claim, now + secs(1))
        .await;
    assert_eq!(w.expect("claim"), Write::Applied);
    let expected = IdenfyRow {
        recreation: Recreation {
            claim: Some(claim),
            ..row.recreation.clone()
        },
        mint_attempts: row.mint_attempts + 1,
        updated_at: Some(now + secs(1)),
        ..row.clone()
    };
    assert_eq!(reload(store, &row.id).await, expected);
}

/// `claim_recreation` needs the current scanRef with verification EXPIRED, not final,
/// not given up by us (row `failed` at the recreation limit).
pub async fn claim_recreation_requires_an_expired_current_token<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let claim = fixtures::claim(now + secs(60));
    let mut cases = Vec::new();
    cases.push((fixtures::row(now), "no status yet"));
    let mut active = fixtures::row(now);
    active.verification_status = Some(VerificationStatus::Active);
    cases.push((active, "ACTIVE"));
    let mut final_expired = expired(now);
    final_expired.is_final = true;
    cases.push((final_expired, "final"));
    let mut gave_up = expired(now);
    gave_up.status = RowStatus::Failed;
    gave_up.failure_reason = Some(crate::reasons::RECREATION_LIMIT.to_owned());
    cases.push((gave_up, "given up at the limit"));
    for (row, what) in cases {
        let row = put(store, row).await;
        let w = store
            .claim_recreation(&row.id, &row.scan_ref, LIMITS, &claim, now)
            .await;
        assert_eq!(w.expect("claim"), Write::NotMatched, "{what}");
        assert_eq!(reload(store, &row.id).await, row, "{what}: unchanged");
    }
    let row = put(store, expired(now)).await;
    let w = store
        .claim_recreation(&row.id, &fixtures::scan_ref(), LIMITS, &claim, now)
        .await;
    assert_eq!(w.expect("claim"), Write::NotMatched, "other scanRef");
    let w = store
        .claim_recreation(&RowId::generate(now), &row.scan_ref, LIMITS, &claim, now)
        .await;
    assert_eq!(w.expect("claim"), Write::NotMatched, "unknown id");
    assert_eq!(reload(store, &row.id).await, row);
}

/// A row id-server failed on its own EXPIRED webhook (`status: failed`, its reason, no
/// recreation count) is claimed like any expired row, and the persist makes it
/// `in_progress` again with the new token.
pub async fn claim_recreation_takes_a_row_id_server_failed_on_expiry<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let mut row = expired(now);
    row.status = RowStatus::Failed;
    row.failure_reason = Some(crate::reasons::EXPIRED.to_owned());
    row.recreation_count = 0;
    let row = put(store, row).await;
    assert!(!row.gave_up(), "id-server's expiry is not our giving up");
    let claim = fixtures::claim(now + secs(60));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &claim, now)
        .await;
    assert_eq!(w.expect("claim"), Write::Applied);
    let token = fixtures::token(now + secs(1));
    let recreated = Recreated {
        token: token.clone(),
        old_minted_at: row.token_minted_at,
        old_status: row.verification_status.clone(),
    };
    let w = store
        .persist_recreation(
            &row.id,
            &row.scan_ref,
            &claim.claim_id,
            &recreated,
            now + secs(2),
        )
        .await;
    assert_eq!(w.expect("persist"), Write::Applied);
    let after = reload(store, &row.id).await;
    assert_eq!(after.status, RowStatus::InProgress);
    assert_eq!(after.scan_ref, token.scan_ref);
    assert_eq!(after.failure_reason, None);
    assert_eq!(after.recreation_count, 1);
    assert!(!after.is_expired());
}

/// `claim_recreation` needs `recreationCount < cap` and `mintAttempts < max_attempts`.
pub async fn claim_recreation_respects_the_cap_and_the_attempts<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let limits = RecreationLimits {
        cap: 3,
        max_attempts: 5,
    };
    let claim = || fixtures::claim(now + secs(60));
    let claim_row = |row: IdenfyRow| async move {
        let row = put(store, row).await;
        store
            .claim_recreation(&row.id, &row.scan_ref, limits, &claim(), now)
            .await
            .expect("claim")
    };
    let with = |recreation_count: u32, mint_attempts: u32| {
        let mut row = expired(now);
        row.recreation_count = recreation_count;
        row.mint_attempts = mint_attempts;
        row
    };
    assert_eq!(
        claim_row(with(3, 1)).await,
        Write::NotMatched,
        "cap reached"
    );
    assert_eq!(
        claim_row(with(4, 1)).await,
        Write::NotMatched,
        "over the cap"
    );
    assert_eq!(claim_row(with(2, 1)).await, Write::Applied, "under the cap");
    assert_eq!(
        claim_row(with(0, 5)).await,
        Write::NotMatched,
        "attempts exhausted"
    );
    assert_eq!(
        claim_row(with(0, 4)).await,
        Write::Applied,
        "one attempt left"
    );
    assert_eq!(
        claim_row(with(0, 0)).await,
        Write::Applied,
        "no attempt yet"
    );
}

/// A live claim excludes every other; once `claimedUntil` is strictly in the past a
/// peer may take it over.
pub async fn claim_recreation_is_exclusive_while_the_claim_lives<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, expired(now)).await;
    let first = fixtures::claim(now + secs(60));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &first, now)
        .await;
    assert_eq!(w.expect("claim"), Write::Applied);
    for at in [now, now + secs(30), now + secs(60)] {
        let peer = fixtures::claim(at + secs(60));
        let w = store
            .claim_recreation(&row.id, &row.scan_ref, LIMITS, &peer, at)
            .await;
        assert_eq!(w.expect("claim"), Write::NotMatched, "claim live at {at}");
    }
    let later = now + secs(61);
    let takeover = fixtures::claim(later + secs(60));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &takeover, later)
        .await;
    assert_eq!(
        w.expect("claim"),
        Write::Applied,
        "expired claim taken over"
    );
    let after = reload(store, &row.id).await;
    assert_eq!(after.recreation.claim, Some(takeover));
    assert_eq!(after.mint_attempts, row.mint_attempts + 2);
}

/// Of many concurrent `claim_recreation`s for one row, exactly one matches.
pub async fn claim_recreation_admits_one_of_concurrent_claims<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, expired(now)).await;
    let claims: Vec<_> = (0..8).map(|_| fixtures::claim(now + secs(60))).collect();
    let results = join_all(
        claims
            .iter()
            .map(|claim| store.claim_recreation(&row.id, &row.scan_ref, LIMITS, claim, now)),
    )
    .await;
    let applied = results
        .into_iter()
        .filter(|r| matches!(r, Ok(Write::Applied)))
        .count();
    assert_eq!(applied, 1, "exactly one claimant wins");
    assert_eq!(
        reload(store, &row.id).await.mint_attempts,
        row.mint_attempts + 1
    );
}

/// `release_claim` works only for the holder: it unsets the claim, records
/// `lastError`/`nextAttemptAt` and increments `consecutiveFailures`.
pub async fn release_claim_only_by_the_holder<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, expired(now)).await;
    let first = fixtures::claim(now + secs(60));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &first, now)
        .await;
    assert_eq!(w.expect("claim"), Write::Applied);
    let failure = MintFailure {
        last_error: "transient: server".into(),
        next_attempt_at: now + secs(2),
        outcome_unknown: false,
    };

    let w = store
        .release_claim(&row.id, &Nonce::random(), &failure, now)
        .await;
    assert_eq!(w.expect("release"), Write::NotMatched, "not the holder");
    assert_eq!(
        reload(store, &row.id).await.recreation.claim,
        Some(first.clone())
    );
    let w = store
        .release_claim(&RowId::generate(now), &first.claim_id, &failure, now)
        .await;
    assert_eq!(w.expect("release"), Write::NotMatched, "unknown id");

    let w = store
        .release_claim(&row.id, &first.claim_id, &failure, now + secs(1))
        .await;
    assert_eq!(w.expect("release"), Write::Applied);
    let after = reload(store, &row.id).await;
    let expected = Recreation {
        claim: None,
        next_attempt_at: Some(now + secs(2)),
        last_error: Some("transient: server".into()),
        consecutive_failures: 1,
    };
    assert_eq!(after.recreation, expected);
    assert_eq!(after.scan_ref, row.scan_ref);
    assert_eq!(after.verification_status, Some(VerificationStatus::Expired));
    let w = store
        .release_claim(&row.id, &first.claim_id, &failure, now + secs(1))
        .await;
    assert_eq!(w.expect("release"), Write::NotMatched, "already released");

    let second = fixtures::claim(now + secs(70));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &second, now + secs(3))
        .await;
    assert_eq!(
        w.expect("claim"),
        Write::Applied,
        "a released claim frees the row"
    );
    let failure = MintFailure {
        last_error: "money: 402".into(),
        next_attempt_at: now + secs(7),
        outcome_unknown: false,
    };
    let w = store
        .release_claim(&row.id, &second.claim_id, &failure, now + secs(4))
        .await;
    assert_eq!(w.expect("release"), Write::Applied);
    let after = reload(store, &row.id).await;
    assert_eq!(after.recreation.consecutive_failures, 2);
    assert_eq!(after.recreation.last_error.as_deref(), Some("money: 402"));
    assert_eq!(after.recreation.next_attempt_at, Some(now + secs(7)));
    assert_eq!(after.mint_attempts, row.mint_attempts + 2);
    assert_eq!(
        after.unknown_mint_outcomes, 0,
        "known failures are not counted"
    );
    assert_eq!(after.last_unknown_mint_at, None);
}

/// A failure whose outcome is unknown is counted on the row (`mintUnknownOutcomes`, with
/// its time), and the count survives a successful recovery: it bounds the row's life.
pub async fn release_claim_counts_unknown_outcomes_for_good<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, expired(now)).await;
    for (n, at) in [(1, now + secs(1)), (2, now + secs(5))] {
        let claim = fixtures::claim(at + secs(60));
        let w = store
            .claim_recreation(&row.id, &row.scan_ref, LIMITS, &claim, at)
            .await;
        assert_eq!(w.expect("claim"), Write::Applied);
        let failure = MintFailure {
            last_error: "timeout".into(),
            next_attempt_at: at + secs(60),
            outcome_unknown: true,
        };
        let w = store
            .release_claim(&row.id, &claim.claim_id, &failure, at)
            .await;
        assert_eq!(w.expect("release"), Write::Applied);
        let after = reload(store, &row.id).await;
        assert_eq!(after.unknown_mint_outcomes, n);
        assert_eq!(after.last_unknown_mint_at, Some(at));
    }
    let claim = fixtures::claim(now + secs(100));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &claim, now + secs(70))
        .await;
    assert_eq!(w.expect("claim"), Write::Applied);
    let recreated = Recreated {
        token: fixtures::token(now + secs(71)),
        old_minted_at: row.token_minted_at,
        old_status: row.verification_status.clone(),
    };
    let w = store
        .persist_recreation(
            &row.id,
            &row.scan_ref,
            &claim.claim_id,
            &recreated,
            now + secs(72),
        )
        .await;
    assert_eq!(w.expect("persist"), Write::Applied);
    let after = reload(store, &row.id).await;
    assert_eq!(after.unknown_mint_outcomes, 2, "kept across a recovery");
    assert_eq!(after.last_unknown_mint_at, Some(now + secs(5)));
}

/// `persist_recreation` swaps in the new token and resets the session state, pushes the
/// old scanRef to the history, increments `recreationCount` and clears the claim and the
/// back-off. The current token's mint time becomes the new token's.
pub async fn persist_recreation_swaps_in_the_new_token<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let mut row = fixtures::row(now);
    row.verification_status = Some(VerificationStatus::Active);
    row.failure_reason = Some("stale".into());
    row.last_polled_at = Some(now - secs(20));
    row.last_checked_at = Some(now - secs(20));
    row.recreation_count = 2;
    let row = put(store, row).await;
    let w = store
        .mark_expired(&row.id, &row.scan_ref, now)
        .await
        .expect("mark");
    assert_eq!(w, Write::Applied);
    // One failed attempt first, so there is back-off state to clear.
    let failed = fixtures::claim(now + secs(60));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &failed, now)
        .await;
    assert_eq!(w.expect("claim"), Write::Applied);
    let failure = MintFailure {
        last_error: "timeout".into(),
        next_attempt_at: now + secs(2),
        outcome_unknown: false,
    };
    let w = store
        .release_claim(&row.id, &failed.claim_id, &failure, now)
        .await;
    assert_eq!(w.expect("release"), Write::Applied);
    let claim = fixtures::claim(now + secs(63));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &claim, now + secs(3))
        .await;
    assert_eq!(w.expect("claim"), Write::Applied);
    let before = reload(store, &row.id).await;

    let token = fixtures::token(now + secs(4));
    let recreated = Recreated {
        token: token.clone(),
        old_minted_at: row.token_minted_at,
        old_status: Some(VerificationStatus::Expired),
    };
    let at = now + secs(5);
    let w = store
        .persist_recreation(&row.id, &row.scan_ref, &claim.claim_id, &recreated, at)
        .await;
    assert_eq!(w.expect("persist"), Write::Applied);
    let mut history = before.scan_ref_history.clone();
    history.push(SupersededScanRef {
        scan_ref: row.scan_ref.clone(),
        minted_at: row.token_minted_at,
        superseded_at: at,
        last_status: Some(VerificationStatus::Expired),
        is_final: false,
    });
    let expected = IdenfyRow {
        auth_token: token.auth_token.clone(),
        scan_ref: token.scan_ref.clone(),
        token_minted_at: Some(token.minted_at),
        token_expires_at: token.expires_at,
        status: RowStatus::InProgress,
        verification_status: None,
        failure_reason: None,
        is_final: false,
        last_polled_at: None,
        last_checked_at: None,
        recreation_count: 3,
        recreation: Recreation::default(),
        scan_ref_history: history,
        updated_at: Some(at),
        ..before.clone()
    };
    assert_eq!(reload(store, &row.id).await, expected);
    assert_eq!(
        expected.mint_attempts,
        row.mint_attempts + 2,
        "mintAttempts unchanged by persist"
    );
}

/// `persist_recreation` needs the old scanRef current, verification EXPIRED and the
/// caller's claim; otherwise nothing is written. A replay does not match.
pub async fn persist_recreation_requires_the_claim_and_the_expired_old_token<S: RowStore>(
    store: &S,
) {
    let now = fixtures::now();
    let row = put(store, expired(now)).await;
    let claim = fixtures::claim(now + secs(60));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &claim, now)
        .await;
    assert_eq!(w.expect("claim"), Write::Applied);
    let claimed = reload(store, &row.id).await;
    let recreated = Recreated {
        token: fixtures::token(now),
        old_minted_at: row.token_minted_at,
        old_status: Some(VerificationStatus::Expired),
    };
    let persist = |id: RowId, old: crate::ScanRef, claim_id: Nonce| {
        let recreated = recreated.clone();
        async move {
            store
                .persist_recreation(&id, &old, &claim_id, &recreated, now)
                .await
                .expect("persist")
        }
    };
    let w = persist(row.id.clone(), row.scan_ref.clone(), Nonce::random()).await;
    assert_eq!(w, Write::NotMatched, "not the claim holder");
    let w = persist(row.id.clone(), fixtures::scan_ref(), claim.claim_id.clone()).await;
    assert_eq!(w, Write::NotMatched, "other old scanRef");
    let w = persist(
        RowId::generate(now),
        row.scan_ref.clone(),
        claim.claim_id.clone(),
    )
    .await;
    assert_eq!(w, Write::NotMatched, "unknown id");
    assert_eq!(reload(store, &row.id).await, claimed);

    // A late decision for the old scanRef lands while the mint is in flight.
    let approve = final_update(VerificationStatus::Approved);
    let decided = store
        .apply_status(&row.id, &row.scan_ref, &approve, now)
        .await
        .expect("apply");
    let decided = decided.expect("a decision applies over EXPIRED");
    let w = persist(row.id.clone(), row.scan_ref.clone(), claim.claim_id.clone()).await;
    assert_eq!(w, Write::NotMatched, "no longer EXPIRED");
    assert_eq!(reload(store, &row.id).await, decided);

    let other = put(store, expired(now)).await;
    let claim = fixtures::claim(now + secs(60));
    let w = store
        .claim_recreation(&other.id, &other.scan_ref, LIMITS, &claim, now)
        .await;
    assert_eq!(w.expect("claim"), Write::Applied);
    let w = persist(
        other.id.clone(),
        other.scan_ref.clone(),
        claim.claim_id.clone(),
    )
    .await;
    assert_eq!(w, Write::Applied);
    let after = reload(store, &other.id).await;
    let w = persist(
        other.id.clone(),
        other.scan_ref.clone(),
        claim.claim_id.clone(),
    )
    .await;
    assert_eq!(w, Write::NotMatched, "replay");
    assert_eq!(reload(store, &other.id).await, after);
    assert_eq!(after.recreation_count, 1);
}

/// A claim that expired and was taken over can no longer persist; the new holder can.
pub async fn persist_recreation_after_a_takeover_is_rejected<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, expired(now)).await;
    let slow = fixtures::claim(now + secs(60));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &slow, now)
        .await;
    assert_eq!(w.expect("claim"), Write::Applied);
    let later = now + secs(61);
    let fast = fixtures::claim(later + secs(60));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &fast, later)
        .await;
    assert_eq!(w.expect("claim"), Write::Applied);

    let recreated = |at| Recreated {
        token: fixtures::token(at),
        old_minted_at: row.token_minted_at,
        old_status: Some(VerificationStatus::Expired),
    };
    let winner = recreated(later);
    let w = store
        .persist_recreation(&row.id, &row.scan_ref, &fast.claim_id, &winner, later)
        .await;
    assert_eq!(w.expect("persist"), Write::Applied);
    let loser = recreated(later + secs(1));
    let w = store
        .persist_recreation(
            &row.id,
            &row.scan_ref,
            &slow.claim_id,
            &loser,
            later + secs(1),
        )
        .await;
    assert_eq!(w.expect("persist"), Write::NotMatched, "claim taken over");
    let after = reload(store, &row.id).await;
    assert_eq!(after.scan_ref, winner.token.scan_ref);
    assert_eq!(after.recreation_count, 1);
}

/// `record_orphaned_mint` appends, in order, by id only.
pub async fn record_orphaned_mint_appends<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, fixtures::row(now)).await;
    let first = OrphanedMint {
        scan_ref: fixtures::scan_ref(),
        minted_at: now,
    };
    let second = OrphanedMint {
        scan_ref: fixtures::scan_ref(),
        minted_at: now + secs(1),
    };
    for orphan in [&first, &second] {
        assert_eq!(
            store
                .record_orphaned_mint(&row.id, orphan)
                .await
                .expect("record"),
            Write::Applied
        );
    }
    let expected = IdenfyRow {
        orphaned_mints: vec![first.clone(), second],
        ..row
    };
    assert_eq!(reload(store, &expected.id).await, expected);
    let w = store
        .record_orphaned_mint(&RowId::generate(now), &first)
        .await
        .expect("record");
    assert_eq!(w, Write::NotMatched, "unknown id");
}

/// `give_up` on the current, EXPIRED, non-final scanRef: row `failed` with the reason,
/// claim unset, `updatedAt` set; no later claim matches.
pub async fn give_up_fails_the_row_and_drops_the_claim<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, expired(now)).await;
    let claim = fixtures::claim(now + secs(60));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &claim, now)
        .await;
    assert_eq!(w.expect("claim"), Write::Applied);
    let claimed = reload(store, &row.id).await;
    let reason = reasons::RECREATION_LIMIT;
    let w = store
        .give_up(&row.id, &row.scan_ref, reason, now + secs(1))
        .await;
    assert_eq!(w.expect("give up"), Write::Applied);
    let expected = IdenfyRow {
        status: RowStatus::Failed,
        failure_reason: Some(reason.into()),
        recreation: Recreation {
            claim: None,
            ..claimed.recreation.clone()
        },
        updated_at: Some(now + secs(1)),
        ..claimed
    };
    let after = reload(store, &row.id).await;
    assert_eq!(after, expected);
    assert!(after.gave_up());
    let next = fixtures::claim(now + secs(120));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &next, now + secs(90))
        .await;
    assert_eq!(
        w.expect("claim"),
        Write::NotMatched,
        "nothing to recover any more"
    );
}

/// `give_up` does not match a row that is not EXPIRED, is final, has another scanRef or
/// does not exist.
pub async fn give_up_is_conditional<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let reason = reasons::RECREATION_LIMIT;
    let active = put(store, fixtures::row(now)).await;
    let w = store
        .give_up(&active.id, &active.scan_ref, reason, now)
        .await;
    assert_eq!(w.expect("give up"), Write::NotMatched, "not EXPIRED");
    assert_eq!(reload(store, &active.id).await, active);
    let mut final_expired = expired(now);
    final_expired.is_final = true;
    let final_expired = put(store, final_expired).await;
    let w = store
        .give_up(&final_expired.id, &final_expired.scan_ref, reason, now)
        .await;
    assert_eq!(w.expect("give up"), Write::NotMatched, "final");
    let row = put(store, expired(now)).await;
    let w = store
        .give_up(&row.id, &fixtures::scan_ref(), reason, now)
        .await;
    assert_eq!(w.expect("give up"), Write::NotMatched, "other scanRef");
    let w = store
        .give_up(&RowId::generate(now), &row.scan_ref, reason, now)
        .await;
    assert_eq!(w.expect("give up"), Write::NotMatched, "unknown id");
    assert_eq!(reload(store, &row.id).await, row);
}

/// `update_superseded` writes the history entry's `lastStatus`/`final` and nothing else,
/// until the entry is final.
pub async fn update_superseded_touches_only_the_history_entry<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, fixtures::row(now)).await;
    let after = recreate(store, &row, now + secs(1)).await;
    let with_entry = |status: VerificationStatus, is_final: bool| {
        let mut expected = after.clone();
        expected.scan_ref_history[0].last_status = Some(status);
        expected.scan_ref_history[0].is_final = is_final;
        expected
    };
    let w = store
        .update_superseded(
            &row.id,
            &row.scan_ref,
            &VerificationStatus::Reviewing,
            false,
        )
        .await;
    assert_eq!(w.expect("update"), Write::Applied);
    assert_eq!(
        reload(store, &row.id).await,
        with_entry(VerificationStatus::Reviewing, false)
    );
    let w = store
        .update_superseded(&row.id, &row.scan_ref, &VerificationStatus::Denied, true)
        .await;
    assert_eq!(w.expect("update"), Write::Applied);
    let decided = with_entry(VerificationStatus::Denied, true);
    assert_eq!(
        reload(store, &row.id).await,
        decided,
        "current session untouched"
    );

    let w = store
        .update_superseded(&row.id, &row.scan_ref, &VerificationStatus::Approved, true)
        .await;
    assert_eq!(w.expect("update"), Write::NotMatched, "entry already final");
    let w = store
        .update_superseded(
            &row.id,
            &after.scan_ref,
            &VerificationStatus::Approved,
            true,
        )
        .await;
    assert_eq!(
        w.expect("update"),
        Write::NotMatched,
        "the current scanRef is not in the history"
    );
    let w = store
        .update_superseded(
            &row.id,
            &fixtures::scan_ref(),
            &VerificationStatus::Approved,
            true,
        )
        .await;
    assert_eq!(w.expect("update"), Write::NotMatched, "unknown scanRef");
    let w = store
        .update_superseded(
            &RowId::generate(now),
            &row.scan_ref,
            &VerificationStatus::Approved,
            true,
        )
        .await;
    assert_eq!(w.expect("update"), Write::NotMatched, "unknown id");
    assert_eq!(reload(store, &row.id).await, decided);
}

/// Conditional writes on one row leave every other row alone.
pub async fn writes_touch_only_their_own_row<S: RowStore>(store: &S) {
    let now = fixtures::now();
    let row = put(store, expired(now)).await;
    let bystander = put(store, expired(now)).await;
    let claim = fixtures::claim(now + secs(60));
    let w = store
        .claim_recreation(&row.id, &row.scan_ref, LIMITS, &claim, now)
        .await;
    assert_eq!(w.expect("claim"), Write::Applied);
    let w = store
        .give_up(&row.id, &row.scan_ref, reasons::RECREATION_LIMIT, now)
        .await;
    assert_eq!(w.expect("give up"), Write::Applied);
    assert_eq!(reload(store, &bystander.id).await, bystander);
    let w = store
        .claim_recreation(&bystander.id, &bystander.scan_ref, LIMITS, &claim, now)
        .await;
    assert_eq!(
        w.expect("claim"),
        Write::Applied,
        "the other row is still claimable"
    );
}
