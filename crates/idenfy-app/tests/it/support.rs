//! Test harness: an app on the in-memory adapters, served on a loopback port, whose iDenfy is
//! an in-process idenfy-sim; plus JSON redaction for snapshots.

use std::{
    io::Write,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use idenfy_app::dev::{MemorySessions, memory_sessions};
use idenfy_client::Secret;
use idenfy_core::Environment;
use idenfy_http::{AppState, BoxFuture, Health, HealthProbe};
use idenfy_sim::{Sim, SimConfig, SimHandle};
use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;

pub const TOKEN: &str = "test-internal-token-0123456789abcdef";
pub const USER: &str = "user-sig-digest-1";
pub const OTHER_USER: &str = "user-sig-digest-2";

/// A switchable `/readyz` probe.
#[derive(Debug, Default)]
pub struct Switches {
    pub mongodb_down: AtomicBool,
    pub valkey_down: AtomicBool,
}

struct Probe(Arc<Switches>);

impl HealthProbe for Probe {
    fn check(&self) -> BoxFuture<'_, Health> {
        Box::pin(async move {
            Health {
                mongodb: !self.0.mongodb_down.load(Ordering::SeqCst),
                valkey: !self.0.valkey_down.load(Ordering::SeqCst),
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub sandbox: bool,
    pub poll_interval: Duration,
    /// Point the simulator's webhooks at this app.
    pub webhooks: bool,
    pub sim: SimConfig,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sandbox: false,
            poll_interval: Duration::from_millis(1),
            webhooks: false,
            sim: SimConfig::default(),
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub sim: SimHandle,
    pub live: Arc<MemorySessions>,
    pub health: Arc<Switches>,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let base = format!("http://{addr}");
        let mut sim_config = options.sim.clone();
        if options.webhooks {
            sim_config.webhook_url = Some(format!("{base}/idenfy/webhook"));
        }
        let sim = Sim::start(sim_config).await.expect("start idenfy-sim");
        let live = Arc::new(
            memory_sessions(&sim, Environment::Live, options.poll_interval).expect("sessions"),
        );
        let health = Arc::new(Switches::default());
        let mut state = AppState::new(live.clone(), idenfy_app::metrics::handle())
            .with_internal_token(Secret::new(TOKEN))
            .with_health(Arc::new(Probe(health.clone())));
        if options.sandbox {
            state = state.with_sandbox(Arc::new(
                memory_sessions(&sim, Environment::Sandbox, options.poll_interval)
                    .expect("sandbox sessions"),
            ));
        }
        let router = idenfy_http::router(state);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        TestApp {
            base,
            sim,
            live,
            health,
            http: reqwest::Client::new(),
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str, user: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(self.url(path));
        if let Some(user) = user {
            request = request.header("X-Holo-User-Id", user);
        }
        send(request).await
    }

    /// `POST /internal/sessions` with the service token.
    pub async fn create(&self, user: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url("/internal/sessions"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({ "sigDigest": user, "flow": "gov-id" }));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        send(request).await
    }

    /// A created session's (row id, parent id, scanRef, auth token).
    pub async fn created(&self, user: &str) -> Created {
        let (status, body) = self.create(user, None).await;
        assert_eq!(status, 201, "{body}");
        Created::from(&body)
    }

    pub async fn status(&self, row: &str, user: &str) -> (u16, Value) {
        self.get(&format!("/idenfy-sessions/{row}/status"), Some(user))
            .await
    }

    /// Polls the status until `done` holds (at most ~5 s).
    pub async fn status_until(
        &self,
        row: &str,
        user: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        for _ in 0..100 {
            let (code, body) = self.status(row, user).await;
            assert_eq!(code, 200, "{body}");
            assert_ne!(
                body["idenfyVerificationStatus"], "EXPIRED",
                "anti-flash: EXPIRED shown while recovery was possible"
            );
            if done(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("status of {row} never reached the expected state");
    }

    /// Signs `body` with the simulator's webhook key and posts it.
    pub async fn webhook(&self, prefix: &str, body: &[u8]) -> (u16, Value) {
        let signature =
            idenfy_core::webhook::sign(self.sim.config().webhook_signing_key.as_bytes(), body);
        send(
            self.http
                .post(self.url(&format!("{prefix}/idenfy/webhook")))
                .header("Idenfy-Signature", signature)
                .header("Idenfy-Event-Type", "IDENTIFICATION_AUTO_FINISHED")
                .header("Content-Type", "application/json")
                .body(body.to_vec()),
        )
        .await
    }
}

#[derive(Debug, Clone)]
pub struct Created {
    pub row: String,
    pub parent: String,
    pub scan_ref: String,
    pub token: String,
}

impl From<&Value> for Created {
    fn from(body: &Value) -> Self {
        let text = |v: &Value| v.as_str().expect("string field").to_owned();
        Created {
            row: text(&body["idenfySessionId"]),
            parent: text(&body["sessionId"]),
            scan_ref: text(&body["idenfy"]["idenfyScanRef"]),
            token: text(&body["idenfy"]["idenfyAuthToken"]),
        }
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    let body = if content_type.starts_with("application/json") {
        serde_json::from_str(&text).expect("JSON body")
    } else {
        Value::String(text)
    };
    (status, body)
}

/// Replaces ids, tokens, scanRefs and times by placeholders, so snapshots are stable.
pub fn redact(value: &Value) -> Value {
    const KEYS: &[&str] = &[
        "_id",
        "sid",
        "sessionId",
        "idenfySessionId",
        "createdBySessionId",
        "idenfyAuthToken",
        "authToken",
        "idenfyScanRef",
        "scanRef",
        "redirectUrl",
        "createdAt",
        "lastCheckedAt",
        "retryAfterMs",
    ];
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if KEYS.contains(&k.as_str()) && !v.is_null() {
                        Value::String(format!("[{k}]"))
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// Everything a test's log subscriber writes. Clones share the buffer.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

/// This thread's logs, captured while it lives (use a `current_thread` runtime, so that the
/// app's tasks log on this thread too).
pub struct LogCapture {
    pub logs: Captured,
    _guard: tracing::dispatcher::DefaultGuard,
    _second: tracing::Dispatch,
}

/// Captures this thread's logs with the subscriber `subscriber` builds around the buffer.
pub fn capture_logs<S>(subscriber: impl FnOnce(Captured) -> S) -> LogCapture
where
    S: tracing::Subscriber + Send + Sync + 'static,
{
    let logs = Captured::default();
    let capture = tracing::Dispatch::new(subscriber(logs.clone()));
    // tracing caches, process-wide, whether each log site is wanted; with one subscriber
    // registered it asks whichever thread logs first (possibly another test's, with none)
    // and caches "never". A second registered subscriber makes it ask every registered
    // one, this one included.
    let second = tracing::Dispatch::new(tracing_subscriber::registry());
    let guard = tracing::dispatcher::set_default(&capture);
    LogCapture {
        logs,
        _guard: guard,
        _second: second,
    }
}

/// The sessions of `memory_sessions` with a row store of the test's own.
pub type RowsSessions<R> = idenfy_core::Sessions<
    idenfy_core::Ports<
        R,
        idenfy_core::memory::MemoryParentStore,
        idenfy_core::memory::MemoryIntentStore,
        idenfy_core::memory::MemoryLock,
        idenfy_client::IdenfyClient,
        idenfy_core::SystemClock,
    >,
>;

/// The in-memory sessions of `memory_sessions` (1 ms poll interval), with `rows` as their
/// row store: a store that fails, stalls or counts.
pub fn sessions_with_rows<R: idenfy_core::RowStore>(sim: &SimHandle, rows: R) -> RowsSessions<R> {
    sessions_with_rows_in(sim, Environment::Live, rows)
}

/// [`sessions_with_rows`] for `environment`.
pub fn sessions_with_rows_in<R: idenfy_core::RowStore>(
    sim: &SimHandle,
    environment: Environment,
    rows: R,
) -> RowsSessions<R> {
    let template = memory_sessions(sim, environment, Duration::from_millis(1)).expect("sessions");
    idenfy_core::Sessions::builder(
        idenfy_core::Ports {
            rows,
            parents: template.parents().clone(),
            intents: template.intents().clone(),
            lock: template.lock().clone(),
            idenfy: template.idenfy().clone(),
            clock: *template.clock(),
        },
        template.settings().clone(),
    )
    .build()
}

/// Serves `router` on a loopback port until the test ends; returns its base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    base
}
