//! The OpenAPI document against the router it describes.
//!
//! - Every answer provoked here is checked against the document: its status is listed for
//!   the path and method, every header the document marks `required` is sent (and every
//!   documented header that is sent matches its schema), the media type is the documented
//!   one, and a JSON body validates against the documented schema. For the check, every
//!   object schema gets `additionalProperties: false`, so a field the document does not
//!   declare fails too (the served document stays open to additive fields).
//! - Every status the document lists is provoked here, or named in [`NOT_PROVOKED`] with
//!   the reason.
//! - The dev-only `/docs` exists in the dev router only. (That every route the router
//!   defines is in the document, and nothing else, is idenfy-http's own test.)

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::Duration,
};

use idenfy_app::dev::{MemorySessions, memory_sessions};
use idenfy_client::Secret;
use idenfy_core::{
    Environment, Flow, IntentState, Parent, ParentId, ParentStatus, ParentStore, SigDigest,
    StoreError,
    creation::CreateRequest,
    memory::{MemoryRowStore, delay},
    webhook::WebhookError,
};
use idenfy_http::{
    AppState, BoxFuture, Health, HealthProbe, Timeouts,
    admission::{Admission, Admitted, Class},
};
use idenfy_sim::{Fault, Sim, SimConfig, SimHandle};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::support::{OTHER_USER, TOKEN, USER, serve};

/// Documented statuses this test cannot provoke, as (path, method, status) with the reason.
/// Empty: every status the document lists is provoked below.
const NOT_PROVOKED: &[(&str, &str, u16, &str)] = &[];

// ---------------------------------------------------------------------------------------
// Checking one answer against the document
// ---------------------------------------------------------------------------------------

/// One answer as received.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Adds `additionalProperties: false` to every object schema that lists its properties and
/// says nothing about others.
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".to_owned(), Value::Bool(false));
            }
            map.values_mut().for_each(strict);
        }
        Value::Array(items) => items.iter_mut().for_each(strict),
        _ => {}
    }
}

/// `instance` against `schema` (a schema of the document: its `$ref`s point into the
/// document's components), made [`strict`]; one line per problem.
fn validate(doc: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    let mut root = schema.clone();
    let Some(object) = root.as_object_mut() else {
        return vec![format!("the documented schema is not an object: {schema}")];
    };
    object.insert(
        "components".to_owned(),
        json!({ "schemas": doc["components"]["schemas"] }),
    );
    strict(&mut root);
    let validator = match jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
    {
        Ok(validator) => validator,
        Err(error) => return vec![format!("the documented schema does not compile: {error}")],
    };
    validator
        .iter_errors(instance)
        .map(|error| format!("at `{}`: {error}", error.instance_path()))
        .collect()
}

/// The documented response of `method path` for `status`.
fn documented<'d>(doc: &'d Value, path: &str, method: &str, status: u16) -> Option<&'d Value> {
    doc["paths"]
        .get(path)?
        .get(method.to_ascii_lowercase())?
        .get("responses")?
        .get(status.to_string())
}

