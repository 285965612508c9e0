//! Starting and stopping the simulator, and [`SimHandle`]: the in-process control surface.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::SimConfig;
use crate::fault::{Endpoint, Fault};
use crate::state::{
    Counters, DecisionPlan, DeliveryRecord, Outcome, SessionSnapshot, State, WebhookJob,
};
use crate::webhook::{self, Delivered, DeliveryPolicy};

/// Entry point: `Sim::start(SimConfig::default()).await?`.
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// Binds `cfg.bind` (loopback only) and serves the iDenfy API, the hosted page and the
    /// admin API until [`SimHandle::shutdown`].
    pub async fn start(cfg: SimConfig) -> anyhow::Result<SimHandle> {
        anyhow::ensure!(
            cfg.bind.ip().is_loopback(),
            "idenfy-sim only listens on loopback addresses, not {}",
            cfg.bind
        );
        let listener = tokio::net::TcpListener::bind(cfg.bind)
            .await
            .with_context(|| format!("binding {}", cfg.bind))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let http = reqwest::Client::builder()
            .timeout(cfg.webhook_timeout)
            .connect_timeout(cfg.webhook_timeout)
            .build()
            .context("building the webhook HTTP client")?;
        let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
        let state = State {
            webhook_url: cfg.webhook_url.clone(),
            ..State::default()
        };
        let cfg = SimConfig { bind: addr, ..cfg };
        let inner = Arc::new(Inner {
            base_url: format!("http://{addr}"),
            cfg,
            state: Mutex::new(state),
            http,
            shutdown_tx,
            server: Mutex::new(None),
        });
        let app: Router = crate::api::routes()
            .merge(crate::hosted::routes())
            .merge(crate::admin::routes())
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            let stop = async move {
                let _ = shutdown_rx.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(%error, "idenfy-sim server failed");
            }
        });
        *lock(&inner.server) = Some(server);
        tracing::info!(base_url = %inner.base_url, "idenfy-sim listening");
        Ok(SimHandle { inner })
    }
}

/// Controls a running simulator. Cheap to clone; every clone talks to the same instance.
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// The configuration in force; `bind` holds the address actually bound. The webhook URL
    /// here is the initial one; [`SimHandle::set_webhook_url`] changes the live one.
    pub fn config(&self) -> &SimConfig {
        &self.inner.cfg
    }

    /// Moves the simulator's clock forward, then expires (and notifies) every session whose
    /// deadline has passed.
    pub fn advance_clock(&self, d: Duration) {
        self.inner.advance_clock(d);
    }

    /// The simulator's clock: real time plus everything [`SimHandle::advance_clock`] added.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.state().now()
    }

    /// Expires an `ACTIVE` session now and sends `IDENTIFICATION_EXPIRED`. False when the
    /// scanRef is unknown or the session is no longer `ACTIVE`.
    pub fn expire_token(&self, scan_ref: &str) -> bool {
        self.inner.expire_token(scan_ref)
    }

    /// The user opens the hosted UI: the first opening starts `sessionLength`. False when the
    /// token is unknown or no longer `ACTIVE`.
    pub fn open(&self, auth_token: &str) -> bool {
        self.inner.open(auth_token)
    }

    /// Finishes an `ACTIVE` session with `outcome` and sends its webhooks in the background.
    /// False when the scanRef is unknown or the session is no longer `ACTIVE`.
    pub async fn decide(&self, scan_ref: &str, outcome: Outcome) -> bool {
        self.inner.decide(scan_ref, outcome)
    }

    /// Appends faults for the next `POST /api/v2/token` calls, one per call, in order.
    pub fn script_token(&self, faults: Vec<Fault>) {
        self.inner.state().token_script.extend(faults);
    }

    /// Appends faults for the next `POST /api/v2/status` calls, one per call, in order.
    pub fn script_status(&self, faults: Vec<Fault>) {
        self.inner.state().status_script.extend(faults);
    }

    /// Extra latency on every call of `endpoint` (zero removes it).
    pub fn set_latency(&self, endpoint: Endpoint, d: Duration) {
        let mut state = self.inner.state();
        if d.is_zero() {
            state.latency.remove(&endpoint);
        } else {
            state.latency.insert(endpoint, d);
        }
    }

    /// Replaces the webhook receiver (`None` stops webhooks, except per-token `callbackUrl`s).
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.inner.state().webhook_url = url;
    }

    /// A copy of the call and delivery counters.
    pub fn counters(&self) -> Counters {
        self.inner.state().counters.clone()
    }

    /// Every finished webhook delivery since the start (or the last reset), in the order
    /// they finished: which scanRef and event, where, acknowledged or given up, and when.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.inner.state().deliveries.clone()
    }

    /// One session, with its status brought up to date with the clock.
    pub fn session(&self, scan_ref: &str) -> Option<SessionSnapshot> {
        self.inner.session(scan_ref)
    }

    /// All sessions, by scanRef, brought up to date with the clock.
    pub fn sessions(&self) -> BTreeMap<String, SessionSnapshot> {
        self.inner.sessions()
    }

    /// Forgets sessions, counters, scripts, latency and the clock offset; restores the
    /// configured webhook URL. Deliveries still in flight no longer count.
    pub fn reset(&self) {
        self.inner.reset();
    }

    /// Stops the server and every pending hang, latency and webhook delivery.
    pub async fn shutdown(self) {
        self.inner.shutdown_tx.send_replace(true);
        let server = lock(&self.inner.server).take();
        if let Some(mut server) = server
            && tokio::time::timeout(Duration::from_secs(5), &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
    }
}

