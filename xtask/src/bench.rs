//! `cargo xtask bench [--quick]`: measured performance on the real stack (MongoDB protocol, Valkey,
//! idenfy-sim, several `idenfy-app` processes), as a markdown table on stdout and in
//! `target/bench/report.md` (`report-quick.md` for `--quick`), next to the previous run's
//! figures (kept in the JSON sidecar `report.json` / `report-quick.json`). The scenarios
//! run in the [`harness`](crate::harness) chaos runs in too.
//!
//! Figures are counts and ratios from one run, never timed assertions; the few hard checks
//! (one mint per row in a herd, no EXPIRED view, at most one iDenfy status call per row per
//! poll interval) fail the command, while the overload's targets are reported, met or missed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use idenfy_sim::{DeliveryRecord, Endpoint, EventType};

use crate::harness::{Figures, Suite};
use crate::herd::{
    HERD_IN_FLIGHT, HERD_POLL_PAUSE, HerdOutcome, HerdPlan, HerdWebhooks, herd, herd_with,
};
use crate::load::{self, Answer, Summary};
use crate::stack::{self, AppSettings, Created, Services, Stack, decision_body};

/// The bench: its sizes, and app 0's memory around the scenarios.
#[derive(Debug)]
pub(crate) struct Bench {
    sizes: Sizes,
    /// RSS before the first scenario (KiB).
    idle: u64,
    /// Peak RSS under the cached-poll load (KiB; 0 when that did not run).
    peak: u64,
}

/// The bench's scenarios.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scenario {
    CachedPoll,
    Herd,
    WebhookHerd,
    Reconcile,
    Overload,
}

