//! `cargo xtask bench [--quick]`: measured performance on the real stack (MongoDB protocol, Valkey,
//! idenfy-sim, several `idenfy-app` processes), as a markdown table on stdout and in
//! `target/bench/report.md` (`report-quick.md` for `--quick`), next to the previous run's
//! figures (kept in the JSON sidecar `report.json` / `report-quick.json`).
//!
//! Figures are counts and ratios from one run, never timed assertions; the few hard checks
//! (one mint per row in a herd, no EXPIRED view, at most one iDenfy status call per row per
//! poll interval) fail the command.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use dev_services::{Backend, MongoServer};
use futures::StreamExt;
use idenfy_sim::Endpoint;
use serde_json::json;

use crate::load::{self, Summary};
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
}

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
    let stem = if args.quick { "report-quick" } else { "report" };
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
        // A scenario that cannot finish is reported, and the others still run.
        let peak = match cached_poll(&stack, sizes, &mut report).await {
            Ok(peak) => peak,
            Err(error) => {
                report.error("cached poll", &error);
                0
            }
        };
        settle(&stack).await;
        if let Err(error) = herd_bench(&stack, sizes, &mut report).await {
            report.error("herd", &error);
        }
        settle(&stack).await;
        if let Err(error) = reconcile(&stack, sizes, &mut report).await {
            report.error("reconcile", &error);
        }
        report.add(
            "memory",
            "idle RSS of one app",
            idle as f64 / 1024.0,
            "MiB",
            None,
        );
        report.add(
            "memory",
            "peak RSS under the cached-poll load",
            peak as f64 / 1024.0,
            "MiB",
            None,
        );
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
        "- reconcile: {} ACTIVE rows, {} req/s for {:.0} s, poll interval {:.0} s",
        sizes.reconcile_rows,
        sizes.reconcile_rate,
        sizes.reconcile_time.as_secs_f64(),
        sizes.poll_interval.as_secs_f64()
    );
    h
}

// ---------------------------------------------------------------------------------------
// Scenarios

/// Cached poll path at each concurrency level; returns the peak RSS of app 0 (KiB).
async fn cached_poll(stack: &Stack, sizes: &Sizes, report: &mut Report) -> anyhow::Result<u64> {
    println!("==> cached poll: creating rows");
    let finals = stack
        .create_many("bench-final", sizes.cached_rows, 8)
        .await?;
    let actives = stack
        .create_many("bench-active", sizes.cached_rows, 8)
        .await?;
    for row in &finals {
        let status = approve(stack, 0, row).await;
        if status != 200 {
            bail!(
                "the APPROVED webhook for {} answered {status}",
                row.scan_ref
            );
        }
    }
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
        let (finals_summary, actives_summary, floor, healthz, in_app) = {
            let sampled = sample_rss(stack.apps[0].pid, &peak, async {
                let before = InApp::read(stack).await;
                let f = load::closed_loop(level, sizes.level_time, max_requests, |i| {
                    let row = &finals[(i as usize) % finals.len()];
                    async move { stack.poll_status_only(0, row).await == 200 }
                })
                .await;
                let between = InApp::read(stack).await;
                let a = load::closed_loop(level, sizes.level_time, max_requests, |i| {
                    let row = &actives[(i as usize) % actives.len()];
                    async move { stack.poll_status_only(0, row).await == 200 }
                })
                .await;
                let after = InApp::read(stack).await;
                (f, a, between.since(&before), after.since(&between))
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

/// What one herd produced.
#[derive(Debug, Clone)]
pub(crate) struct HerdOutcome {
    pub(crate) rows: usize,
    pub(crate) pollers: usize,
    /// Successful recovery mints per row (from the sim's counters).
    pub(crate) mints: Vec<u64>,
    pub(crate) expired_views: u64,
    /// 5xx answers and requests that got no answer.
    pub(crate) errors: u64,
    pub(crate) polls: u64,
    /// Per converged poller: time from expiry to holding the new token.
    pub(crate) times: Vec<Duration>,
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
}

/// Expires every row's token at once (the sim notifies the apps by webhook) while
/// `pollers_per_row` pollers per row, spread over the apps, poll until they hold the new
/// token or `deadline` passes. `during` runs alongside (a fault to inject).
pub(crate) async fn herd(
    stack: &Stack,
    rows: &[Created],
    pollers_per_row: usize,
    deadline: Duration,
    apps: &[usize],
    during: impl Future<Output = ()>,
) -> HerdOutcome {
    let before = stack.mints_by_parent();
    let slots = tokio::sync::Semaphore::new(HERD_IN_FLIGHT);
    let t0 = Instant::now();
    for row in rows {
        if !stack.sim.expire_token(&row.scan_ref) {
            eprintln!("warning: the sim could not expire {}", row.scan_ref);
        }
    }
    let pollers = futures::stream::iter(
        rows.iter()
            .flat_map(|row| (0..pollers_per_row).map(move |j| (row, j))),
    )
    .map(|(row, j)| {
        let app = apps[j % apps.len()];
        let slots = &slots;
        async move {
            let (mut expired, mut errors, mut polls) = (0u64, 0u64, 0u64);
            // Bounded by time and by count.
            for _ in 0..5000 {
                if t0.elapsed() > deadline {
                    break;
                }
                let polled = {
                    let _permit = slots.acquire().await;
                    stack.poll(app, row).await
                };
                polls += 1;
                expired += u64::from(polled.is_expired());
                errors += u64::from(polled.is_5xx());
                let fresh = polled.http == 200
                    && polled.token.is_some()
                    && polled
                        .scan_ref
                        .as_deref()
                        .is_some_and(|s| s != row.scan_ref);
                if fresh {
                    return (Some(t0.elapsed()), expired, errors, polls);
                }
                let pause = polled.retry_after_ms.map_or(HERD_POLL_PAUSE, |ms| {
                    Duration::from_millis(ms.clamp(100, 2000))
                });
                tokio::time::sleep(pause).await;
            }
            (None, expired, errors, polls)
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
        pollers: rows.len() * pollers_per_row,
        mints,
        expired_views: 0,
        errors: 0,
        polls: 0,
        times: Vec::new(),
    };
    for (time, expired, errors, polls) in results {
        outcome.times.extend(time);
        outcome.expired_views += expired;
        outcome.errors += errors;
        outcome.polls += polls;
    }
    outcome
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
    let s = "herd";
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
    Ok(())
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
}

impl Figure {
    fn key(&self) -> String {
        format!("{} | {}", self.scenario, self.name)
    }

    fn display(&self) -> String {
        format_value(self.value, &self.unit)
    }
}

fn format_value(value: f64, unit: &str) -> String {
    let number = match unit {
        "ms" if value < 10.0 => format!("{value:.2}"),
        "ms" | "MiB" => format!("{value:.1}"),
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
        });
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
        let figures: BTreeMap<String, f64> =
            self.figures.iter().map(|f| (f.key(), f.value)).collect();
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

/// Reading a report back from the sidecar must give what was written.
#[cfg(test)]
mod tests {
    use super::{Previous, Report};

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
