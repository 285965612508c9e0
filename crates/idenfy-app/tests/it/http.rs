//! Every route and error of the HTTP API, in-process on the in-memory adapters with
//! idenfy-sim as iDenfy; response bodies as insta snapshots (ids, tokens, times redacted).

use std::time::Duration;

use insta::assert_json_snapshot;
use serde_json::{Value, json};

use crate::support::{OTHER_USER, Options, TOKEN, TestApp, USER, redact, send};

#[tokio::test]
async fn status_of_an_own_session_is_its_view() {
    let app = TestApp::start().await;
    let created = app.created(USER).await;
    // Past the (1 ms) poll interval, so the status is polled and the snapshot is stable.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let (code, body) = app.status(&created.row, USER).await;
    assert_eq!(code, 200);
    assert_eq!(body["idenfyAuthToken"], created.token.as_str());
    assert_json_snapshot!("status_active", redact(&body));
}

#[tokio::test]
async fn unknown_malformed_and_foreign_ids_are_all_404() {
    let app = TestApp::start().await;
    let created = app.created(USER).await;
    let mut bodies = Vec::new();
    for (row, user) in [
        ("0123456789abcdef01234567", USER),
        ("not-an-object-id", USER),
        ("%E2%82", USER),
        (created.row.as_str(), OTHER_USER),
    ] {
        let (code, body) = app.status(row, user).await;
        assert_eq!(code, 404, "{row}: {body}");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "no existence oracle: {bodies:?}"
    );
    assert_json_snapshot!("status_not_found", bodies[0]);
}

#[tokio::test]
async fn a_missing_or_invalid_identity_is_401_on_every_user_route() {
    let app = TestApp::start().await;
    let created = app.created(USER).await;
    let paths = [
        format!("/idenfy-sessions/{}/status", created.row),
        format!("/session-status/v2?sid={}", created.parent),
        "/idenfy-sessions".to_owned(),
    ];
    let mut bodies = Vec::new();
    for path in &paths {
        let (code, body) = app.get(path, None).await;
        assert_eq!(code, 401, "{path} without header");
        bodies.push(body);
        for bad in ["", "   ", "a,b", "user-sig-digest-1, user-sig-digest-1"] {
            let (code, body) = app.get(path, Some(bad)).await;
            assert_eq!(code, 401, "{path} with {bad:?}");
            bodies.push(body);
        }
        let (code, body) = send(
            app.http
                .get(app.url(path))
                .header("X-Holo-User-Id", USER)
                .header("X-Holo-User-Id", USER),
        )
        .await;
        assert_eq!(code, 401, "{path} with two headers");
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_json_snapshot!("identity_missing", bodies[0]);
}

#[tokio::test]
async fn session_status_v2_answers_by_parent() {
    let app = TestApp::start().await;
    let created = app.created(USER).await;
    let (code, body) = app.get("/session-status/v2", Some(USER)).await;
    assert_eq!(code, 400);
    assert_json_snapshot!("status_v2_missing_sid", body);
    let (code, _) = app.get("/session-status/v2?sid=", Some(USER)).await;
    assert_eq!(code, 400);
    let (code, body) = app
        .get(
            "/session-status/v2?sid=0123456789abcdef01234567",
            Some(USER),
        )
        .await;
    assert_eq!(code, 404);
    assert_json_snapshot!("status_v2_not_found", body);
    let path = format!("/session-status/v2?sid={}", created.parent);
    let (code, _) = app.get(&path, Some(OTHER_USER)).await;
    assert_eq!(code, 404, "another user's parent");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let (code, body) = app.get(&path, Some(USER)).await;
    assert_eq!(code, 200);
    assert_eq!(body["idenfy"]["sid"], created.parent.as_str());
    assert_json_snapshot!("status_v2", redact(&body));
}

#[tokio::test]
async fn listing_shows_own_rows_without_tokens() {
    let app = TestApp::start().await;
    let created = app.created(USER).await;
    app.created(OTHER_USER).await;
    let (code, body) = app.get("/idenfy-sessions", Some(USER)).await;
    assert_eq!(code, 200);
    let sessions = body["sessions"].as_array().expect("array");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["_id"], created.row.as_str());
    assert!(
        !body.to_string().contains(&created.token),
        "no tokens in listings"
    );
    assert_json_snapshot!("list", redact(&body));
}