impl Suite for Bench {
    const NAME: &'static str = "bench";
    const REPORT: &'static str = "report";
    const FRESH_DATA: bool = true;
    type Scenario = Scenario;
    // Overload last: whatever backlog it leaves cannot spill into another scenario.
    const SCENARIOS: &'static [(&'static str, Scenario)] = &[
        ("cached poll", Scenario::CachedPoll),
        ("herd", Scenario::Herd),
        ("herd with webhooks", Scenario::WebhookHerd),
        ("reconcile", Scenario::Reconcile),
        ("overload", Scenario::Overload),
    ];

    fn new(quick: bool) -> Bench {
        Bench {
            sizes: Sizes::new(quick),
            idle: 0,
            peak: 0,
        }
    }

    fn settings(&self) -> AppSettings {
        AppSettings {
            replicas: 3,
            release: !self.sizes.quick,
            poll_interval: self.sizes.poll_interval,
            recreation_cap: 10,
            lock_ttl: Duration::from_secs(30),
            claim_ttl: Duration::from_secs(60),
            backoff_base: Duration::from_secs(2),
            unknown_mint_backoff: Duration::from_secs(3),
        }
    }

    fn describe(&self, settings: &AppSettings) -> String {
        let sizes = &self.sizes;
        let mut h = String::new();
        let _ = writeln!(
            h,
            "- cached poll: {} final + {} ACTIVE rows, {:.1} s per level, all on one app; \
             floor = the driver's `find_one` by `_id` on the same server; `/healthz` = the \
             app's HTTP stack alone",
            sizes.cached_rows,
            sizes.cached_rows,
            sizes.level_time.as_secs_f64()
        );
        let _ = writeln!(
            h,
            "- herd: {} rows x {} pollers over {} apps, token latency {} ms, pollers pause {} ms \
             (or the view's retryAfterMs), at most {HERD_IN_FLIGHT} requests in flight",
            sizes.herd_rows,
            sizes.herd_pollers,
            settings.replicas,
            HERD_TOKEN_LATENCY.as_millis(),
            HERD_POLL_PAUSE.as_millis()
        );
        let _ = writeln!(
            h,
            "- herd with webhooks: {} rows x {} pollers over {} apps, token latency {} ms, \
             pollers pause {} ms (or the view's retryAfterMs), the sim's EXPIRED webhooks \
             round-robin over the apps",
            sizes.hook_herd_rows,
            sizes.hook_herd_pollers,
            settings.replicas,
            HERD_TOKEN_LATENCY.as_millis(),
            HOOK_HERD_POLL_PAUSE.as_millis()
        );
        let _ = writeln!(
            h,
            "- reconcile: {} ACTIVE rows, {} req/s for {:.0} s, poll interval {:.0} s",
            sizes.reconcile_rows,
            sizes.reconcile_rate,
            sizes.reconcile_time.as_secs_f64(),
            sizes.poll_interval.as_secs_f64()
        );
        let _ = writeln!(
            h,
            "- overload: {} final rows over {} apps; capacity = closed loop c={CAPACITY_CONCURRENCY} \
             for {:.1} s; then an open loop at {OVERLOAD_FACTOR}x capacity for {:.0} s (at most \
             {OVERLOAD_IN_FLIGHT} in flight); recovery = from the end of the load to the first \
             window of {PROBE_POLLS} single polls (a window every {} ms) that all answer 200 \
             with a p50 within max(1.5 x, +2 ms) of the single-poll baseline p50",
            sizes.cached_rows,
            settings.replicas,
            sizes.overload_probe_time.as_secs_f64(),
            sizes.overload_time.as_secs_f64(),
            PROBE_EVERY.as_millis()
        );
        let _ = writeln!(
            h,
            "- store calls per request: `{STORE_CALLS}` summed over every replica's /metrics \
             before and after a run (background work included), over the requests the bench \
             sent and over those served (not shed, not failed)"
        );
        h
    }

    async fn before(&mut self, stack: &Stack) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.idle = stack::rss_kib(stack.apps[0].pid).unwrap_or(0);
    }

    async fn run(
        &mut self,
        scenario: Scenario,
        stack: &Stack,
        _services: &mut Services,
        f: &mut Figures,
    ) -> anyhow::Result<()> {
        let sizes = &self.sizes;
        match scenario {
            Scenario::CachedPoll => self.peak = cached_poll(stack, sizes, f).await?,
            Scenario::Herd => herd_bench(stack, sizes, f).await?,
            Scenario::WebhookHerd => webhook_herd(stack, sizes, f).await?,
            Scenario::Reconcile => reconcile(stack, sizes, f).await?,
            Scenario::Overload => overload(stack, sizes, f).await?,
        }
        Ok(())
    }

    fn after(&self, f: &mut Figures) {
        f.label("memory");
        f.num("idle RSS of one app", self.idle as f64 / 1024.0, "MiB");
        if self.peak > 0 {
            f.num(
                "peak RSS under the cached-poll load",
                self.peak as f64 / 1024.0,
                "MiB",
            );
        }
    }
}

/// Sizes of one run.
#[derive(Debug, Clone)]
struct Sizes {
    quick: bool,
    levels: [usize; 3],
    level_time: Duration,
    cached_rows: usize,
    herd_rows: usize,
    herd_pollers: usize,
    herd_deadline: Duration,
    reconcile_rows: usize,
    reconcile_rate: u32,
    reconcile_time: Duration,
    poll_interval: Duration,
    hook_herd_rows: usize,
    hook_herd_pollers: usize,
    /// Overload: each of the baseline and capacity runs.
    overload_probe_time: Duration,
    /// Overload: how long the open loop runs at twice the capacity.
    overload_time: Duration,
    /// Overload: how long after the load the probe waits for the baseline p50 at most.
    recovery_limit: Duration,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                quick,
                levels: [1, 16, 64],
                level_time: Duration::from_millis(1500),
                cached_rows: 10,
                herd_rows: 20,
                herd_pollers: 8,
                herd_deadline: Duration::from_secs(20),
                reconcile_rows: 10,
                reconcile_rate: 200,
                reconcile_time: Duration::from_secs(8),
                poll_interval: Duration::from_secs(2),
                hook_herd_rows: 50,
                hook_herd_pollers: 16,
                overload_probe_time: Duration::from_millis(1500),
                overload_time: Duration::from_secs(6),
                recovery_limit: Duration::from_secs(10),
            }
        } else {
            Sizes {
                quick,
                levels: [1, 16, 64],
                level_time: Duration::from_secs(10),
                cached_rows: 100,
                herd_rows: 200,
                herd_pollers: 32,
                herd_deadline: Duration::from_secs(90),
                reconcile_rows: 100,
                reconcile_rate: 1000,
                reconcile_time: Duration::from_secs(60),
                poll_interval: Duration::from_secs(15),
                hook_herd_rows: 200,
                hook_herd_pollers: 16,
                overload_probe_time: Duration::from_secs(5),
                overload_time: Duration::from_secs(30),
                recovery_limit: Duration::from_secs(60),
            }
        }
    }
}

