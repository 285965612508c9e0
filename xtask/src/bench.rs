//! `cargo xtask bench [--quick]`: measured performance on the real stack (MongoDB protocol, Valkey,
//! idenfy-sim, several `idenfy-app` processes), as a markdown table on stdout and in
//! `target/bench/report.md` (`report-quick.md` for `--quick`), next to the previous run's
//! figures (kept in the JSON sidecar `report.json` / `report-quick.json`).
//!
//! Figures are counts and ratios from one run, never timed assertions; the few hard checks
//! (one mint per row in a herd, no EXPIRED view, at most one iDenfy status call per row per
//! poll interval) fail the command.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use dev_services::{Backend, MongoServer};
use futures::StreamExt;
use idenfy_sim::{DeliveryRecord, Endpoint, EventType};
use serde_json::json;

use crate::load::{self, Answer, Summary};
use crate::stack::{self, AppSettings, Created, Services, Stack};

/// `cargo xtask bench` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Small sizes and a debug build (about a minute; what `cargo xtask ci` runs).
    #[arg(long)]
    pub(crate) quick: bool,
    /// Where the servers come from: auto, external, docker or local.
    #[arg(long, env = dev_services::BACKEND_VAR, default_value = "auto", value_parser = crate::parse_backend)]
    pub(crate) backend: Backend,
    /// The MongoDB-protocol server the apps use: mongo-java-server (atomic writes, the
    /// default) or ferretdb (serialised writes), both started by the local backend.
    #[arg(long, env = dev_services::MONGO_SERVER_VAR, default_value = "mongo-java-server", value_parser = crate::parse_mongo)]
    pub(crate) mongo: MongoServer,
    /// Run only the scenarios whose name contains one of these comma-separated texts
    /// (case-insensitive), e.g. `--only webhooks` or `--only cached,overload`; the report
    /// then goes to `report-only*.md` so it never replaces a full run's.
    #[arg(long)]
    pub(crate) only: Option<String>,
}

impl Args {
    /// Whether the scenario `name` runs: a part of `--only` that is a scenario's whole name
    /// selects just that one (`herd`), any other part every name containing it.
    fn wants(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|only| {
            only.split(',')
                .map(|part| part.trim().to_lowercase())
                .filter(|part| !part.is_empty())
                .any(|part| {
                    if SCENARIOS.contains(&part.as_str()) {
                        part == name
                    } else {
                        name.contains(&part)
                    }
                })
        })
    }
}

/// The scenarios, in the order they run (names as in the report and for `--only`).
const SCENARIOS: [&str; 5] = [
    "cached poll",
    "herd",
    "herd with webhooks",
    "reconcile",
    "overload",
];

