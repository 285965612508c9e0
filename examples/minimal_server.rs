//! A minimal server built from the idenfy-sessions crates: `cargo run --example minimal_server`.
//!
//! What it runs on, decided at start and printed:
//! - storage: MongoDB (`store-mongo`) and Valkey (`lock-valkey`) at `MONGODB_URI` and
//!   `VALKEY_URL`; when both are unset, the servers `cargo xtask services up` recorded, if they
//!   answer; otherwise the in-memory adapters of `idenfy_core::memory` (nothing is kept).
//! - iDenfy: the real API (`idenfy-client`) when `IDENFY_API_KEY`, `IDENFY_API_SECRET` and
//!   `IDENFY_WEBHOOK_SIGNING_KEY` are set (`IDENFY_BASE_URL` optional); otherwise `idenfy-sim`,
//!   started in this process with its webhooks sent to this server.
//!
//! Routes; the caller is named by the `X-User-Id` header (in your server: by your own auth):
//! - `POST /sessions` — a new paid session and its iDenfy session (`Sessions::create_session`);
//! - `GET /sessions/{id}/status` — its status; an expired token is replaced by a fresh one
//!   here, once, however many pollers race (`Sessions::resolve`);
//! - `POST /webhook` — iDenfy's signed webhook (`Sessions::handle_webhook`).

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use idenfy_client::{ClientConfig, DEFAULT_BASE_URL, IdenfyClient, Secret};
use idenfy_core::{
    Backend, Clock, Environment, Flow, Nonce, Ports, Sessions, Settings, SigDigest, Timestamp,
    WebhookKey,
    creation::{CreateError, CreateRequest},
    memory::{MemoryIntentStore, MemoryLock, MemoryParentStore, MemoryRowStore},
    resolver::ResolveError,
    webhook::{WebhookError, WebhookRequest},
};
use idenfy_sim::{Sim, SimConfig, SimHandle};
use lock_valkey::{ValkeyLock, ValkeyOptions};
use serde_json::json;
use store_mongo::{MongoOptions, MongoStores};
use tokio::net::TcpListener;

/// The `Clock` port: the wall clock, waiting on tokio's timer.
#[derive(Clone, Copy, Debug)]
struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }

    fn sleep(&self, duration: Duration) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// The iDenfy this server talks to.
struct Idenfy {
    client: IdenfyClient,
    /// Base of the hosted-UI links (`<base>/api/v2/redirect?authToken=`).
    base_url: String,
    /// The key iDenfy signs its webhooks with.
    webhook_key: WebhookKey,
    /// The simulator, when there are no credentials.
    sim: Option<SimHandle>,
}