/// The token latency injected into the herd.
const HERD_TOKEN_LATENCY: Duration = Duration::from_millis(300);
/// How long a poller of the herd with webhooks waits between polls (see [`HERD_POLL_PAUSE`]).
const HOOK_HERD_POLL_PAUSE: Duration = Duration::from_millis(500);
/// Overload: the closed loop that measures the capacity of the replicas together.
const CAPACITY_CONCURRENCY: usize = 64;
/// Overload: the open loop's rate as a multiple of that capacity.
const OVERLOAD_FACTOR: f64 = 2.0;
/// Overload: requests in flight at once (the client side's connection budget).
const OVERLOAD_IN_FLIGHT: usize = 2048;
/// Overload: the target for single polls to be back at their baseline after the load.
const RECOVERY_TARGET: Duration = Duration::from_secs(5);
/// Overload recovery probe: single polls per window, and how often a window starts.
const PROBE_POLLS: usize = 5;
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// The apps' count of store calls (label `op`), summed over the replicas.
const STORE_CALLS: &str = "idenfy_store_calls_total";

// ---------------------------------------------------------------------------------------
// Scenarios

/// Cached poll path at each concurrency level; returns the peak RSS of app 0 (KiB).
async fn cached_poll(stack: &Stack, sizes: &Sizes, f: &mut Figures) -> anyhow::Result<u64> {
    println!("creating rows");
    let finals = final_rows(stack, "bench-final", sizes.cached_rows).await?;
    let actives = stack
        .create_many("bench-active", sizes.cached_rows, 8)
        .await?;
    // Warm up: every row once (connection pools, first poll of the ACTIVE rows).
    for row in finals.iter().chain(&actives) {
        let polled = stack.poll(0, row).await;
        if polled.http != 200 {
            bail!("warm-up poll of {} answered {}", row.row_id, polled.http);
        }
    }
    let final_view = stack.poll(0, &finals[0]).await;
    if final_view.status.as_deref() != Some("complete") {
        bail!(
            "a row with an APPROVED final webhook shows {:?}/{:?}, not complete",
            final_view.status,
            final_view.verification
        );
    }
    let ids: Vec<mongodb::bson::oid::ObjectId> = finals
        .iter()
        .chain(&actives)
        .filter_map(|r| mongodb::bson::oid::ObjectId::parse_str(&r.row_id).ok())
        .collect();
    let rows = stack.rows();
    let peak = AtomicU64::new(stack::rss_kib(stack.apps[0].pid).unwrap_or(0));
    let max_requests = 10_000_000;
    for &level in &sizes.levels {
        println!("at concurrency {level}");
        let (finals_summary, actives_summary, floor, healthz, in_app, calls) = {
            let sampled = sample_rss(stack.apps[0].pid, &peak, async {
                let calls_before = store_calls(stack).await;
                let before = InApp::read(stack).await;
                let f = load::closed_loop(level, sizes.level_time, max_requests, |i| {
                    let row = &finals[(i as usize) % finals.len()];
                    async move { stack.poll_status_only(0, row).await == 200 }
                })
                .await;
                let between = InApp::read(stack).await;
                let calls_between = store_calls(stack).await;
                let a = load::closed_loop(level, sizes.level_time, max_requests, |i| {
                    let row = &actives[(i as usize) % actives.len()];
                    async move { stack.poll_status_only(0, row).await == 200 }
                })
                .await;
                let after = InApp::read(stack).await;
                let calls_after = store_calls(stack).await;
                let calls = [calls_before, calls_between, calls_after];
                (f, a, between.since(&before), after.since(&between), calls)
            })
            .await;
            let floor = load::closed_loop(level, sizes.level_time, max_requests, |i| {
                let id = ids[(i as usize) % ids.len()];
                let rows = &rows;
                async move {
                    rows.find_one(mongodb::bson::doc! { "_id": id })
                        .await
                        .is_ok_and(|d| d.is_some())
                }
            })
            .await;
            let healthz_url = format!("{}/healthz", stack.apps[0].base);
            let healthz = load::closed_loop(level, sizes.level_time, max_requests, |_| {
                let url = &healthz_url;
                async move {
                    match stack.http.get(url).send().await {
                        Ok(r) => {
                            let ok = r.status().is_success();
                            let _ = r.bytes().await;
                            ok
                        }
                        Err(_) => false,
                    }
                }
            })
            .await;
            (
                sampled.0,
                sampled.1,
                floor,
                healthz,
                [("final rows", sampled.2), ("ACTIVE rows", sampled.3)],
                sampled.4,
            )
        };
        f.label(format!("cached poll c={level}"));
        for (what, s) in [
            ("final rows", &finals_summary),
            ("ACTIVE rows", &actives_summary),
            ("floor: driver find_one by _id", &floor),
            ("app GET /healthz", &healthz),
        ] {
            summary(f, what, s);
        }
        for (what, spent) in &in_app {
            spent.figures(f, what);
        }
        for (what, calls, s) in [
            ("final rows: ", [calls[0], calls[1]], &finals_summary),
            ("ACTIVE rows: ", [calls[1], calls[2]], &actives_summary),
        ] {
            store_call_figures(f, what, calls, s.requests, s.requests - s.failed);
        }
        let floor_p50 = floor.p50_ms().max(0.001);
        f.num(
            "ours/floor at p50, final rows",
            finals_summary.p50_ms() / floor_p50,
            "x",
        );
        f.num(
            "ours/floor at p50, ACTIVE rows",
            actives_summary.p50_ms() / floor_p50,
            "x",
        );
    }
    Ok(peak.load(Ordering::Relaxed))
}

