//! The admin API (`/admin/...`, JSON, no auth; loopback only): everything [`SimHandle`] can do,
//! for tests and tools in other processes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::fault::{Endpoint, FaultSpec};
use crate::server::{Inner, SimHandle};
use crate::state::Outcome;

pub(crate) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/admin/clock", get(clock))
        .route("/admin/clock/advance", post(advance))
        .route("/admin/expire", post(expire))
        .route("/admin/open", post(open))
        .route("/admin/decide", post(decide))
        .route("/admin/script", post(script))
        .route("/admin/latency", post(latency))
        .route("/admin/webhook-url", post(webhook_url))
        .route("/admin/counters", get(counters))
        .route("/admin/sessions", get(sessions))
        .route("/admin/sessions/{scan_ref}", get(session))
        .route("/admin/reset", post(reset))
}

fn handle(inner: Arc<Inner>) -> SimHandle {
    SimHandle::from_inner(inner)
}

async fn clock(State(inner): State<Arc<Inner>>) -> Json<serde_json::Value> {
    Json(json!({ "now": handle(inner).now() }))
}

#[derive(Debug, Deserialize)]
struct Advance {
    seconds: u64,
}

async fn advance(
    State(inner): State<Arc<Inner>>,
    Json(req): Json<Advance>,
) -> Json<serde_json::Value> {
    let sim = handle(inner);
    sim.advance_clock(Duration::from_secs(req.seconds));
    Json(json!({ "now": sim.now() }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScanRefBody {
    scan_ref: String,
}

async fn expire(
    State(inner): State<Arc<Inner>>,
    Json(req): Json<ScanRefBody>,
) -> Json<serde_json::Value> {
    Json(json!({ "expired": handle(inner).expire_token(&req.scan_ref) }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenBody {
    auth_token: String,
}

async fn open(
    State(inner): State<Arc<Inner>>,
    Json(req): Json<OpenBody>,
) -> Json<serde_json::Value> {
    Json(json!({ "opened": handle(inner).open(&req.auth_token) }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DecideBody {
    scan_ref: String,
    outcome: Outcome,
}

async fn decide(
    State(inner): State<Arc<Inner>>,
    Json(req): Json<DecideBody>,
) -> Json<serde_json::Value> {
    Json(json!({ "decided": handle(inner).decide(&req.scan_ref, req.outcome).await }))
}

#[derive(Debug, Deserialize)]
struct ScriptBody {
    endpoint: Endpoint,
    faults: Vec<FaultSpec>,
}

async fn script(State(inner): State<Arc<Inner>>, Json(req): Json<ScriptBody>) -> Response {
    let sim = handle(inner);
    let count = req.faults.len();
    let faults = req.faults.into_iter().map(Into::into).collect();
    match req.endpoint {
        Endpoint::Token => sim.script_token(faults),
        Endpoint::Status => sim.script_status(faults),
        Endpoint::Data => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "message": "only token and status calls can be scripted" })),
            )
                .into_response();
        }
    }
    Json(json!({ "queued": count })).into_response()
}

#[derive(Debug, Deserialize)]
struct LatencyBody {
    endpoint: Endpoint,
    ms: u64,
}

async fn latency(
    State(inner): State<Arc<Inner>>,
    Json(req): Json<LatencyBody>,
) -> Json<serde_json::Value> {
    handle(inner).set_latency(req.endpoint, Duration::from_millis(req.ms));
    Json(json!({ "endpoint": req.endpoint, "ms": req.ms }))
}

#[derive(Debug, Deserialize)]
struct WebhookUrlBody {
    url: Option<String>,
}

async fn webhook_url(
    State(inner): State<Arc<Inner>>,
    Json(req): Json<WebhookUrlBody>,
) -> Json<serde_json::Value> {
    handle(inner).set_webhook_url(req.url.clone());
    Json(json!({ "url": req.url }))
}

async fn counters(State(inner): State<Arc<Inner>>) -> Response {
    Json(handle(inner).counters()).into_response()
}

async fn sessions(State(inner): State<Arc<Inner>>) -> Response {
    let all: Vec<_> = handle(inner).sessions().into_values().collect();
    Json(all).into_response()
}

async fn session(State(inner): State<Arc<Inner>>, Path(scan_ref): Path<String>) -> Response {
    match handle(inner).session(&scan_ref) {
        Some(snapshot) => Json(snapshot).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "message": "no such scanRef" })),
        )
            .into_response(),
    }
}

async fn reset(State(inner): State<Arc<Inner>>) -> Json<serde_json::Value> {
    handle(inner).reset();
    Json(json!({ "reset": true }))
}