/// A set, non-empty environment variable.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The real API with credentials, else idenfy-sim sending its webhooks to `webhook_url`.
async fn idenfy(webhook_url: &str) -> anyhow::Result<Idenfy> {
    if let (Some(key), Some(secret)) = (var("IDENFY_API_KEY"), var("IDENFY_API_SECRET")) {
        let signing_key = var("IDENFY_WEBHOOK_SIGNING_KEY")
            .context("IDENFY_WEBHOOK_SIGNING_KEY is needed with IDENFY_API_KEY")?;
        let base_url = var("IDENFY_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let config = ClientConfig::new(key, Secret::new(secret)).with_base_url(&base_url);
        return Ok(Idenfy {
            client: IdenfyClient::new(config).context("IDENFY_BASE_URL")?,
            base_url,
            webhook_key: WebhookKey::new(signing_key.into_bytes()),
            sim: None,
        });
    }
    let sim = Sim::start(SimConfig {
        webhook_url: Some(webhook_url.to_owned()),
        webhook_signing_key: format!("example-{}", Nonce::random().as_str()),
        ..SimConfig::default() // a free loopback port and test credentials
    })
    .await
    .context("starting idenfy-sim")?;
    let sim_config = sim.config();
    let config = ClientConfig::new(sim_config.api_key.clone(), sim_config.api_secret.as_str())
        .with_base_url(sim.base_url());
    Ok(Idenfy {
        client: IdenfyClient::new(config)?,
        base_url: sim.base_url(),
        webhook_key: WebhookKey::new(sim_config.webhook_signing_key.as_bytes()),
        sim: Some(sim),
    })
}

/// MongoDB and Valkey URLs from the environment, else (workspace only: your server reads its
/// own configuration) the ones `cargo xtask services up` recorded; `bool`: from the record.
fn service_urls() -> anyhow::Result<Option<(String, String, bool)>> {
    match (var("MONGODB_URI"), var("VALKEY_URL")) {
        (Some(mongodb), Some(valkey)) => return Ok(Some((mongodb, valkey, false))),
        (None, None) => {}
        _ => anyhow::bail!("set both MONGODB_URI and VALKEY_URL, or neither"),
    }
    let state_file = dev_services::Layout::from_env().state_file;
    let recorded = dev_services::State::load(&state_file).ok().flatten();
    Ok(recorded.map(|state| (state.mongodb.url, state.valkey.url, true)))
}

/// Connects as the production service does: indexes ensured, both servers answering.
async fn connect(mongodb_uri: &str, valkey_url: &str) -> anyhow::Result<(MongoStores, ValkeyLock)> {
    let database = var("MONGODB_DATABASE").unwrap_or_else(|| "idenfy_example".to_owned());
    let stores = MongoStores::connect(
        mongodb_uri,
        &database,
        Environment::Live,
        MongoOptions::default(),
    )
    .await?;
    stores.ping().await.context("MongoDB does not answer")?;
    stores.ensure_indexes().await?;
    let lock = ValkeyLock::connect(valkey_url, Environment::Live, ValkeyOptions::default()).await?;
    // The production service starts without Valkey (the lock only saves work; the claim in
    // MongoDB is what prevents a second mint); this example wants to see it answer.
    lock.ping().await.context("Valkey does not answer")?;
    Ok((stores, lock))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    // Bind first: the simulator needs this server's address for its webhooks.
    let port = var("PORT")
        .map_or(Ok(3000), |port| port.parse())
        .context("PORT")?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port} (set PORT, 0 = any)"))?;
    let app_url = format!("http://{}", listener.local_addr()?);

    let idenfy = idenfy(&format!("{app_url}/webhook")).await?;
    let mut settings = Settings::new(
        Environment::Live,
        &idenfy.base_url,
        idenfy.webhook_key.clone(),
    );
    if idenfy.sim.is_some() {
        // Ask the simulator for a row's status at most every 2 s (production: 15 s), so the
        // walk-through below sees an expired token soon.
        settings.poll_interval = Duration::from_secs(2);
    }
    let sim_url = idenfy.sim.as_ref().map(SimHandle::base_url);
    println!(
        "iDenfy:  {}",
        sim_url.as_deref().unwrap_or(&idenfy.base_url)
    );

    let services = match service_urls()? {
        None => None,
        Some((mongodb, valkey, recorded)) => match connect(&mongodb, &valkey).await {
            Ok(connected) => {
                println!("storage: MongoDB {mongodb}, Valkey {valkey}");
                Some(connected)
            }
            Err(error) if recorded => {
                println!(
                    "the services `cargo xtask services up` recorded do not answer: {error:#}"
                );
                None
            }
            Err(error) => return Err(error),
        },
    };

    let walkthrough = walkthrough(&app_url, sim_url.as_deref());
    if let Some((stores, lock)) = services {
        // The production service also gives `Sessions` a mint journal (`SessionsBuilder::journal`), so a
        // token minted while MongoDB cannot take it is kept on disk until it can.
        let app = Sessions::builder(
            Ports {
                rows: stores.rows().clone(),
                parents: stores.parents().clone(),
                intents: stores.intents().clone(),
                lock: lock.clone(),
                idenfy: idenfy.client,
                clock: TokioClock,
            },
            settings,
        )
        .build();
        serve(listener, app, &walkthrough).await?;
        lock.shutdown().await;
        stores.shutdown().await;
    } else {
        println!("storage: in memory (nothing is kept; set MONGODB_URI and VALKEY_URL)");
        let app = Sessions::builder(
            Ports {
                rows: MemoryRowStore::new(),
                parents: MemoryParentStore::new(),
                intents: MemoryIntentStore::new(),
                lock: MemoryLock::new(TokioClock),
                idenfy: idenfy.client,
                clock: TokioClock,
            },
            settings,
        )
        .build();
        serve(listener, app, &walkthrough).await?;
    }
    if let Some(sim) = idenfy.sim {
        sim.shutdown().await;
    }
    Ok(())
}

/// Serves the three routes with any adapters until Ctrl-C.
async fn serve<B: Backend>(
    listener: TcpListener,
    app: Sessions<B>,
    walkthrough: &str,
) -> anyhow::Result<()> {
    let router = Router::new()
        .route("/sessions", post(create::<B>))
        .route("/sessions/{id}/status", get(status::<B>))
        .route("/webhook", post(webhook::<B>))
        .with_state(Arc::new(app));
    println!("{walkthrough}");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            println!("Ctrl-C: stopping");
        })
        .await?;
    Ok(())
}