/// `count` new rows, each decided by an APPROVED final webhook: their polls are answered
/// from the row alone (the cached poll path).
async fn final_rows(stack: &Stack, prefix: &str, count: usize) -> anyhow::Result<Vec<Created>> {
    let rows = stack.create_many(prefix, count, 8).await?;
    for row in &rows {
        let status = approve(stack, 0, row).await;
        if status != 200 {
            bail!(
                "the APPROVED webhook for {} answered {status}",
                row.scan_ref
            );
        }
    }
    Ok(rows)
}

/// `idenfy_store_calls_total` (every `op`) summed over the replicas' `/metrics`.
async fn store_calls(stack: &Stack) -> f64 {
    stack.metric_sum(STORE_CALLS, "").await
}

/// The status route's time and the store's time inside app 0, from its `/metrics`
/// (`http_request_duration_seconds` and `idenfy_store_call_seconds`): where a cached
/// poll spends its time, measured in the app rather than guessed.
#[derive(Clone, Copy, Debug, Default)]
struct InApp {
    requests: f64,
    request_seconds: f64,
    store_calls: f64,
    store_seconds: f64,
}

impl InApp {
    const ROUTE: &'static str = "route=\"/idenfy-sessions/{id}/status\"";

    async fn read(stack: &Stack) -> InApp {
        let text = stack.metrics_text(0).await;
        InApp {
            requests: stack::metric_in(&text, "http_request_duration_seconds_count", Self::ROUTE),
            request_seconds: stack::metric_in(
                &text,
                "http_request_duration_seconds_sum",
                Self::ROUTE,
            ),
            store_calls: stack::metric_in(&text, "idenfy_store_call_seconds_count", ""),
            store_seconds: stack::metric_in(&text, "idenfy_store_call_seconds_sum", ""),
        }
    }