/// Does `answer` (to `method path`) match the document?
fn check(doc: &Value, path: &str, method: &str, answer: &Answer) -> Result<(), String> {
    let method = method.to_ascii_uppercase();
    let Some(response) = documented(doc, path, &method, answer.status) else {
        return Err(format!(
            "{method} {path} answered {}, a status the document does not list for it",
            answer.status
        ));
    };
    let mut problems = Vec::new();
    for (name, header) in response["headers"].as_object().into_iter().flatten() {
        match answer.header(name) {
            None if header["required"] == true => {
                problems.push(format!("the required header `{name}` is missing"));
            }
            None => {}
            Some(text) => {
                let value = match header["schema"]["type"].as_str() {
                    Some("integer") => text.parse::<i64>().map_or(json!(text), Value::from),
                    _ => json!(text),
                };
                problems.extend(
                    validate(doc, &header["schema"], &value)
                        .into_iter()
                        .map(|problem| format!("header `{name}` {problem}")),
                );
            }
        }
    }
    let media = answer
        .header("content-type")
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match response["content"].as_object() {
        Some(content) if !content.is_empty() => match content.get(&media) {
            None => problems.push(format!(
                "content type `{media}`, the document has {:?}",
                content.keys().collect::<Vec<_>>()
            )),
            Some(entry) if media == "application/json" => {
                match serde_json::from_slice::<Value>(&answer.body) {
                    Ok(body) => problems.extend(validate(doc, &entry["schema"], &body)),
                    Err(error) => problems.push(format!("the body is not JSON: {error}")),
                }
            }
            // Text (the metrics): the media type is what the document says of it.
            Some(_) => {}
        },
        _ if answer.body.is_empty() => {}
        _ => problems.push("a body, where the document declares none".to_owned()),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{method} {path} answered {} but the document disagrees:\n  - {}\n  body: {}",
            answer.status,
            problems.join("\n  - "),
            String::from_utf8_lossy(&answer.body)
        ))
    }
}

/// Sends requests, checks each answer against the document and records what was covered.
struct Conformance {
    doc: Value,
    http: reqwest::Client,
    seen: Mutex<BTreeSet<(String, String, u16)>>,
}

impl Conformance {
    fn new() -> Self {
        Self {
            doc: idenfy_http::openapi::document(),
            http: reqwest::Client::new(),
            seen: Mutex::default(),
        }
    }

    /// Sends `request` (to the route whose documented path is `path`), expects `status`,
    /// checks the answer against the document.
    async fn expect(&self, path: &str, request: reqwest::RequestBuilder, status: u16) -> Answer {
        let request = request.build().expect("a valid request");
        let method = request.method().as_str().to_owned();
        let url = request.url().to_string();
        let response = self.http.execute(request).await.expect("answered");
        let answer = Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("body").to_vec(),
        };
        assert_eq!(
            answer.status,
            status,
            "{method} {url}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        if let Err(problem) = check(&self.doc, path, &method, &answer) {
            panic!("{problem}");
        }
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((path.to_owned(), method.to_ascii_lowercase(), status));
        answer
    }

    /// Every (path, method, status) the document lists.
    fn documented(&self) -> BTreeSet<(String, String, u16)> {
        let mut all = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                for status in operation["responses"]
                    .as_object()
                    .expect("responses")
                    .keys()
                {
                    all.insert((
                        path.clone(),
                        method.clone(),
                        status.parse().expect("numeric status"),
                    ));
                }
            }
        }
        all
    }
}

// ---------------------------------------------------------------------------------------
// The app: in memory, with a store that can be made slow or panic, and a readiness switch
// ---------------------------------------------------------------------------------------

const NORMAL: u8 = 0;
/// Every row-store call first sleeps past the route timeouts.
const SLOW: u8 = 1;
/// Every row-store call panics.
const PANIC: u8 = 2;

/// The route timeouts of the app under test.
const TIMEOUT: Duration = Duration::from_secs(2);

struct Probe(Arc<AtomicBool>);

impl HealthProbe for Probe {
    fn check(&self) -> BoxFuture<'_, Health> {
        let down = self.0.load(Ordering::SeqCst);
        Box::pin(async move {
            Health {
                mongodb: !down,
                valkey: true,
            }
        })
    }
}

struct App {
    base: String,
    sim: SimHandle,
    live: Arc<MemorySessions>,
    sandbox: Option<Arc<MemorySessions>>,
    admission: Arc<Admission>,
    store: Arc<AtomicU8>,
    mongodb_down: Arc<AtomicBool>,
}

/// In-memory sessions of `environment` whose row store obeys `store` (see [`SLOW`], [`PANIC`]).
fn sessions(sim: &SimHandle, environment: Environment, store: &Arc<AtomicU8>) -> MemorySessions {
    let store = Arc::clone(store);
    let rows = MemoryRowStore::new().with_delay(delay(move || {
        let mode = store.load(Ordering::SeqCst);
        async move {
            match mode {
                SLOW => tokio::time::sleep(TIMEOUT * 2).await,
                PANIC => panic!("row store panic injected by the OpenAPI conformance test"),
                _ => {}
            }
        }
    }));
    crate::support::sessions_with_rows_in(sim, environment, rows)
}

