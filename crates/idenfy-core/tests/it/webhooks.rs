//! The webhook processor (`docs/webhooks.md`) at the handler level — what id-server never tested:
//! APPROVED, DENIED, redelivery, out-of-order AUTO/MANUAL, unknown scanRefs.

use std::time::Duration;

use idenfy_core::{
    ParentStatus, RowStatus, VerificationStatus, reasons,
    webhook::{SignatureError, WebhookError, WebhookOutcome, WebhookRequest, sign},
};
use serde_json::json;

use crate::support::{Harness, NowForTests, SIGNING_KEY, Seed};

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

/// An identical non-final redelivery (iDenfy retries, or sends the same update twice) is
/// `duplicate` and writes nothing: `updatedAt` stays where the first delivery put it.
#[tokio::test]
async fn an_identical_non_final_redelivery_is_a_duplicate_without_a_write() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    let ack = h
        .webhook("IDENTIFICATION_AUTO_FINISHED", result("APPROVED", false))
        .await
        .expect("ok");
    assert_eq!(ack.outcome, WebhookOutcome::Applied);
    let after_first = h.row(&row.id).await;
    assert_eq!(
        after_first.verification_status,
        Some(VerificationStatus::Approved)
    );
    assert!(!after_first.is_final);

    h.clock.advance(Duration::from_secs(60));
    for _ in 0..3 {
        let ack = h
            .webhook("IDENTIFICATION_AUTO_FINISHED", result("APPROVED", false))
            .await
            .expect("ok");
        assert_eq!(ack.outcome, WebhookOutcome::Duplicate);
    }
    assert_eq!(
        h.row(&row.id).await,
        after_first,
        "no write, not even updatedAt"
    );

    // What differs is still applied: another status, and the same one made final.
    let ack = h
        .webhook("IDENTIFICATION", result("REVIEWING", false))
        .await
        .expect("ok");
    assert_eq!(ack.outcome, WebhookOutcome::Applied);
    let ack = h
        .webhook("IDENTIFICATION_MANUAL_FINISHED", result("APPROVED", true))
        .await
        .expect("ok");
    assert_eq!(ack.outcome, WebhookOutcome::Applied);
    let stored = h.row(&row.id).await;
    assert!(stored.is_final);
    assert_eq!(stored.status, RowStatus::Complete);
    assert_eq!(stored.updated_at, Some(h.clock.now_for_tests()));
}

/// The EXPIRED marker delivered again is `duplicate` and writes nothing.
#[tokio::test]
async fn an_identical_expiry_redelivery_is_a_duplicate_without_a_write() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    let expired = json!({"scanRef": "SCAN_OLD", "final": false, "status": {"overall": "EXPIRED"}});
    let ack = h
        .webhook("IDENTIFICATION_EXPIRED", expired.clone())
        .await
        .expect("ok");
    assert_eq!(ack.outcome, WebhookOutcome::Applied);
    let after_first = h.row(&row.id).await;
    assert!(after_first.is_expired());

    h.clock.advance(Duration::from_secs(60));
    let ack = h
        .webhook("IDENTIFICATION_EXPIRED", expired)
        .await
        .expect("ok");
    assert_eq!(ack.outcome, WebhookOutcome::Duplicate);
    assert_eq!(h.row(&row.id).await, after_first);
}

/// A first non-final status on a fresh row is applied, not mistaken for a redelivery.
#[tokio::test]
async fn a_first_non_final_status_is_applied() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    h.clock.advance(Duration::from_secs(5));
    let ack = h
        .webhook("IDENTIFICATION", result("ACTIVE", false))
        .await
        .expect("ok");
    assert_eq!(ack.outcome, WebhookOutcome::Applied);
    let stored = h.row(&row.id).await;
    assert_eq!(stored.verification_status, Some(VerificationStatus::Active));
    assert_eq!(stored.updated_at, Some(h.clock.now_for_tests()));
}

/// A correctly signed delivery whose unused fields hold numbers no `f64` or `i64` holds
/// (`1e999999`, a 30-digit integer, a float where an integer is usual) is applied: only
/// `scanRef`, `status.overall` and `final` are parsed.
#[tokio::test]
async fn numbers_in_unused_fields_never_refuse_a_signed_delivery() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    let raw = br#"{"scanRef":"SCAN_OLD","clientId":"x","final":true,
        "startTime":1764504000.25,"finishTime":123456789012345678901234567890,
        "status":{"overall":"APPROVED","autoFace":"FACE_MATCH","faceScore":1e999999},
        "data":{"docFirstName":"X","docNumberScore":-1e999999,"ages":[1e400,2]}}"#;
    assert!(
        serde_json::from_slice::<serde_json::Value>(raw).is_err(),
        "the body is beyond serde_json::Value"
    );
    let signature = sign(SIGNING_KEY, raw);
    let ack = h
        .sessions
        .handle_webhook(WebhookRequest {
            signature: Some(&signature),
            event_type: Some("IDENTIFICATION_AUTO_FINISHED"),
            body: raw,
        })
        .await
        .expect("acknowledged");
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
