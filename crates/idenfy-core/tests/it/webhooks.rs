//! The webhook processor (PRODUCT.md §5) at the handler level — what upstream never tested:
//! APPROVED, DENIED, redelivery, out-of-order AUTO/MANUAL, unknown scanRefs.

use idenfy_core::{
    ParentStatus, RowStatus, VerificationStatus, reasons,
    webhook::{SignatureError, WebhookError, WebhookOutcome, WebhookRequest},
};
use serde_json::json;

use crate::support::{Harness, Seed};

fn result(overall: &str, is_final: bool) -> serde_json::Value {
    json!({"scanRef": "SCAN_OLD", "clientId": "x", "final": is_final, "status": {"overall": overall}, "data": {"docFirstName": "X"}})
}

#[tokio::test]
async fn final_approved_completes_the_row() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    let ack = h
        .webhook("IDENTIFICATION_AUTO_FINISHED", result("APPROVED", true))
        .await
        .expect("ok");
    assert_eq!(ack.outcome, WebhookOutcome::Applied);
    let stored = h.row(&row.id).await;
    assert_eq!(stored.status, RowStatus::Complete);
    assert_eq!(
        stored.verification_status,
        Some(VerificationStatus::Approved)
    );
    assert!(stored.is_final);
}

#[tokio::test]
async fn final_denied_fails_the_row_and_every_in_progress_parent() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    h.webhook("IDENTIFICATION_AUTO_FINISHED", result("DENIED", true))
        .await
        .expect("ok");
    let stored = h.row(&row.id).await;
    assert_eq!(stored.status, RowStatus::Failed);
    assert_eq!(stored.failure_reason.as_deref(), Some(reasons::DENIED));
    assert_eq!(
        h.parent(&row).await.status,
        ParentStatus::VerificationFailed
    );
}

#[tokio::test]
async fn duplicate_delivery_is_a_no_op() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    h.webhook("IDENTIFICATION_AUTO_FINISHED", result("APPROVED", true))
        .await
        .expect("ok");
    let after_first = h.row(&row.id).await;
    let ack = h
        .webhook("IDENTIFICATION_AUTO_FINISHED", result("APPROVED", true))
        .await
        .expect("ok");
    assert_eq!(ack.outcome, WebhookOutcome::Duplicate);
    assert_eq!(h.row(&row.id).await, after_first);
}

#[tokio::test]
async fn a_late_non_final_auto_result_never_replaces_the_final_manual_one() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    h.webhook("IDENTIFICATION_MANUAL_FINISHED", result("APPROVED", true))
        .await
        .expect("ok");
    let ack = h
        .webhook("IDENTIFICATION_AUTO_FINISHED", result("DENIED", false))
        .await
        .expect("ok");
    assert_eq!(ack.outcome, WebhookOutcome::Duplicate);
    let stored = h.row(&row.id).await;
    assert_eq!(
        stored.verification_status,
        Some(VerificationStatus::Approved)
    );
    assert_eq!(h.parent(&row).await.status, ParentStatus::InProgress);
}

#[tokio::test]
async fn a_late_expiry_never_replaces_a_final_decision() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    h.webhook("IDENTIFICATION_AUTO_FINISHED", result("APPROVED", true))
        .await
        .expect("ok");
    h.webhook("IDENTIFICATION_EXPIRED", result("EXPIRED", false))
        .await
        .expect("ok");
    assert_eq!(
        h.row(&row.id).await.verification_status,
        Some(VerificationStatus::Approved)
    );
}

#[tokio::test]
async fn active_never_un_expires_a_row() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    h.webhook("IDENTIFICATION", result("ACTIVE", false))
        .await
        .expect("ok");
    assert_eq!(
        h.row(&row.id).await.verification_status,
        Some(VerificationStatus::Expired)
    );
}

#[tokio::test]
async fn unknown_scan_ref_is_not_found() {
    let h = Harness::new();
    let err = h
        .webhook(
            "IDENTIFICATION_AUTO_FINISHED",
            json!({"scanRef": "nobody", "final": true, "status": {"overall": "APPROVED"}}),
        )
        .await
        .expect_err("404");
    assert!(matches!(err, WebhookError::UnknownScanRef));
}

#[tokio::test]
async fn malformed_json_and_missing_signature_are_refused() {
    let h = Harness::new();
    let err = h
        .sessions
        .handle_webhook(WebhookRequest {
            signature: None,
            event_type: None,
            body: b"{}",
        })
        .await
        .expect_err("401");
    assert!(matches!(
        err,
        WebhookError::Signature(SignatureError::Missing)
    ));
    let raw = b"{not json";
    let signature = idenfy_core::webhook::sign(crate::support::SIGNING_KEY, raw);
    let err = h
        .sessions
        .handle_webhook(WebhookRequest {
            signature: Some(&signature),
            event_type: None,
            body: raw,
        })
        .await
        .expect_err("400");
    assert!(matches!(err, WebhookError::Malformed));
}

#[tokio::test]
async fn document_expiration_events_are_ignored() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    let ack = h
        .webhook(
            "DOCUMENT_EXPIRATION",
            json!({"scanRef": "SCAN_OLD", "expirationThreshold": "DOCUMENT_EXPIRED"}),
        )
        .await
        .expect("ok");
    assert_eq!(ack.outcome, WebhookOutcome::Ignored);
    assert_eq!(h.row(&row.id).await, row);
}

/// 1000 deliveries of a shuffled AUTO(non-final)/MANUAL(final) sequence with duplicates end
/// on the manual decision every time.
#[tokio::test]
async fn shuffled_duplicated_deliveries_end_on_the_final_decision() {
    use rand::seq::SliceRandom;
    let h = Harness::new();
    let mut deliveries = Vec::new();
    let mut expected = Vec::new();
    for i in 0..50 {
        let scan_ref = format!("SCAN_{i}");
        let row = h
            .seed(Seed {
                scan_ref: scan_ref.clone(),
                ..Seed::default()
            })
            .await;
        let (auto, manual) = if i % 2 == 0 {
            ("DENIED", "APPROVED")
        } else {
            ("APPROVED", "DENIED")
        };
        for _ in 0..10 {
            deliveries.push((
                "IDENTIFICATION_AUTO_FINISHED",
                json!({"scanRef": &scan_ref, "final": false, "status": {"overall": auto}}),
            ));
            deliveries.push((
                "IDENTIFICATION_MANUAL_FINISHED",
                json!({"scanRef": &scan_ref, "final": true, "status": {"overall": manual}}),
            ));
        }
        expected.push((row, VerificationStatus::parse(manual)));
    }
    deliveries.shuffle(&mut rand::rng());
    assert_eq!(deliveries.len(), 1000);
    for (event, body) in deliveries {
        h.webhook(event, body).await.expect("acknowledged");
    }
    for (row, status) in expected {
        let stored = h.row(&row.id).await;
        assert_eq!(stored.verification_status.as_ref(), Some(&status));
        assert!(stored.is_final);
        let parent = h.parent(&row).await.status;
        let want = if status == VerificationStatus::Denied {
            ParentStatus::VerificationFailed
        } else {
            ParentStatus::InProgress
        };
        assert_eq!(parent, want);
    }
}