impl App {
    async fn start(sandbox: bool) -> App {
        let sim = Sim::start(SimConfig::default()).await.expect("idenfy-sim");
        let store = Arc::new(AtomicU8::new(NORMAL));
        let mongodb_down = Arc::new(AtomicBool::new(false));
        let live = Arc::new(sessions(&sim, Environment::Live, &store));
        let mut state = AppState::new(Arc::clone(&live), idenfy_app::metrics::handle())
            .with_internal_token(Secret::new(TOKEN))
            .with_health(Arc::new(Probe(Arc::clone(&mongodb_down))))
            .with_timeouts(Timeouts {
                webhook: TIMEOUT,
                request: TIMEOUT,
            });
        let sandbox = sandbox.then(|| Arc::new(sessions(&sim, Environment::Sandbox, &store)));
        if let Some(sandbox) = &sandbox {
            state = state.with_sandbox(Arc::clone(sandbox));
        }
        let admission = Arc::clone(&state.admission);
        let base = serve(idenfy_http::router(state)).await;
        App {
            base,
            sim,
            live,
            sandbox,
            admission,
            store,
            mongodb_down,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A session of `USER` in the environment of `prefix`: (row id, parent id, scanRef).
    async fn session(&self, prefix: &str) -> (String, String, String) {
        let sessions = if prefix.is_empty() {
            &self.live
        } else {
            self.sandbox.as_ref().expect("a sandbox")
        };
        let created = sessions
            .create_session(CreateRequest {
                sig_digest: SigDigest::parse(USER).expect("identity"),
                flow: Flow::GovId,
                idempotency_key: None,
            })
            .await
            .expect("created");
        (
            created.idenfy_session_id.to_string(),
            created.session_id.to_string(),
            created
                .idenfy
                .idenfy_scan_ref
                .expect("a scanRef")
                .as_str()
                .to_owned(),
        )
    }

    /// A parent created elsewhere, without an iDenfy session yet.
    async fn parent(&self, owner: Option<&str>, status: ParentStatus) -> String {
        let id = ParentId::generate(chrono::Utc::now());
        ParentStore::insert(
            self.live.parents(),
            &Parent {
                id: id.clone(),
                flow: Flow::GovId,
                sig_digest: owner.map(|o| SigDigest::parse(o).expect("identity")),
                status,
                idenfy_session_id: None,
                failure_reason: None,
                created_at: None,
            },
        )
        .await
        .expect("insert parent");
        id.to_string()
    }

    fn signature(&self, body: &[u8]) -> String {
        idenfy_core::webhook::sign(self.sim.config().webhook_signing_key.as_bytes(), body)
    }

    /// Every permit of `class` that is free, held until dropped: the next request is shed.
    fn exhaust(&self, class: Class) -> Vec<Admitted> {
        std::iter::from_fn(|| self.admission.try_admit(class)).collect()
    }
}

fn webhook_body(scan_ref: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "final": true,
        "scanRef": scan_ref,
        "clientId": "client",
        "status": { "overall": "APPROVED" }
    }))
    .expect("json")
}

const UNKNOWN_ID: &str = "0123456789abcdef01234567";

/// The owner of the sessions the internal routes create: no APPROVED session to reuse, so
/// each creation calls iDenfy.
const CREATOR: &str = "creator-sig-digest";

/// One byte over axum's default body limit (2 MiB), which the internal routes keep.
const OVER_DEFAULT_LIMIT: usize = (2 << 20) + 1;

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

