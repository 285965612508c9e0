//! Webhooks end to end through the HTTP API: an identical redelivery answers `duplicate`
//! and writes nothing, and numbers the service does not use never refuse a signed delivery.

use std::time::Duration;

use idenfy_core::IdenfyRow;
use serde_json::json;

use crate::support::{TestApp, USER};

/// The stored row `id` of the app's live environment.
fn stored(app: &TestApp, id: &str) -> IdenfyRow {
    app.live
        .rows()
        .all()
        .into_iter()
        .find(|row| row.id.as_str() == id)
        .expect("the row is stored")
}

#[tokio::test]
async fn an_identical_non_final_redelivery_answers_duplicate_and_writes_nothing() {
    let app = TestApp::start().await;
    let created = app.created(USER).await;
    let body = serde_json::to_vec(&json!({
        "final": false,
        "scanRef": created.scan_ref,
        "clientId": "client",
        "status": { "overall": "APPROVED" }
    }))
    .expect("json");

    let (code, ack) = app.webhook("", &body).await;
    assert_eq!(code, 200, "{ack}");
    assert_eq!(ack["outcome"], "applied");
    let first = stored(&app, &created.row);
    assert!(!first.is_final);
    assert_eq!(
        first.verification_status.as_ref().map(|s| s.as_str()),
        Some("APPROVED")
    );

    // Let the clock move, so that a rewrite would show in `updatedAt`.
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..2 {
        let (code, ack) = app.webhook("", &body).await;
        assert_eq!(code, 200, "{ack}");
        assert_eq!(ack, json!({ "received": true, "outcome": "duplicate" }));
    }
    assert_eq!(
        stored(&app, &created.row),
        first,
        "no write, not even updatedAt"
    );
}

#[tokio::test]
async fn numbers_beyond_any_float_in_unused_fields_never_refuse_a_signed_webhook() {
    let app = TestApp::start().await;
    let created = app.created(USER).await;
    let body = format!(
        r#"{{"final":true,"scanRef":"{}","clientId":"client","startTime":1764504000.5,
            "finishTime":123456789012345678901234567890,
            "status":{{"overall":"APPROVED","faceScore":1e999999}},
            "data":{{"docNumberScore":-1e999999,"values":[1e400,0.5e-999999]}}}}"#,
        created.scan_ref
    );
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_err());
    let (code, ack) = app.webhook("", body.as_bytes()).await;
    assert_eq!(code, 200, "{ack}");
    assert_eq!(ack["outcome"], "applied");
    let (_, status) = app.status(&created.row, USER).await;
    assert_eq!(status["idenfyVerificationStatus"], "APPROVED");
    assert_eq!(status["status"], "complete");
}
