//! `idenfy-app dev`: everything in one process for a first look — in-memory store and lock,
//! idenfy-sim in-process with its webhooks pointed back at this app, a demo session, and a
//! printed walk-through that expires the demo token and shows the recovery.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use idenfy_client::{ClientConfig, IdenfyClient, RetryPolicy, Secret};
use idenfy_core::{
    Environment, Flow, Nonce, Ports, Sessions, Settings, SigDigest, SystemClock, WebhookKey,
    creation::{CreateRequest, Created},
    memory::{MemoryIntentStore, MemoryLock, MemoryParentStore, MemoryRowStore},
};
use idenfy_http::{AppState, listener::ConnectionLimits};
use idenfy_sim::{Sim, SimConfig, SimHandle};
use tokio::net::TcpListener;

use crate::config::DevArgs;

/// One environment on the in-memory adapters, talking to iDenfy (or idenfy-sim) over HTTP.
pub type MemorySessions = Sessions<
    Ports<
        MemoryRowStore,
        MemoryParentStore,
        MemoryIntentStore,
        MemoryLock,
        IdenfyClient,
        SystemClock,
    >,
>;

/// The identity the demo session belongs to.
pub const DEMO_USER: &str = "demo-user";
/// The idempotency key the demo session was created with (so the printed create replays it).
pub const DEMO_KEY: &str = "dev-demo";

/// In-memory `Sessions` of `environment` whose iDenfy is the simulator `sim`.
pub fn memory_sessions(
    sim: &SimHandle,
    environment: Environment,
    poll_interval: Duration,
) -> anyhow::Result<MemorySessions> {
    let sim_config = sim.config();
    let mut client_config = ClientConfig::new(
        sim_config.api_key.clone(),
        Secret::new(sim_config.api_secret.clone()),
    )
    .with_base_url(sim.base_url());
    client_config.retry = RetryPolicy::none();
    let client = IdenfyClient::new(client_config).context("building the iDenfy client")?;
    let mut settings = Settings::new(
        environment,
        sim.base_url(),
        WebhookKey::new(sim_config.webhook_signing_key.as_bytes()),
    );
    settings.poll_interval = poll_interval;
    Ok(Sessions::builder(
        Ports {
            rows: MemoryRowStore::new(),
            parents: MemoryParentStore::new(),
            intents: MemoryIntentStore::new(),
            lock: MemoryLock::new(SystemClock),
            idenfy: client,
            clock: SystemClock,
        },
        settings,
    )
    .build())
}

/// Runs dev mode until Ctrl-C / SIGTERM.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.listen.ip().is_loopback() && args.sim_listen.ip().is_loopback(),
        "dev mode listens on loopback addresses only"
    );
    // First, so the demo creation's counters are recorded too.
    let metrics = crate::metrics::handle();
    idenfy_http::listener::raise_nofile_limit();
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (try --listen)", args.listen))?;
    let app_addr = listener.local_addr().context("reading the bound address")?;
    let sim = Sim::start(SimConfig {
        bind: args.sim_listen,
        webhook_url: Some(format!("http://{app_addr}/idenfy/webhook")),
        webhook_signing_key: format!("dev-signing-{}", Nonce::random().as_str()),
        ..SimConfig::default()
    })
    .await
    .with_context(|| {
        format!(
            "starting idenfy-sim on {} (try --sim-listen)",
            args.sim_listen
        )
    })?;

    let poll_interval = Duration::from_millis(args.poll_interval_ms.max(1));
    let live = Arc::new(memory_sessions(&sim, Environment::Live, poll_interval)?);
    let token = args.internal_token.clone().unwrap_or_else(|| {
        Secret::new(format!(
            "{}{}",
            Nonce::random().as_str(),
            Nonce::random().as_str()
        ))
    });

    let demo = live
        .create_session(CreateRequest {
            sig_digest: SigDigest::parse(DEMO_USER).context("demo identity")?,
            flow: Flow::GovId,
            idempotency_key: Some(DEMO_KEY.to_owned()),
        })
        .await
        .context("creating the demo session through idenfy-sim")?;

    let state = AppState::new(live, metrics).with_internal_token(token.clone());
    println!(
        "{}",
        walkthrough(
            &format!("http://{app_addr}"),
            &sim.base_url(),
            &token,
            &demo,
            poll_interval
        )
    );
    idenfy_http::listener::serve(
        listener,
        idenfy_http::dev_router(state),
        ConnectionLimits::default(),
        crate::serve::shutdown_signal(),
    )
    .await;
    sim.shutdown().await;
    Ok(())
}

