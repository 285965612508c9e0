//! `POST /api/v2/status` and `/api/v2/data`: validation of the answer, flattening, retries.

use idenfy_client::{IdenfyApi, IdenfyErrorKind};
use idenfy_core::{ScanRef, VerificationStatus};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{any, body_json, header, method, path},
};

use crate::{BASIC, CLIENT_ID, SCAN_REF, client};

fn scan_ref() -> ScanRef {
    ScanRef::new(SCAN_REF)
}

fn status_answer(status: &str) -> Value {
    json!({
        "status": status,
        "scanRef": SCAN_REF,
        "clientId": CLIENT_ID,
        "autoDocument": null,
        "autoFace": null,
        "manualDocument": null,
        "manualFace": null,
        "fraudTags": [],
        "mismatchTags": []
    })
}

async fn status_server(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/status"))
        .respond_with(template)
        .expect(1)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn status_sends_the_scan_ref_with_basic_auth() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/status"))
        .and(header("authorization", BASIC))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({ "scanRef": SCAN_REF })))
        .respond_with(ResponseTemplate::new(200).set_body_json(status_answer("ACTIVE")))
        .expect(1)
        .mount(&server)
        .await;

    let report = client(&server.uri())
        .status(&scan_ref())
        .await
        .expect("status");

    assert_eq!(report.scan_ref, scan_ref());
    assert_eq!(report.status, VerificationStatus::Active);
}

#[tokio::test]
async fn status_keeps_unknown_values_verbatim() {
    let server =
        status_server(ResponseTemplate::new(200).set_body_json(status_answer("SOMETHING_NEW")))
            .await;

    let report = client(&server.uri())
        .status(&scan_ref())
        .await
        .expect("status");

    assert_eq!(
        report.status,
        VerificationStatus::Unknown("SOMETHING_NEW".into())
    );
}

#[tokio::test]
async fn status_is_retried_on_a_server_error_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/status"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({ "identifier": "INTERNAL_ERROR" })),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(status_answer("APPROVED")))
        .expect(1)
        .mount(&server)
        .await;

    let report = client(&server.uri())
        .status(&scan_ref())
        .await
        .expect("second attempt");

    assert_eq!(report.status, VerificationStatus::Approved);
}

#[tokio::test]
async fn status_gives_up_after_max_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/status"))
        .respond_with(ResponseTemplate::new(503))
        .expect(3)
        .mount(&server)
        .await;

    let err = client(&server.uri())
        .status(&scan_ref())
        .await
        .expect_err("always 503");

    assert_eq!(err.kind, IdenfyErrorKind::Server);
    assert_eq!(err.http_status, Some(503));
}

#[tokio::test]
async fn status_is_not_retried_on_a_client_error() {
    let server = status_server(
        ResponseTemplate::new(404)
            .set_body_json(json!({ "identifier": "NOT_FOUND", "message": "No such scanRef" })),
    )
    .await;

    let err = client(&server.uri())
        .status(&scan_ref())
        .await
        .expect_err("404");

    assert_eq!(err.kind, IdenfyErrorKind::NotFound);
}

#[tokio::test]
async fn status_with_another_scan_ref_is_unexpected_payload() {
    let mut answer = status_answer("APPROVED");
    answer["scanRef"] = json!("someone-elses-scan-ref");
    let server = status_server(ResponseTemplate::new(200).set_body_json(answer)).await;

    let err = client(&server.uri())
        .status(&scan_ref())
        .await
        .expect_err("mismatch");

    assert_eq!(err.kind, IdenfyErrorKind::UnexpectedPayload);
}

#[tokio::test]
async fn status_without_status_is_unexpected_payload() {
    let server = status_server(
        ResponseTemplate::new(200)
            .set_body_json(json!({ "scanRef": SCAN_REF, "clientId": CLIENT_ID })),
    )
    .await;

    let err = client(&server.uri())
        .status(&scan_ref())
        .await
        .expect_err("no status");

    assert_eq!(err.kind, IdenfyErrorKind::UnexpectedPayload);
}

#[tokio::test]
async fn data_flat_and_nested_give_the_same_map() {
    let server = MockServer::start().await;
    let fields = json!({ "docFirstName": "JOHN", "docLastName": "DOE", "docDob": "1990-01-01", "docNumber": null });
    let mut flat = fields.clone();
    flat["scanRef"] = json!("flat-ref");
    Mock::given(method("POST"))
        .and(path("/api/v2/data"))
        .and(body_json(json!({ "scanRef": "flat-ref" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(flat))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/data"))
        .and(body_json(json!({ "scanRef": "nested-ref" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": fields })))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server.uri());

    let mut from_flat = client.data(&ScanRef::new("flat-ref")).await.expect("flat");
    let from_nested = client
        .data(&ScanRef::new("nested-ref"))
        .await
        .expect("nested");

    assert_eq!(from_flat.remove("scanRef"), Some(json!("flat-ref")));
    assert_eq!(from_flat, from_nested);
    assert_eq!(from_nested.get("docFirstName"), Some(&json!("JOHN")));
    assert!(!from_nested.contains_key("data"));
}

#[tokio::test]
async fn data_with_another_scan_ref_is_unexpected_payload() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/data"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "scanRef": "other", "docFirstName": "X" })),
        )
        .expect(1)
        .mount(&server)
        .await;

    let err = client(&server.uri())
        .data(&scan_ref())
        .await
        .expect_err("mismatch");

    assert_eq!(err.kind, IdenfyErrorKind::UnexpectedPayload);
}

#[tokio::test]
async fn empty_scan_ref_is_rejected_without_a_request() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let client = client(&server.uri());

    let data = client.data(&ScanRef::new("")).await.expect_err("empty");
    let status = client.status(&ScanRef::new("  ")).await.expect_err("blank");

    assert_eq!(data.kind, IdenfyErrorKind::InvalidRequest);
    assert_eq!(status.kind, IdenfyErrorKind::InvalidRequest);
    assert_eq!(data.http_status, None);
}

/// A status call whose answers never come ends within its retry budget, however long the
/// per-request timeout: the budget cuts the first attempt short and no retry starts after it.
#[tokio::test]
async fn a_silent_status_endpoint_spends_only_the_retry_budget() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/status"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(30)))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = crate::config(&server.uri());
    config.request_timeout = std::time::Duration::from_secs(20);
    config.retry.budget = std::time::Duration::from_millis(300);
    let client = idenfy_client::IdenfyClient::new(config).expect("valid config");

    let err = client.status(&scan_ref()).await.expect_err("no answer");

    assert_eq!(err.kind, IdenfyErrorKind::Timeout);
    assert!(err.message.contains("retry budget"), "{}", err.message);
}

/// Slow 503s: a retry starts only while the budget still has room for it, so a budget of
/// little more than one attempt makes exactly one request.
#[tokio::test]
async fn no_retry_starts_that_the_budget_cannot_hold() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/status"))
        .respond_with(ResponseTemplate::new(503).set_delay(std::time::Duration::from_millis(200)))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = crate::config(&server.uri());
    config.retry.budget = std::time::Duration::from_millis(600);
    let client = idenfy_client::IdenfyClient::new(config).expect("valid config");

    let err = client.status(&scan_ref()).await.expect_err("503");

    assert_eq!(err.kind, IdenfyErrorKind::Server);
}