    fn since(&self, earlier: &InApp) -> InApp {
        InApp {
            requests: self.requests - earlier.requests,
            request_seconds: self.request_seconds - earlier.request_seconds,
            store_calls: self.store_calls - earlier.store_calls,
            store_seconds: self.store_seconds - earlier.store_seconds,
        }
    }

    fn figures(&self, f: &mut Figures, what: &str) {
        if self.requests < 1.0 {
            return;
        }
        let per_request_ms = 1000.0 * self.request_seconds / self.requests;
        let store_ms = 1000.0 * self.store_seconds / self.requests;
        f.num(
            format!("{what}, in the app: time per request (mean)"),
            per_request_ms,
            "ms",
        );
        f.num(
            format!("{what}, in the app: store calls per request"),
            self.store_calls / self.requests,
            "x",
        );
        f.num(
            format!("{what}, in the app: store time per request (mean)"),
            store_ms,
            "ms",
        );
        f.num(
            format!("{what}, in the app: store share of the request time"),
            100.0 * store_ms / per_request_ms.max(f64::EPSILON),
            "%",
        );
    }
}

/// throughput, p50 and p99 of one load run (plus failures, which must be none).
fn summary(f: &mut Figures, what: &str, s: &Summary) {
    f.num(format!("{what}: throughput"), s.throughput(), "req/s");
    f.num(format!("{what}: p50"), s.p50_ms(), "ms");
    f.num(format!("{what}: p99"), s.p99_ms(), "ms");
    if s.failed > 0 {
        f.add(format!("{what}: failed requests"), s.failed);
    }
}

/// [`STORE_CALLS`] per request sent and per request served (a shed or failed request
/// may cost no store call), from its sums over the replicas `before` and `after` them;
/// "absent" when no replica counts anything.
fn store_call_figures(f: &mut Figures, what: &str, calls: [f64; 2], sent: u64, served: u64) {
    let [before, after] = calls;
    for (per, n) in [("request sent", sent), ("request served", served)] {
        let name = format!("{what}store calls per {per} (all replicas)");
        if after <= 0.0 {
            f.add(name, format!("absent (no {STORE_CALLS})"));
        } else {
            f.num(name, (after - before) / n.max(1) as f64, "x");
        }
    }
}

