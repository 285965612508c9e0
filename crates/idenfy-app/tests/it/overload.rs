//! Admission control and abandoned work: polls over the replica's budget are refused at once
//! with 503 JSON and `Retry-After` while webhooks and probes still answer, and a poll whose
//! request was cut off gives its place back at once instead of waiting on the store.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use idenfy_client::Secret;
use idenfy_core::memory::{MemoryRowStore, delay};
use idenfy_http::{
    AppState, Timeouts,
    admission::{Admission, AdmissionLimits, Class},
};
use idenfy_sim::{Sim, SimConfig};
use serde_json::json;

use crate::support::{TOKEN, USER, send, serve, sessions_with_rows};

/// An app whose row store takes `store_pause` per call while `slow` is set.
struct SlowApp {
    base: String,
    admission: Arc<Admission>,
    slow: Arc<AtomicBool>,
    sim: idenfy_sim::SimHandle,
    http: reqwest::Client,
}

async fn slow_app(limits: AdmissionLimits, store_pause: Duration, timeouts: Timeouts) -> SlowApp {
    let sim = Sim::start(SimConfig::default()).await.expect("sim");
    let slow = Arc::new(AtomicBool::new(false));
    let switch = slow.clone();
    let sessions = sessions_with_rows(
        &sim,
        MemoryRowStore::new().with_delay(delay(move || {
            let slow = switch.load(Ordering::SeqCst);
            async move {
                if slow {
                    tokio::time::sleep(store_pause).await;
                }
            }
        })),
    );
    let state = AppState::new(Arc::new(sessions), idenfy_app::metrics::handle())
        .with_internal_token(Secret::new(TOKEN))
        .with_admission(limits)
        .with_timeouts(timeouts);
    let admission = state.admission.clone();
    let base = serve(idenfy_http::router(state)).await;
    SlowApp {
        base,
        admission,
        slow,
        sim,
        http: reqwest::Client::new(),
    }
}

impl SlowApp {
    async fn create(&self) -> String {
        let (code, body) = send(
            self.http
                .post(format!("{}/internal/sessions", self.base))
                .bearer_auth(TOKEN)
                .json(&json!({ "sigDigest": USER, "flow": "gov-id" })),
        )
        .await;
        assert_eq!(code, 201, "{body}");
        body["idenfySessionId"].as_str().expect("row id").to_owned()
    }

    fn status(&self, row: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/idenfy-sessions/{row}/status", self.base))
            .header("X-Holo-User-Id", USER)
    }

    /// Waits (hang guard: 10 s) until `class` has `count` requests in flight.
    async fn in_flight_reaches(&self, class: Class, count: usize) {
        for _ in 0..1000 {
            if self.admission.in_flight(class) == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{class:?} in flight stayed at {} (expected {count})",
            self.admission.in_flight(class)
        );
    }
}

#[tokio::test]
async fn polls_over_the_budget_are_shed_at_once_while_webhooks_and_probes_answer() {
    let app = slow_app(
        AdmissionLimits {
            polls: 2,
            priority: 2,
        },
        Duration::from_secs(2),
        Timeouts::default(),
    )
    .await;
    let row = app.create().await;
    app.slow.store(true, Ordering::SeqCst);
    let busy: Vec<_> = (0..2)
        .map(|_| tokio::spawn(send(app.status(&row))))
        .collect();
    app.in_flight_reaches(Class::Poll, 2).await;

    let response = app.status(&row).send().await.expect("answered");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({ "error": "The service is busy; retry shortly" })
    );
    let (code, _) = send(app.http.get(format!("{}/healthz", app.base))).await;
    assert_eq!(code, 200, "probes are never shed");
    let (code, metrics) = send(app.http.get(format!("{}/metrics", app.base))).await;
    assert_eq!(code, 200);
    assert!(
        metrics
            .as_str()
            .is_some_and(|m| m.contains("idenfy_shed_total{class=\"poll\"}")),
        "the shed request is counted"
    );

    // A webhook has a budget of its own: full polls do not shed it.
    let payload = br#"{"final":false,"scanRef":"unknown-scan-ref","status":{"overall":"ACTIVE"}}"#;
    let signature =
        idenfy_core::webhook::sign(app.sim.config().webhook_signing_key.as_bytes(), payload);
    let (code, body) = send(
        app.http
            .post(format!("{}/idenfy/webhook", app.base))
            .header("Idenfy-Signature", signature)
            .body(payload.to_vec()),
    )
    .await;
    assert_ne!(code, 503, "{body}");

    for poll in busy {
        let (code, body) = poll.await.expect("no panic");
        assert_eq!(code, 200, "admitted polls are answered: {body}");
    }
    app.slow.store(false, Ordering::SeqCst);
    app.in_flight_reaches(Class::Poll, 0).await;
    let (code, body) = send(app.status(&row)).await;
    assert_eq!(code, 200, "back to normal once the load is gone: {body}");
}

#[tokio::test]
async fn a_poll_cut_off_before_its_first_write_gives_its_place_back() {
    // The store hangs for a minute; the request deadline is 300 ms.
    let app = slow_app(
        AdmissionLimits {
            polls: 1,
            priority: 1,
        },
        Duration::from_secs(60),
        Timeouts {
            webhook: Duration::from_secs(8),
            request: Duration::from_millis(300),
        },
    )
    .await;
    let row = app.create().await;
    app.slow.store(true, Ordering::SeqCst);
    let (code, body) = send(app.status(&row)).await;
    assert_eq!(code, 503);
    assert_eq!(body, json!({ "error": "Request timed out" }));
    // The poll was reading the row: nothing was written, so it stops, and its permit comes
    // back long before the store would have answered.
    app.in_flight_reaches(Class::Poll, 0).await;
    app.slow.store(false, Ordering::SeqCst);
    let (code, body) = send(app.status(&row)).await;
    assert_eq!(code, 200, "{body}");
}
