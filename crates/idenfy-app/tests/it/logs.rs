//! Log hygiene: a full flow with every log line captured at TRACE, then a search for every
//! secret the flow handled.

use std::time::Duration;

use idenfy_sim::SimConfig;
use serde_json::json;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt};

use crate::support::{Options, TOKEN, TestApp, capture_logs, send};

// current_thread: every task of the app, the simulator and reqwest runs on this thread,
// so the thread-local subscriber sees all of them.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_reaches_the_logs_at_trace_level() {
    let capture = capture_logs(|buffer| {
        tracing_subscriber::registry()
            .with(EnvFilter::new("trace"))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(buffer.clone())
                    .with_ansi(false),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(buffer),
            )
    });
    let buffer = &capture.logs;

    let api_key = "it-api-key-QUOKKA";
    let api_secret = "it-api-secret-PANGOLIN";
    let signing_key = "it-signing-key-NARWHAL";
    let user = "identity-value-AXOLOTL";
    let marker = "webhook-body-content-OKAPI";
    let app = TestApp::with(Options {
        webhooks: true,
        poll_interval: Duration::from_millis(50),
        sim: SimConfig {
            api_key: api_key.to_owned(),
            api_secret: api_secret.to_owned(),
            webhook_signing_key: signing_key.to_owned(),
            ..SimConfig::default()
        },
        ..Options::default()
    })
    .await;

    let (code, body) = app.create(user, Some("log-flow-1")).await;
    assert_eq!(code, 201, "{body}");
    let created = crate::support::Created::from(&body);
    let (code, _) = app.status(&created.row, user).await;
    assert_eq!(code, 200);
    assert!(app.sim.expire_token(&created.scan_ref));
    let recovered = app
        .status_until(&created.row, user, |b| {
            b["idenfyScanRef"]
                .as_str()
                .is_some_and(|s| s != created.scan_ref)
        })
        .await;
    let new_scan_ref = recovered["idenfyScanRef"]
        .as_str()
        .expect("scanRef")
        .to_owned();
    let new_token = recovered["idenfyAuthToken"]
        .as_str()
        .expect("token")
        .to_owned();

    // A signed webhook whose body carries a marker (and personal data) that must not be logged.
    let payload = serde_json::to_vec(&json!({
        "final": false,
        "scanRef": new_scan_ref,
        "clientId": created.parent,
        "status": { "overall": "REVIEWING" },
        "data": { "docFirstName": marker, "docLastName": marker }
    }))
    .expect("json");
    let (code, _) = app.webhook("", &payload).await;
    assert_eq!(code, 200);

    assert!(
        app.sim
            .decide(&new_scan_ref, idenfy_sim::Outcome::Approve)
            .await
    );
    app.status_until(&created.row, user, |b| {
        b["idenfyVerificationStatus"] == "APPROVED"
    })
    .await;
    let (code, _) = app.get("/idenfy-sessions", Some(user)).await;
    assert_eq!(code, 200);
    // A wrong token and a bad signature are logged as refusals, without the values.
    let (code, _) = send(
        app.http
            .post(app.url("/internal/sessions"))
            .bearer_auth("wrong-token-value-MEERKAT")
            .json(&json!({ "sigDigest": user, "flow": "gov-id" })),
    )
    .await;
    assert_eq!(code, 401);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let logs = buffer.text();
    let basic_auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{api_key}:{api_secret}"))
    };
    assert!(
        logs.len() > 1_000,
        "the flow was logged: {} bytes",
        logs.len()
    );
    assert!(
        logs.contains(&new_scan_ref),
        "scanRefs are logged (not secret)"
    );
    for (what, secret) in [
        ("first auth token", created.token.as_str()),
        ("recovered auth token", new_token.as_str()),
        ("API key", api_key),
        ("API secret", api_secret),
        ("Basic auth header", basic_auth.as_str()),
        ("webhook signing key", signing_key),
        ("internal service token", TOKEN),
        ("rejected token", "wrong-token-value-MEERKAT"),
        ("identity", user),
        ("webhook body content", marker),
    ] {
        assert!(!logs.contains(secret), "{what} leaked into the logs");
    }
}

/// Runs `work` with every log line at INFO and above captured as JSON; returns the lines.
async fn json_lines_of<F: Future<Output = ()>>(work: F) -> Vec<serde_json::Value> {
    let capture = capture_logs(|buffer| {
        tracing_subscriber::registry()
            .with(EnvFilter::new("info"))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(buffer),
            )
    });
    work.await;
    capture
        .logs
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

fn request_id_of(line: &serde_json::Value) -> Option<&str> {
    line["span"]["request_id"].as_str()
}

#[tokio::test(flavor = "current_thread")]
async fn lines_of_a_request_carry_its_id_and_probes_stay_quiet() {
    let lines = json_lines_of(async {
        let app = TestApp::with(Options::default()).await;
        let get = |path: &str, id: &str| {
            app.http
                .get(app.url(path))
                .header("x-request-id", id.to_owned())
        };
        for path in ["/healthz", "/readyz", "/metrics"] {
            let (code, _) = send(get(path, "probe-id")).await;
            assert_eq!(code, 200);
        }
        // A creation whose token call fails: its lines come from the work it spawned.
        app.sim
            .script_token(vec![idenfy_sim::Fault::ServerError; 8]);
        let (code, body) = send(
            app.http
                .post(app.url("/internal/sessions"))
                .bearer_auth(TOKEN)
                .header("x-request-id", "creation-id")
                .json(&json!({ "sigDigest": "someone", "flow": "gov-id" })),
        )
        .await;
        assert_eq!(code, 503, "{body}");
        // An id that is too long is replaced, in the answer and in the logs.
        let huge = "x".repeat(60 * 1024);
        let response = get("/healthz", &huge).send().await.expect("answered");
        let echoed = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("an id")
            .to_owned();
        assert!(
            echoed.len() <= 128 && echoed != huge,
            "replaced: {}",
            echoed.len()
        );
        let (code, _) = send(get(
            "/idenfy-sessions/0123456789abcdef01234567/status",
            "an id with spaces",
        ))
        .await;
        assert_eq!(code, 401, "no user header");
    })
    .await;

    assert!(
        !lines.iter().any(|l| request_id_of(l) == Some("probe-id")),
        "probes log at DEBUG only"
    );
    let creation: Vec<_> = lines
        .iter()
        .filter(|l| request_id_of(l) == Some("creation-id"))
        .collect();
    assert!(
        creation
            .iter()
            .any(|l| l["fields"]["message"] == "answered" && l["fields"]["status"] == 503),
        "the answer line: {creation:?}"
    );
    assert!(
        creation.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("minting a token for a new session failed"))),
        "the failure, logged by the work the request spawned, names the request: {creation:?}"
    );
    assert!(
        !creation.iter().any(|l| l["level"] == "ERROR"),
        "one failure, one line at its level (WARN): {creation:?}"
    );
    let answered: Vec<_> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "answered")
        .collect();
    assert!(
        answered
            .iter()
            .all(|l| l["fields"]["latency_ms"].is_number()),
        "numeric latency: {answered:?}"
    );
    assert!(
        lines
            .iter()
            .filter_map(request_id_of)
            .all(|id| id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic())),
        "every logged request id is short and printable"
    );
}
