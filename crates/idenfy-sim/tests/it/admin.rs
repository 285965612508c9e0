//! The admin HTTP API drives the same operations as the handle.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Receiver, call, config, mint_for, start, status_of};

async fn admin(base: &str, path: &str, body: Option<Value>) -> Value {
    let client = reqwest::Client::new();
    let url = format!("{base}/admin/{path}");
    let request = match body {
        Some(body) => client.post(url).json(&body),
        None => client.get(url),
    };
    let response = request.send().await.expect("admin call");
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.expect("json")
}

#[tokio::test]
async fn every_admin_endpoint_works_over_http() {
    let mut hooks = Receiver::start(0).await;
    let sim = start(config()).await;
    let base = sim.base_url();
    admin(&base, "webhook-url", Some(json!({ "url": hooks.url }))).await;

    let (a, a_token) = mint_for(&sim, "a").await;
    let opened = admin(&base, "open", Some(json!({ "authToken": a_token }))).await;
    assert_eq!(opened["opened"], true);
    let decided = admin(
        &base,
        "decide",
        Some(json!({ "scanRef": a, "outcome": "approve" })),
    )
    .await;
    assert_eq!(decided["decided"], true);
    assert_eq!(hooks.next().await.json["status"]["overall"], "APPROVED");

    let (b, _) = mint_for(&sim, "b").await;
    let expired = admin(&base, "expire", Some(json!({ "scanRef": b }))).await;
    assert_eq!(expired["expired"], true);
    assert_eq!(hooks.next().await.event, "IDENTIFICATION_EXPIRED");

    let (c, _) = mint_for(&sim, "c").await;
    let before = admin(&base, "clock", None).await;
    let after = admin(&base, "clock/advance", Some(json!({ "seconds": 3601 }))).await;
    assert_ne!(before["now"], after["now"]);
    assert_eq!(hooks.next().await.json["scanRef"], c.as_str());
    assert_eq!(status_of(&sim, &c).await["status"], "EXPIRED");

    let queued = admin(
        &base,
        "script",
        Some(json!({ "endpoint": "status", "faults": ["server_error"] })),
    )
    .await;
    assert_eq!(queued["queued"], 1);
    let (got, _) = call(&sim, "/api/v2/status", json!({ "scanRef": a })).await;
    assert_eq!(got, StatusCode::INTERNAL_SERVER_ERROR);
    admin(
        &base,
        "latency",
        Some(json!({ "endpoint": "status", "ms": 1 })),
    )
    .await;

    let counters = admin(&base, "counters", None).await;
    assert_eq!(
        counters["tokensMintedByClient"],
        json!({ "a": 1, "b": 1, "c": 1 })
    );
    assert_eq!(counters["statusCallsByScanRef"][&a], 1);
    let sessions = admin(&base, "sessions", None).await;
    assert_eq!(sessions.as_array().map(Vec::len), Some(3));
    let one = admin(&base, &format!("sessions/{a}"), None).await;
    assert_eq!(one["status"], "APPROVED");
    assert_eq!(one["clientId"], "a");
    let missing = reqwest::get(format!("{base}/admin/sessions/nope"))
        .await
        .expect("get");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    admin(&base, "reset", Some(json!({}))).await;
    let sessions = admin(&base, "sessions", None).await;
    assert_eq!(sessions, json!([]));
    let counters = admin(&base, "counters", None).await;
    assert_eq!(counters["tokenCalls"], 0);
    sim.shutdown().await;
}