#[tokio::test]
async fn an_expired_token_is_recovered_on_poll() {
    let app = TestApp::start().await;
    let created = app.created(USER).await;
    assert!(app.sim.expire_token(&created.scan_ref));
    let body = app
        .status_until(&created.row, USER, |b| {
            b["idenfyScanRef"]
                .as_str()
                .is_some_and(|s| s != created.scan_ref)
        })
        .await;
    assert_eq!(body["recreationCount"], 1);
    assert_ne!(body["idenfyAuthToken"], created.token.as_str());
    assert_json_snapshot!("status_recovered", redact(&body));
}

fn webhook_body(scan_ref: &str, overall: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "final": true,
        "scanRef": scan_ref,
        "clientId": "client",
        "status": { "overall": overall }
    }))
    .expect("json")
}

#[tokio::test]
async fn webhooks_check_size_signature_body_and_scan_ref() {
    let app = TestApp::start().await;
    let created = app.created(USER).await;

    // Too large: 413 before anything else.
    let big = vec![b' '; (1 << 20) + 1];
    let (code, body) = app.webhook("", &big).await;
    assert_eq!(code, 413);
    assert_json_snapshot!("webhook_too_large", body);

    // Signature missing, malformed, wrong.
    let payload = webhook_body(&created.scan_ref, "APPROVED");
    let post = |signature: Option<&str>| {
        let mut request = app
            .http
            .post(app.url("/idenfy/webhook"))
            .body(payload.clone());
        if let Some(signature) = signature {
            request = request.header("Idenfy-Signature", signature);
        }
        send(request)
    };
    let (code, body) = post(None).await;
    assert_eq!(code, 401);
    assert_json_snapshot!("webhook_missing_signature", body);
    let (code, body) = post(Some("abc")).await;
    assert_eq!(code, 401);
    assert_json_snapshot!("webhook_invalid_signature", body);
    let (code, _) = post(Some(&"0".repeat(64))).await;
    assert_eq!(code, 401);

    // Signed, but not JSON / no scanRef / unknown scanRef.
    let (code, body) = app.webhook("", b"{not json").await;
    assert_eq!(code, 400);
    assert_json_snapshot!("webhook_malformed", body);
    let (code, body) = app
        .webhook("", br#"{"status":{"overall":"APPROVED"}}"#)
        .await;
    assert_eq!(code, 400);
    assert_json_snapshot!("webhook_missing_scan_ref", body);
    let (code, body) = app
        .webhook("", &webhook_body("no-such-scan-ref", "APPROVED"))
        .await;
    assert_eq!(code, 404);
    assert_json_snapshot!("webhook_unknown_scan_ref", body);

    // The real thing.
    let (code, body) = app.webhook("", &payload).await;
    assert_eq!(code, 200);
    assert_json_snapshot!("webhook_applied", body);
    let (_, status) = app.status(&created.row, USER).await;
    assert_eq!(status["idenfyVerificationStatus"], "APPROVED");
    assert_eq!(status["status"], "complete");
    // Redelivery is a no-op.
    let (code, body) = app.webhook("", &payload).await;
    assert_eq!(code, 200);
    assert_eq!(body["outcome"], "duplicate");
}

#[tokio::test]
async fn a_webhook_for_a_superseded_scan_ref_is_acknowledged() {
    let app = TestApp::start().await;
    let created = app.created(USER).await;
    assert!(app.sim.expire_token(&created.scan_ref));
    let recovered = app
        .status_until(&created.row, USER, |b| {
            b["idenfyScanRef"]
                .as_str()
                .is_some_and(|s| s != created.scan_ref)
        })
        .await;
    let (code, body) = app
        .webhook("", &webhook_body(&created.scan_ref, "DENIED"))
        .await;
    assert_eq!(code, 200);
    assert_json_snapshot!("webhook_superseded", body);
    let (_, after) = app.status(&created.row, USER).await;
    assert_eq!(after["idenfyScanRef"], recovered["idenfyScanRef"]);
    assert_ne!(
        after["idenfyVerificationStatus"], "DENIED",
        "current row untouched"
    );
}

#[tokio::test]
async fn internal_routes_need_the_service_token() {
    let app = TestApp::start().await;
    let body = json!({ "sigDigest": USER, "flow": "gov-id" });
    let mut bodies = Vec::new();
    for path in [
        "/internal/sessions",
        "/internal/sessions/0123456789abcdef01234567/idenfy",
    ] {
        let (code, b) = send(app.http.post(app.url(path)).json(&body)).await;
        assert_eq!(code, 401, "{path} without token");
        bodies.push(b);
        let (code, b) = send(
            app.http
                .post(app.url(path))
                .bearer_auth("wrong")
                .json(&body),
        )
        .await;
        assert_eq!(code, 401, "{path} with a wrong token");
        bodies.push(b);
        let almost = format!("{}x", &TOKEN[..TOKEN.len() - 1]);
        let (code, _) = send(app.http.post(app.url(path)).bearer_auth(almost).json(&body)).await;
        assert_eq!(code, 401, "{path} with a near-miss token");
        let (code, _) = send(
            app.http
                .post(app.url(path))
                .header("Authorization", TOKEN)
                .json(&body),
        )
        .await;
        assert_eq!(code, 401, "{path} without the Bearer scheme");
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_json_snapshot!("internal_unauthorized", bodies[0]);
}

#[tokio::test]
async fn bad_create_bodies_are_400_json() {
    let app = TestApp::start().await;
    let cases: [(&str, &[u8]); 8] = [
        ("create_body_missing", b""),
        ("create_body_not_json", b"{nope"),
        ("create_body_wrong_shape", b"[1,2]"),
        ("create_body_no_sig_digest", br#"{"flow":"gov-id"}"#),
        (
            "create_body_empty_sig_digest",
            br#"{"sigDigest":"","flow":"gov-id"}"#,
        ),
        (
            "create_body_comma_sig_digest",
            br#"{"sigDigest":"a,b","flow":"gov-id"}"#,
        ),
        ("create_body_no_flow", br#"{"sigDigest":"abc"}"#),
        (
            "create_body_unknown_flow",
            br#"{"sigDigest":"abc","flow":"kyc"}"#,
        ),
    ];
    for (name, raw) in cases {
        let (code, body) = send(
            app.http
                .post(app.url("/internal/sessions"))
                .bearer_auth(TOKEN)
                .header("Content-Type", "application/json")
                .body(raw.to_vec()),
        )
        .await;
        assert_eq!(code, 400, "{name}: {body}");
        assert_json_snapshot!(name, body);
    }
    let (code, body) = send(
        app.http
            .post(app.url("/internal/sessions"))
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", "")
            .json(&json!({ "sigDigest": USER, "flow": "gov-id" })),
    )
    .await;
    assert_eq!(code, 400);
    assert_json_snapshot!("create_invalid_idempotency_key", body);
    // A JSON body sent as something else, or with no Content-Type, is 415.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = app
            .http
            .post(app.url("/internal/sessions"))
            .bearer_auth(TOKEN)
            .body(json!({ "sigDigest": USER, "flow": "gov-id" }).to_string());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let (code, body) = send(request).await;
        assert_eq!(code, 415, "{content_type:?}: {body}");
        assert_eq!(
            body,
            json!({ "error": "Content-Type must be application/json" })
        );
    }
    let (code, body) = send(
        app.http
            .post(app.url("/internal/sessions"))
            .header("Authorization", format!("bearer {TOKEN}"))
            .header("Content-Type", "application/json; charset=utf-8")
            .body(json!({ "sigDigest": "someone-lowercase", "flow": "gov-id" }).to_string()),
    )
    .await;
    assert_eq!(
        code, 201,
        "a lowercase scheme and a charset are fine: {body}"
    );
    assert_eq!(
        app.sim.counters().tokens_minted_by_client.len(),
        1,
        "only the valid request minted"
    );
}

#[tokio::test]
async fn create_is_idempotent_with_a_key() {
    let app = TestApp::start().await;
    let (code, first) = app.create(USER, Some("order-42")).await;
    assert_eq!(code, 201);
    assert_json_snapshot!("create_created", redact(&first));
    let (code, again) = app.create(USER, Some("order-42")).await;
    assert_eq!(code, 200);
    assert_eq!(again["replayed"], true);
    assert_eq!(again["sessionId"], first["sessionId"]);
    assert_eq!(again["idenfySessionId"], first["idenfySessionId"]);
    assert_eq!(
        app.sim.counters().token_calls,
        1,
        "one mint for two requests"
    );

    let (code, body) = send(
        app.http
            .post(app.url("/internal/sessions"))
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", "order-42")
            .json(&json!({ "sigDigest": USER, "flow": "clean-hands" })),
    )
    .await;
    assert_eq!(code, 422);
    assert_json_snapshot!("create_key_mismatch", body);
}

#[tokio::test]
async fn ensure_links_an_existing_parent_once() {
    let app = TestApp::start().await;
    let ensure = |id: String, body: Option<Value>| {
        let mut request = app
            .http
            .post(app.url(&format!("/internal/sessions/{id}/idenfy")))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request)
    };
    let (code, body) = ensure("0123456789abcdef01234567".to_owned(), None).await;
    assert_eq!(code, 404);
    assert_json_snapshot!("ensure_not_found", body);
    let (code, _) = ensure("malformed".to_owned(), None).await;
    assert_eq!(code, 404);

    let created = app.created(USER).await;
    let (code, body) = ensure(created.parent.clone(), Some(json!({ "sigDigest": USER }))).await;
    assert_eq!(code, 200, "already linked: {body}");
    assert_eq!(body["idenfySessionId"], created.row.as_str());
    let (code, _) = ensure(
        created.parent.clone(),
        Some(json!({ "sigDigest": OTHER_USER })),
    )
    .await;
    assert_eq!(code, 404, "another owner");
    let (code, body) = send(
        app.http
            .post(app.url(&format!("/internal/sessions/{}/idenfy", created.parent)))
            .bearer_auth(TOKEN)
            .body("{bad"),
    )
    .await;
    assert_eq!(code, 400);
    assert_json_snapshot!("ensure_bad_body", body);

    // A parent created elsewhere (id-server), without an iDenfy row yet.
    let parent = idenfy_core::ParentId::generate(chrono::Utc::now());
    idenfy_core::ParentStore::insert(
        app.live.parents(),
        &idenfy_core::Parent {
            id: parent.clone(),
            flow: idenfy_core::Flow::GovId,
            sig_digest: None,
            status: idenfy_core::ParentStatus::InProgress,
            idenfy_session_id: None,
            failure_reason: None,
            created_at: None,
        },
    )
    .await
    .expect("insert parent");
    let (code, body) = ensure(parent.to_string(), None).await;
    assert_eq!(code, 400, "no owner anywhere");
    assert_json_snapshot!("ensure_without_owner", body);
    let (code, first) = ensure(parent.to_string(), Some(json!({ "sigDigest": USER }))).await;
    assert_eq!(code, 201, "{first}");
    let (code, second) = ensure(parent.to_string(), Some(json!({ "sigDigest": USER }))).await;
    assert_eq!(code, 200);
    assert_eq!(first["idenfySessionId"], second["idenfySessionId"]);
}

#[tokio::test]
async fn sandbox_routes_are_404_unless_configured() {
    let app = TestApp::start().await;
    let created = app.created(USER).await;
    let mut bodies = Vec::new();
    for path in [
        format!("/sandbox/idenfy-sessions/{}/status", created.row),
        format!("/sandbox/session-status/v2?sid={}", created.parent),
        "/sandbox/idenfy-sessions".to_owned(),
    ] {
        let (code, body) = app.get(&path, Some(USER)).await;
        assert_eq!(code, 404, "{path}");
        bodies.push(body);
    }
    let (code, body) = app
        .webhook("/sandbox", &webhook_body(&created.scan_ref, "APPROVED"))
        .await;
    assert_eq!(code, 404);
    bodies.push(body);
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_json_snapshot!("sandbox_unconfigured", bodies[0]);

    let app = TestApp::with(Options {
        sandbox: true,
        ..Options::default()
    })
    .await;
    let (code, body) = app.get("/sandbox/idenfy-sessions", Some(USER)).await;
    assert_eq!(code, 200);
    assert_eq!(body, json!({ "sessions": [] }));
    let created = app.created(USER).await;
    let (code, _) = app
        .get(
            &format!("/sandbox/idenfy-sessions/{}/status", created.row),
            Some(USER),
        )
        .await;
    assert_eq!(code, 404, "live rows are not sandbox rows");
    let (code, _) = app
        .webhook("/sandbox", &webhook_body(&created.scan_ref, "APPROVED"))
        .await;
    assert_eq!(code, 404, "live scanRefs are unknown to the sandbox");
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    use std::sync::atomic::Ordering;

    let app = TestApp::start().await;
    let (code, body) = app.get("/healthz", None).await;
    assert_eq!(code, 200);
    assert_json_snapshot!("healthz", body);
    let (code, body) = app.get("/readyz", None).await;
    assert_eq!(code, 200);
    assert_json_snapshot!("readyz_up", body);
    app.health.valkey_down.store(true, Ordering::SeqCst);
    let (code, body) = app.get("/readyz", None).await;
    assert_eq!(code, 200, "Valkey down is degraded, still ready");
    assert_json_snapshot!("readyz_degraded", body);
    app.health.mongodb_down.store(true, Ordering::SeqCst);
    let (code, body) = app.get("/readyz", None).await;
    assert_eq!(code, 503);
    assert_json_snapshot!("readyz_down", body);

    let created = app.created(USER).await;
    app.status(&created.row, USER).await;
    let (code, body) = app.get("/metrics", None).await;
    assert_eq!(code, 200);
    let text = body.as_str().expect("text");
    assert!(
        text.contains(r#"http_request_duration_seconds_bucket{route="/idenfy-sessions/{id}/status",method="GET",status="200""#),
        "{text}"
    );
    assert!(text.contains("idenfy_mints_total"), "{text}");
    assert!(!text.contains(&created.row), "no raw ids as labels");

    let (code, body) = app.get("/openapi.json", None).await;
    assert_eq!(code, 200);
    assert_eq!(body["openapi"], "3.1.0");
    let paths = body["paths"].as_object().expect("paths");
    for path in [
        "/idenfy-sessions/{id}/status",
        "/sandbox/idenfy-sessions/{id}/status",
        "/session-status/v2",
        "/idenfy-sessions",
        "/idenfy/webhook",
        "/internal/sessions",
        "/internal/sessions/{id}/idenfy",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let app = TestApp::start().await;
    let (code, body) = app.get("/no/such/route", None).await;
    assert_eq!(code, 404);
    assert_json_snapshot!("route_not_found", body);
    let (code, body) = send(app.http.delete(app.url("/idenfy-sessions"))).await;
    assert_eq!(code, 405);
    assert_json_snapshot!("method_not_allowed", body);
    let (code, _) = send(app.http.get(app.url("/idenfy/webhook"))).await;
    assert_eq!(code, 405);
    let response = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let response = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "caller-chosen-id")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.headers()["x-request-id"], "caller-chosen-id");
}

#[tokio::test]
async fn a_decision_reaches_the_poller_through_the_simulators_webhook() {
    let app = TestApp::with(Options {
        webhooks: true,
        poll_interval: Duration::from_secs(60),
        ..Options::default()
    })
    .await;
    let created = app.created(USER).await;
    assert!(
        app.sim
            .decide(&created.scan_ref, idenfy_sim::Outcome::Deny)
            .await
    );
    let body = app
        .status_until(&created.row, USER, |b| {
            b["idenfyVerificationStatus"] == "DENIED"
        })
        .await;
    assert_eq!(body["status"], "failed");
    assert_json_snapshot!("status_denied", redact(&body));
    let (_, v2) = app
        .get(
            &format!("/session-status/v2?sid={}", created.parent),
            Some(USER),
        )
        .await;
    assert_eq!(v2["idenfy"]["status"], "DENIED");
    let parent = idenfy_core::ParentStore::find_any(
        app.live.parents(),
        &idenfy_core::ParentId::parse(&created.parent).expect("id"),
    )
    .await
    .expect("store")
    .expect("parent");
    assert_eq!(parent.status, idenfy_core::ParentStatus::VerificationFailed);
}
