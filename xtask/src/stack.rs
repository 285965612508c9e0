//! The whole stack for `bench` and `chaos`: real servers, idenfy-sim in-process, and several
//! `idenfy-app serve` processes on free loopback ports, plus the HTTP calls both commands make.
//!
//! Everything started here is stopped again: app processes are killed when their [`Stack`]
//! is dropped, the servers by [`Services::stop`] (which the callers always reach).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dev_services::{
    Backend, Layout, MongoControl, MongoServer, ServiceState, State, ValkeyControl, free_port,
    log_tail,
};
use idenfy_sim::{Sim, SimConfig, SimHandle};
use reqwest::StatusCode;
use serde_json::Value;

use crate::load::Answer;
use crate::shell::{self, cargo, workspace_root};

/// A caller's identity header on the user routes.
pub(crate) const USER_HEADER: &str = "X-Holo-User-Id";
/// `INTERNAL_SERVICE_TOKEN` of every app we start (the app wants at least 32 characters).
const INTERNAL_TOKEN: &str = "xtask-internal-service-token-0123456789abcdef";
/// How long an app process gets to answer `/readyz`.
const APP_READY_WITHIN: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Servers

/// The MongoDB-protocol and Valkey servers of one bench or chaos run, isolated from
/// `cargo xtask services up` and from other runs (like `cargo xtask test`).
#[derive(Debug)]
pub(crate) struct Services {
    layout: Layout,
    pub(crate) state: State,
    /// The MongoDB-protocol server the apps use.
    pub(crate) mongo: MongoServer,
    started: bool,
}

/// One of the two servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Server {
    Valkey,
    Mongo,
}

impl Services {
    /// Starts the servers under `target/services/<name>-<pid>/`; the apps will use `mongo`.
    pub(crate) async fn start(
        name: &str,
        backend: Backend,
        mongo: MongoServer,
    ) -> anyhow::Result<Services> {
        let layout = Layout::from_env().isolated(&format!("{name}-{}", std::process::id()));
        let services = match dev_services::up_in(&layout, backend).await {
            Ok(up) => Services {
                layout,
                state: up.state,
                mongo,
                started: up.started,
            },
            Err(error) => {
                let _ = dev_services::down_in(&layout).await;
                return Err(anyhow::Error::new(error).context("starting the services"));
            }
        };
        if services.state.mongo(mongo).is_none() {
            let backend = services.state.backend;
            services.stop(false).await?;
            bail!("the {backend} backend runs no {mongo}");
        }
        println!(
            "MongoDB-protocol server under test: {}",
            services.mongo_label()
        );
        Ok(services)
    }

    fn mongo_service(&self) -> &ServiceState {
        // `start` checked that the chosen server exists.
        self.state.mongo(self.mongo).unwrap_or(&self.state.mongodb)
    }

    /// The server under test and its version, for reports.
    pub(crate) fn mongo_label(&self) -> String {
        self.mongo_service().version.clone()
    }

    /// Stops what [`Services::start`] started; keeps the logs when `keep_logs`.
    pub(crate) async fn stop(self, keep_logs: bool) -> anyhow::Result<()> {
        if !self.started {
            return Ok(());
        }
        dev_services::down_in(&self.layout)
            .await
            .context("stopping the services")?;
        if keep_logs {
            println!(
                "service logs kept in {}",
                self.layout.services_dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.layout.services_dir);
        }
        Ok(())
    }

    pub(crate) fn mongodb_url(&self) -> &str {
        &self.mongo_service().url
    }

    pub(crate) fn valkey_url(&self) -> &str {
        &self.state.valkey.url
    }

    /// Stops one local server (SIGKILL when `kill`, else SIGTERM) and waits until it is gone.
    pub(crate) async fn stop_server(&mut self, server: Server, kill: bool) -> anyhow::Result<()> {
        let state_file = &self.layout.state_file;
        match (server, kill) {
            (Server::Valkey, true) => ValkeyControl::from_state_file(state_file)?.kill().await?,
            (Server::Valkey, false) => ValkeyControl::from_state_file(state_file)?.stop().await?,
            (Server::Mongo, true) => {
                MongoControl::from_state_file(state_file, self.mongo)?
                    .kill()
                    .await?;
            }
            (Server::Mongo, false) => {
                MongoControl::from_state_file(state_file, self.mongo)?
                    .stop()
                    .await?;
            }
        }
        Ok(())
    }

