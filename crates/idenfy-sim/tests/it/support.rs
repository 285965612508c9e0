//! Test helpers: a started simulator, an authenticated client, and a webhook receiver.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use idenfy_sim::{Sim, SimConfig, SimHandle};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A config with fast webhook retries and a short manual review.
pub fn config() -> SimConfig {
    SimConfig {
        webhook_initial_backoff: Duration::from_millis(20),
        manual_review_delay: Duration::from_millis(150),
        webhook_timeout: Duration::from_secs(2),
        ..SimConfig::default()
    }
}

pub async fn start(cfg: SimConfig) -> SimHandle {
    Sim::start(cfg).await.expect("sim starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client builds")
}

/// POSTs JSON to an iDenfy endpoint with the sim's credentials.
pub async fn call(sim: &SimHandle, path: &str, body: Value) -> (StatusCode, Value) {
    let cfg = sim.config();
    let response = client()
        .post(format!("{}{path}", sim.base_url()))
        .basic_auth(&cfg.api_key, Some(&cfg.api_secret))
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    let text = response.text().await.expect("body read");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Mints a token (asserting 201) and returns the response body.
pub async fn mint(sim: &SimHandle, body: Value) -> Value {
    let (status, value) = call(sim, "/api/v2/token", body).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    value
}

pub async fn mint_for(sim: &SimHandle, client_id: &str) -> (String, String) {
    let token = mint(sim, json!({ "clientId": client_id })).await;
    (str_of(&token, "scanRef"), str_of(&token, "authToken"))
}

pub fn str_of(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {value}"))
        .to_owned()
}

pub async fn status_of(sim: &SimHandle, scan_ref: &str) -> Value {
    let (status, value) = call(sim, "/api/v2/status", json!({ "scanRef": scan_ref })).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    value
}

/// One webhook as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Hook {
    pub event: String,
    pub signature: String,
    pub content_type: String,
    pub raw: Bytes,
    pub json: Value,
}

struct ReceiverState {
    fail_first: u32,
    seen: AtomicU32,
    tx: mpsc::UnboundedSender<Hook>,
}

/// A tiny axum webhook receiver on 127.0.0.1:0 that answers 500 to its first `fail_first`
/// requests and records the rest.
pub struct Receiver {
    pub url: String,
    rx: mpsc::UnboundedReceiver<Hook>,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start(fail_first: u32) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(ReceiverState {
            fail_first,
            seen: AtomicU32::new(0),
            tx,
        });
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("receiver binds");
        let addr = listener.local_addr().expect("receiver address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/hook"),
            rx,
            state,
        }
    }

    /// The next recorded webhook (fails the test after 5 s).
    pub async fn next(&mut self) -> Hook {
        tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
            .await
            .expect("webhook within 5 s")
            .expect("receiver open")
    }

    /// Asserts nothing more arrives within `ms`.
    pub async fn assert_quiet(&mut self, ms: u64) {
        if let Ok(Some(hook)) =
            tokio::time::timeout(Duration::from_millis(ms), self.rx.recv()).await
        {
            panic!("unexpected webhook: {} {}", hook.event, hook.json);
        }
    }

    /// Requests received, refused ones included.
    pub fn requests(&self) -> u32 {
        self.state.seen.load(Ordering::SeqCst)
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    raw: Bytes,
) -> StatusCode {
    let n = state.seen.fetch_add(1, Ordering::SeqCst);
    if n < state.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let hook = Hook {
        event: header("idenfy-event-type"),
        signature: header("idenfy-signature"),
        content_type: header("content-type"),
        json: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
    };
    let _ = state.tx.send(hook);
    StatusCode::OK
}

/// Polls `f` every 10 ms for up to 3 s until it is true.
pub async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 3 s");
}
