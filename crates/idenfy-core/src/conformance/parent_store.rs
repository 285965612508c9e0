//! The [`crate::ParentStore`] suite.

use super::fixtures;
use crate::{Flow, Parent, ParentId, ParentStatus, ParentStore, RowId, StoreError, Write, reasons};

async fn put<P: ParentStore>(store: &P, parent: Parent) -> Parent {
    store.insert(&parent).await.expect("insert");
    parent
}

async fn reload<P: ParentStore>(store: &P, parent: &Parent) -> Parent {
    store
        .get(parent.flow, &parent.id)
        .await
        .expect("get")
        .expect("the parent exists")
}

/// `get` returns exactly what `insert` stored, only under its flow.
pub async fn get_returns_the_inserted_parent<P: ParentStore>(store: &P) {
    let now = fixtures::now();
    for flow in Flow::ALL {
        let mut full = fixtures::parent(flow, now);
        full.status = ParentStatus::Unknown("SOMETHING_NEW".into());
        full.idenfy_session_id = Some(RowId::generate(now));
        full.failure_reason = Some("reason".into());
        let bare = Parent {
            sig_digest: None,
            created_at: None,
            ..fixtures::parent(flow, now)
        };
        for parent in [full, bare] {
            let parent = put(store, parent).await;
            assert_eq!(
                store.get(flow, &parent.id).await.expect("get"),
                Some(parent.clone())
            );
            let other = if flow == Flow::GovId {
                Flow::CleanHands
            } else {
                Flow::GovId
            };
            assert_eq!(
                store.get(other, &parent.id).await.expect("get"),
                None,
                "other flow"
            );
        }
        assert_eq!(
            store
                .get(flow, &ParentId::generate(now))
                .await
                .expect("get"),
            None
        );
    }
}

/// `insert` MUST return `Conflict` when the id exists (in that flow), keeping the parent.
pub async fn insert_rejects_a_duplicate_id<P: ParentStore>(store: &P) {
    let now = fixtures::now();
    for flow in Flow::ALL {
        let first = put(store, fixtures::parent(flow, now)).await;
        let twin = Parent {
            status: ParentStatus::NeedsPayment,
            ..fixtures::parent(flow, now)
        };
        let twin = Parent {
            id: first.id.clone(),
            ..twin
        };
        let result = store.insert(&twin).await;
        assert!(
            matches!(result, Err(StoreError::Conflict)),
            "{flow:?}: {result:?}"
        );
        assert_eq!(reload(store, &first).await, first);
    }
}

/// `find_any` looks in gov-id first, then clean-hands.
pub async fn find_any_looks_in_gov_id_first<P: ParentStore>(store: &P) {
    let now = fixtures::now();
    let clean = put(store, fixtures::parent(Flow::CleanHands, now)).await;
    let gov = put(
        store,
        Parent {
            id: clean.id.clone(),
            ..fixtures::parent(Flow::GovId, now)
        },
    )
    .await;
    assert_eq!(
        store.find_any(&clean.id).await.expect("find"),
        Some(gov),
        "gov-id first"
    );
    let only_clean = put(store, fixtures::parent(Flow::CleanHands, now)).await;
    assert_eq!(
        store.find_any(&only_clean.id).await.expect("find"),
        Some(only_clean.clone())
    );
    let only_gov = put(store, fixtures::parent(Flow::GovId, now)).await;
    assert_eq!(
        store.find_any(&only_gov.id).await.expect("find"),
        Some(only_gov)
    );
    assert_eq!(
        store
            .find_any(&ParentId::generate(now))
            .await
            .expect("find"),
        None
    );
}

/// `link_row` links an unlinked parent or re-links the same row; never another row.
pub async fn link_row_links_once<P: ParentStore>(store: &P) {
    let now = fixtures::now();
    for flow in Flow::ALL {
        let parent = put(store, fixtures::parent(flow, now)).await;
        let row = RowId::generate(now);
        let linked = Parent {
            idenfy_session_id: Some(row.clone()),
            ..parent.clone()
        };
        assert_eq!(
            store.link_row(flow, &parent.id, &row).await.expect("link"),
            Write::Applied
        );
        assert_eq!(reload(store, &parent).await, linked);
        assert_eq!(
            store.link_row(flow, &parent.id, &row).await.expect("link"),
            Write::Applied,
            "same row"
        );
        let other = RowId::generate(now);
        let w = store
            .link_row(flow, &parent.id, &other)
            .await
            .expect("link");
        assert_eq!(w, Write::NotMatched, "another row");
        assert_eq!(reload(store, &parent).await, linked);
        let w = store
            .link_row(flow, &ParentId::generate(now), &row)
            .await
            .expect("link");
        assert_eq!(w, Write::NotMatched, "unknown id");
    }
    let gov = put(store, fixtures::parent(Flow::GovId, now)).await;
    let w = store
        .link_row(Flow::CleanHands, &gov.id, &RowId::generate(now))
        .await
        .expect("link");
    assert_eq!(w, Write::NotMatched, "other flow");
    assert_eq!(reload(store, &gov).await, gov);
}

