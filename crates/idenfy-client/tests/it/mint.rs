//! `POST /api/v2/token`: request shape, response parsing, expiry, and that it is never retried.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use idenfy_client::{IdenfyApi, IdenfyErrorKind, TokenOptions};
use serde_json::json;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, header, method, path},
};

use crate::{
    AUTH_TOKEN, BASIC, CLIENT_ID, SCAN_REF, client, client_with, config, parent, recorded_request,
    token_answer,
};

#[tokio::test]
async fn mint_sends_basic_auth_and_only_the_client_id_by_default() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .and(header("authorization", BASIC))
        .and(body_json(json!({ "clientId": CLIENT_ID })))
        .respond_with(ResponseTemplate::new(201).set_body_json(token_answer()))
        .expect(1)
        .mount(&server)
        .await;

    let minted = client(&server.uri()).mint(&parent()).await.expect("minted");

    assert_eq!(minted.scan_ref.as_str(), SCAN_REF);
    assert_eq!(minted.auth_token.expose(), AUTH_TOKEN);
    assert_eq!(
        minted.redirect_url,
        format!("https://ivs.idenfy.com/api/v2/redirect?authToken={AUTH_TOKEN}")
    );
    let request = recorded_request(&server).await;
    // Sorted: key order must not depend on whether a build enables serde_json's
    // `preserve_order` (bson does, in workspace builds).
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!("mint_default_request", request);
    });
}

#[tokio::test]
async fn mint_sends_every_configured_option() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .respond_with(ResponseTemplate::new(201).set_body_json(token_answer()))
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server.uri());
    cfg.token_options = TokenOptions {
        theme: Some("5f0c3c2e-7d4b-4a51-9d1e-0c2f8e6b9a10".into()),
        expiry_time_secs: Some(7200),
        session_length_secs: Some(900),
        locale: Some("de".into()),
        success_url: Some("https://app.example/idenfy/success".into()),
        error_url: Some("https://app.example/idenfy/error".into()),
        unverified_url: Some("https://app.example/idenfy/unverified".into()),
        callback_url: Some("https://app.example/idenfy/webhook".into()),
    };

    client_with(cfg).mint(&parent()).await.expect("minted");

    let request = recorded_request(&server).await;
    // Sorted: key order must not depend on whether a build enables serde_json's
    // `preserve_order` (bson does, in workspace builds).
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!("mint_full_options_request", request);
    });
}

#[tokio::test]
async fn mint_sends_only_the_configured_options() {
    let server = MockServer::start().await;
    // `body_json` compares the whole document: any extra field fails the match.
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .and(body_json(
            json!({ "clientId": CLIENT_ID, "sessionLength": 300, "locale": "lt" }),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_answer()))
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server.uri());
    cfg.token_options.session_length_secs = Some(300);
    cfg.token_options.locale = Some("lt".into());

    client_with(cfg).mint(&parent()).await.expect("minted");
}

#[tokio::test]
async fn mint_builds_the_redirect_url_when_absent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({ "authToken": AUTH_TOKEN, "scanRef": SCAN_REF })),
        )
        .expect(1)
        .mount(&server)
        .await;

    let minted = client(&server.uri()).mint(&parent()).await.expect("minted");

    assert_eq!(
        minted.redirect_url,
        format!("{}/api/v2/redirect?authToken={AUTH_TOKEN}", server.uri())
    );
}

#[tokio::test]
async fn mint_computes_expires_at_from_the_answered_expiry_time() {
    let server = MockServer::start().await;
    let mut answer = token_answer();
    answer["expiryTime"] = json!(900);
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .respond_with(ResponseTemplate::new(201).set_body_json(answer))
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server.uri());
    cfg.token_options.expiry_time_secs = Some(7200);

    let before = Utc::now();
    let minted = client_with(cfg).mint(&parent()).await.expect("minted");
    let after = Utc::now();

    assert!(
        before <= minted.minted_at && minted.minted_at <= after,
        "minted_at is taken before the request"
    );
    assert_eq!(
        minted.expires_at,
        Some(minted.minted_at + TimeDelta::seconds(900))
    );
}

#[tokio::test]
async fn mint_expiry_falls_back_to_the_configured_expiry_time() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({ "authToken": AUTH_TOKEN, "scanRef": SCAN_REF })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server.uri());
    cfg.token_options.expiry_time_secs = Some(7200);

    let minted = client_with(cfg).mint(&parent()).await.expect("minted");

    assert_eq!(
        minted.expires_at,
        Some(minted.minted_at + TimeDelta::seconds(7200))
    );
}

#[tokio::test]
async fn mint_expiry_defaults_to_one_hour() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({ "authToken": AUTH_TOKEN, "scanRef": SCAN_REF })),
        )
        .expect(1)
        .mount(&server)
        .await;

    let minted = client(&server.uri()).mint(&parent()).await.expect("minted");

    assert_eq!(
        minted.expires_at,
        Some(minted.minted_at + TimeDelta::seconds(3600))
    );
}

#[tokio::test]
async fn mint_without_auth_token_is_unexpected_payload() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "foo": "bar" })))
        .expect(1)
        .mount(&server)
        .await;

    let err = client(&server.uri())
        .mint(&parent())
        .await
        .expect_err("no authToken");

    assert_eq!(err.kind, IdenfyErrorKind::UnexpectedPayload);
    assert_eq!(err.http_status, Some(201));
}

#[tokio::test]
async fn mint_with_empty_scan_ref_or_non_json_is_unexpected_payload() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({ "authToken": AUTH_TOKEN, "scanRef": "" })),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>Token created</html>"))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server.uri());

    let empty = client.mint(&parent()).await.expect_err("empty scanRef");
    let garbage = client.mint(&parent()).await.expect_err("not JSON");

    assert_eq!(empty.kind, IdenfyErrorKind::UnexpectedPayload);
    assert_eq!(garbage.kind, IdenfyErrorKind::UnexpectedPayload);
    assert!(
        !garbage.message.contains("html"),
        "the body never reaches the error"
    );
}

#[tokio::test]
async fn mint_is_not_retried_on_a_server_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({ "identifier": "INTERNAL_ERROR", "message": "boom" })),
        )
        .expect(1)
        .mount(&server)
        .await;

    let err = client(&server.uri())
        .mint(&parent())
        .await
        .expect_err("500");

    assert_eq!(err.kind, IdenfyErrorKind::Server);
}

#[tokio::test]
async fn mint_is_not_retried_on_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(token_answer())
                .set_delay(Duration::from_secs(1)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut cfg = config(&server.uri());
    cfg.request_timeout = Duration::from_millis(200);

    let err = client_with(cfg)
        .mint(&parent())
        .await
        .expect_err("timed out");

    assert_eq!(err.kind, IdenfyErrorKind::Timeout);
    assert!(err.source.is_some(), "the reqwest error is kept");
}