/// Sizes of one run.
#[derive(Debug, Clone)]
struct Sizes {
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
/// How long a herd poller waits between polls while it has no new token, like a browser
/// tab; a pending view's `retryAfterMs` (bounded to 100 ms..2 s) replaces it.
pub(crate) const HERD_POLL_PAUSE: Duration = Duration::from_millis(1000);
/// Requests in flight at once across all herd pollers (the client side's connection budget).
const HERD_IN_FLIGHT: usize = 256;
/// How long a poller of the herd with webhooks waits between polls (see [`HERD_POLL_PAUSE`]).
const HOOK_HERD_POLL_PAUSE: Duration = Duration::from_millis(500);
/// Overload: the closed loop that measures the capacity of the replicas together.
const CAPACITY_CONCURRENCY: usize = 64;
/// Overload: the open loop's rate as a multiple of that capacity.
const OVERLOAD_FACTOR: f64 = 2.0;
/// Overload: requests in flight at once (the client side's connection budget).
const OVERLOAD_IN_FLIGHT: usize = 2048;
/// Overload recovery probe: single polls per window, and how often a window starts.
const PROBE_POLLS: usize = 5;
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// The apps' count of store calls (label `op`), summed over the replicas.
const STORE_CALLS: &str = "idenfy_store_calls_total";

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let sizes = Sizes::new(args.quick);
    let settings = AppSettings {
        replicas: 3,
        release: !args.quick,
        poll_interval: sizes.poll_interval,
        recreation_cap: 10,
        lock_ttl: Duration::from_secs(30),
        claim_ttl: Duration::from_secs(60),
        backoff_base: Duration::from_secs(2),
        unknown_mint_backoff: Duration::from_secs(3),
    };
    let binary = stack::build_app(settings.release).await?;
    let built = started.elapsed();
    let services = Services::start("bench", args.backend, args.mongo).await?;
    let measuring = Instant::now();
    // On Ctrl-C the measurement is dropped (which kills the apps) and the servers are
    // still stopped.
    let result = tokio::select! {
        result = measure(&args, &sizes, &settings, &binary, &services) => result,
        signal = crate::shell::interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
    };
    let measured = measuring.elapsed();
    let keep_logs = result.is_err();
    services.stop(keep_logs).await?;
    let report = result?;
    let out = stack::bench_dir();
    std::fs::create_dir_all(&out)?;
    let stem = match (args.quick, args.only.is_some()) {
        (true, false) => "report-quick",
        (false, false) => "report",
        (true, true) => "report-quick-only",
        (false, true) => "report-only",
    };
    let previous = Previous::load(&out.join(format!("{stem}.json")));
    let markdown = report.markdown(&previous);
    println!("\n{markdown}");
    std::fs::write(out.join(format!("{stem}.md")), &markdown)?;
    std::fs::write(out.join(format!("{stem}.json")), report.json())?;
    println!(
        "bench finished in {:.1}s (build {:.1}s, measuring {:.1}s); wrote {}",
        started.elapsed().as_secs_f64(),
        built.as_secs_f64(),
        measured.as_secs_f64(),
        out.join(format!("{stem}.md")).display()
    );
    let failed: Vec<String> = report
        .figures
        .iter()
        .filter_map(|f| match &f.check {
            Some((false, rule)) => Some(format!(
                "{} / {}: {} (must be {rule})",
                f.scenario,
                f.name,
                f.display()
            )),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        bail!("bench checks failed:\n  {}", failed.join("\n  "));
    }
    Ok(())
}

async fn measure(
    args: &Args,
    sizes: &Sizes,
    settings: &AppSettings,
    binary: &std::path::Path,
    services: &Services,
) -> anyhow::Result<Report> {
    let logs = stack::bench_dir().join("logs").join("bench");
    let stack = Stack::start(binary, services, settings.clone(), &logs).await?;
    let mut report = Report {
        header: header(args.quick, sizes, settings, services),
        figures: Vec::new(),
    };
    let result = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = stack::rss_kib(stack.apps[0].pid).unwrap_or(0);
        // A scenario that cannot finish is reported, and the others still run. Each starts
        // on empty collections, as it would on a fresh deployment: on FerretDB every lookup
        // scans its whole collection, so one scenario's rows would slow the next one down.
        let mut peak = 0;
        for name in SCENARIOS.into_iter().filter(|name| args.wants(name)) {
            settle(&stack).await;
            if let Err(error) = stack.clear_data().await {
                report.error(name, &error);
                continue;
            }
            let result = match name {
                "cached poll" => cached_poll(&stack, sizes, &mut report)
                    .await
                    .map(|p| peak = p),
                "herd" => herd_bench(&stack, sizes, &mut report).await,
                "herd with webhooks" => webhook_herd(&stack, sizes, &mut report).await,
                "reconcile" => reconcile(&stack, sizes, &mut report).await,
                // Last: whatever backlog it leaves cannot spill into another scenario.
                "overload" => overload(&stack, sizes, &mut report).await,
                other => unreachable!("unknown scenario {other}"),
            };
            if let Err(error) = result {
                report.error(name, &error);
            }
        }
        report.add(
            "memory",
            "idle RSS of one app",
            idle as f64 / 1024.0,
            "MiB",
            None,
        );
        if peak > 0 {
            report.add(
                "memory",
                "peak RSS under the cached-poll load",
                peak as f64 / 1024.0,
                "MiB",
                None,
            );
        }
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        println!("app logs kept in {}", logs.display());
    }
    stack.shutdown().await;
    result.map(|()| report)
}