/// `fail` turns an IN_PROGRESS parent VERIFICATION_FAILED with the reason; nothing else.
pub async fn fail_only_fails_in_progress_parents<P: ParentStore>(store: &P) {
    let now = fixtures::now();
    for flow in Flow::ALL {
        let parent = put(store, fixtures::parent(flow, now)).await;
        let w = store
            .fail(flow, &parent.id, reasons::DENIED)
            .await
            .expect("fail");
        assert_eq!(w, Write::Applied);
        let failed = Parent {
            status: ParentStatus::VerificationFailed,
            failure_reason: Some(reasons::DENIED.into()),
            ..parent.clone()
        };
        assert_eq!(reload(store, &parent).await, failed);
        let w = store
            .fail(flow, &parent.id, reasons::RECREATION_LIMIT)
            .await
            .expect("fail");
        assert_eq!(w, Write::NotMatched, "already failed");
        assert_eq!(reload(store, &parent).await, failed);
        for status in [
            ParentStatus::NeedsPayment,
            ParentStatus::Issued,
            ParentStatus::Refunded,
        ] {
            let other = put(
                store,
                Parent {
                    status: status.clone(),
                    ..fixtures::parent(flow, now)
                },
            )
            .await;
            let w = store
                .fail(flow, &other.id, reasons::DENIED)
                .await
                .expect("fail");
            assert_eq!(w, Write::NotMatched, "{status}");
            assert_eq!(reload(store, &other).await, other);
        }
        let w = store
            .fail(flow, &ParentId::generate(now), reasons::DENIED)
            .await
            .expect("fail");
        assert_eq!(w, Write::NotMatched, "unknown id");
    }
    let gov = put(store, fixtures::parent(Flow::GovId, now)).await;
    let w = store
        .fail(Flow::CleanHands, &gov.id, reasons::DENIED)
        .await
        .expect("fail");
    assert_eq!(w, Write::NotMatched, "other flow");
    assert_eq!(reload(store, &gov).await, gov);
}

/// `fail_all_linked` fails the IN_PROGRESS parents of both flows linked to the row and
/// counts them; a second call changes nothing and returns 0.
pub async fn fail_all_linked_covers_both_flows_once<P: ParentStore>(store: &P) {
    let now = fixtures::now();
    let row = RowId::generate(now);
    let linked = |flow: Flow, status: ParentStatus, to: Option<RowId>| Parent {
        status,
        idenfy_session_id: to,
        ..fixtures::parent(flow, now)
    };
    let gov = put(
        store,
        linked(Flow::GovId, ParentStatus::InProgress, Some(row.clone())),
    )
    .await;
    let clean = put(
        store,
        linked(
            Flow::CleanHands,
            ParentStatus::InProgress,
            Some(row.clone()),
        ),
    )
    .await;
    let issued = put(
        store,
        linked(Flow::GovId, ParentStatus::Issued, Some(row.clone())),
    )
    .await;
    let elsewhere = put(
        store,
        linked(
            Flow::GovId,
            ParentStatus::InProgress,
            Some(RowId::generate(now)),
        ),
    )
    .await;
    let unlinked = put(
        store,
        linked(Flow::CleanHands, ParentStatus::InProgress, None),
    )
    .await;

    assert_eq!(
        store
            .fail_all_linked(&row, reasons::DENIED)
            .await
            .expect("fail all"),
        2
    );
    for parent in [&gov, &clean] {
        let failed = Parent {
            status: ParentStatus::VerificationFailed,
            failure_reason: Some(reasons::DENIED.into()),
            ..parent.clone()
        };
        assert_eq!(reload(store, parent).await, failed, "{:?}", parent.flow);
    }
    for parent in [&issued, &elsewhere, &unlinked] {
        assert_eq!(reload(store, parent).await, *parent, "untouched");
    }
    assert_eq!(
        store
            .fail_all_linked(&row, reasons::DENIED)
            .await
            .expect("fail all"),
        0,
        "idempotent"
    );
    let nobody = RowId::generate(now);
    assert_eq!(
        store
            .fail_all_linked(&nobody, reasons::DENIED)
            .await
            .expect("fail all"),
        0
    );
}