/// Shared by the handle and every HTTP handler.
pub(crate) struct Inner {
    pub cfg: SimConfig,
    pub base_url: String,
    pub state: Mutex<State>,
    pub http: reqwest::Client,
    pub shutdown_tx: watch::Sender<bool>,
    server: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Sleeps `d`, or less if the simulator shuts down; true when the full time passed.
    pub async fn sleep(&self, d: Duration) -> bool {
        let mut stop = self.shutdown_tx.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = stop.wait_for(|stop| *stop) => false,
        }
    }

    pub fn advance_clock(self: &Arc<Self>, d: Duration) {
        let jobs = {
            let mut state = self.state();
            let step = TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
            state.clock_offset = state
                .clock_offset
                .checked_add(&step)
                .unwrap_or(TimeDelta::MAX);
            state.sweep(&self.base_url)
        };
        self.spawn_jobs(jobs);
    }

    pub fn expire_token(self: &Arc<Self>, scan_ref: &str) -> bool {
        let job = self.state().expire_now(scan_ref, &self.base_url);
        let expired = job.is_some();
        self.spawn_jobs(job);
        expired
    }

    pub fn open(self: &Arc<Self>, auth_token: &str) -> bool {
        let (opened, job) = {
            let mut state = self.state();
            let job = state
                .scan_ref_by_token
                .get(auth_token)
                .cloned()
                .and_then(|scan_ref| state.refresh(&scan_ref, &self.base_url));
            (state.open(auth_token), job)
        };
        self.spawn_jobs(job);
        opened
    }

    pub fn decide(self: &Arc<Self>, scan_ref: &str, outcome: Outcome) -> bool {
        let (expired, plan, epoch) = {
            let mut state = self.state();
            let expired = state.refresh(scan_ref, &self.base_url);
            let plan = state.decide(scan_ref, outcome, self.cfg.manual_review, &self.base_url);
            (expired, plan, state.epoch)
        };
        self.spawn_jobs(expired);
        match plan {
            None => false,
            Some(DecisionPlan::Abandoned) => true,
            Some(DecisionPlan::Final(job)) => {
                self.spawn_jobs(Some(job));
                true
            }
            Some(DecisionPlan::Review(auto)) => {
                let inner = self.clone();
                let scan_ref = scan_ref.to_owned();
                let auto_target = self.target(&auto);
                tokio::spawn(async move {
                    // AUTO is delivered (or given up) before the review ends, so MANUAL
                    // always arrives second, as iDenfy documents.
                    inner.deliver(auto, auto_target, epoch).await;
                    if !inner.sleep(inner.cfg.manual_review_delay).await {
                        return;
                    }
                    let manual = {
                        let mut state = inner.state();
                        if state.epoch != epoch {
                            return;
                        }
                        state.finish_review(&scan_ref, &inner.base_url)
                    };
                    if let Some(manual) = manual {
                        let target = inner.target(&manual);
                        inner.deliver(manual, target, epoch).await;
                    }
                });
                true
            }
        }
    }

    pub fn session(self: &Arc<Self>, scan_ref: &str) -> Option<SessionSnapshot> {
        let (snapshot, job) = {
            let mut state = self.state();
            let job = state.refresh(scan_ref, &self.base_url);
            let snapshot = state
                .sessions
                .get(scan_ref)
                .map(|s| s.snapshot(&self.base_url));
            (snapshot, job)
        };
        self.spawn_jobs(job);
        snapshot
    }

    pub fn sessions(self: &Arc<Self>) -> BTreeMap<String, SessionSnapshot> {
        let (all, jobs) = {
            let mut state = self.state();
            let jobs = state.sweep(&self.base_url);
            let all = state
                .sessions
                .iter()
                .map(|(k, s)| (k.clone(), s.snapshot(&self.base_url)))
                .collect();
            (all, jobs)
        };
        self.spawn_jobs(jobs);
        all
    }

    pub fn reset(&self) {
        self.state().reset(self.cfg.webhook_url.clone());
    }

    /// Sends each job in its own task (no ordering between them).
    pub fn spawn_jobs(self: &Arc<Self>, jobs: impl IntoIterator<Item = WebhookJob>) {
        let epoch = self.state().epoch;
        for job in jobs {
            let target = self.target(&job);
            let this = self.clone();
            tokio::spawn(async move { this.deliver(job, target, epoch).await });
        }
    }

    /// Where a webhook goes, decided when its event happens: the session's `callbackUrl`,
    /// else the webhook URL in force at that moment.
    fn target(&self, job: &WebhookJob) -> Option<String> {
        job.callback_url
            .clone()
            .or_else(|| self.state().webhook_url.clone())
    }

    /// Delivers one webhook with retries and updates the counters (unless a reset intervened).
    async fn deliver(&self, job: WebhookJob, target: Option<String>, epoch: u64) {
        let Some(url) = target else {
            tracing::debug!(scan_ref = %job.scan_ref, event = job.event.as_str(), "no webhook URL");
            return;
        };
        let policy = DeliveryPolicy {
            signing_key: self.cfg.webhook_signing_key.clone(),
            max_attempts: self.cfg.webhook_max_attempts,
            initial_backoff: self.cfg.webhook_initial_backoff,
        };
        let mut stop = self.shutdown_tx.subscribe();
        let result =
            webhook::deliver(&self.http, &url, job.event, &job.body, &policy, &mut stop).await;
        let finished = std::time::Instant::now();
        let mut state = self.state();
        if state.epoch != epoch {
            return;
        }
        let counters = &mut state.counters;
        let (acknowledged, attempts) = match result {
            Delivered::Ok { attempts } => {
                counters.webhook_attempts += u64::from(attempts);
                counters.webhooks_delivered += 1;
                (true, attempts)
            }
            Delivered::GaveUp { attempts } => {
                counters.webhook_attempts += u64::from(attempts);
                counters.webhooks_failed += 1;
                (false, attempts)
            }
            Delivered::Cancelled { attempts } => {
                counters.webhook_attempts += u64::from(attempts);
                return;
            }
        };
        state.deliveries.push(DeliveryRecord {
            scan_ref: job.scan_ref,
            event: job.event,
            url,
            acknowledged,
            attempts,
            finished,
        });
    }
}
