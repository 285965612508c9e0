//! Scripted faults and latency: each kind answers with iDenfy's documented status and shape.

use std::time::{Duration, Instant};

use idenfy_sim::{Endpoint, Fault};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{call, config, mint_for, start};

#[tokio::test]
async fn token_faults_apply_to_the_next_calls_in_order() {
    let sim = start(config()).await;
    sim.script_token(vec![
        Fault::ServerError,
        Fault::PaymentRequired,
        Fault::TokenLimit,
        Fault::TooManyRequests,
        Fault::Unauthorized,
        Fault::Conflict,
    ]);
    let expected = [
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("INTERNAL_ERROR"),
            None,
        ),
        (
            StatusCode::PAYMENT_REQUIRED,
            None,
            Some("Action not allowed due to lack of funds or exceeded limit."),
        ),
        (
            StatusCode::BAD_REQUEST,
            Some("PERMISSIONS_ERROR"),
            Some("Partner reached token limit."),
        ),
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some("TOO_MANY_REQUESTS"),
            None,
        ),
        (
            StatusCode::UNAUTHORIZED,
            None,
            Some("Invalid authorization credentials"),
        ),
        (StatusCode::CONFLICT, None, Some("Client ID already exists")),
    ];
    for (status, identifier, message) in expected {
        let (got, body) = call(&sim, "/api/v2/token", json!({ "clientId": "u" })).await;
        assert_eq!(got, status, "{body}");
        assert!(body["message"].is_string(), "{body}");
        match identifier {
            Some(identifier) => assert_eq!(body["identifier"], identifier),
            None => assert!(body.get("identifier").is_none(), "{body}"),
        }
        if let Some(message) = message {
            assert_eq!(body["message"], message);
        }
    }
    let (got, _) = call(&sim, "/api/v2/token", json!({ "clientId": "u" })).await;
    assert_eq!(got, StatusCode::CREATED, "the script is used up");
    let counters = sim.counters();
    assert_eq!(counters.token_calls, 7);
    assert_eq!(counters.tokens_minted_by_client.get("u"), Some(&1));
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_payload_is_a_200_that_is_not_json() {
    let sim = start(config()).await;
    sim.script_token(vec![Fault::BadPayload]);
    let (got, body) = call(&sim, "/api/v2/token", json!({ "clientId": "u" })).await;
    assert_eq!(got, StatusCode::OK);
    assert!(matches!(body, Value::String(_)), "not JSON: {body}");
    sim.shutdown().await;
}