/// Runs `work` while sampling `pid`'s RSS every 100 ms into `peak`.
async fn sample_rss<T>(pid: u32, peak: &AtomicU64, work: impl Future<Output = T>) -> T {
    let done = AtomicBool::new(false);
    let sampler = async {
        // Bounded: ten minutes of samples at most.
        for _ in 0..6000 {
            if done.load(Ordering::Relaxed) {
                break;
            }
            if let Some(rss) = stack::rss_kib(pid) {
                peak.fetch_max(rss, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let work = async {
        let out = work.await;
        done.store(true, Ordering::Relaxed);
        out
    };
    let (out, ()) = tokio::join!(work, sampler);
    out
}

/// A signed `final: true` APPROVED webhook for `row`, delivered to app `app`.
async fn approve(stack: &Stack, app: usize, row: &Created) -> u16 {
    let body = decision_body(row, "APPROVED", true);
    stack
        .webhook(app, "IDENTIFICATION_MANUAL_FINISHED", &body)
        .await
}

/// The figures every herd reports (the hard checks among them).
fn herd_figures(f: &mut Figures, outcome: &HerdOutcome) {
    f.num("mints per row", outcome.mints_per_row(), "ratio")
        .must(outcome.rows_not_minted_once() == 0, "1.00 for every row");
    let doubles = outcome.mints.iter().filter(|&&m| m > 1).count();
    f.add("rows minted more than once", doubles)
        .must(doubles == 0, "0");
    f.add("EXPIRED views seen", outcome.expired_views)
        .must(outcome.expired_views == 0, "0");
    // Bounded by the deadline, so a figure rather than a check.
    f.num(
        "pollers holding the new token",
        outcome.converged() as f64,
        format!("of {}", outcome.pollers),
    );
    f.add("5xx or unanswered polls", outcome.errors);
    f.add("of which shed (503 + Retry-After)", outcome.shed);
    f.add("polls sent", outcome.polls);
    f.num("expiry -> new token, p50", outcome.quantile_ms(0.5), "ms");
    f.num("expiry -> new token, p99", outcome.quantile_ms(0.99), "ms");
}

async fn herd_bench(stack: &Stack, sizes: &Sizes, f: &mut Figures) -> anyhow::Result<()> {
    println!("{} rows x {} pollers", sizes.herd_rows, sizes.herd_pollers);
    let rows = stack.create_many("bench-herd", sizes.herd_rows, 16).await?;
    stack.sim.set_latency(Endpoint::Token, HERD_TOKEN_LATENCY);
    let apps: Vec<usize> = (0..stack.apps.len()).collect();
    let outcome = herd(
        stack,
        &rows,
        sizes.herd_pollers,
        sizes.herd_deadline,
        &apps,
        async {},
    )
    .await;
    stack.sim.set_latency(Endpoint::Token, Duration::ZERO);
    herd_figures(f, &outcome);
    Ok(())
}

/// Issue 14: a herd whose pollers poll every [`HOOK_HERD_POLL_PAUSE`] while the sim's
/// `IDENTIFICATION_EXPIRED` webhooks reach the apps round-robin: one mint per row, no
/// EXPIRED view, and no poll shown the old token once the apps could know better.
async fn webhook_herd(stack: &Stack, sizes: &Sizes, f: &mut Figures) -> anyhow::Result<()> {
    println!(
        "{} rows x {} pollers",
        sizes.hook_herd_rows, sizes.hook_herd_pollers
    );
    let rows = stack
        .create_many("bench-hook-herd", sizes.hook_herd_rows, 16)
        .await?;
    let apps: Vec<usize> = (0..stack.apps.len()).collect();
    let plan = HerdPlan {
        pollers_per_row: sizes.hook_herd_pollers,
        deadline: sizes.herd_deadline,
        apps: &apps,
        pause: HOOK_HERD_POLL_PAUSE,
        webhooks: HerdWebhooks::RoundRobin,
    };
    stack.sim.set_latency(Endpoint::Token, HERD_TOKEN_LATENCY);
    let calls_before = store_calls(stack).await;
    let outcome = herd_with(stack, &rows, &plan, async {}).await;
    let calls_after = store_calls(stack).await;
    stack.sim.set_latency(Endpoint::Token, Duration::ZERO);
    let deliveries =
        expiry_deliveries(stack, &rows, outcome.expired_rows, Duration::from_secs(10)).await;
    let acknowledged: HashMap<String, Instant> = deliveries
        .iter()
        .filter(|d| d.acknowledged)
        .map(|d| (d.scan_ref.clone(), d.finished))
        .collect();
    herd_figures(f, &outcome);
    f.num(
        "5xx other than shed, or unanswered polls",
        (outcome.errors - outcome.shed) as f64,
        "",
    );
    f.add(
        "polls answered with the old token (any time)",
        outcome.old_token_polls(),
    );
    f.num(
        "old-token views (sent after the app could know)",
        outcome.old_token_views(&acknowledged) as f64,
        "",
    );
    f.num(
        "EXPIRED webhooks acknowledged (2xx)",
        acknowledged.len() as f64,
        format!("of {} sent", outcome.expired_rows),
    );
    f.num(
        "EXPIRED webhook attempts",
        deliveries.iter().map(|d| f64::from(d.attempts)).sum(),
        "",
    );
    f.num(
        "sim webhook give-ups",
        deliveries.iter().filter(|d| !d.acknowledged).count() as f64,
        "",
    );
    // Served: answered, and not with a 5xx (a shed answer is a 503).
    let served = outcome.polls - outcome.errors;
    store_call_figures(f, "", [calls_before, calls_after], outcome.polls, served);
    Ok(())
}

/// The sim's finished `IDENTIFICATION_EXPIRED` deliveries for `rows` (acknowledged or given
/// up), waiting up to `patience` until there are `expected` (some may still be retried).
async fn expiry_deliveries(
    stack: &Stack,
    rows: &[Created],
    expected: usize,
    patience: Duration,
) -> Vec<DeliveryRecord> {
    let scan_refs: std::collections::HashSet<&str> =
        rows.iter().map(|r| r.scan_ref.as_str()).collect();
    let until = Instant::now() + patience;
    loop {
        let deliveries: Vec<DeliveryRecord> = stack
            .sim
            .deliveries()
            .into_iter()
            .filter(|d| d.event == EventType::Expired && scan_refs.contains(d.scan_ref.as_str()))
            .collect();
        if deliveries.len() >= expected || Instant::now() >= until {
            return deliveries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn reconcile(stack: &Stack, sizes: &Sizes, f: &mut Figures) -> anyhow::Result<()> {
    println!(
        "{} rows at {} req/s for {:.0}s",
        sizes.reconcile_rows,
        sizes.reconcile_rate,
        sizes.reconcile_time.as_secs_f64()
    );
    let rows = stack
        .create_many("bench-reconcile", sizes.reconcile_rows, 8)
        .await?;
    let before = stack.sim.counters().status_calls_by_scan_ref;
    let apps = stack.apps.len();
    let summary = load::open_loop(sizes.reconcile_rate, sizes.reconcile_time, 512, |i| {
        let row = &rows[(i as usize) % rows.len()];
        async move { stack.poll_status_only((i as usize) % apps, row).await == 200 }
    })
    .await;
    let after = stack.sim.counters().status_calls_by_scan_ref;
    let elapsed = summary.elapsed.as_secs_f64();
    // Windows of one poll interval the run touched: a row may be polled once in each.
    let intervals = (elapsed / sizes.poll_interval.as_secs_f64()).floor() + 1.0;
    let per_row: Vec<f64> = rows
        .iter()
        .map(|row| {
            let calls = after.get(&row.scan_ref).copied().unwrap_or(0)
                - before.get(&row.scan_ref).copied().unwrap_or(0);
            calls as f64 / intervals
        })
        .collect();
    let mean = per_row.iter().sum::<f64>() / per_row.len().max(1) as f64;
    let max = per_row.iter().copied().fold(0.0, f64::max);
    f.num(
        "iDenfy status calls per row per interval (max)",
        max,
        "ratio",
    )
    .must(max <= 1.0, "<= 1.00");
    f.num(
        "iDenfy status calls per row per interval (mean)",
        mean,
        "ratio",
    );
    f.num("throughput", summary.throughput(), "req/s");
    f.num("p50", summary.p50_ms(), "ms");
    f.num("p99", summary.p99_ms(), "ms");
    // Load-dependent (store timeouts under overload), so a figure, not a check.
    f.add("non-200 answers", summary.failed);
    f.add("starts dropped (client saturated)", summary.dropped);
    Ok(())
}

/// Issue 14, graceful overload: the replicas' capacity for cached polls, then twice that
/// as an open loop spread over them. Goodput should stay near the capacity (the excess shed
/// cheaply, with a 503 and `Retry-After`), admitted polls fast, and single polls back to
/// their baseline soon after the load stops. Figures and targets only: all of them depend on
/// the load, so a missed target is reported, not a failure.
async fn overload(stack: &Stack, sizes: &Sizes, f: &mut Figures) -> anyhow::Result<()> {
    println!("baseline and capacity");
    let rows = final_rows(stack, "bench-overload", sizes.cached_rows).await?;
    let apps = stack.apps.len();
    // Poll `i` goes to app `i % apps`: round-robin, like a load balancer.
    let poll = |i: u64| {
        let i = i as usize;
        stack.poll_answer(i % apps, &rows[i % rows.len()])
    };
    // Warm up: every row on every app (connection pools).
    for i in 0..rows.len() * apps {
        let _ = poll(i as u64).await;
    }
    let baseline = load::closed_loop(1, sizes.overload_probe_time, u64::MAX, &poll).await;
    let measured = load::closed_loop(
        CAPACITY_CONCURRENCY,
        sizes.overload_probe_time,
        u64::MAX,
        &poll,
    )
    .await;
    let capacity = measured.goodput();
    if capacity < 1.0 {
        bail!(
            "no capacity to overload: {} of {} polls failed",
            measured.failed,
            measured.requests
        );
    }
    let rate = (capacity * OVERLOAD_FACTOR).round() as u32;
    println!(
        "{rate} req/s for {:.0}s ({OVERLOAD_FACTOR}x {capacity:.0} req/s)",
        sizes.overload_time.as_secs_f64()
    );
    let baseline_ms = baseline.p50_ms();
    let back_within_ms = (1.5 * baseline_ms).max(baseline_ms + 2.0);
    let stop = Instant::now() + sizes.overload_time;
    let (over, back) = tokio::join!(
        load::open_loop(rate, sizes.overload_time, OVERLOAD_IN_FLIGHT, &poll),
        time_to_baseline(stack, &rows, stop, back_within_ms, sizes.recovery_limit),
    );
    let share = |n: u64| 100.0 * n as f64 / over.requests.max(1) as f64;
    f.num("baseline: single cached poll p50", baseline_ms, "ms");
    f.num(
        format!("capacity: closed loop c={CAPACITY_CONCURRENCY}, 200s"),
        capacity,
        "req/s",
    );
    f.add("capacity: non-200 answers in that run", measured.failed);
    f.num("target rate (2x capacity)", f64::from(rate), "req/s");
    f.num("offered rate", over.throughput(), "req/s");
    f.add("starts dropped (client saturated)", over.dropped);
    f.num("goodput: 200s per second", over.goodput(), "req/s");
    let share_of_capacity = 100.0 * over.goodput() / capacity;
    f.num("goodput share of capacity", share_of_capacity, "%")
        .target(share_of_capacity >= 90.0, ">= 90 %");
    f.num("admitted (200) p50", over.admitted_quantile_ms(0.5), "ms");
    f.num("admitted (200) p99", over.admitted_quantile_ms(0.99), "ms");
    f.num("shed (503 + Retry-After)", share(over.shed), "% of sent");
    f.num(
        "other non-200 or unanswered",
        share(over.other_failed()),
        "% of sent",
    );
    let name = "end of load -> single polls at baseline p50";
    let back_in_time = back.is_some_and(|after| after <= RECOVERY_TARGET);
    let figure = match back {
        Some(after) => f.num(name, after.as_secs_f64(), "s"),
        None => f.add(
            name,
            format!("not within {:.0} s", sizes.recovery_limit.as_secs_f64()),
        ),
    };
    figure.target(back_in_time, format!("<= {} s", RECOVERY_TARGET.as_secs()));
    Ok(())
}

/// From `stop` on, a window of [`PROBE_POLLS`] single polls (round-robin over the apps)
/// every [`PROBE_EVERY`] (or right after the previous window when it took longer): the time
/// from `stop` to the start of the first window whose polls all answered 200 with a p50 of
/// at most `within_ms`. `None` when no window did within `limit`.
async fn time_to_baseline(
    stack: &Stack,
    rows: &[Created],
    stop: Instant,
    within_ms: f64,
    limit: Duration,
) -> Option<Duration> {
    tokio::time::sleep_until(stop.into()).await;
    let apps = stack.apps.len();
    let mut next = 0;
    while stop.elapsed() < limit {
        let window = Instant::now();
        let mut all_ok = true;
        let mut latencies = Vec::with_capacity(PROBE_POLLS);
        for _ in 0..PROBE_POLLS {
            let t = Instant::now();
            let answer = stack
                .poll_answer(next % apps, &rows[next % rows.len()])
                .await;
            latencies.push(t.elapsed());
            all_ok &= answer == Answer::Ok;
            next += 1;
        }
        latencies.sort_unstable();
        let p50_ms = latencies[PROBE_POLLS / 2].as_secs_f64() * 1000.0;
        if all_ok && p50_ms <= within_ms {
            return Some(window - stop);
        }
        tokio::time::sleep_until((window + PROBE_EVERY).into()).await;
    }
    None
}