/// The per-environment routes under `prefix` ("" or "/sandbox"), store working.
async fn user_routes_and_webhook(c: &Conformance, app: &App, prefix: &str) {
    let http = &c.http;
    let status_path = format!("{prefix}/idenfy-sessions/{{id}}/status");
    let v2_path = format!("{prefix}/session-status/v2");
    let list_path = format!("{prefix}/idenfy-sessions");
    let webhook_path = format!("{prefix}/idenfy/webhook");
    let (row, parent, scan_ref) = app.session(prefix).await;
    let status_url = app.url(&format!("{prefix}/idenfy-sessions/{row}/status"));

    c.expect(
        &status_path,
        http.get(&status_url).header("X-Holo-User-Id", USER),
        200,
    )
    .await;
    c.expect(&status_path, http.get(&status_url), 401).await;
    c.expect(
        &status_path,
        http.get(&status_url).header("X-Holo-User-Id", OTHER_USER),
        404,
    )
    .await;
    c.expect(
        &status_path,
        http.get(app.url(&format!("{prefix}/idenfy-sessions/{UNKNOWN_ID}/status")))
            .header("X-Holo-User-Id", USER),
        404,
    )
    .await;

    let v2_url = app.url(&v2_path);
    c.expect(
        &v2_path,
        http.get(&v2_url)
            .query(&[("sid", &parent)])
            .header("X-Holo-User-Id", USER),
        200,
    )
    .await;
    c.expect(
        &v2_path,
        http.get(&v2_url).header("X-Holo-User-Id", USER),
        400,
    )
    .await;
    c.expect(&v2_path, http.get(&v2_url).query(&[("sid", &parent)]), 401)
        .await;
    c.expect(
        &v2_path,
        http.get(&v2_url)
            .query(&[("sid", UNKNOWN_ID)])
            .header("X-Holo-User-Id", USER),
        404,
    )
    .await;

    let list_url = app.url(&list_path);
    let listed = c
        .expect(
            &list_path,
            http.get(&list_url).header("X-Holo-User-Id", USER),
            200,
        )
        .await;
    assert_eq!(
        listed.json()["sessions"].as_array().map(Vec::len),
        Some(1),
        "the listing is checked with an entry in it"
    );
    c.expect(&list_path, http.get(&list_url), 401).await;

    let webhook_url = app.url(&webhook_path);
    let body = webhook_body(&scan_ref);
    c.expect(
        &webhook_path,
        http.post(&webhook_url)
            .header("Idenfy-Signature", app.signature(&body))
            .header("Idenfy-Event-Type", "IDENTIFICATION_AUTO_FINISHED")
            .body(body.clone()),
        200,
    )
    .await;
    let malformed = b"not json".to_vec();
    c.expect(
        &webhook_path,
        http.post(&webhook_url)
            .header("Idenfy-Signature", app.signature(&malformed))
            .body(malformed),
        400,
    )
    .await;
    c.expect(
        &webhook_path,
        http.post(&webhook_url).body(body.clone()),
        401,
    )
    .await;
    let unknown = webhook_body("unknown-scan-ref");
    c.expect(
        &webhook_path,
        http.post(&webhook_url)
            .header("Idenfy-Signature", app.signature(&unknown))
            .body(unknown),
        404,
    )
    .await;
    let huge = vec![b' '; idenfy_http::WEBHOOK_BODY_LIMIT + 1];
    c.expect(
        &webhook_path,
        http.post(&webhook_url)
            .header("Idenfy-Signature", app.signature(&huge))
            .body(huge),
        413,
    )
    .await;
}

