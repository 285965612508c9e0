//! The webhook payload and event-type types: current and legacy shapes, unknown fields.

use idenfy_client::{EventType, WebhookPayload};
use idenfy_core::VerificationStatus;
use serde_json::json;

#[test]
fn parses_a_current_identification_webhook() {
    let body = json!({
        "final": true,
        "platform": "PC",
        "status": {
            "overall": "APPROVED",
            "suspicionReasons": [],
            "mismatchTags": [],
            "fraudTags": [],
            "autoDocument": "DOC_VALIDATED",
            "autoFace": "FACE_MATCH",
            "manualDocument": "DOC_VALIDATED",
            "manualFace": "FACE_MATCH",
            "additionalSteps": null
        },
        "data": { "docFirstName": "JOHN", "docLastName": "DOE" },
        "fileUrls": { "FRONT": "https://s3.example/front?Expires=1" },
        "scanRef": "3af0b5c4-4d7e-11ec-81d3-0242ac130003",
        "clientId": "65a1b2c3d4e5f60718293a4b",
        "externalRef": "ext-1",
        "startTime": 1_700_000_000,
        "finishTime": 1_700_000_300,
        "clientIp": "192.0.2.1",
        "clientIpCountry": "LT",
        "clientLocation": "Vilnius, Lithuania",
        "companyId": "c-1",
        "beneficiaryId": null,
        "riskAssessment": { "riskScore": 10, "riskLevel": "LOW" }
    })
    .to_string();

    let payload = WebhookPayload::from_slice(body.as_bytes()).expect("valid payload");

    assert!(payload.final_);
    assert_eq!(
        payload.scan_ref.as_str(),
        "3af0b5c4-4d7e-11ec-81d3-0242ac130003"
    );
    assert_eq!(
        payload.client_id.as_deref(),
        Some("65a1b2c3d4e5f60718293a4b")
    );
    assert_eq!(payload.external_ref.as_deref(), Some("ext-1"));
    assert_eq!(payload.platform.as_deref(), Some("PC"));
    assert_eq!(payload.start_time, Some(1_700_000_000));
    assert_eq!(payload.finish_time, Some(1_700_000_300));
    assert_eq!(payload.overall(), Some(VerificationStatus::Approved));
    assert_eq!(payload.status.manual_face.as_deref(), Some("FACE_MATCH"));
    assert_eq!(
        payload.data.as_ref().and_then(|d| d.get("docFirstName")),
        Some(&json!("JOHN"))
    );
    assert_eq!(
        payload.extra.get("riskAssessment"),
        Some(&json!({ "riskScore": 10, "riskLevel": "LOW" }))
    );
}

#[test]
fn parses_a_legacy_webhook_without_final_and_with_null_lists() {
    let body = br#"{
        "scanRef": "legacy-ref",
        "status": { "overall": "SUSPECTED", "suspicionReasons": ["FACE_SUSPECTED"], "fraudTags": null, "mismatchTags": null }
    }"#;

    let payload = WebhookPayload::from_slice(body).expect("valid payload");

    assert!(!payload.final_, "absent final reads as false");
    assert_eq!(payload.overall(), Some(VerificationStatus::Suspected));
    assert!(payload.status.mismatch_tags.is_empty());
    assert_eq!(
        payload.status.all_fraud_tags().collect::<Vec<_>>(),
        ["FACE_SUSPECTED"]
    );
    assert_eq!(payload.data, None);
}

#[test]
fn a_webhook_without_scan_ref_is_rejected() {
    assert!(
        WebhookPayload::from_slice(br#"{"final": true, "status": {"overall": "APPROVED"}}"#)
            .is_err()
    );
    assert!(WebhookPayload::from_slice(b"not json").is_err());
}

#[test]
fn payload_debug_shows_no_personal_data() {
    let body = br#"{"scanRef": "r", "clientIp": "192.0.2.1", "data": {"docFirstName": "JOHN"}}"#;
    let payload = WebhookPayload::from_slice(body).expect("valid payload");
    let printed = format!("{payload:?}");
    assert!(
        !printed.contains("JOHN") && !printed.contains("192.0.2.1"),
        "{printed}"
    );
}

#[test]
fn event_types_parse_both_cancel_spellings_and_keep_unknown_ones() {
    let known = [
        ("IDENTIFICATION", EventType::Identification),
        ("IDENTIFICATION_AUTO_FINISHED", EventType::AutoFinished),
        ("IDENTIFICATION_MANUAL_FINISHED", EventType::ManualFinished),
        ("IDENTIFICATION_RESUBMITTED", EventType::Resubmitted),
        ("IDENTIFICATION_CANCELLED", EventType::Cancelled),
        ("IDENTIFICATION_EXPIRED", EventType::Expired),
        ("DOCUMENT_EXPIRATION", EventType::DocumentExpiration),
    ];
    for (raw, event) in known {
        assert_eq!(EventType::parse(raw), event);
        assert_eq!(event.as_str(), raw);
    }
    assert_eq!(
        EventType::parse("IDENTIFICATION_CANCELED"),
        EventType::Cancelled
    );
    let other = EventType::parse("VIDEO_CALL_FINISHED");
    assert_eq!(other, EventType::Other("VIDEO_CALL_FINISHED".into()));
    assert_eq!(other.to_string(), "VIDEO_CALL_FINISHED");
}
