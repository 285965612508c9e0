//! The whole idenfy-sessions HTTP API inside a server of your own: `cargo run --example http_api`.
//!
//! `idenfy-http` is the API `idenfy-app` serves (status polling, `session-status/v2`,
//! listing, iDenfy's webhook, the internal creation routes, `/readyz`, `/metrics`,
//! `/openapi.json`, admission control) as an axum `Router` over any backend. This example
//! mounts it next to a route of its own and serves both with idenfy-http's hardened
//! listener. The backend is the in-memory one and iDenfy is idenfy-sim, started in this
//! process, so it runs anywhere; `minimal_server` shows the MongoDB + Valkey + iDenfy
//! wiring, which plugs into the same `Sessions::builder`.
//!
//! Try it (the example prints the service token it accepts):
//! ```text
//! curl -s localhost:3001/hello
//! curl -s -X POST localhost:3001/internal/sessions -H "Authorization: Bearer $TOKEN" \
//!      -H 'Content-Type: application/json' -d '{"sigDigest":"me","flow":"gov-id"}'
//! curl -s localhost:3001/idenfy-sessions/<idenfySessionId>/status -H 'X-Holo-User-Id: me'
//! ```

use std::{net::Ipv4Addr, sync::Arc};

use anyhow::Context;
use axum::{Router, routing::get};
use idenfy_client::{ClientConfig, IdenfyClient};
use idenfy_core::{
    Environment, Nonce, Ports, Sessions, Settings, SystemClock, WebhookKey,
    memory::{MemoryIntentStore, MemoryLock, MemoryParentStore, MemoryRowStore},
};
use idenfy_http::{AppState, listener::ConnectionLimits};
use idenfy_sim::{Sim, SimConfig};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    // One process-wide recorder; idenfy-http records into it and renders it at /metrics.
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    idenfy_http::metrics::describe();

    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().context("PORT")?,
        Err(_) => 3001,
    };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port} (set PORT, 0 = any)"))?;
    let app_url = format!("http://{}", listener.local_addr()?);

    // The simulator stands in for iDenfy and sends its webhooks to the API's webhook route.
    let sim = Sim::start(SimConfig {
        webhook_url: Some(format!("{app_url}/idenfy/webhook")),
        webhook_signing_key: format!("example-{}", Nonce::random().as_str()),
        ..SimConfig::default()
    })
    .await
    .context("starting idenfy-sim")?;
    let sim_config = sim.config();
    let client = IdenfyClient::new(
        ClientConfig::new(sim_config.api_key.clone(), sim_config.api_secret.as_str())
            .with_base_url(sim.base_url()),
    )?;

    let live = Sessions::builder(
        Ports {
            rows: MemoryRowStore::new(),
            parents: MemoryParentStore::new(),
            intents: MemoryIntentStore::new(),
            lock: MemoryLock::new(SystemClock),
            idenfy: client,
            clock: SystemClock,
        },
        Settings::new(
            Environment::Live,
            sim.base_url(),
            WebhookKey::new(sim_config.webhook_signing_key.as_bytes()),
        ),
    )
    .build();

    let token = format!("{}{}", Nonce::random().as_str(), Nonce::random().as_str());
    let api = idenfy_http::router(
        AppState::new(Arc::new(live), metrics).with_internal_token(token.as_str()),
    );
    // Your own routes sit beside the API (or nest it: `Router::new().nest("/kyc", api)`).
    let app = Router::new()
        .route("/hello", get(|| async { "hello from your server\n" }))
        .merge(api);

    println!("serving {app_url} (idenfy-sim at {})", sim.base_url());
    println!("TOKEN={token}");
    idenfy_http::listener::serve(listener, app, ConnectionLimits::default(), async {
        let _ = tokio::signal::ctrl_c().await;
        println!("Ctrl-C: stopping");
    })
    .await;
    sim.shutdown().await;
    Ok(())
}