    /// SIGSTOPs (`pause`) or SIGCONTs the MongoDB-protocol server under test.
    pub(crate) fn pause_store(&self, pause: bool) -> anyhow::Result<()> {
        let control = MongoControl::from_state_file(&self.layout.state_file, self.mongo)?;
        if pause {
            control.pause()?;
        } else {
            control.resume()?;
        }
        Ok(())
    }

    /// Starts a stopped local server again with its recorded command line (same port, same
    /// data) and waits until it answers.
    pub(crate) async fn start_server(&mut self, server: Server) -> anyhow::Result<()> {
        let state_file = &self.layout.state_file;
        match server {
            Server::Valkey => ValkeyControl::from_state_file(state_file)?.start().await?,
            Server::Mongo => {
                MongoControl::from_state_file(state_file, self.mongo)?
                    .start()
                    .await?;
            }
        }
        Ok(())
    }
}

/// A driver client for the bench's own reads (the floor, and checking rows).
pub(crate) async fn mongo_client(url: &str, timeout: Duration) -> anyhow::Result<mongodb::Client> {
    let mut options = mongodb::options::ClientOptions::parse(url).await?;
    options.server_selection_timeout = Some(timeout);
    options.connect_timeout = Some(timeout);
    options.app_name = Some("xtask-bench".to_owned());
    Ok(mongodb::Client::with_options(options)?)
}

/// Versions of the tools that shape the figures.
pub(crate) fn rustc_version() -> String {
    std::process::Command::new("rustc")
        .arg("--version")
        .current_dir(workspace_root())
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

// ---------------------------------------------------------------------------------------
// idenfy-app processes

/// How the app processes are configured.
#[derive(Clone, Debug)]
pub(crate) struct AppSettings {
    pub(crate) replicas: usize,
    pub(crate) release: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) recreation_cap: u32,
    pub(crate) lock_ttl: Duration,
    /// `CLAIM_TTL_MS`: how long a crashed replica's recreation claim blocks the row.
    pub(crate) claim_ttl: Duration,
    /// Back-off base: the app's default (it has no setting for it), recorded here because
    /// the chaos figures depend on it.
    pub(crate) backoff_base: Duration,
    /// `UNKNOWN_MINT_BACKOFF_MS`: the wait after a token call whose answer was lost.
    pub(crate) unknown_mint_backoff: Duration,
}

impl AppSettings {
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} replicas ({} build), poll interval {} ms, recreation cap {}, lock TTL {} ms, \
             claim TTL {} ms, back-off base {} ms (app default), unknown-outcome back-off {} ms",
            self.replicas,
            if self.release { "release" } else { "debug" },
            self.poll_interval.as_millis(),
            self.recreation_cap,
            self.lock_ttl.as_millis(),
            self.claim_ttl.as_millis(),
            self.backoff_base.as_millis(),
            self.unknown_mint_backoff.as_millis(),
        )
    }
}

/// Builds `idenfy-app` (release, or debug as the tests build it); returns the binary's path.
pub(crate) async fn build_app(release: bool) -> anyhow::Result<PathBuf> {
    let mut build = cargo();
    if release {
        build.args([
            "build",
            "--release",
            "-p",
            "idenfy-app",
            "--bin",
            "idenfy-app",
        ]);
    } else {
        // The debug binary exactly as `cargo test --workspace` builds it (same features),
        // so that after the tests (`cargo xtask ci`) this compiles nothing; a plain
        // `cargo build -p idenfy-app` would rebuild a dozen dependencies with other features.
        build.args(["test", "--workspace", "--no-run"]);
    }
    shell::run(build).await.context("building idenfy-app")?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(
            || workspace_root().join("target"),
            |dir| workspace_root().join(dir),
        );
    let binary = target
        .join(if release { "release" } else { "debug" })
        .join("idenfy-app");
    if !binary.exists() {
        bail!("{} was not built", binary.display());
    }
    Ok(binary)
}