/// Without a sandbox, every `/sandbox/...` route is 404 (once the caller is identified).
async fn unconfigured_sandbox(c: &Conformance, app: &App) {
    let http = &c.http;
    for (path, url) in [
        (
            "/sandbox/idenfy-sessions/{id}/status",
            app.url(&format!("/sandbox/idenfy-sessions/{UNKNOWN_ID}/status")),
        ),
        (
            "/sandbox/session-status/v2",
            app.url(&format!("/sandbox/session-status/v2?sid={UNKNOWN_ID}")),
        ),
        (
            "/sandbox/idenfy-sessions",
            app.url("/sandbox/idenfy-sessions"),
        ),
    ] {
        let answer = c
            .expect(path, http.get(url).header("X-Holo-User-Id", USER), 404)
            .await;
        assert_eq!(
            answer.json()["error"],
            "Sandbox environment is not configured"
        );
    }
    let body = webhook_body("any");
    let answer = c
        .expect(
            "/sandbox/idenfy/webhook",
            http.post(app.url("/sandbox/idenfy/webhook"))
                .header("Idenfy-Signature", app.signature(&body))
                .body(body),
            404,
        )
        .await;
    assert_eq!(
        answer.json()["error"],
        "Sandbox environment is not configured"
    );
}

/// `POST /internal/sessions` and `POST /internal/sessions/{id}/idenfy`, store working.
async fn internal_routes(c: &Conformance, app: &App) {
    let http = &c.http;
    let path = "/internal/sessions";
    let url = app.url(path);
    let create = |key: &str, flow: &str| {
        http.post(&url)
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", key)
            .json(&json!({ "sigDigest": CREATOR, "flow": flow }))
    };
    c.expect(path, create("k-1", "gov-id"), 201).await;
    c.expect(path, create("k-1", "gov-id"), 200).await;
    c.expect(path, create("k-1", "clean-hands"), 422).await;
    c.expect(path, create("k-2", "no-such-flow"), 400).await;
    c.expect(
        path,
        http.post(&url)
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", "bad key with spaces")
            .json(&json!({ "sigDigest": USER, "flow": "gov-id" })),
        400,
    )
    .await;
    c.expect(
        path,
        http.post(&url)
            .bearer_auth("not-the-token")
            .json(&json!({ "sigDigest": USER, "flow": "gov-id" })),
        401,
    )
    .await;
    c.expect(
        path,
        http.post(&url)
            .bearer_auth(TOKEN)
            .header("Content-Type", "text/plain")
            .body(r#"{"sigDigest":"u","flow":"gov-id"}"#),
        415,
    )
    .await;
    c.expect(
        path,
        http.post(&url)
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/json")
            .body(vec![b' '; OVER_DEFAULT_LIMIT]),
        413,
    )
    .await;
    app.sim.script_token(vec![Fault::Unauthorized]);
    c.expect(path, create("k-3", "gov-id"), 502).await;
    app.sim.script_token(vec![Fault::ServerError]);
    let unavailable = c.expect(path, create("k-4", "gov-id"), 503).await;
    assert!(
        unavailable.header("retry-after").is_some(),
        "iDenfy unavailable: Retry-After"
    );

    // Two calls with one key while its token call hangs: the first is cut off by the route
    // timeout (its work goes on), the second is told to come back later.
    app.sim.script_token(vec![Fault::Latency(TIMEOUT * 3)]);
    let first = tokio::spawn(
        c.http
            .execute(create("k-5", "gov-id").build().expect("request")),
    );
    for _ in 0..500 {
        let pending = app
            .live
            .intents()
            .all()
            .iter()
            .any(|intent| intent.key == "create:k-5" && intent.state == IntentState::Pending);
        if pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let in_progress = c.expect(path, create("k-5", "gov-id"), 409).await;
    assert!(in_progress.header("retry-after").is_some());
    let first = first.await.expect("joined").expect("answered");
    assert_eq!(first.status().as_u16(), 503, "cut off by the route timeout");
    let first = Answer {
        status: first.status().as_u16(),
        headers: first.headers().clone(),
        body: first.bytes().await.expect("body").to_vec(),
    };
    check(&c.doc, path, "post", &first).unwrap_or_else(|problem| panic!("{problem}"));

    let path = "/internal/sessions/{id}/idenfy";
    let ensure = |id: &str| {
        http.post(app.url(&format!("/internal/sessions/{id}/idenfy")))
            .bearer_auth(TOKEN)
    };
    let parent = app.parent(Some(USER), ParentStatus::InProgress).await;
    c.expect(path, ensure(&parent), 201).await;
    c.expect(
        path,
        ensure(&parent).json(&json!({ "sigDigest": USER })),
        200,
    )
    .await;
    c.expect(path, ensure(&parent).body("{bad"), 400).await;
    let ownerless = app.parent(None, ParentStatus::InProgress).await;
    c.expect(path, ensure(&ownerless), 400).await;
    c.expect(path, ensure(UNKNOWN_ID), 404).await;
    c.expect(
        path,
        http.post(app.url(&format!("/internal/sessions/{parent}/idenfy"))),
        401,
    )
    .await;
    let issued = app.parent(Some(USER), ParentStatus::Issued).await;
    c.expect(path, ensure(&issued), 409).await;
    c.expect(
        path,
        ensure(&parent).body(vec![b' '; OVER_DEFAULT_LIMIT]),
        413,
    )
    .await;
    let refused = app.parent(Some(USER), ParentStatus::InProgress).await;
    app.sim.script_token(vec![Fault::Unauthorized]);
    c.expect(path, ensure(&refused), 502).await;
}

/// The probes, the metrics and the document.
async fn operations(c: &Conformance, app: &App) {
    let http = &c.http;
    c.expect("/healthz", http.get(app.url("/healthz")), 200)
        .await;
    c.expect("/readyz", http.get(app.url("/readyz")), 200).await;
    app.mongodb_down.store(true, Ordering::SeqCst);
    c.expect("/readyz", http.get(app.url("/readyz")), 503).await;
    app.mongodb_down.store(false, Ordering::SeqCst);
    c.expect("/metrics", http.get(app.url("/metrics")), 200)
        .await;
    let served = c
        .expect("/openapi.json", http.get(app.url("/openapi.json")), 200)
        .await;
    assert_eq!(
        served.json(),
        c.doc,
        "the served document is the one checked here"
    );
}

/// Every admitted route, shed (503 with `Retry-After: 1`): all permits of its class held.
async fn shed(c: &Conformance, app: &App, prefixes: &[&str]) {
    let http = &c.http;
    let overloaded = |answer: &Answer| {
        assert_eq!(answer.header("retry-after"), Some("1"));
        assert_eq!(answer.json()["error"], "The service is busy; retry shortly");
    };
    let held = app.exhaust(Class::Poll);
    for prefix in prefixes {
        for (path, url) in [
            (
                format!("{prefix}/idenfy-sessions/{{id}}/status"),
                app.url(&format!("{prefix}/idenfy-sessions/{UNKNOWN_ID}/status")),
            ),
            (
                format!("{prefix}/session-status/v2"),
                app.url(&format!("{prefix}/session-status/v2?sid={UNKNOWN_ID}")),
            ),
            (
                format!("{prefix}/idenfy-sessions"),
                app.url(&format!("{prefix}/idenfy-sessions")),
            ),
        ] {
            overloaded(
                &c.expect(&path, http.get(url).header("X-Holo-User-Id", USER), 503)
                    .await,
            );
        }
    }
    drop(held);
    let held = app.exhaust(Class::Priority);
    for prefix in prefixes {
        let path = format!("{prefix}/idenfy/webhook");
        overloaded(
            &c.expect(&path, http.post(app.url(&path)).body("{}"), 503)
                .await,
        );
    }
    overloaded(
        &c.expect(
            "/internal/sessions",
            http.post(app.url("/internal/sessions"))
                .bearer_auth(TOKEN)
                .json(&json!({ "sigDigest": USER, "flow": "gov-id" })),
            503,
        )
        .await,
    );
    overloaded(
        &c.expect(
            "/internal/sessions/{id}/idenfy",
            http.post(app.url(&format!("/internal/sessions/{UNKNOWN_ID}/idenfy")))
                .bearer_auth(TOKEN),
            503,
        )
        .await,
    );
    drop(held);
}

/// Every route that reaches the row store, with the store in `mode`, answers `status`.
async fn store_in_trouble(c: &Conformance, app: &App, prefixes: &[&str], mode: u8, status: u16) {
    let http = &c.http;
    let mut sessions = Vec::new();
    for prefix in prefixes {
        sessions.push((*prefix, app.session(prefix).await));
    }
    let linked = app.parent(Some(USER), ParentStatus::InProgress).await;
    let ensured = http
        .post(app.url(&format!("/internal/sessions/{linked}/idenfy")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answered");
    assert_eq!(ensured.status().as_u16(), 201);

    app.store.store(mode, Ordering::SeqCst);
    let mut calls = Vec::new();
    for (prefix, (row, parent, scan_ref)) in &sessions {
        let body = webhook_body(scan_ref);
        calls.extend([
            (
                format!("{prefix}/idenfy-sessions/{{id}}/status"),
                http.get(app.url(&format!("{prefix}/idenfy-sessions/{row}/status")))
                    .header("X-Holo-User-Id", USER),
            ),
            (
                format!("{prefix}/session-status/v2"),
                http.get(app.url(&format!("{prefix}/session-status/v2?sid={parent}")))
                    .header("X-Holo-User-Id", USER),
            ),
            (
                format!("{prefix}/idenfy-sessions"),
                http.get(app.url(&format!("{prefix}/idenfy-sessions")))
                    .header("X-Holo-User-Id", USER),
            ),
            (
                format!("{prefix}/idenfy/webhook"),
                http.post(app.url(&format!("{prefix}/idenfy/webhook")))
                    .header("Idenfy-Signature", app.signature(&body))
                    .body(body),
            ),
        ]);
    }
    calls.push((
        "/internal/sessions".to_owned(),
        http.post(app.url("/internal/sessions"))
            .bearer_auth(TOKEN)
            .json(&json!({ "sigDigest": USER, "flow": "gov-id" })),
    ));
    calls.push((
        "/internal/sessions/{id}/idenfy".to_owned(),
        http.post(app.url(&format!("/internal/sessions/{linked}/idenfy")))
            .bearer_auth(TOKEN),
    ));
    // At once: a slow store costs each of them the route timeout.
    futures::future::join_all(
        calls
            .into_iter()
            .map(|(path, request)| async move { c.expect(&path, request, status).await }),
    )
    .await;
    app.store.store(NORMAL, Ordering::SeqCst);
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn every_answer_matches_the_document() {
    let c = Conformance::new();
    let app = App::start(true).await;
    user_routes_and_webhook(&c, &app, "").await;
    user_routes_and_webhook(&c, &app, "/sandbox").await;
    internal_routes(&c, &app).await;
    operations(&c, &app).await;
    shed(&c, &app, &["", "/sandbox"]).await;
    store_in_trouble(&c, &app, &["", "/sandbox"], SLOW, 503).await;
    store_in_trouble(&c, &app, &["", "/sandbox"], PANIC, 500).await;
    let without_sandbox = App::start(false).await;
    unconfigured_sandbox(&c, &without_sandbox).await;

    // The webhook's store failure is answered by this conversion (the handler's `?`); the
    // in-memory store cannot be made to fail there, so its body is checked on its own.
    let response = axum::response::IntoResponse::into_response(idenfy_http::error::ApiError::from(
        WebhookError::Store(StoreError::Unavailable("injected".into())),
    ));
    assert_eq!(response.status().as_u16(), 500);
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body"),
    )
    .expect("JSON");
    assert_eq!(
        body,
        json!({ "received": false, "error": "Processing error" })
    );
    let schema = &documented(&c.doc, "/idenfy/webhook", "post", 500).expect("documented")["content"]
        ["application/json"]["schema"];
    assert_eq!(validate(&c.doc, schema, &body), Vec::<String>::new());

    let seen = c
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let excused: BTreeSet<(String, String, u16)> = NOT_PROVOKED
        .iter()
        .map(|(path, method, status, _)| ((*path).to_owned(), (*method).to_owned(), *status))
        .collect();
    let documented = c.documented();
    let missed: Vec<_> = documented
        .difference(&seen)
        .filter(|k| !excused.contains(k))
        .collect();
    assert!(
        missed.is_empty(),
        "documented but never provoked: {missed:#?}"
    );
    let stale: Vec<_> = excused
        .iter()
        .filter(|k| seen.contains(*k) || !documented.contains(*k))
        .collect();
    assert!(
        stale.is_empty(),
        "NOT_PROVOKED lists what is provoked or undocumented: {stale:#?}"
    );
}

/// The checker itself: answers that stray from the document are caught.
#[test]
fn answers_that_stray_from_the_document_fail_the_check() {
    let doc = idenfy_http::openapi::document();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().expect("value"));
    headers.insert("x-request-id", "r-1".parse().expect("value"));
    let answer = |status: u16, headers: &HeaderMap, body: Value| Answer {
        status,
        headers: headers.clone(),
        body: serde_json::to_vec(&body).expect("json"),
    };
    let path = "/idenfy-sessions/{id}/status";
    let view = json!({
        "status": "in_progress",
        "idenfyVerificationStatus": null,
        "idenfyAuthToken": "token",
        "idenfyScanRef": "scan",
        "redirectUrl": "https://example.test/r",
        "recreationCount": 0
    });
    assert_eq!(
        check(&doc, path, "get", &answer(200, &headers, view.clone())),
        Ok(())
    );

    let mut missing = view.clone();
    missing
        .as_object_mut()
        .expect("object")
        .remove("idenfyAuthToken");
    let mut extra = view.clone();
    extra["secret"] = json!("leaked");
    let mut wrong_type = view.clone();
    wrong_type["recreationCount"] = json!("0");
    for (why, body) in [
        ("a required field missing", missing),
        ("an undeclared field", extra),
        ("a field of the wrong type", wrong_type),
        (
            "an error body where a view is documented",
            json!({ "error": "x" }),
        ),
    ] {
        assert!(
            check(&doc, path, "get", &answer(200, &headers, body)).is_err(),
            "{why}"
        );
    }
    let err = check(
        &doc,
        path,
        "get",
        &answer(418, &headers, json!({ "error": "x" })),
    );
    assert!(err.is_err(), "an undocumented status");
    let mut without_id = headers.clone();
    without_id.remove("x-request-id");
    let err = check(&doc, path, "get", &answer(200, &without_id, view));
    assert!(
        err.as_ref().is_err_and(|e| e.contains("x-request-id")),
        "a required header missing: {err:?}"
    );
    let mut shed = headers.clone();
    shed.insert("retry-after", "soon".parse().expect("value"));
    let err = check(
        &doc,
        path,
        "get",
        &answer(503, &shed, json!({ "error": "busy" })),
    );
    assert!(
        err.is_err(),
        "a Retry-After that is not a number of seconds"
    );
}

#[tokio::test]
async fn the_docs_page_exists_in_dev_mode_only() {
    let sim = Sim::start(SimConfig::default()).await.expect("idenfy-sim");
    let state = || {
        let live =
            memory_sessions(&sim, Environment::Live, Duration::from_millis(1)).expect("sessions");
        AppState::new(Arc::new(live), idenfy_app::metrics::handle())
    };
    let http = reqwest::Client::new();

    let production = serve(idenfy_http::router(state())).await;
    let response = http
        .get(format!("{production}/docs"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 404, "`serve` has no /docs");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "Not found");

    let dev = serve(idenfy_http::dev_router(state())).await;
    let response = http
        .get(format!("{dev}/docs"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers().contains_key("x-request-id"),
        "the usual middleware"
    );
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html")),
    );
    let page = response.text().await.expect("page");
    assert!(page.contains("url: '/openapi.json'"), "{page}");
    let response = http
        .get(format!("{dev}/openapi.json"))
        .send()
        .await
        .expect("answered");
    assert_eq!(
        response.status().as_u16(),
        200,
        "the document the page loads"
    );
}
