//! The iDenfy API surface: auth, token validation, the token/status/data shapes, counters.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{call, client, config, mint, mint_for, start, status_of, str_of};

#[tokio::test]
async fn calls_without_valid_basic_auth_get_401_without_identifier() {
    let sim = start(config()).await;
    let url = format!("{}/api/v2/token", sim.base_url());
    let none = client()
        .post(&url)
        .json(&json!({ "clientId": "u1" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let body: Value = none.json().await.expect("json");
    assert_eq!(
        body,
        json!({ "message": "Invalid authorization credentials" })
    );

    let wrong = client()
        .post(&url)
        .basic_auth("sim-api-key", Some("wrong"))
        .json(&json!({ "clientId": "u1" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    for path in ["/api/v2/status", "/api/v2/data"] {
        let response = client()
            .post(format!("{}{path}", sim.base_url()))
            .json(&json!({ "scanRef": "x" }))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    assert!(sim.counters().tokens_minted_by_client.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn token_validation_errors_use_idenfys_shape() {
    let sim = start(config()).await;
    let cases = [
        (json!({}), "MISSING_VALUE"),
        (json!({ "clientId": "" }), "BAD_VALUE"),
        (json!({ "clientId": "x".repeat(101) }), "BAD_VALUE"),
        (json!({ "clientId": "žmogus" }), "BAD_VALUE"),
        (json!({ "clientId": 42 }), "BAD_VALUE"),
        (
            json!({ "clientId": "u", "expiryTime": 2_592_001 }),
            "BAD_VALUE",
        ),
        (json!({ "clientId": "u", "expiryTime": -1 }), "BAD_VALUE"),
        (json!({ "clientId": "u", "sessionLength": 59 }), "BAD_VALUE"),
        (
            json!({ "clientId": "u", "sessionLength": 3601 }),
            "BAD_VALUE",
        ),
        (
            json!({ "clientId": "u", "tokenType": "SELFIE" }),
            "BAD_VALUE",
        ),
        (
            json!({ "clientId": "u", "callbackUrl": "ftp://x/y" }),
            "BAD_VALUE",
        ),
        (
            json!({ "clientId": "u", "externalRef": "e".repeat(41) }),
            "BAD_VALUE",
        ),
        (json!(["clientId"]), "JSON_ERROR"),
    ];
    for (body, identifier) in cases {
        let (status, value) = call(&sim, "/api/v2/token", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {value}");
        assert_eq!(value["identifier"], identifier, "{body} -> {value}");
        assert!(value["message"].is_string(), "{value}");
    }
    let garbage = client()
        .post(format!("{}/api/v2/token", sim.base_url()))
        .basic_auth("sim-api-key", Some("sim-api-secret"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    let value: Value = garbage.json().await.expect("json");
    assert_eq!(value["identifier"], "JSON_ERROR");
    // Boundaries are accepted, unknown fields ignored, `personScanRef` is the old clientId.
    mint(
        &sim,
        json!({ "clientId": "x".repeat(100), "expiryTime": 0, "sessionLength": 60, "someFutureField": {"a": 1} }),
    )
    .await;
    mint(
        &sim,
        json!({ "clientId": "u", "expiryTime": 2_592_000, "sessionLength": 3600 }),
    )
    .await;
    let old = mint(&sim, json!({ "personScanRef": "legacy" })).await;
    assert_eq!(old["clientId"], "legacy");
    sim.shutdown().await;
}

#[tokio::test]
async fn mint_returns_the_flat_shape_and_an_active_session() {
    let sim = start(config()).await;
    let token = mint(
        &sim,
        json!({ "clientId": "user-1", "externalRef": "ext-1", "locale": "de", "firstName": "jonas" }),
    )
    .await;
    assert_eq!(token["message"], "Token created successfully");
    let auth_token = str_of(&token, "authToken");
    assert!(!auth_token.is_empty() && auth_token.len() <= 40);
    let scan_ref = str_of(&token, "scanRef");
    assert!(uuid::Uuid::parse_str(&scan_ref).is_ok(), "{scan_ref}");
    assert_eq!(token["clientId"], "user-1");
    assert_eq!(token["externalRef"], "ext-1");
    assert_eq!(token["locale"], "de");
    assert_eq!(token["firstName"], "JONAS");
    assert_eq!(token["expiryTime"], 3600);
    assert_eq!(token["sessionLength"], 600);
    assert_eq!(token["tokenType"], "IDENTIFICATION");
    assert_eq!(token["digitString"], Value::Null);
    assert_eq!(
        token["redirectUrl"],
        format!("{}/api/v2/redirect?authToken={auth_token}", sim.base_url())
    );

    let status = status_of(&sim, &scan_ref).await;
    assert_eq!(
        status,
        json!({
            "status": "ACTIVE", "scanRef": scan_ref, "clientId": "user-1",
            "autoDocument": null, "autoFace": null, "manualDocument": null, "manualFace": null,
            "fraudTags": [], "mismatchTags": [],
        })
    );
    let snapshot = sim.session(&scan_ref).expect("session");
    assert_eq!(snapshot.auth_token, auth_token);
    assert_eq!(snapshot.opened_at, None);
    assert_eq!(
        snapshot.expires_at,
        snapshot.created_at + chrono::TimeDelta::seconds(3600)
    );
    let digits = mint(
        &sim,
        json!({ "clientId": "u2", "generateDigitString": true }),
    )
    .await;
    assert_eq!(digits["digitString"].as_str().map(str::len), Some(8));
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_scan_ref_is_404_and_missing_scan_ref_is_400() {
    let sim = start(config()).await;
    let (status, value) = call(&sim, "/api/v2/status", json!({ "scanRef": "nope" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        value["message"].is_string() && value["identifier"].is_string(),
        "{value}"
    );
    let (status, value) = call(&sim, "/api/v2/data", json!({ "scanRef": "nope" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{value}");
    let (status, value) = call(&sim, "/api/v2/status", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["identifier"], "MISSING_VALUE");
    sim.shutdown().await;
}

#[tokio::test]
async fn data_is_null_until_decided_then_plausible_document_fields() {
    let sim = start(config()).await;
    let (scan_ref, _) = mint_for(&sim, "user-data").await;
    let (status, before) = call(&sim, "/api/v2/data", json!({ "scanRef": scan_ref })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(before["docFirstName"], Value::Null);
    assert!(sim.decide(&scan_ref, idenfy_sim::Outcome::Approve).await);
    let (_, after) = call(&sim, "/api/v2/data", json!({ "scanRef": scan_ref })).await;
    for field in [
        "docFirstName",
        "docLastName",
        "docDob",
        "docNationality",
        "docNumber",
        "docType",
    ] {
        assert!(after[field].is_string(), "{field} in {after}");
    }
    assert_eq!(after["scanRef"], scan_ref.as_str());
    let (_, again) = call(&sim, "/api/v2/data", json!({ "scanRef": scan_ref })).await;
    assert_eq!(after, again, "data is stable per clientId");
    assert_eq!(sim.counters().data_calls, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn counters_track_mints_per_client_and_status_calls_per_scan_ref() {
    let sim = start(config()).await;
    let (a, _) = mint_for(&sim, "alice").await;
    let (_, _) = mint_for(&sim, "alice").await;
    let (b, _) = mint_for(&sim, "bob").await;
    let _ = call(&sim, "/api/v2/token", json!({})).await; // a failed call still counts
    for _ in 0..3 {
        status_of(&sim, &a).await;
    }
    status_of(&sim, &b).await;
    let counters = sim.counters();
    assert_eq!(counters.tokens_minted_by_client.get("alice"), Some(&2));
    assert_eq!(counters.tokens_minted_by_client.get("bob"), Some(&1));
    assert_eq!(counters.token_calls, 4);
    assert_eq!(counters.status_calls_by_scan_ref.get(&a), Some(&3));
    assert_eq!(counters.status_calls_by_scan_ref.get(&b), Some(&1));
    assert_eq!(counters.status_calls, 4);
    sim.reset();
    assert_eq!(sim.counters(), idenfy_sim::Counters::default());
    assert!(sim.session(&a).is_none());
    sim.shutdown().await;
}