/// One `idenfy-app serve` process.
#[derive(Debug)]
pub(crate) struct App {
    child: std::sync::Mutex<Option<tokio::process::Child>>,
    pub(crate) pid: u32,
    pub(crate) base: String,
    /// Where the process writes its log.
    pub(crate) log: PathBuf,
}

impl App {
    /// Whether the app's log so far contains `text`.
    pub(crate) fn log_contains(&self, text: &str) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|log| log.contains(text))
    }

    /// Whether the process still runs.
    pub(crate) fn running(&self) -> bool {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGKILL, and wait for the exit.
    pub(crate) async fn kill(&self) {
        let child = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(mut child) = child {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// The sim, the app processes and an HTTP client; apps die with it.
#[derive(Debug)]
pub(crate) struct Stack {
    pub(crate) sim: SimHandle,
    pub(crate) apps: Vec<App>,
    pub(crate) http: reqwest::Client,
    pub(crate) database: String,
    pub(crate) mongo: mongodb::Client,
    pub(crate) settings: AppSettings,
    signing_key: String,
}

/// What `POST /internal/sessions` returned.
#[derive(Clone, Debug)]
pub(crate) struct Created {
    /// The parent session (the sim's `clientId`).
    pub(crate) parent_id: String,
    /// The iDenfy row: the id of the status route.
    pub(crate) row_id: String,
    pub(crate) sig_digest: String,
    pub(crate) scan_ref: String,
    pub(crate) auth_token: String,
}

/// One status poll's answer, reduced to what the measurements look at.
#[derive(Clone, Debug, Default)]
pub(crate) struct Polled {
    pub(crate) http: u16,
    pub(crate) status: Option<String>,
    pub(crate) verification: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) scan_ref: Option<String>,
    pub(crate) recreation_count: Option<u64>,
    /// A pending view's `retryAfterMs`, or a shed answer's `Retry-After` (in ms).
    pub(crate) retry_after_ms: Option<u64>,
    /// A 503 carrying `Retry-After`: the app shed the request to protect itself.
    pub(crate) shed: bool,
}

impl Polled {
    pub(crate) fn is_expired(&self) -> bool {
        self.verification.as_deref() == Some("EXPIRED")
    }
    pub(crate) fn is_5xx(&self) -> bool {
        self.http >= 500 || self.http == 0
    }
}

impl Stack {
    /// Starts the sim and `settings.replicas` apps against `services`, in a fresh database.
    pub(crate) async fn start(
        binary: &Path,
        services: &Services,
        settings: AppSettings,
        logs: &Path,
    ) -> anyhow::Result<Stack> {
        let sim = Sim::start(SimConfig::default())
            .await
            .context("starting idenfy-sim")?;
        let database = dev_services::unique_name("xtask");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            .pool_max_idle_per_host(512)
            .build()?;
        let mongo = mongo_client(services.mongodb_url(), Duration::from_secs(5)).await?;
        std::fs::create_dir_all(logs)?;
        let mut stack = Stack {
            signing_key: sim.config().webhook_signing_key.clone(),
            sim,
            apps: Vec::new(),
            http,
            database,
            mongo,
            settings,
        };
        for index in 0..stack.settings.replicas {
            let app = stack
                .spawn_app(binary, services, &logs.join(format!("app-{index}.log")))
                .await?;
            stack.apps.push(app);
        }
        stack.sim.set_webhook_url(Some(stack.webhook_url(0)));
        Ok(stack)
    }

    async fn spawn_app(
        &self,
        binary: &Path,
        services: &Services,
        log: &Path,
    ) -> anyhow::Result<App> {
        let port = free_port()?;
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let cfg = self.sim.config();
        let s = &self.settings;
        let mut command = tokio::process::Command::new(binary);
        command
            .arg("serve")
            .env("MONGODB_URI", services.mongodb_url())
            .env("MONGODB_DATABASE", &self.database)
            .env("VALKEY_URL", services.valkey_url())
            .env("IDENFY_API_KEY", &cfg.api_key)
            .env("IDENFY_API_SECRET", &cfg.api_secret)
            .env("IDENFY_WEBHOOK_SIGNING_KEY", &cfg.webhook_signing_key)
            .env("IDENFY_BASE_URL", self.sim.base_url())
            .env("RECREATION_CAP", s.recreation_cap.to_string())
            .env("LOCK_TTL_MS", s.lock_ttl.as_millis().to_string())
            .env("CLAIM_TTL_MS", s.claim_ttl.as_millis().to_string())
            .env(
                "UNKNOWN_MINT_BACKOFF_MS",
                s.unknown_mint_backoff.as_millis().to_string(),
            )
            .env("POLL_INTERVAL_MS", s.poll_interval.as_millis().to_string())
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("INTERNAL_SERVICE_TOKEN", INTERNAL_TOKEN)
            .env("DATA_DIR", log.with_extension("data"))
            .env("LOG_FORMAT", "json")
            .env(
                "RUST_LOG",
                std::env::var("XTASK_APP_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .env_remove("IDENFY_SANDBOX_API_KEY")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the app exited at once")?;
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + APP_READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "idenfy-app exited during start-up ({status}); {}",
                    log_tail(log, 15)
                );
            }
            let ready = self
                .http
                .get(format!("{base}/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.start_kill();
                bail!(
                    "idenfy-app did not answer /readyz within {APP_READY_WITHIN:?}; {}",
                    log_tail(log, 15)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(App {
            child: std::sync::Mutex::new(Some(child)),
            pid,
            base,
            log: log.to_path_buf(),
        })
    }

    /// The sim's webhook signing key (the apps verify with it).
    pub(crate) fn signing_key(&self) -> &[u8] {
        self.signing_key.as_bytes()
    }

    /// The row collection of the apps' database.
    pub(crate) fn rows(&self) -> mongodb::Collection<mongodb::bson::Document> {
        self.mongo
            .database(&self.database)
            .collection("idenfysessions")
    }

    /// Deletes every document of the apps' database (their indexes stay), so that a scenario
    /// starts as on a fresh deployment.
    pub(crate) async fn clear_data(&self) -> anyhow::Result<()> {
        let database = self.mongo.database(&self.database);
        for name in database.list_collection_names().await? {
            database
                .collection::<mongodb::bson::Document>(&name)
                .delete_many(mongodb::bson::doc! {})
                .await?;
        }
        Ok(())
    }

    /// `POST /internal/sessions` on app `app`: a parent plus its iDenfy row. Setting up is
    /// not what is measured, so a 503 or a lost connection is retried (a few times, with the
    /// same `Idempotency-Key`, so a retry never mints twice).
    pub(crate) async fn create(&self, app: usize, sig_digest: &str) -> anyhow::Result<Created> {
        let mut attempt: u64 = 0;
        let (status, body) = loop {
            attempt += 1;
            let sent = self
                .http
                .post(format!("{}/internal/sessions", self.apps[app].base))
                .bearer_auth(INTERNAL_TOKEN)
                .header("Idempotency-Key", format!("xtask-{sig_digest}"))
                .json(&serde_json::json!({ "sigDigest": sig_digest, "flow": "gov-id" }))
                .send()
                .await;
            let answer = match sent {
                Ok(response) => {
                    let status = response.status();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    Some((status, body))
                }
                Err(_) => None,
            };
            let retryable = answer
                .as_ref()
                .is_none_or(|(status, _)| *status == StatusCode::SERVICE_UNAVAILABLE);
            if retryable && attempt < 6 {
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                continue;
            }
            match answer {
                Some(answer) => break answer,
                None => bail!("POST /internal/sessions: no answer after {attempt} attempts"),
            }
        };
        if status != StatusCode::CREATED && status != StatusCode::OK {
            bail!("POST /internal/sessions answered {status}: {body}");
        }
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let view = body.get("idenfy").cloned().unwrap_or(Value::Null);
        Ok(Created {
            parent_id: text(&body, "sessionId").context("no sessionId")?,
            row_id: text(&body, "idenfySessionId").context("no idenfySessionId")?,
            sig_digest: sig_digest.to_owned(),
            scan_ref: text(&view, "idenfyScanRef").context("no idenfy.idenfyScanRef")?,
            auth_token: text(&view, "idenfyAuthToken").context("no idenfy.idenfyAuthToken")?,
        })
    }

    /// One `POST /internal/sessions` with `key` as `Idempotency-Key`: status and JSON body
    /// (status 0 when no answer came).
    pub(crate) async fn create_raw(&self, app: usize, sig_digest: &str, key: &str) -> (u16, Value) {
        let sent = self
            .http
            .post(format!("{}/internal/sessions", self.apps[app].base))
            .bearer_auth(INTERNAL_TOKEN)
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({ "sigDigest": sig_digest, "flow": "gov-id" }))
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Creates `count` sessions, `concurrency` at a time, round-robin over the apps.
    pub(crate) async fn create_many(
        &self,
        prefix: &str,
        count: usize,
        concurrency: usize,
    ) -> anyhow::Result<Vec<Created>> {
        use futures::StreamExt;
        let results: Vec<anyhow::Result<Created>> = futures::stream::iter(0..count)
            .map(|i| {
                let sig = format!("{prefix}-{i}-{}", std::process::id());
                async move { self.create(i % self.apps.len(), &sig).await }
            })
            .buffered(concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// `GET /idenfy-sessions/{id}/status` on app `app`; transport errors are `http: 0`.
    pub(crate) async fn poll(&self, app: usize, row: &Created) -> Polled {
        let response = self.status_request(app, row).send().await;
        let Ok(response) = response else {
            return Polled::default();
        };
        let http = response.status().as_u16();
        if http != 200 {
            let retry_after = retry_after(&response);
            let _ = response.bytes().await;
            return Polled {
                http,
                shed: http == 503 && retry_after.is_some(),
                retry_after_ms: retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(0)),
                ..Polled::default()
            };
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
        Polled {
            http,
            status: text("status"),
            verification: text("idenfyVerificationStatus"),
            token: text("idenfyAuthToken"),
            scan_ref: text("idenfyScanRef"),
            recreation_count: body.get("recreationCount").and_then(Value::as_u64),
            retry_after_ms: body.get("retryAfterMs").and_then(Value::as_u64),
            shed: false,
        }
    }

    /// A status poll reduced to how it ended: a 200, a shed answer (503 with
    /// `Retry-After`), or anything else (no answer included).
    pub(crate) async fn poll_answer(&self, app: usize, row: &Created) -> Answer {
        match answer_of(self.status_request(app, row)).await {
            (200, _) => Answer::Ok,
            (503, Some(_)) => Answer::Shed,
            _ => Answer::Failed,
        }
    }

    /// A status poll that only reports the HTTP status (the cached-poll bench).
    pub(crate) async fn poll_status_only(&self, app: usize, row: &Created) -> u16 {
        status_of(self.status_request(app, row)).await
    }

    fn status_request(&self, app: usize, row: &Created) -> reqwest::RequestBuilder {
        self.http
            .get(format!(
                "{}/idenfy-sessions/{}/status",
                self.apps[app].base, row.row_id
            ))
            .header(USER_HEADER, &row.sig_digest)
    }

    /// App `app`'s webhook route, where the sim delivers to.
    pub(crate) fn webhook_url(&self, app: usize) -> String {
        format!("{}/idenfy/webhook", self.apps[app].base)
    }

    /// Delivers a signed webhook to app `app`; returns the HTTP status (0: transport error).
    pub(crate) async fn webhook(&self, app: usize, event: &str, body: &Value) -> u16 {
        let raw = serde_json::to_vec(body).unwrap_or_default();
        let signature = idenfy_core::webhook::sign(self.signing_key(), &raw);
        status_of(
            self.http
                .post(format!("{}/idenfy/webhook", self.apps[app].base))
                .header("Idenfy-Signature", signature)
                .header("Idenfy-Event-Type", event)
                .header("Content-Type", "application/json")
                .body(raw),
        )
        .await
    }

    /// One app's `/metrics` text (empty when it does not answer).
    pub(crate) async fn metrics_text(&self, app: usize) -> String {
        let Ok(response) = self
            .http
            .get(format!("{}/metrics", self.apps[app].base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        else {
            return String::new();
        };
        response.text().await.unwrap_or_default()
    }

    /// The sum of a Prometheus counter over every running app, for series whose labels
    /// contain `label` (e.g. `outcome="won"`; empty: all series).
    pub(crate) async fn metric_sum(&self, name: &str, label: &str) -> f64 {
        let mut total = 0.0;
        for index in 0..self.apps.len() {
            if self.apps[index].running() {
                total += metric_in(&self.metrics_text(index).await, name, label);
            }
        }
        total
    }

    /// The raw row document, read with the driver.
    pub(crate) async fn row_doc(&self, row_id: &str) -> Option<mongodb::bson::Document> {
        let oid = mongodb::bson::oid::ObjectId::parse_str(row_id).ok()?;
        self.rows()
            .find_one(mongodb::bson::doc! { "_id": oid })
            .await
            .ok()
            .flatten()
    }

    /// Successful sim mints per parent (the sim's `clientId` is our parent id).
    pub(crate) fn mints_by_parent(&self) -> std::collections::BTreeMap<String, u64> {
        self.sim.counters().tokens_minted_by_client
    }

    /// Kills every app (also done on drop) and stops the sim.
    pub(crate) async fn shutdown(self) {
        for app in &self.apps {
            app.kill().await;
        }
        self.mongo.clone().shutdown().await;
        self.sim.clone().shutdown().await;
    }
}

/// A webhook body like iDenfy's, reduced to what the service reads.
pub(crate) fn decision_body(row: &Created, overall: &str, is_final: bool) -> Value {
    serde_json::json!({
        "final": is_final,
        "platform": "PC",
        "status": { "overall": overall, "fraudTags": [], "mismatchTags": [] },
        "scanRef": row.scan_ref,
        "clientId": row.parent_id,
    })
}

/// Sends `request`; its HTTP status, 0 on a transport error. The body is read (a real
/// client does, and it frees the connection) and dropped.
async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    answer_of(request).await.0
}

/// [`status_of`], plus the answer's `Retry-After`.
async fn answer_of(request: reqwest::RequestBuilder) -> (u16, Option<Duration>) {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = retry_after(&response);
            let _ = response.bytes().await;
            (status, retry_after)
        }
        Err(_) => (0, None),
    }
}

/// An answer's `Retry-After`, when it has one: whole seconds (the form the apps send); any
/// other form reads as zero (the caller's own minimum pause applies).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let seconds = value.to_str().ok().and_then(|v| v.trim().parse().ok());
    Some(Duration::from_secs(seconds.unwrap_or(0)))
}

/// Sum of the samples of counter `name` whose label set contains `label`.
pub(crate) fn metric_in(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let matches_name = series == name || series.starts_with(&format!("{name}{{"));
            (matches_name && series.contains(label))
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// A BSON number as an integer (counters are int32 or int64).
pub(crate) fn doc_int(doc: &mongodb::bson::Document, key: &str) -> Option<i64> {
    match doc.get(key)? {
        mongodb::bson::Bson::Int32(n) => Some(i64::from(*n)),
        mongodb::bson::Bson::Int64(n) => Some(*n),
        mongodb::bson::Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}

/// The resident set of a process in KiB (`VmRSS` of `/proc/<pid>/status`).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Where bench and chaos write: `target/bench/`.
pub(crate) fn bench_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(
            || workspace_root().join("target"),
            |dir| workspace_root().join(dir),
        )
        .join("bench")
}