#[tokio::test]
async fn status_faults_and_latency_faults() {
    let sim = start(config()).await;
    let (scan_ref, _) = mint_for(&sim, "u").await;
    sim.script_status(vec![
        Fault::TooManyRequests,
        Fault::Latency(Duration::from_millis(200)),
        Fault::ServerError,
    ]);
    let (got, _) = call(&sim, "/api/v2/status", json!({ "scanRef": scan_ref })).await;
    assert_eq!(got, StatusCode::TOO_MANY_REQUESTS);
    let started = Instant::now();
    let (got, body) = call(&sim, "/api/v2/status", json!({ "scanRef": scan_ref })).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(got, StatusCode::OK);
    assert_eq!(body["status"], "ACTIVE");
    let (got, _) = call(&sim, "/api/v2/status", json!({ "scanRef": scan_ref })).await;
    assert_eq!(got, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        sim.counters().status_calls_by_scan_ref.get(&scan_ref),
        Some(&3)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn set_latency_delays_every_call_of_that_endpoint() {
    let sim = start(config()).await;
    sim.set_latency(Endpoint::Token, Duration::from_millis(150));
    for _ in 0..2 {
        let started = Instant::now();
        mint_for(&sim, "u").await;
        // From below only: the latency is a floor however loaded the machine is.
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    // An hour of latency: a call made under it is counted and then left waiting...
    sim.set_latency(Endpoint::Token, Duration::from_secs(3_600));
    let waiting = tokio::spawn(token_call(&sim, "waiting"));
    until(|| sim.counters().token_calls == 3).await;
    // ...and once the latency is removed, the next call is answered while it still waits:
    // the later call finished first, so it was not delayed.
    sim.set_latency(Endpoint::Token, Duration::ZERO);
    hang_guard(mint_for(&sim, "u")).await;
    assert!(
        !waiting.is_finished(),
        "the call made under the hour of latency still waits"
    );
    assert_eq!(sim.counters().tokens_minted_by_client.get("u"), Some(&3));
    assert_eq!(sim.counters().tokens_minted_by_client.get("waiting"), None);
    sim.shutdown().await;
    // Shutdown cuts the latency short (the hour cannot pass within the guard).
    let (status, body) = hang_guard(waiting).await.expect("the waiting call");
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn timeout_trips_client_timeouts_and_shutdown_cuts_the_hang_short() {
    let sim = start(config()).await;
    sim.script_token(vec![Fault::Timeout, Fault::Timeout]);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let url = format!("{}/api/v2/token", sim.base_url());
    let error = impatient
        .post(&url)
        .basic_auth("sim-api-key", Some("sim-api-secret"))
        .json(&json!({ "clientId": "u" }))
        .send()
        .await
        .expect_err("times out");
    assert!(error.is_timeout(), "{error}");

    // A patient caller hangs on the second Timeout until the sim shuts down. The clock of
    // the hang's own length starts before the call does.
    let hang_over = tokio::time::sleep(TIMEOUT_HANG);
    let patient = tokio::spawn(token_call(&sim, "u"));
    until(|| sim.counters().token_calls == 2).await;
    assert!(!patient.is_finished(), "the patient caller hangs");
    sim.shutdown().await;
    // Order, not speed: the patient call ends before the hang would have ended by itself.
    let answered = tokio::select! {
        answered = patient => answered.expect("the patient call"),
        () = hang_over => panic!("the hang ran its full {TIMEOUT_HANG:?}: shutdown did not cut it short"),
    };
    assert_eq!(answered.0, StatusCode::GATEWAY_TIMEOUT, "{}", answered.1);
}

#[tokio::test]
async fn faults_from_the_admin_api_use_snake_case_names() {
    let sim = start(config()).await;
    let response = reqwest::Client::new()
        .post(format!("{}/admin/script", sim.base_url()))
        .json(&json!({ "endpoint": "token", "faults": ["payment_required", { "latency_ms": 10 }, "token_limit"] }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let (got, _) = call(&sim, "/api/v2/token", json!({ "clientId": "u" })).await;
    assert_eq!(got, StatusCode::PAYMENT_REQUIRED);
    let (got, _) = call(&sim, "/api/v2/token", json!({ "clientId": "u" })).await;
    assert_eq!(got, StatusCode::CREATED);
    let (got, body) = call(&sim, "/api/v2/token", json!({ "clientId": "u" })).await;
    assert_eq!(got, StatusCode::BAD_REQUEST);
    assert_eq!(body["identifier"], "PERMISSIONS_ERROR");
    sim.shutdown().await;
}

/// `AnswerLost` mints (and bills) the token, then hangs: the caller times out without ever
/// seeing a token that exists — an outcome it cannot know.
#[tokio::test]
async fn answer_lost_mints_the_token_and_then_hangs() {
    let sim = start(config()).await;
    sim.script_token(vec![Fault::AnswerLost]);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let error = impatient
        .post(format!("{}/api/v2/token", sim.base_url()))
        .basic_auth("sim-api-key", Some("sim-api-secret"))
        .json(&json!({ "clientId": "lost-answer" }))
        .send()
        .await
        .expect_err("times out");
    assert!(error.is_timeout(), "{error}");
    let counters = sim.counters();
    assert_eq!(counters.token_calls, 1);
    assert_eq!(
        counters.tokens_minted_by_client.get("lost-answer"),
        Some(&1),
        "billed although nobody saw it"
    );
    sim.shutdown().await;
}

/// How long `Fault::Timeout` and `Fault::AnswerLost` hang before answering 504.
const TIMEOUT_HANG: Duration = Duration::from_secs(30);

/// A token call with no client timeout (a caller that waits as long as the sim makes it),
/// as (status, body).
fn token_call(
    sim: &idenfy_sim::SimHandle,
    client_id: &str,
) -> impl Future<Output = (StatusCode, Value)> + Send + 'static {
    let cfg = sim.config();
    let request = reqwest::Client::new()
        .post(format!("{}/api/v2/token", sim.base_url()))
        .basic_auth(&cfg.api_key, Some(&cfg.api_secret))
        .json(&json!({ "clientId": client_id }));
    async move {
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body read");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// Fails the test if `future` hangs. It bounds a hang, not speed: a minute is far beyond
/// what any step here takes on a loaded machine.
async fn hang_guard<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("hang guard: no progress within 60 s")
}

/// Polls `condition` every 10 ms until it holds (under [`hang_guard`]).
async fn until(mut condition: impl FnMut() -> bool) {
    hang_guard(async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