fn header(quick: bool, sizes: &Sizes, settings: &AppSettings, services: &Services) -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mut h = String::new();
    let _ = writeln!(
        h,
        "# idenfy-sessions bench ({})\n",
        if quick { "quick" } else { "full" }
    );
    let _ = writeln!(
        h,
        "- date: {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(h, "- machine: {cores} cores");
    let _ = writeln!(h, "- rustc: {}", stack::rustc_version());
    let _ = writeln!(
        h,
        "- MongoDB protocol: {} ({} backend)",
        services.mongo_label().lines().next().unwrap_or(""),
        services.state.backend
    );
    let _ = writeln!(
        h,
        "- Valkey: {}",
        services.state.valkey.version.lines().next().unwrap_or("")
    );
    let _ = writeln!(h, "- apps: {}", settings.describe());
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

// ---------------------------------------------------------------------------------------
// Scenarios

/// Cached poll path at each concurrency level; returns the peak RSS of app 0 (KiB).
async fn cached_poll(stack: &Stack, sizes: &Sizes, report: &mut Report) -> anyhow::Result<u64> {
    println!("==> cached poll: creating rows");
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
        println!("==> cached poll at concurrency {level}");
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
        let scenario = format!("cached poll c={level}");
        for (what, s) in [
            ("final rows", &finals_summary),
            ("ACTIVE rows", &actives_summary),
            ("floor: driver find_one by _id", &floor),
            ("app GET /healthz", &healthz),
        ] {
            report.summary(&scenario, what, s);
        }
        for (what, spent) in &in_app {
            spent.report(report, &scenario, what);
        }
        for (what, calls, s) in [
            ("final rows: ", [calls[0], calls[1]], &finals_summary),
            ("ACTIVE rows: ", [calls[1], calls[2]], &actives_summary),
        ] {
            report.store_calls(&scenario, what, calls, s.requests, s.requests - s.failed);
        }
        let floor_p50 = floor.p50_ms().max(0.001);
        report.add(
            &scenario,
            "ours/floor at p50, final rows",
            finals_summary.p50_ms() / floor_p50,
            "x",
            None,
        );
        report.add(
            &scenario,
            "ours/floor at p50, ACTIVE rows",
            actives_summary.p50_ms() / floor_p50,
            "x",
            None,
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

    fn report(&self, report: &mut Report, scenario: &str, what: &str) {
        if self.requests < 1.0 {
            return;
        }
        let per_request_ms = 1000.0 * self.request_seconds / self.requests;
        let store_ms = 1000.0 * self.store_seconds / self.requests;
        report.add(
            scenario,
            &format!("{what}, in the app: time per request (mean)"),
            per_request_ms,
            "ms",
            None,
        );
        report.add(
            scenario,
            &format!("{what}, in the app: store calls per request"),
            self.store_calls / self.requests,
            "x",
            None,
        );
        report.add(
            scenario,
            &format!("{what}, in the app: store time per request (mean)"),
            store_ms,
            "ms",
            None,
        );
        report.add(
            scenario,
            &format!("{what}, in the app: store share of the request time"),
            100.0 * store_ms / per_request_ms.max(f64::EPSILON),
            "%",
            None,
        );
    }
}

/// Waits (bounded) until every app answers `/readyz` again, so that one scenario's backlog
/// does not spill into the next one's set-up.
async fn settle(stack: &Stack) {
    for _ in 0..60 {
        let mut ready = true;
        for app in &stack.apps {
            ready &= stack
                .http
                .get(format!("{}/readyz", app.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
        }
        if ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
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
pub(crate) async fn approve(stack: &Stack, app: usize, row: &Created) -> u16 {
    let body = decision_body(row, "APPROVED", true);
    stack
        .webhook(app, "IDENTIFICATION_MANUAL_FINISHED", &body)
        .await
}

/// A webhook body like iDenfy's, reduced to what the service reads.
pub(crate) fn decision_body(row: &Created, overall: &str, is_final: bool) -> serde_json::Value {
    json!({
        "final": is_final,
        "platform": "PC",
        "status": { "overall": overall, "fraudTags": [], "mismatchTags": [] },
        "scanRef": row.scan_ref,
        "clientId": row.parent_id,
    })
}

/// Where the sim's expiry webhooks go during a herd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HerdWebhooks {
    /// Wherever the sim's webhook URL points (app 0, as [`Stack::start`] sets it).
    AsConfigured,
    /// Row `i`'s webhook to `apps[i % apps.len()]`, like a load balancer in front of the
    /// replicas; app 0 again afterwards. (The sim picks the receiver when the event
    /// happens, so switching the URL before each expiry routes that row's webhook.)
    RoundRobin,
}

/// How a herd runs.
#[derive(Clone, Debug)]
pub(crate) struct HerdPlan<'a> {
    pub(crate) pollers_per_row: usize,
    /// The pollers stop here even without the new token.
    pub(crate) deadline: Duration,
    /// Poller `j` of a row polls `apps[j % apps.len()]`.
    pub(crate) apps: &'a [usize],
    /// A poller's pause while it has no new token, like a browser tab; a pending view's
    /// `retryAfterMs` or a shed answer's `Retry-After` (bounded to 100 ms..2 s) replaces it.
    pub(crate) pause: Duration,
    pub(crate) webhooks: HerdWebhooks,
}

/// What one herd produced.
#[derive(Debug, Clone)]
pub(crate) struct HerdOutcome {
    pub(crate) rows: usize,
    pub(crate) pollers: usize,
    /// Rows whose token the sim expired (and sent `IDENTIFICATION_EXPIRED` for).
    pub(crate) expired_rows: usize,
    /// Successful recovery mints per row (from the sim's counters).
    pub(crate) mints: Vec<u64>,
    pub(crate) expired_views: u64,
    /// 5xx answers and requests that got no answer.
    pub(crate) errors: u64,
    /// Of `errors`: shed answers (503 with `Retry-After`).
    pub(crate) shed: u64,
    pub(crate) polls: u64,
    /// Per converged poller: time from expiry to holding the new token.
    pub(crate) times: Vec<Duration>,
    /// Per row, in the order of `rows`: what [`HerdOutcome::old_token_views`] judges.
    pub(crate) seen: Vec<RowPolls>,
}

/// What the pollers of one row saw, for [`HerdOutcome::old_token_views`].
#[derive(Debug, Clone, Default)]
pub(crate) struct RowPolls {
    pub(crate) scan_ref: String,
    /// When each poll that was answered in progress with the row's old token was sent.
    pub(crate) old_token_sent: Vec<Instant>,
    /// When the first answer for the row arrived that was a pending view or carried the
    /// new token (any poller, any app).
    pub(crate) moved_on: Option<Instant>,
}

impl HerdOutcome {
    pub(crate) fn mints_per_row(&self) -> f64 {
        self.mints.iter().sum::<u64>() as f64 / self.rows.max(1) as f64
    }
    pub(crate) fn rows_not_minted_once(&self) -> usize {
        self.mints.iter().filter(|&&m| m != 1).count()
    }
    pub(crate) fn max_mints(&self) -> u64 {
        self.mints.iter().copied().max().unwrap_or(0)
    }
    pub(crate) fn converged(&self) -> usize {
        self.times.len()
    }
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        load::durations(&self.times).value_at_quantile(q) as f64 / 1000.0
    }

    /// Polls answered in progress with the row's old token, whenever they were sent.
    pub(crate) fn old_token_polls(&self) -> u64 {
        self.seen
            .iter()
            .map(|r| r.old_token_sent.len() as u64)
            .sum()
    }

    /// Old-token views: polls answered in progress with the row's OLD auth token although
    /// the apps had demonstrably learned that it expired. A poll counts when it was *sent*
    /// after the earlier of
    /// - the moment the sim saw its `IDENTIFICATION_EXPIRED` webhook for the row
    ///   acknowledged with a 2xx (`acknowledged`, by scanRef), and
    /// - the *arrival* of an answer for the same row (from any poller and any app) that was
    ///   a pending view or carried the new token.
    ///
    /// A poll sent before both is an app that could not know yet, which is allowed.
    pub(crate) fn old_token_views(&self, acknowledged: &HashMap<String, Instant>) -> u64 {
        self.seen
            .iter()
            .map(|row| {
                let acked = acknowledged.get(&row.scan_ref).copied();
                let learned = acked.into_iter().chain(row.moved_on).min();
                learned.map_or(0, |learned| {
                    row.old_token_sent.iter().filter(|&&t| t > learned).count() as u64
                })
            })
            .sum()
    }
}

/// What one poller of a herd saw.
#[derive(Debug, Default)]
struct PollerSaw {
    converged: Option<Duration>,
    expired: u64,
    errors: u64,
    shed: u64,
    polls: u64,
    old_token_sent: Vec<Instant>,
    moved_on: Option<Instant>,
}

/// [`herd_with`] with the pollers pausing [`HERD_POLL_PAUSE`] and the webhooks where the
/// sim's URL points.
pub(crate) async fn herd(
    stack: &Stack,
    rows: &[Created],
    pollers_per_row: usize,
    deadline: Duration,
    apps: &[usize],
    during: impl Future<Output = ()>,
) -> HerdOutcome {
    let plan = HerdPlan {
        pollers_per_row,
        deadline,
        apps,
        pause: HERD_POLL_PAUSE,
        webhooks: HerdWebhooks::AsConfigured,
    };
    herd_with(stack, rows, &plan, during).await
}

/// Expires every row's token at once (the sim notifies the apps by webhook) while
/// `plan.pollers_per_row` pollers per row, spread over `plan.apps`, poll until they hold
/// the new token or `plan.deadline` passes. `during` runs alongside (a fault to inject).
pub(crate) async fn herd_with(
    stack: &Stack,
    rows: &[Created],
    plan: &HerdPlan<'_>,
    during: impl Future<Output = ()>,
) -> HerdOutcome {
    let before = stack.mints_by_parent();
    let slots = tokio::sync::Semaphore::new(HERD_IN_FLIGHT);
    let t0 = Instant::now();
    let mut expired_rows = 0;
    for (i, row) in rows.iter().enumerate() {
        if plan.webhooks == HerdWebhooks::RoundRobin {
            let app = plan.apps[i % plan.apps.len()];
            stack.sim.set_webhook_url(Some(stack.webhook_url(app)));
        }
        if stack.sim.expire_token(&row.scan_ref) {
            expired_rows += 1;
        } else {
            eprintln!("warning: the sim could not expire {}", row.scan_ref);
        }
    }
    if plan.webhooks == HerdWebhooks::RoundRobin {
        stack.sim.set_webhook_url(Some(stack.webhook_url(0)));
    }
    let pollers = futures::stream::iter(
        rows.iter()
            .enumerate()
            .flat_map(|(r, row)| (0..plan.pollers_per_row).map(move |j| (r, row, j))),
    )
    .map(|(r, row, j)| {
        let app = plan.apps[j % plan.apps.len()];
        let slots = &slots;
        async move {
            let mut saw = PollerSaw::default();
            // Bounded by time and by count.
            for _ in 0..5000 {
                if t0.elapsed() > plan.deadline {
                    break;
                }
                let (polled, sent) = {
                    let _permit = slots.acquire().await;
                    let sent = Instant::now();
                    (stack.poll(app, row).await, sent)
                };
                saw.polls += 1;
                saw.expired += u64::from(polled.is_expired());
                saw.errors += u64::from(polled.is_5xx());
                saw.shed += u64::from(polled.shed);
                let fresh = polled.http == 200
                    && polled.token.is_some()
                    && polled
                        .scan_ref
                        .as_deref()
                        .is_some_and(|s| s != row.scan_ref);
                let pending =
                    polled.http == 200 && polled.token.is_none() && polled.retry_after_ms.is_some();
                if fresh || pending {
                    saw.moved_on.get_or_insert_with(Instant::now);
                }
                if polled.http == 200
                    && polled.status.as_deref() == Some("in_progress")
                    && polled.token.as_deref() == Some(row.auth_token.as_str())
                {
                    saw.old_token_sent.push(sent);
                }
                if fresh {
                    saw.converged = Some(t0.elapsed());
                    break;
                }
                let pause = polled
                    .retry_after_ms
                    .map_or(plan.pause, |ms| Duration::from_millis(ms.clamp(100, 2000)));
                tokio::time::sleep(pause).await;
            }
            (r, saw)
        }
    })
    .buffer_unordered(usize::MAX)
    .collect::<Vec<_>>();
    let (results, ()) = tokio::join!(pollers, during);
    // Let in-flight mints settle before counting them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = stack.mints_by_parent();
    let mints = rows
        .iter()
        .map(|row| {
            after.get(&row.parent_id).copied().unwrap_or(0)
                - before.get(&row.parent_id).copied().unwrap_or(0)
        })
        .collect();
    let mut outcome = HerdOutcome {
        rows: rows.len(),
        pollers: rows.len() * plan.pollers_per_row,
        expired_rows,
        mints,
        expired_views: 0,
        errors: 0,
        shed: 0,
        polls: 0,
        times: Vec::new(),
        seen: rows
            .iter()
            .map(|row| RowPolls {
                scan_ref: row.scan_ref.clone(),
                ..RowPolls::default()
            })
            .collect(),
    };
    for (r, saw) in results {
        outcome.times.extend(saw.converged);
        outcome.expired_views += saw.expired;
        outcome.errors += saw.errors;
        outcome.shed += saw.shed;
        outcome.polls += saw.polls;
        let seen = &mut outcome.seen[r];
        seen.old_token_sent.extend(saw.old_token_sent);
        seen.moved_on = seen.moved_on.into_iter().chain(saw.moved_on).min();
    }
    outcome
}

/// The figures every herd reports (the hard checks among them).
fn herd_figures(report: &mut Report, s: &str, outcome: &HerdOutcome) {
    report.add(
        s,
        "mints per row",
        outcome.mints_per_row(),
        "ratio",
        Some((
            outcome.rows_not_minted_once() == 0,
            "1.00 for every row".into(),
        )),
    );
    let doubles = outcome.mints.iter().filter(|&&m| m > 1).count();
    report.add(
        s,
        "rows minted more than once",
        doubles as f64,
        "",
        Some((doubles == 0, "0".into())),
    );
    report.add(
        s,
        "EXPIRED views seen",
        outcome.expired_views as f64,
        "",
        Some((outcome.expired_views == 0, "0".into())),
    );
    report.add(
        s,
        "pollers holding the new token",
        outcome.converged() as f64,
        &format!("of {}", outcome.pollers),
        // Bounded by the deadline, so a figure rather than a check.
        None,
    );
    report.add(
        s,
        "5xx or unanswered polls",
        outcome.errors as f64,
        "",
        None,
    );
    report.add(
        s,
        "of which shed (503 + Retry-After)",
        outcome.shed as f64,
        "",
        None,
    );
    report.add(s, "polls sent", outcome.polls as f64, "", None);
    report.add(
        s,
        "expiry -> new token, p50",
        outcome.quantile_ms(0.5),
        "ms",
        None,
    );
    report.add(
        s,
        "expiry -> new token, p99",
        outcome.quantile_ms(0.99),
        "ms",
        None,
    );
}

async fn herd_bench(stack: &Stack, sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    println!(
        "==> herd: {} rows x {} pollers",
        sizes.herd_rows, sizes.herd_pollers
    );
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
    herd_figures(report, "herd", &outcome);
    Ok(())
}

/// Issue 14: a herd whose pollers poll every [`HOOK_HERD_POLL_PAUSE`] while the sim's
/// `IDENTIFICATION_EXPIRED` webhooks reach the apps round-robin: one mint per row, no
/// EXPIRED view, and no poll shown the old token once the apps could know better.
async fn webhook_herd(stack: &Stack, sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    println!(
        "==> herd with webhooks: {} rows x {} pollers",
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
    let s = "herd with webhooks";
    herd_figures(report, s, &outcome);
    report.add(
        s,
        "5xx other than shed, or unanswered polls",
        (outcome.errors - outcome.shed) as f64,
        "",
        None,
    );
    report.add(
        s,
        "polls answered with the old token (any time)",
        outcome.old_token_polls() as f64,
        "",
        None,
    );
    report.add(
        s,
        "old-token views (sent after the app could know)",
        outcome.old_token_views(&acknowledged) as f64,
        "",
        None,
    );
    report.add(
        s,
        "EXPIRED webhooks acknowledged (2xx)",
        acknowledged.len() as f64,
        &format!("of {} sent", outcome.expired_rows),
        None,
    );
    report.add(
        s,
        "EXPIRED webhook attempts",
        deliveries.iter().map(|d| f64::from(d.attempts)).sum(),
        "",
        None,
    );
    report.add(
        s,
        "sim webhook give-ups",
        deliveries.iter().filter(|d| !d.acknowledged).count() as f64,
        "",
        None,
    );
    // Served: answered, and not with a 5xx (a shed answer is a 503).
    let served = outcome.polls - outcome.errors;
    report.store_calls(s, "", [calls_before, calls_after], outcome.polls, served);
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

async fn reconcile(stack: &Stack, sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    println!(
        "==> reconcile: {} rows at {} req/s for {:.0}s",
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
    let s = "reconcile";
    report.add(
        s,
        "iDenfy status calls per row per interval (max)",
        max,
        "ratio",
        Some((max <= 1.0, "<= 1.00".into())),
    );
    report.add(
        s,
        "iDenfy status calls per row per interval (mean)",
        mean,
        "ratio",
        None,
    );
    report.add(s, "throughput", summary.throughput(), "req/s", None);
    report.add(s, "p50", summary.p50_ms(), "ms", None);
    report.add(s, "p99", summary.p99_ms(), "ms", None);
    // Load-dependent (store timeouts under overload), so a figure, not a check.
    report.add(s, "non-200 answers", summary.failed as f64, "", None);
    report.add(
        s,
        "starts dropped (client saturated)",
        summary.dropped as f64,
        "",
        None,
    );
    Ok(())
}

/// Issue 14, graceful overload: the replicas' capacity for cached polls, then twice that
/// as an open loop spread over them. Goodput should stay near the capacity (the excess shed
/// cheaply, with a 503 and `Retry-After`), admitted polls fast, and single polls back to
/// their baseline soon after the load stops. Figures only: all of them depend on the load.
async fn overload(stack: &Stack, sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    println!("==> overload: baseline and capacity");
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
        "==> overload: {rate} req/s for {:.0}s ({OVERLOAD_FACTOR}x {capacity:.0} req/s)",
        sizes.overload_time.as_secs_f64()
    );
    let baseline_ms = baseline.p50_ms();
    let back_within_ms = (1.5 * baseline_ms).max(baseline_ms + 2.0);
    let stop = Instant::now() + sizes.overload_time;
    let (over, back) = tokio::join!(
        load::open_loop(rate, sizes.overload_time, OVERLOAD_IN_FLIGHT, &poll),
        time_to_baseline(stack, &rows, stop, back_within_ms, sizes.recovery_limit),
    );
    let s = "overload";
    let share = |n: u64| 100.0 * n as f64 / over.requests.max(1) as f64;
    report.add(
        s,
        "baseline: single cached poll p50",
        baseline_ms,
        "ms",
        None,
    );
    report.add(
        s,
        &format!("capacity: closed loop c={CAPACITY_CONCURRENCY}, 200s"),
        capacity,
        "req/s",
        None,
    );
    report.add(
        s,
        "capacity: non-200 answers in that run",
        measured.failed as f64,
        "",
        None,
    );
    report.add(
        s,
        "target rate (2x capacity)",
        f64::from(rate),
        "req/s",
        None,
    );
    report.add(s, "offered rate", over.throughput(), "req/s", None);
    report.add(
        s,
        "starts dropped (client saturated)",
        over.dropped as f64,
        "",
        None,
    );
    report.add(s, "goodput: 200s per second", over.goodput(), "req/s", None);
    report.add(
        s,
        "goodput share of capacity (target >= 90 %)",
        100.0 * over.goodput() / capacity,
        "%",
        None,
    );
    report.add(
        s,
        "admitted (200) p50",
        over.admitted_quantile_ms(0.5),
        "ms",
        None,
    );
    report.add(
        s,
        "admitted (200) p99",
        over.admitted_quantile_ms(0.99),
        "ms",
        None,
    );
    report.add(
        s,
        "shed (503 + Retry-After)",
        share(over.shed),
        "% of sent",
        None,
    );
    report.add(
        s,
        "other non-200 or unanswered",
        share(over.other_failed()),
        "% of sent",
        None,
    );
    let name = "end of load -> single polls at baseline p50 (target <= 5 s)";
    match back {
        Some(after) => report.add(s, name, after.as_secs_f64(), "s", None),
        None => report.absent(
            s,
            name,
            &format!("not within {:.0} s", sizes.recovery_limit.as_secs_f64()),
        ),
    }
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

// ---------------------------------------------------------------------------------------
// The report

#[derive(Debug, Clone)]
struct Figure {
    scenario: String,
    name: String,
    value: f64,
    unit: String,
    /// Whether the figure meets its rule, and the rule.
    check: Option<(bool, String)>,
    /// Shown instead of the value, which then means nothing (and is not kept for the
    /// next run): e.g. a metric the apps do not expose.
    text: Option<String>,
}

impl Figure {
    fn key(&self) -> String {
        format!("{} | {}", self.scenario, self.name)
    }

    fn display(&self) -> String {
        self.text
            .clone()
            .unwrap_or_else(|| format_value(self.value, &self.unit))
    }
}

fn format_value(value: f64, unit: &str) -> String {
    let number = match unit {
        "ms" if value < 10.0 => format!("{value:.2}"),
        "ms" | "MiB" | "s" => format!("{value:.1}"),
        "ratio" => return format!("{value:.2}"),
        "x" | "" if value.fract() != 0.0 => format!("{value:.2}"),
        _ => format!("{value:.0}"),
    };
    if unit.is_empty() {
        number
    } else {
        format!("{number} {unit}")
    }
}

#[derive(Debug)]
struct Report {
    header: String,
    figures: Vec<Figure>,
}

impl Report {
    fn add(
        &mut self,
        scenario: &str,
        name: &str,
        value: f64,
        unit: &str,
        check: Option<(bool, String)>,
    ) {
        self.figures.push(Figure {
            scenario: scenario.to_owned(),
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            check,
            text: None,
        });
    }

    /// A figure that could not be measured, shown as `text`.
    fn absent(&mut self, scenario: &str, name: &str, text: &str) {
        self.add(scenario, name, 0.0, "", None);
        if let Some(figure) = self.figures.last_mut() {
            figure.text = Some(text.to_owned());
        }
    }

    /// [`STORE_CALLS`] per request sent and per request served (a shed or failed request
    /// may cost no store call), from its sums over the replicas `before` and `after` them;
    /// "absent" when no replica counts anything.
    fn store_calls(&mut self, scenario: &str, what: &str, calls: [f64; 2], sent: u64, served: u64) {
        let [before, after] = calls;
        for (per, n) in [("request sent", sent), ("request served", served)] {
            let name = format!("{what}store calls per {per} (all replicas)");
            if after <= 0.0 {
                self.absent(scenario, &name, &format!("absent (no {STORE_CALLS})"));
            } else {
                self.add(
                    scenario,
                    &name,
                    (after - before) / n.max(1) as f64,
                    "x",
                    None,
                );
            }
        }
    }

    /// A scenario that could not finish: a failed check carrying the error.
    fn error(&mut self, scenario: &str, error: &anyhow::Error) {
        println!("{scenario} could not finish: {error:#}");
        self.add(
            scenario,
            &format!("could not finish: {error:#}"),
            0.0,
            "",
            Some((false, "finished".into())),
        );
    }

    /// throughput, p50 and p99 of one load run (plus failures, which must be none).
    fn summary(&mut self, scenario: &str, what: &str, s: &Summary) {
        self.add(
            scenario,
            &format!("{what}: throughput"),
            s.throughput(),
            "req/s",
            None,
        );
        self.add(scenario, &format!("{what}: p50"), s.p50_ms(), "ms", None);
        self.add(scenario, &format!("{what}: p99"), s.p99_ms(), "ms", None);
        if s.failed > 0 {
            self.add(
                scenario,
                &format!("{what}: failed requests"),
                s.failed as f64,
                "",
                None,
            );
        }
    }

    fn markdown(&self, previous: &Previous) -> String {
        let mut out = self.header.clone();
        let _ = writeln!(out);
        if let Some(when) = &previous.date {
            let _ = writeln!(out, "previous: the run of {when}\n");
        }
        let _ = writeln!(out, "| scenario | figure | value | previous | check |");
        let _ = writeln!(out, "|---|---|---:|---:|---|");
        for f in &self.figures {
            let prev = previous
                .figures
                .get(&f.key())
                .map_or_else(|| "–".to_owned(), |v| format_value(*v, &f.unit));
            let check = match &f.check {
                None => String::new(),
                Some((true, rule)) => format!("ok ({rule})"),
                Some((false, rule)) => format!("**FAIL** (must be {rule})"),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {prev} | {check} |",
                f.scenario,
                f.name,
                f.display()
            );
        }
        out
    }

    fn json(&self) -> String {
        let figures: BTreeMap<String, f64> = self
            .figures
            .iter()
            .filter(|f| f.text.is_none())
            .map(|f| (f.key(), f.value))
            .collect();
        let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
        serde_json::to_string_pretty(&json!({ "date": date, "figures": figures }))
            .unwrap_or_default()
    }
}

/// The previous run's figures, from the JSON sidecar.
#[derive(Debug, Default)]
struct Previous {
    date: Option<String>,
    figures: BTreeMap<String, f64>,
}

impl Previous {
    fn load(path: &std::path::Path) -> Previous {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Previous::default();
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
            return Previous::default();
        };
        Previous {
            date: value
                .get("date")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            figures: value
                .get("figures")
                .and_then(|f| serde_json::from_value(f.clone()).ok())
                .unwrap_or_default(),
        }
    }
}

/// Reading a report back from the sidecar must give what was written; old-token views
/// count only polls sent once the apps could know better.
#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use super::{HerdOutcome, Previous, Report, RowPolls};

    #[test]
    fn old_token_views_start_at_the_acknowledged_webhook_or_the_first_answer_moved_on() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let row = |scan_ref: &str, sent: &[u64], moved_on: Option<u64>| RowPolls {
            scan_ref: scan_ref.to_owned(),
            old_token_sent: sent.iter().map(|&n| ms(n)).collect(),
            moved_on: moved_on.map(ms),
        };
        let outcome = HerdOutcome {
            rows: 4,
            pollers: 4,
            expired_rows: 4,
            mints: vec![1; 4],
            expired_views: 0,
            errors: 0,
            shed: 0,
            polls: 0,
            times: Vec::new(),
            seen: vec![
                // Webhook acknowledged at 10: the polls sent at 20 and 30 count.
                row("a", &[5, 20, 30], None),
                // A pending view arrived at 15, before the acknowledgement at 40.
                row("b", &[5, 20], Some(15)),
                // Nothing learned: an old token is no fault.
                row("c", &[5, 50], None),
                // Learned at 100, no poll after it.
                row("d", &[5, 50], Some(100)),
            ],
        };
        let acknowledged: HashMap<String, Instant> =
            [("a".to_owned(), ms(10)), ("b".to_owned(), ms(40))].into();
        assert_eq!(outcome.old_token_polls(), 9);
        assert_eq!(outcome.old_token_views(&acknowledged), 3);
    }

    #[test]
    fn the_sidecar_round_trips_the_figures() {
        let mut report = Report {
            header: String::new(),
            figures: Vec::new(),
        };
        report.add(
            "herd",
            "mints per row",
            1.0,
            "",
            Some((true, "1.00".into())),
        );
        report.add("cached poll c=1", "final rows: p50", 0.42, "ms", None);
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join("report.json");
        std::fs::write(&path, report.json()).unwrap_or_default();
        let previous = Previous::load(&path);
        assert_eq!(previous.figures.get("herd | mints per row"), Some(&1.0));
        let markdown = report.markdown(&previous);
        assert!(markdown.contains("| cached poll c=1 | final rows: p50 | 0.42 ms | 0.42 ms |  |"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
