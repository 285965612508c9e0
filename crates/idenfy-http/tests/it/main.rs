//! idenfy-http on a backend of its own, without the simulator: idenfy-core's in-memory
//! adapters, its scripted iDenfy and a manual clock, driven through the router in process.
//! [`openapi`] checks the document against the router's source. The end-to-end tests of the
//! API with the service's own wiring (idenfy-sim, the metrics recorder, the listener) are in
//! idenfy-app's `tests/it`.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::{Body, to_bytes},
    http::{Request, StatusCode},
};
use chrono::TimeZone;
use futures::future::join_all;
use idenfy_core::{
    Environment, Ports, ScanRef, Sessions, Settings, VerificationStatus, WebhookKey,
    memory::{MemoryIntentStore, MemoryLock, MemoryParentStore, MemoryRowStore},
    testing::{ManualClock, ScriptedIdenfy},
    webhook::sign,
};
use idenfy_http::AppState;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::{Value, json};
use tower::ServiceExt;

mod openapi;

const TOKEN: &str = "internal-service-token-of-the-tests";
const SIGNING_KEY: &[u8] = b"webhook-signing-key-of-the-tests";
const USER: &str = "user-of-the-tests";

/// The router over a fresh in-memory backend, with handles on its iDenfy and clock.
struct World {
    router: Router,
    idenfy: ScriptedIdenfy,
    clock: ManualClock,
    poll_interval: Duration,
}

fn world() -> World {
    let start = chrono::Utc
        .with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
        .single()
        .expect("a valid time");
    let clock = ManualClock::new(start);
    let idenfy = ScriptedIdenfy::new().with_clock(clock.clone());
    let settings = Settings::new(
        Environment::Live,
        "https://ivs.idenfy.com",
        WebhookKey::new(SIGNING_KEY),
    );
    let poll_interval = settings.poll_interval;
    let live = Sessions::builder(
        Ports {
            rows: MemoryRowStore::new(),
            parents: MemoryParentStore::new(),
            intents: MemoryIntentStore::new(),
            lock: MemoryLock::new(clock.clone()),
            idenfy: idenfy.clone(),
            clock: clock.clone(),
        },
        settings,
    )
    .build();
    // A detached recorder: these tests read answers, not metrics.
    let metrics = PrometheusBuilder::new().build_recorder().handle();
    let state = AppState::new(Arc::new(live), metrics).with_internal_token(TOKEN);
    World {
        router: idenfy_http::router(state),
        idenfy,
        clock,
        poll_interval,
    }
}

/// Sends `request` through a clone of the router; returns the status and the JSON body.
async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router never fails");
    let status = response.status();
    let body = to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a readable body");
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, json)
}

fn create(token: &str) -> Request<Body> {
    Request::post("/internal/sessions")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({ "sigDigest": USER, "flow": "gov-id" }).to_string(),
        ))
        .expect("a valid request")
}

fn status_of(row: &str) -> Request<Body> {
    Request::get(format!("/idenfy-sessions/{row}/status"))
        .header("x-holo-user-id", USER)
        .body(Body::empty())
        .expect("a valid request")
}

/// Creates a session through the internal route; returns the row id and the iDenfy part.
async fn created(world: &World) -> (String, Value) {
    let (status, body) = send(&world.router, create(TOKEN)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let row = body["idenfySessionId"]
        .as_str()
        .expect("a row id")
        .to_owned();
    (row, body["idenfy"].clone())
}

#[tokio::test]
async fn an_expired_token_is_replaced_once_however_many_polls_race() {
    let world = world();
    let (row, first) = created(&world).await;
    assert_eq!(world.idenfy.mint_calls(), 1);
    let old_scan_ref = first["idenfyScanRef"].as_str().expect("a scanRef");
    world
        .idenfy
        .set_status(&ScanRef::new(old_scan_ref), VerificationStatus::Expired);
    world
        .clock
        .advance(world.poll_interval + Duration::from_secs(1));

    let answers = join_all((0..8).map(|_| send(&world.router, status_of(&row)))).await;

    let mut tokens = Vec::new();
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_ne!(body["status"], "expired", "{body}");
        if let Some(token) = body["idenfyAuthToken"].as_str() {
            tokens.push(token.to_owned());
        }
    }
    assert_eq!(
        world.idenfy.mint_calls(),
        2,
        "one token at creation, one for the recovery"
    );
    // Whoever got a token got the new one.
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "{answers:?}");
    assert_ne!(
        tokens[0],
        first["idenfyAuthToken"].as_str().expect("a token")
    );
    let (_, now) = send(&world.router, status_of(&row)).await;
    assert_eq!(now["idenfyAuthToken"].as_str(), Some(tokens[0].as_str()));
    assert_eq!(now["recreationCount"], 1);
}

#[tokio::test]
async fn the_internal_routes_refuse_a_wrong_token_and_mint_nothing() {
    let world = world();
    let (status, body) = send(&world.router, create("not-the-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({ "error": "Missing or invalid service token" }));
    assert_eq!(world.idenfy.mint_calls(), 0);
}

#[tokio::test]
async fn a_webhook_with_a_wrong_signature_is_refused_and_changes_nothing() {
    let world = world();
    let (row, first) = created(&world).await;
    let scan_ref = first["idenfyScanRef"].as_str().expect("a scanRef");
    let body = json!({ "scanRef": scan_ref, "status": { "overall": "APPROVED" }, "final": true })
        .to_string();
    let webhook = |signature: String| {
        Request::post("/idenfy/webhook")
            .header("content-type", "application/json")
            .header("idenfy-signature", signature)
            .body(Body::from(body.clone()))
            .expect("a valid request")
    };

    let (status, answer) = send(
        &world.router,
        webhook(sign(b"some other key", body.as_bytes())),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let (_, unchanged) = send(&world.router, status_of(&row)).await;
    assert_eq!(unchanged["status"], "in_progress", "{unchanged}");

    // The same body signed with the right key is taken.
    let (status, answer) = send(&world.router, webhook(sign(SIGNING_KEY, body.as_bytes()))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, approved) = send(&world.router, status_of(&row)).await;
    assert_eq!(
        approved["idenfyVerificationStatus"], "APPROVED",
        "{approved}"
    );
}
