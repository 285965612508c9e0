//! The `idenfy-sim` binary: runs the simulator on a loopback address until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use idenfy_sim::{Sim, SimConfig};

const LONG_ABOUT: &str = "\
A local, faithful stand-in for the iDenfy identity-verification API, for tests, benchmarks,
chaos runs and development. It listens on loopback only.

iDenfy API (HTTP Basic auth = API key : API secret, JSON bodies, iDenfy's error shape
{\"message\", \"identifier\"}):
  POST /api/v2/token    {\"clientId\", \"expiryTime\"?, \"sessionLength\"?, \"callbackUrl\"?, ...}
                        -> 201 {authToken, scanRef, redirectUrl, expiryTime, sessionLength, ...}
  POST /api/v2/status   {\"scanRef\"} -> {status, scanRef, clientId, autoDocument, autoFace,
                        manualDocument, manualFace, fraudTags, mismatchTags}
  POST /api/v2/data     {\"scanRef\"} -> flat document fields (docFirstName, docDob, ...)

Lifecycle (against the simulator's clock): ACTIVE until expiryTime after minting if never
opened, or sessionLength after the first opening; then EXPIRED (IDENTIFICATION_EXPIRED
webhook). Decisions give APPROVED / DENIED / SUSPECTED with an IDENTIFICATION_AUTO_FINISHED
webhook (final:true); with --manual-review, REVIEWING + AUTO (final:false) first, then
IDENTIFICATION_MANUAL_FINISHED (final:true). Webhooks carry Idenfy-Signature (hex
HMAC-SHA256 of the raw body with the signing key) and Idenfy-Event-Type, and are retried
with doubling back-off on non-2xx or connection errors.

Hosted page (no JavaScript): GET /api/v2/redirect?authToken=... opens the token and shows
Approve / Deny / Mark suspected / Abandon buttons (a form POST to /api/v2/redirect/decide);
an expired or unknown token shows an expiry page.

Admin API (JSON, no auth):
  curl -s localhost:8990/admin/clock
  curl -s -XPOST localhost:8990/admin/clock/advance -d '{\"seconds\":3600}' -H 'content-type: application/json'
  curl -s -XPOST localhost:8990/admin/expire -d '{\"scanRef\":\"...\"}' -H 'content-type: application/json'
  curl -s -XPOST localhost:8990/admin/open -d '{\"authToken\":\"...\"}' -H 'content-type: application/json'
  curl -s -XPOST localhost:8990/admin/decide -d '{\"scanRef\":\"...\",\"outcome\":\"approve\"}' -H 'content-type: application/json'
       (outcome: approve | deny | suspect | abandon)
  curl -s -XPOST localhost:8990/admin/script -d '{\"endpoint\":\"token\",\"faults\":[\"server_error\",{\"latency_ms\":500}]}' -H 'content-type: application/json'
  curl -s -XPOST localhost:8990/admin/latency -d '{\"endpoint\":\"status\",\"ms\":250}' -H 'content-type: application/json'
  curl -s -XPOST localhost:8990/admin/webhook-url -d '{\"url\":\"http://127.0.0.1:9000/hook\"}' -H 'content-type: application/json'
  curl -s localhost:8990/admin/counters
  curl -s localhost:8990/admin/sessions        (or /admin/sessions/SCANREF)
  curl -s -XPOST localhost:8990/admin/reset

Faults (scripted per endpoint, token or status; each call takes the next one in order):
  server_error       500 INTERNAL_ERROR
  payment_required   402 \"Action not allowed due to lack of funds or exceeded limit.\"
  token_limit        400 PERMISSIONS_ERROR \"Partner reached token limit.\"
  too_many_requests  429 TOO_MANY_REQUESTS
  unauthorized       401 \"Invalid authorization credentials\"
  conflict           409 \"Client ID already exists\"
  timeout            hangs 30 s, then 504 (so client timeouts trip)
  bad_payload        200 with a body that is not JSON
  {\"latency_ms\": N}  waits N ms, then answers normally

Quick start:
  idenfy-sim --bind 127.0.0.1:8990
  curl -s -u sim-api-key:sim-api-secret -H 'content-type: application/json' \\
       -d '{\"clientId\":\"user-1\"}' localhost:8990/api/v2/token";

/// Command-line options; each can also come from the environment.
#[derive(Debug, Parser)]
#[command(name = "idenfy-sim", version, about = "A local iDenfy: API, hosted page, signed webhooks, clock control and faults.", long_about = LONG_ABOUT)]
struct Args {
    /// Listen address (loopback only).
    #[arg(long, env = "IDENFY_SIM_BIND", default_value = "127.0.0.1:8990")]
    bind: SocketAddr,
    /// Basic-auth username.
    #[arg(long, env = "IDENFY_SIM_API_KEY", default_value = "sim-api-key")]
    api_key: String,
    /// Basic-auth password.
    #[arg(
        long,
        env = "IDENFY_SIM_API_SECRET",
        default_value = "sim-api-secret",
        hide_env_values = true
    )]
    api_secret: String,
    /// Key for the Idenfy-Signature HMAC on webhooks.
    #[arg(
        long,
        env = "IDENFY_SIM_SIGNING_KEY",
        default_value = "sim-signing-key",
        hide_env_values = true
    )]
    signing_key: String,
    /// Where to POST webhooks.
    #[arg(long, env = "IDENFY_SIM_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Send AUTO (final:false) then MANUAL (final:true) webhooks, with REVIEWING in between.
    #[arg(long, env = "IDENFY_SIM_MANUAL_REVIEW")]
    manual_review: bool,
    /// How long the simulated manual review takes, in milliseconds.
    #[arg(
        long,
        env = "IDENFY_SIM_MANUAL_REVIEW_DELAY_MS",
        default_value_t = 2000
    )]
    manual_review_delay_ms: u64,
    /// Default expiryTime in seconds (how long an unopened token stays valid).
    #[arg(long, env = "IDENFY_SIM_EXPIRY_TIME", default_value_t = 3600)]
    expiry_time: u64,
    /// Default sessionLength in seconds (how long the user has once the page is opened).
    #[arg(long, env = "IDENFY_SIM_SESSION_LENGTH", default_value_t = 600)]
    session_length: u64,
    /// Delivery attempts per webhook.
    #[arg(long, env = "IDENFY_SIM_WEBHOOK_MAX_ATTEMPTS", default_value_t = 5)]
    webhook_max_attempts: u32,
    /// First retry pause in milliseconds (doubles each retry).
    #[arg(long, env = "IDENFY_SIM_WEBHOOK_BACKOFF_MS", default_value_t = 500)]
    webhook_backoff_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("idenfy_sim=info")),
        )
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.bind.ip().is_loopback(),
        "refusing to listen on {}: idenfy-sim binds loopback addresses only",
        args.bind
    );
    let cfg = SimConfig {
        api_key: args.api_key,
        api_secret: args.api_secret,
        webhook_signing_key: args.signing_key,
        webhook_url: args.webhook_url,
        manual_review: args.manual_review,
        manual_review_delay: Duration::from_millis(args.manual_review_delay_ms),
        default_expiry_time_secs: args.expiry_time,
        default_session_length_secs: args.session_length,
        webhook_max_attempts: args.webhook_max_attempts,
        webhook_initial_backoff: Duration::from_millis(args.webhook_backoff_ms),
        bind: args.bind,
        ..SimConfig::default()
    };
    let sim = Sim::start(cfg).await?;
    println!("idenfy-sim listening on {}", sim.base_url());
    stop_signal().await?;
    tracing::info!("stopping");
    sim.shutdown().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix (how process supervisors such as xtask stop us).
async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("listening for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C"),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
    }
}