/// `POST /sessions`, body `{"flow": "gov-id"}` or `"clean-hands"` (default gov-id), optional
/// `Idempotency-Key`: a new in-progress parent session (what the user paid for) and its
/// iDenfy session. The same key again returns the same sessions and mints nothing.
async fn create<B: Backend>(
    State(app): State<Arc<Sessions<B>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(sig_digest) = caller(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "send an X-User-Id header");
    };
    let flow = if body.is_empty() {
        Some(Flow::GovId)
    } else {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|body| match body.get("flow") {
                None => Some(Flow::GovId),
                Some(flow) => flow.as_str().and_then(Flow::parse),
            })
    };
    let Some(flow) = flow else {
        return error(
            StatusCode::BAD_REQUEST,
            r#"body: {"flow": "gov-id" | "clean-hands"}"#,
        );
    };
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let request = CreateRequest {
        sig_digest,
        flow,
        idempotency_key,
    };
    match app.create_session(request).await {
        Ok(created) if created.replayed => (StatusCode::OK, Json(created)).into_response(),
        Ok(created) => (StatusCode::CREATED, Json(created)).into_response(),
        Err(failure) => {
            let status = match &failure {
                CreateError::InvalidKey => StatusCode::BAD_REQUEST,
                CreateError::KeyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
                CreateError::InProgress { .. } => StatusCode::CONFLICT,
                CreateError::Idenfy(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, failure)
        }
    }
}

/// `GET /sessions/{id}/status`: the view a browser polls. A token iDenfy expired is replaced
/// here (`recreationCount` goes up); `EXPIRED` only shows once recovery gave up.
async fn status<B: Backend>(
    State(app): State<Arc<Sessions<B>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(caller) = caller(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "send an X-User-Id header");
    };
    match app.resolve(&id, &caller).await {
        Ok(resolution) => {
            let mut body = json!(resolution.view);
            body["outcome"] = json!(resolution.outcome.as_str());
            Json(body).into_response()
        }
        Err(ResolveError::NotFound) => error(StatusCode::NOT_FOUND, "iDenfy session not found"),
        Err(failure) => error(StatusCode::SERVICE_UNAVAILABLE, failure),
    }
}

/// `POST /webhook`: checked against the signing key before anything is read.
async fn webhook<B: Backend>(
    State(app): State<Arc<Sessions<B>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
    let request = WebhookRequest {
        signature: header("idenfy-signature"),
        event_type: header("idenfy-event-type"),
        body: &body,
    };
    match app.handle_webhook(request).await {
        Ok(ack) => Json(ack).into_response(),
        Err(failure) => {
            let status = match &failure {
                WebhookError::Signature(_) => StatusCode::UNAUTHORIZED,
                WebhookError::Malformed | WebhookError::MissingScanRef => StatusCode::BAD_REQUEST,
                // iDenfy retries on 404 and 5xx.
                WebhookError::UnknownScanRef => StatusCode::NOT_FOUND,
                WebhookError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, failure)
        }
    }
}

/// The caller's identity: here a header, in your server whoever your authentication names.
fn caller(headers: &HeaderMap) -> Option<SigDigest> {
    headers
        .get("x-user-id")
        .and_then(|value| value.to_str().ok())
        .and_then(SigDigest::parse)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

/// Copy-pasteable curl commands for this run.
fn walkthrough(app: &str, sim: Option<&str>) -> String {
    let field = |name: &str| format!(r#"sed -E 's/.*"{name}":"([^"]+)".*/\1/'"#);
    let status = format!(r#"curl -s {app}/sessions/$ID/status -H "X-User-Id: $WHO""#);
    let mut text = format!(
        r#"
Listening on {app}. Walk-through (paste into bash):

WHO="user-$RANDOM"
CREATED=$(curl -s -X POST {app}/sessions -H "X-User-Id: $WHO" -H "Idempotency-Key: $WHO" -d '{{"flow":"gov-id"}}'); echo "$CREATED"
ID=$(echo "$CREATED" | {id})
{status}; echo
"#,
        id = field("idenfySessionId"),
    );
    if let Some(sim) = sim {
        text.push_str(&format!(
            r#"
# The simulator expires the token; the next poll (after 2 s) gets a new one, "recreationCount":1:
SCAN_REF=$({status} | {scan_ref})
curl -s -X POST {sim}/admin/expire -H 'Content-Type: application/json' -d "{{\"scanRef\":\"$SCAN_REF\"}}"; echo
sleep 2; {status}; echo

# Approve the new scanRef; the simulator's signed webhook reaches POST /webhook: "APPROVED".
SCAN_REF=$({status} | {scan_ref})
curl -s -X POST {sim}/admin/decide -H 'Content-Type: application/json' -d "{{\"scanRef\":\"$SCAN_REF\",\"outcome\":\"approve\"}}"; echo
sleep 1; {status}; echo
"#,
            scan_ref = field("idenfyScanRef"),
        ));
    }
    text.push_str("\nStop with Ctrl-C.");
    text
}