/// The banner and the copy-pasteable curl walk-through.
pub fn walkthrough(
    app: &str,
    sim: &str,
    token: &Secret,
    demo: &Created,
    poll_interval: Duration,
) -> String {
    let rule = "=".repeat(78);
    let row = &demo.idenfy_session_id;
    let parent = &demo.session_id;
    let scan_ref = demo
        .idenfy
        .idenfy_scan_ref
        .as_ref()
        .map_or("<none>", |s| s.as_str());
    let token = token.expose();
    let wait = poll_interval.as_millis().div_ceil(1000).max(1);
    let status = format!("curl -s {app}/idenfy-sessions/$ROW/status -H \"X-Holo-User-Id: $WHO\"");
    format!(
        r#"
{rule}
  DEV MODE — in-memory, simulated iDenfy, not for production
  Nothing is persisted; every restart starts empty. Sandbox routes answer 404.
{rule}
  app          {app}
  idenfy-sim   {sim}   (hosted page /api/v2/redirect, admin API /admin/...)
  token        {token}   (INTERNAL_SERVICE_TOKEN of /internal/...)
  demo user    {DEMO_USER}   (send it as X-Holo-User-Id)
  demo session parent {parent}, iDenfy session {row}, scanRef {scan_ref}
{rule}

Walk-through (paste into bash, one step at a time). Each run starts over with a new session
for a new identity, so it can be run again and again: a session walked through once is
expired, replaced and approved, and the simulator then answers {{"expired":false}} and
{{"decided":false}} for it (that scanRef is no longer ACTIVE there).

# 1. Create a session for a new identity. Sending it again with the same Idempotency-Key replays it
#    (200, "replayed": true); the demo session above was created with the key {DEMO_KEY}.
WHO="walkthrough-$(date +%s)-$RANDOM"
CREATED=$(curl -s -X POST {app}/internal/sessions -H 'Authorization: Bearer {token}' -H "Idempotency-Key: $WHO" -H 'Content-Type: application/json' -d "{{\"sigDigest\":\"$WHO\",\"flow\":\"gov-id\"}}"); echo "$CREATED"
ROW=$(echo "$CREATED" | sed -E 's/.*"idenfySessionId":"([^"]+)".*/\1/'); PARENT=$(echo "$CREATED" | sed -E 's/.*"sessionId":"([^"]+)".*/\1/'); SCAN_REF=$(echo "$CREATED" | sed -E 's/.*"idenfyScanRef":"([^"]+)".*/\1/')
echo "identity $WHO, iDenfy session $ROW, parent $PARENT, scanRef $SCAN_REF"

# 2. Its status, as the browser polls it (in_progress with its token; ACTIVE once iDenfy was asked):
{status}; echo

# 3. Expire the token at (simulated) iDenfy: {{"expired":true}}. {{"expired":false}} means the scanRef is not
#    ACTIVE at the simulator any more (already expired, replaced or decided): start again at step 1.
curl -s -X POST {sim}/admin/expire -H 'Content-Type: application/json' -d "{{\"scanRef\":\"$SCAN_REF\"}}"; echo

# 4. Poll again once the poll interval has passed: a NEW token and scanRef, recreationCount 1 (never EXPIRED):
sleep {wait}; {status}; echo

# 5. Approve the new scanRef at the simulator (or open the redirectUrl of step 4 in a browser and click Approve):
#    {{"decided":true}}. {{"decided":false}} means it is already decided or expired: start again at step 1.
SCAN_REF=$({status} | sed -E 's/.*"idenfyScanRef":"([^"]+)".*/\1/'); echo "$SCAN_REF"
curl -s -X POST {sim}/admin/decide -H 'Content-Type: application/json' -d "{{\"scanRef\":\"$SCAN_REF\",\"outcome\":\"approve\"}}"; echo

# 6. The simulator's signed webhook has arrived: APPROVED, status complete:
sleep 1; {status}; echo

# 7. The same through id-server's parent-keyed route, and the identity's listing (no tokens):
curl -s "{app}/session-status/v2?sid=$PARENT" -H "X-Holo-User-Id: $WHO"; echo
curl -s {app}/idenfy-sessions -H "X-Holo-User-Id: $WHO"; echo

The demo session, as {DEMO_USER} sees it:
curl -s {app}/idenfy-sessions/{row}/status -H 'X-Holo-User-Id: {DEMO_USER}'; echo

Also: {app}/healthz  {app}/readyz  {app}/metrics  {app}/openapi.json  {app}/docs (API browser)
Stop with Ctrl-C.
"#
    )
}
