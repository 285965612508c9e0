//! `cargo xtask chaos [--quick]`: fault-injection runs on the real stack (the store, Valkey,
//! idenfy-sim, three `idenfy-app` processes), in the [`harness`](crate::harness) the bench
//! runs in too. Each scenario prints PASS or FAIL; every check is a rule, so any FAIL makes
//! the command fail. The figures go to a markdown report, on stdout and in
//! `target/bench/chaos.md` (`chaos-quick.md` for `--quick`).
//!
//! Scenarios: webhook storms, iDenfy token-call faults and the recreation cap, Valkey killed
//! during a herd, Valkey restarted, the store stopped during polling, an app SIGKILLed
//! between mint and persist, the store paused (SIGSTOP) while a token call is answered, and
//! token answers lost after iDenfy minted.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use idenfy_sim::{Endpoint, Fault};
use rand::seq::SliceRandom;

use crate::harness::{Figures, Suite};
use crate::herd::{HerdOutcome, herd};
use crate::load;
use crate::stack::{AppSettings, Created, Polled, Server, Services, Stack, decision_body, doc_int};

/// The chaos runs: their sizes.
#[derive(Debug)]
pub(crate) struct Chaos {
    sizes: Sizes,
}

/// The chaos scenarios.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scenario {
    WebhookStorm,
    TokenFaults,
    RecreationCap,
    ValkeyKilled,
    ValkeyRestarted,
    StoreStopped,
    StorePaused,
    StoreAway,
    AnswerLost,
    KilledMidMint,
}

impl Suite for Chaos {
    const NAME: &'static str = "chaos";
    const REPORT: &'static str = "chaos";
    const FRESH_DATA: bool = false;
    type Scenario = Scenario;
    // Valkey is restarted right after it was killed; the SIGKILL comes last, as it kills a
    // replica for good.
    const SCENARIOS: &'static [(&'static str, Scenario)] = &[
        ("webhook storm", Scenario::WebhookStorm),
        ("iDenfy token faults", Scenario::TokenFaults),
        ("recreation cap", Scenario::RecreationCap),
        ("Valkey killed during a herd", Scenario::ValkeyKilled),
        ("Valkey restarted", Scenario::ValkeyRestarted),
        ("store stopped for 5 s", Scenario::StoreStopped),
        ("store paused after a mint", Scenario::StorePaused),
        ("store away past the persist retries", Scenario::StoreAway),
        ("iDenfy answer lost", Scenario::AnswerLost),
        (
            "app SIGKILLed between mint and persist",
            Scenario::KilledMidMint,
        ),
    ];

    fn new(quick: bool) -> Chaos {
        Chaos {
            sizes: Sizes::new(quick),
        }
    }

    fn settings(&self) -> AppSettings {
        AppSettings {
            replicas: 3,
            release: !self.sizes.quick,
            poll_interval: Duration::from_secs(2),
            recreation_cap: CAP,
            // Short, so that a lock left by the SIGKILLed app frees up soon; the MongoDB
            // claim is the guard against double minting, not the lock.
            lock_ttl: Duration::from_secs(3),
            // Quick: the shortest the app accepts (a 10 s token call plus the default 15 s
            // of persist retries), so that the SIGKILL scenario waits for the real claim
            // expiry in under a minute. Full: the app's default.
            claim_ttl: Duration::from_secs(if self.sizes.quick { 25 } else { 60 }),
            backoff_base: Duration::from_secs(2),
            unknown_mint_backoff: Duration::from_secs(3),
        }
    }

    fn describe(&self, _settings: &AppSettings) -> String {
        let s = &self.sizes;
        format!(
            "- webhook storm: {} rows x {DELIVERIES_PER_ROW} deliveries; token faults and lost \
             answers: {} rows; Valkey killed: {} rows x {} pollers; store stopped: {} rows \
             polled at {} req/s\n",
            s.webhook_rows, s.fault_rows, s.herd_rows, s.herd_pollers, s.ferret_rows, s.ferret_rate
        )
    }

    async fn run(
        &mut self,
        scenario: Scenario,
        stack: &Stack,
        services: &mut Services,
        f: &mut Figures,
    ) -> anyhow::Result<()> {
        let sizes = &self.sizes;
        match scenario {
            Scenario::WebhookStorm => webhook_storm(stack, sizes, f).await,
            Scenario::TokenFaults => token_faults(stack, sizes, f).await,
            Scenario::RecreationCap => recreation_cap(stack, f).await,
            Scenario::ValkeyKilled => valkey_killed(stack, services, sizes, f).await,
            Scenario::ValkeyRestarted => valkey_restarted(stack, services, f).await,
            Scenario::StoreStopped => store_stopped(stack, services, sizes, f).await,
            Scenario::StorePaused => store_paused_after_a_mint(stack, services, sizes, f).await,
            Scenario::StoreAway => store_away_past_the_retries(stack, services, f).await,
            Scenario::AnswerLost => answer_lost(stack, sizes, f).await,
            Scenario::KilledMidMint => killed_mid_mint(stack, f).await,
        }
    }
}

#[derive(Debug, Clone)]
struct Sizes {
    quick: bool,
    webhook_rows: usize,
    fault_rows: usize,
    herd_rows: usize,
    herd_pollers: usize,
    ferret_rows: usize,
    ferret_rate: u32,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                quick,
                webhook_rows: 20,
                fault_rows: 4,
                herd_rows: 6,
                herd_pollers: 8,
                ferret_rows: 8,
                ferret_rate: 40,
            }
        } else {
            Sizes {
                quick,
                webhook_rows: 100,
                fault_rows: 10,
                herd_rows: 30,
                herd_pollers: 16,
                ferret_rows: 20,
                ferret_rate: 150,
            }
        }
    }
}

/// Deliveries per row in the webhook scenario (1000 in full, 200 in quick).
const DELIVERIES_PER_ROW: usize = 10;
/// The recreation cap the apps run with, small so that the cap is reached quickly.
const CAP: u32 = 2;

// ---------------------------------------------------------------------------------------

/// Deliveries with duplicates and out-of-order AUTO/MANUAL events; the final state must be
/// the MANUAL decision and, once final, never change.
async fn webhook_storm(stack: &Stack, sizes: &Sizes, f: &mut Figures) -> anyhow::Result<()> {
    let rows = stack.create_many("chaos-wh", sizes.webhook_rows, 8).await?;
    let decisions = ["APPROVED", "DENIED", "SUSPECTED"];
    let mut deliveries = Vec::new();
    for (k, row) in rows.iter().enumerate() {
        let target = decisions[k % 3];
        // The automatic result disagrees with the reviewer on two rows out of three.
        let auto = decisions[(k + k / 3) % 3];
        let events: [(&str, &str, bool); DELIVERIES_PER_ROW] = [
            ("IDENTIFICATION_MANUAL_FINISHED", target, true),
            ("IDENTIFICATION_MANUAL_FINISHED", target, true),
            ("IDENTIFICATION_MANUAL_FINISHED", target, true),
            ("IDENTIFICATION_AUTO_FINISHED", auto, false),
            ("IDENTIFICATION_AUTO_FINISHED", auto, false),
            ("IDENTIFICATION_AUTO_FINISHED", auto, false),
            ("IDENTIFICATION", "REVIEWING", false),
            ("IDENTIFICATION", "REVIEWING", false),
            ("IDENTIFICATION", "ACTIVE", false),
            ("IDENTIFICATION", "ACTIVE", false),
        ];
        for (event, overall, is_final) in events {
            deliveries.push((k, event, decision_body(row, overall, is_final)));
        }
    }
    deliveries.shuffle(&mut rand::rng());
    let total = deliveries.len();
    let done = std::sync::atomic::AtomicBool::new(false);
    let apps = stack.apps.len();
    let deliver = async {
        let statuses: Vec<u16> = futures::stream::iter(deliveries.iter().enumerate())
            .map(|(i, (_, event, body))| stack.webhook(i % apps, event, body))
            .buffer_unordered(16)
            .collect()
            .await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        statuses
    };
    // One monitor polls the rows in turn, so its views of each row are in time order.
    let monitor = async {
        let mut seen_final: BTreeMap<usize, Polled> = BTreeMap::new();
        let (mut regressions, mut polls) = (0u64, 0u64);
        for round in 0..10_000 {
            if done.load(std::sync::atomic::Ordering::Relaxed) && round > 0 {
                break;
            }
            for (k, row) in rows.iter().enumerate() {
                let p = stack.poll(k % apps, row).await;
                polls += 1;
                if p.http != 200 {
                    continue;
                }
                if let Some(first) = seen_final.get(&k) {
                    if first.status != p.status || first.verification != p.verification {
                        regressions += 1;
                    }
                } else if matches!(p.status.as_deref(), Some("complete" | "failed")) {
                    seen_final.insert(k, p);
                }
            }
        }
        (regressions, polls)
    };
    let (statuses, (regressions, polls)) = tokio::join!(deliver, monitor);
    let not_ok = statuses.iter().filter(|&&s| s != 200).count();
    let mut wrong = Vec::new();
    for (k, row) in rows.iter().enumerate() {
        let target = decisions[k % 3];
        let expected_status = if target == "APPROVED" {
            "complete"
        } else {
            "failed"
        };
        let p = stack.poll(0, row).await;
        if p.verification.as_deref() != Some(target) || p.status.as_deref() != Some(expected_status)
        {
            wrong.push(format!(
                "row {} shows {:?}/{:?}, expected {expected_status}/{target}",
                row.row_id, p.status, p.verification
            ));
        }
    }
    f.add("deliveries", total);
    f.add("non-200 answers", not_ok).must(not_ok == 0, "0");
    f.add("rows in the wrong final state", wrong.len())
        .must(wrong.is_empty(), "0");
    if !wrong.is_empty() {
        let first: Vec<String> = wrong.into_iter().take(3).collect();
        f.add("the first of them", first.join("; "));
    }
    f.add("final views that changed later", regressions)
        .must(regressions == 0, "0");
    f.add("monitor polls", polls);
    Ok(())
}

/// Token calls answered 500, 402, token-limit and a timeout: pending views only, back-off
/// respected, no EXPIRED, and exactly one persisted mint per row in the end.
async fn token_faults(stack: &Stack, sizes: &Sizes, f: &mut Figures) -> anyhow::Result<()> {
    let rows = stack
        .create_many("chaos-faults", sizes.fault_rows, 4)
        .await?;
    let faults = vec![
        Fault::ServerError,
        Fault::PaymentRequired,
        Fault::Timeout,
        Fault::ServerError,
        Fault::TokenLimit,
        Fault::PaymentRequired,
    ];
    let scripted = faults.len();
    let calls_before = stack.sim.counters().token_calls;
    let attempts_before = mint_attempts(stack, &rows).await;
    stack.sim.script_token(faults);
    let t0 = Instant::now();
    // An upper bound only: the herd ends as soon as every row has its new token. A row
    // that drew four faults waits 2+4+8+16 s of back-off plus a 10 s client timeout.
    let window = if sizes.quick {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(90)
    };
    let outcome = herd(stack, &rows, 2, window, &[0, 1, 2], async {}).await;
    let elapsed = t0.elapsed();
    let calls = stack.sim.counters().token_calls - calls_before;
    let attempts_after = mint_attempts(stack, &rows).await;
    let attempts: Vec<i64> = attempts_after
        .iter()
        .zip(&attempts_before)
        .map(|(a, b)| a - b)
        .collect();
    let max_attempts = attempts.iter().copied().max().unwrap_or(0);
    // With back-off base b doubling, attempts k+1 can start no earlier than b·(2^k − 1).
    let base = stack.settings.backoff_base.as_secs_f64();
    let mut bound = 1i64;
    while base * (2f64.powi(i32::try_from(bound).unwrap_or(30)) - 1.0) <= elapsed.as_secs_f64()
        && bound < 30
    {
        bound += 1;
    }
    f.add("faults scripted", scripted);
    f.add("token calls", calls);
    f.add("EXPIRED views", outcome.expired_views)
        .must(outcome.expired_views == 0, "0");
    f.add("5xx or unanswered polls", outcome.errors)
        .must(outcome.errors == 0, "0");
    f.add("max token calls for one row", max_attempts).must(
        max_attempts <= bound,
        format!(
            "<= {bound} within {:.0}s of back-off",
            elapsed.as_secs_f64()
        ),
    );
    let counted: i64 = attempts.iter().sum();
    f.add(
        "mintAttempts counted vs token calls",
        format!("{counted} vs {calls}"),
    )
    .must(u64::try_from(counted).is_ok_and(|c| c == calls), "equal");
    let recovered = recovered_rows(&outcome, 2);
    f.num(
        "rows recovered in the end",
        recovered as f64,
        format!("of {}", rows.len()),
    )
    .must(recovered == rows.len(), "all");
    f.num("persisted mints per row", outcome.mints_per_row(), "ratio")
        .must(outcome.rows_not_minted_once() == 0, "1.00 for every row");
    Ok(())
}

/// Rows all of whose pollers ended on a new token.
fn recovered_rows(outcome: &HerdOutcome, pollers_per_row: usize) -> usize {
    // Every poller stops only on a new token, so converged pollers / pollers per row.
    outcome.converged() / pollers_per_row
}

async fn mint_attempts(stack: &Stack, rows: &[Created]) -> Vec<i64> {
    let mut out = Vec::new();
    for row in rows {
        let doc = stack.row_doc(&row.row_id).await;
        out.push(doc.and_then(|d| doc_int(&d, "mintAttempts")).unwrap_or(0));
    }
    out
}

/// A row expired more often than the cap allows ends EXPIRED (row failed); before that
/// no EXPIRED is shown, and the sim minted exactly creation + cap tokens.
async fn recreation_cap(stack: &Stack, f: &mut Figures) -> anyhow::Result<()> {
    let mut row = stack
        .create_many("chaos-cap", 1, 1)
        .await?
        .pop()
        .context("no row")?;
    let minted_before = stack.mints_by_parent().get(&row.parent_id).copied();
    let mut early_expired = 0u64;
    for round in 0..CAP {
        let outcome = herd(
            stack,
            std::slice::from_ref(&row),
            2,
            Duration::from_secs(20),
            &[0, 1],
            async {},
        )
        .await;
        early_expired += outcome.expired_views;
        let p = stack.poll(0, &row).await;
        match (p.scan_ref, p.token) {
            (Some(scan_ref), Some(token)) if scan_ref != row.scan_ref => {
                row.scan_ref = scan_ref;
                row.auth_token = token;
            }
            other => bail!(
                "recovery {} did not produce a new token: {other:?}",
                round + 1
            ),
        }
    }
    // One expiry beyond the cap: the only case where EXPIRED is shown.
    stack.sim.expire_token(&row.scan_ref);
    let mut last = Polled::default();
    for _ in 0..100 {
        last = stack.poll(1, &row).await;
        if last.is_expired() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let minted = stack
        .mints_by_parent()
        .get(&row.parent_id)
        .copied()
        .unwrap_or(0)
        - minted_before.unwrap_or(0);
    f.add("EXPIRED views before the cap", early_expired)
        .must(early_expired == 0, "0");
    f.add(
        "view after the cap",
        format!("{:?}/{:?}", last.status, last.verification),
    )
    .must(
        last.is_expired() && last.status.as_deref() == Some("failed"),
        "failed/EXPIRED",
    );
    f.add("tokens minted by recovery", minted)
        .must(minted == u64::from(CAP), format!("{CAP} (the cap)"));
    f.add("recreationCount", last.recreation_count.unwrap_or(0))
        .must(
            last.recreation_count == Some(u64::from(CAP)),
            CAP.to_string(),
        );
    Ok(())
}

/// Valkey SIGKILLed 150 ms into a herd (mints in flight): the MongoDB claim still allows one
/// mint per row, and nobody sees a 5xx.
async fn valkey_killed(
    stack: &Stack,
    services: &mut Services,
    sizes: &Sizes,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let rows = stack.create_many("chaos-vk", sizes.herd_rows, 8).await?;
    stack
        .sim
        .set_latency(Endpoint::Token, Duration::from_millis(300));
    const LOCK: &str = "idenfy_recreate_lock_total";
    let unavailable_before = stack.metric_sum(LOCK, "outcome=\"unavailable\"").await;
    let kill_result = Mutex::new(None);
    let outcome = herd(
        stack,
        &rows,
        sizes.herd_pollers,
        Duration::from_secs(30),
        &[0, 1, 2],
        async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            *kill_result.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(services.stop_server(Server::Valkey, true).await);
        },
    )
    .await;
    stack.sim.set_latency(Endpoint::Token, Duration::ZERO);
    if let Some(Err(error)) = kill_result.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(error.context("killing Valkey"));
    }
    let unavailable = stack.metric_sum(LOCK, "outcome=\"unavailable\"").await - unavailable_before;
    f.add("lock attempts that found Valkey unavailable", unavailable);
    f.add(
        "rows minted more than once",
        outcome.mints.iter().filter(|&&m| m > 1).count(),
    )
    .must(outcome.max_mints() <= 1, "0");
    f.num("mints per row", outcome.mints_per_row(), "ratio")
        .must(outcome.rows_not_minted_once() == 0, "1.00 for every row");
    f.add("5xx or unanswered polls", outcome.errors)
        .must(outcome.errors == 0, "0");
    f.add("EXPIRED views", outcome.expired_views)
        .must(outcome.expired_views == 0, "0");
    f.num(
        "pollers holding the new token",
        outcome.converged() as f64,
        format!("of {}", outcome.pollers),
    )
    .must(outcome.converged() == outcome.pollers, "all");
    f.add(
        "expiry -> new token p50/p99",
        format!(
            "{:.0}/{:.0} ms",
            outcome.quantile_ms(0.5),
            outcome.quantile_ms(0.99)
        ),
    );
    Ok(())
}

/// Valkey back: a fresh expiry is recovered under the lock again (lock-won rises).
async fn valkey_restarted(
    stack: &Stack,
    services: &mut Services,
    f: &mut Figures,
) -> anyhow::Result<()> {
    services.start_server(Server::Valkey).await?;
    const WON: &str = "idenfy_recreate_lock_total";
    const WON_LABEL: &str = "outcome=\"won\"";
    let before = stack.metric_sum(WON, WON_LABEL).await;
    let mut after = before;
    let mut rounds = 0usize;
    let mut troubled = Vec::new();
    // The apps reconnect on their own; give them a few bounded tries.
    while rounds < 5 && after <= before {
        rounds += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rows = stack.create_many("chaos-vr", 2, 2).await?;
        let outcome = herd(
            stack,
            &rows,
            4,
            Duration::from_secs(20),
            &[0, 1, 2],
            async {},
        )
        .await;
        if outcome.errors > 0 || outcome.converged() < outcome.pollers {
            troubled.push(format!(
                "round {rounds}: {} errors, {}/{} pollers converged",
                outcome.errors,
                outcome.converged(),
                outcome.pollers
            ));
        }
        after = stack.metric_sum(WON, WON_LABEL).await;
    }
    f.add("lock won before", before);
    f.add("lock won after a new expiry", after)
        .must(after > before, "more than before");
    f.add("rounds needed", rounds);
    let trouble = if troubled.is_empty() {
        "none".to_owned()
    } else {
        troubled.join("; ")
    };
    f.add("rounds with errors or pollers not converged", trouble)
        .must(troubled.is_empty(), "none");
    Ok(())
}

/// The store stopped (SIGTERM) for 5 s under polling: 503s during, 200s after, and every row
/// still shows the token and scanRef it had before.
async fn store_stopped(
    stack: &Stack,
    services: &mut Services,
    sizes: &Sizes,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let rows = stack.create_many("chaos-fdb", sizes.ferret_rows, 4).await?;
    let mut before = Vec::new();
    for row in &rows {
        let p = stack.poll(0, row).await;
        before.push((p.token.clone(), p.scan_ref.clone()));
    }
    let answers: Mutex<Vec<(Instant, u16)>> = Mutex::new(Vec::new());
    let apps = stack.apps.len();
    const OUTAGE: Duration = Duration::from_secs(5);
    // When the process was gone, when the restart began, and when it answered again.
    let timeline: Mutex<Option<(Instant, Instant, Instant)>> = Mutex::new(None);
    // The store may take a while to exit on SIGTERM; the load outlasts that too.
    let load_time = Duration::from_secs(1) + OUTAGE + Duration::from_secs(8);
    let polling = load::open_loop(sizes.ferret_rate, load_time, 2000, |i| {
        let row = &rows[(i as usize) % rows.len()];
        let answers = &answers;
        async move {
            let sent = Instant::now();
            let status = stack.poll_status_only((i as usize) % apps, row).await;
            answers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((sent, status));
            status == 200
        }
    });
    let outage = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let stopping = Instant::now();
        services.stop_server(Server::Mongo, false).await?;
        // The outage counts from the moment the process is gone.
        let down = Instant::now();
        tokio::time::sleep(OUTAGE).await;
        let restarting = Instant::now();
        services.start_server(Server::Mongo).await?;
        let up = Instant::now();
        *timeline.lock().unwrap_or_else(|e| e.into_inner()) = Some((down, restarting, up));
        anyhow::Ok((down - stopping, up - restarting))
    };
    let (_summary, outage) = tokio::join!(polling, outage);
    let (exit_took, start_took) = outage.context("stopping and restarting the store")?;
    f.add(
        "store exit after SIGTERM / restart until ping",
        format!(
            "{:.1}s / {:.1}s",
            exit_took.as_secs_f64(),
            start_took.as_secs_f64()
        ),
    );
    let (down, restarting, up) = timeline
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .context("no outage timeline")?;
    // The apps' driver needs a moment to find the server again.
    let settle = up + Duration::from_secs(3);
    let answers = answers.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut during: BTreeMap<u16, u64> = BTreeMap::new();
    let mut after: BTreeMap<u16, u64> = BTreeMap::new();
    for (sent, status) in &answers {
        if *sent >= down && *sent < restarting {
            *during.entry(*status).or_default() += 1;
        } else if *sent >= settle {
            *after.entry(*status).or_default() += 1;
        }
    }
    let during_503 = during.get(&503).copied().unwrap_or(0);
    let during_bad = during
        .iter()
        .filter(|(s, _)| **s != 200 && **s != 503)
        .map(|(_, n)| n)
        .sum::<u64>();
    let after_total: u64 = after.values().sum();
    let after_ok = after.get(&200).copied().unwrap_or(0);
    f.add(
        "answers to polls sent while the store was down",
        format!("{during:?}"),
    );
    f.add("answers 3 s after restart on", format!("{after:?}"));
    // The store client heals by itself: the first poll answered 200 after the restart
    // began, counted from the moment the store answered its ping again.
    let first_ok = answers
        .iter()
        .filter(|(sent, status)| *sent >= restarting && *status == 200)
        .map(|(sent, _)| *sent)
        .min();
    f.add(
        "first 200 after the store answered again",
        first_ok.map_or_else(
            || "never".to_owned(),
            |t| format!("{:+.2}s", signed_secs(t, up)),
        ),
    )
    .must(
        first_ok.is_some(),
        "some (healed without a restart of the apps)",
    );
    let mut ready = 0;
    for app in &stack.apps {
        let answered = stack
            .http
            .get(format!("{}/readyz", app.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if answered.is_ok_and(|r| r.status().is_success()) {
            ready += 1;
        }
    }
    f.num(
        "replicas ready after the restart",
        ready as f64,
        format!("of {}", stack.apps.len()),
    )
    .must(ready == stack.apps.len(), "all");
    f.add("503s during the outage", during_503)
        .must(during_503 > 0, "> 0");
    f.add("other errors during the outage", during_bad)
        .must(during_bad == 0, "0 (only 200 or 503)");
    f.num("200s after", after_ok as f64, format!("of {after_total}"))
        .must(after_total > 0 && after_ok == after_total, "all");
    let mut changed = 0usize;
    for (row, (token, scan_ref)) in rows.iter().zip(&before) {
        let p = stack.poll(0, row).await;
        let doc = stack.row_doc(&row.row_id).await;
        if p.http != 200 || &p.token != token || &p.scan_ref != scan_ref || doc.is_none() {
            changed += 1;
        }
    }
    f.add("rows lost or changed", changed)
        .must(changed == 0, "0");
    Ok(())
}

/// `at - origin` in seconds, negative when `at` came first.
fn signed_secs(at: Instant, origin: Instant) -> f64 {
    match at.checked_duration_since(origin) {
        Some(after) => after.as_secs_f64(),
        None => -(origin - at).as_secs_f64(),
    }
}

/// Expires `row`'s token at the sim and waits until its expiry webhook marked the row.
async fn expire_and_wait_marked(stack: &Stack, row: &Created) -> anyhow::Result<()> {
    stack.sim.expire_token(&row.scan_ref);
    for _ in 0..100 {
        if let Some(doc) = stack.row_doc(&row.row_id).await
            && doc.get_str("idenfyVerificationStatus").ok() == Some("EXPIRED")
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the row was not marked EXPIRED by the expiry webhook")
}

/// Tokens the sim minted (billed) for `parent` so far.
fn billed(stack: &Stack, parent: &str) -> u64 {
    stack
        .sim
        .counters()
        .tokens_minted_by_client
        .get(parent)
        .copied()
        .unwrap_or(0)
}

/// Waits until `token_calls` passed `before`, then SIGSTOPs the store for `pause`: the token
/// call is answered while nothing can be written.
async fn pause_store_once_minting(
    stack: &Stack,
    services: &Services,
    before: u64,
    pause: Duration,
) -> anyhow::Result<()> {
    for _ in 0..400 {
        if stack.sim.counters().token_calls > before {
            services.pause_store(true)?;
            tokio::time::sleep(pause).await;
            services.pause_store(false)?;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("no token call was made")
}

/// One recovery on app 0 whose token call meets a store SIGSTOPped for `pause`, then polls
/// until the row shows a new token. Checks, named with `prefix`: one token billed, the row
/// carries it, no orphan, no EXPIRED view.
async fn recovery_under_pause(
    stack: &Stack,
    services: &Services,
    f: &mut Figures,
    rows_prefix: &str,
    prefix: &str,
    pause: Duration,
) -> anyhow::Result<()> {
    let row = stack
        .create_many(rows_prefix, 1, 1)
        .await?
        .pop()
        .context("no row")?;
    let billed_before = billed(stack, &row.parent_id);
    expire_and_wait_marked(stack, &row).await?;
    let calls = stack.sim.counters().token_calls;
    let (first, paused) = tokio::join!(
        stack.poll(0, &row),
        pause_store_once_minting(stack, services, calls, pause)
    );
    paused?;
    f.add(format!("{prefix}the poll that minted"), first.http);
    let mut recovered = None;
    let mut expired_views = 0;
    for i in 0..300 {
        let p = stack.poll(i % stack.apps.len(), &row).await;
        expired_views += u64::from(p.is_expired());
        if p.http == 200 && p.token.is_some() && p.scan_ref.as_deref() != Some(&row.scan_ref) {
            recovered = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let doc = stack.row_doc(&row.row_id).await.context("row gone")?;
    let orphans = doc.get_array("orphanedMints").map_or(0, Vec::len);
    let billed_row = billed(stack, &row.parent_id) - billed_before;
    f.add(format!("{prefix}tokens billed for the row"), billed_row)
        .must(billed_row == 1, "1");
    f.add(
        format!("{prefix}the row carries the paid token"),
        recovered.is_some(),
    )
    .must(recovered.is_some(), "true");
    f.add(format!("{prefix}orphaned mints"), orphans)
        .must(orphans == 0, "0");
    f.add(format!("{prefix}EXPIRED views"), expired_views)
        .must(expired_views == 0, "0");
    Ok(())
}

/// The store SIGSTOPped while a token call is in flight, so its answer arrives with nothing
/// to write it to: the recovery's persist and the creation's intent write are retried until
/// the store answers, and each paid token ends on its row, billed once.
async fn store_paused_after_a_mint(
    stack: &Stack,
    services: &Services,
    sizes: &Sizes,
    f: &mut Figures,
) -> anyhow::Result<()> {
    // Longer than the app's 5 s store timeout, so the first write after the mint fails and
    // only a retry can save the token; shorter than the 15 s of persist retries.
    let pause = if sizes.quick {
        Duration::from_secs(7)
    } else {
        Duration::from_secs(12)
    };
    f.num(
        "pause (SIGSTOP) from the token call's start",
        pause.as_secs_f64(),
        "s",
    );
    // The token call outlasts the moment the pause begins.
    stack
        .sim
        .set_latency(Endpoint::Token, Duration::from_millis(1500));

    // Recovery.
    recovery_under_pause(stack, services, f, "chaos-pause", "recovery: ", pause).await?;

    // Creation: the intent write after the token call meets the paused store.
    let sig = dev_services::unique_name("chaos-pause-create");
    let calls = stack.sim.counters().token_calls;
    let minted_before = stack
        .sim
        .counters()
        .tokens_minted_by_client
        .values()
        .sum::<u64>();
    let create = async {
        let mut answers = Vec::new();
        for _ in 0..60 {
            let (status, body) = stack.create_raw(0, &sig, "chaos-pause-key").await;
            answers.push(status);
            if status == 201 || status == 200 {
                return (answers, Some(body));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (answers, None)
    };
    let ((answers, created), paused) = tokio::join!(
        create,
        pause_store_once_minting(stack, services, calls, pause)
    );
    paused?;
    stack.sim.set_latency(Endpoint::Token, Duration::ZERO);
    f.add("creation: answers until created", format!("{answers:?}"));
    let creation_billed = stack
        .sim
        .counters()
        .tokens_minted_by_client
        .values()
        .sum::<u64>()
        - minted_before;
    f.add("creation: tokens billed", creation_billed)
        .must(creation_billed == 1, "1");
    let text = |key: &str, inner: Option<&str>| {
        created.as_ref().and_then(|body| {
            let value = match inner {
                Some(inner) => &body[inner][key],
                None => &body[key],
            };
            value.as_str().map(str::to_owned)
        })
    };
    let carried = match (
        text("idenfyScanRef", Some("idenfy")),
        text("sessionId", None),
        text("idenfySessionId", None),
    ) {
        (Some(scan_ref), Some(parent), Some(row_id)) => {
            let stored = stack
                .row_doc(&row_id)
                .await
                .and_then(|doc| doc.get_str("idenfyScanRef").ok().map(str::to_owned));
            billed(stack, &parent) == 1 && stored.as_deref() == Some(scan_ref.as_str())
        }
        _ => false,
    };
    f.add("creation: the session carries the paid token", carried)
        .must(carried, "true");
    Ok(())
}

/// The store stays away past the persist retries after a mint: the paid token goes to the
/// minting replica's journal (and its ERROR log), and is attached to the row when the store
/// answers again, before the claim lapses, so nobody mints again.
async fn store_away_past_the_retries(
    stack: &Stack,
    services: &Services,
    f: &mut Figures,
) -> anyhow::Result<()> {
    // Past the app's 15 s of persist retries, and short enough that the journal replay
    // (every second) attaches the token well before the claim lapses.
    let away = stack
        .settings
        .claim_ttl
        .saturating_sub(Duration::from_secs(7))
        .min(Duration::from_secs(25));
    f.num(
        "pause (SIGSTOP) from the token call's start",
        away.as_secs_f64(),
        "s",
    );
    stack
        .sim
        .set_latency(Endpoint::Token, Duration::from_millis(500));
    recovery_under_pause(stack, services, f, "chaos-away", "", away).await?;
    stack.sim.set_latency(Endpoint::Token, Duration::ZERO);
    let journaled = stack.apps[0].log_contains("it is journaled");
    f.add("the token was journaled", journaled)
        .must(journaled, "true");
    Ok(())
}

/// iDenfy mints, bills, and the answer never arrives (the client times out): the unknown
/// outcome is recorded on the row, the next mint waits the longer back-off, and each row
/// costs one extra token per lost answer, no more.
async fn answer_lost(stack: &Stack, sizes: &Sizes, f: &mut Figures) -> anyhow::Result<()> {
    let rows = stack.create_many("chaos-lost", sizes.fault_rows, 4).await?;
    let before: Vec<u64> = rows
        .iter()
        .map(|row| billed(stack, &row.parent_id))
        .collect();
    for row in &rows {
        expire_and_wait_marked(stack, row).await?;
    }
    stack.sim.script_token(vec![Fault::AnswerLost; rows.len()]);
    let started = Instant::now();
    let mut recovered = vec![false; rows.len()];
    let mut expired_views = 0u64;
    let mut five_xx = 0u64;
    // The client's 10 s timeout, the unknown-outcome back-off, then the recovery.
    let deadline =
        Duration::from_secs(10) + stack.settings.unknown_mint_backoff + Duration::from_secs(30);
    while started.elapsed() < deadline && recovered.iter().any(|done| !done) {
        let polls = futures::future::join_all(rows.iter().enumerate().map(|(k, row)| {
            let done = recovered[k];
            async move {
                if done {
                    None
                } else {
                    Some(stack.poll(k % stack.apps.len(), row).await)
                }
            }
        }))
        .await;
        for (k, polled) in polls.into_iter().enumerate() {
            let Some(p) = polled else { continue };
            expired_views += u64::from(p.is_expired());
            five_xx += u64::from(p.is_5xx());
            if p.http == 200
                && p.token.is_some()
                && p.scan_ref.as_deref() != Some(&rows[k].scan_ref)
            {
                recovered[k] = true;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let done = recovered.iter().filter(|done| **done).count();
    f.num("rows recovered", done as f64, format!("of {}", rows.len()))
        .must(done == rows.len(), "all");
    let mut billed_total = 0;
    let mut unknown_total = 0;
    let mut worst_excess = 0i64;
    for (row, before) in rows.iter().zip(before) {
        let billed_row = billed(stack, &row.parent_id) - before;
        let unknown = stack
            .row_doc(&row.row_id)
            .await
            .and_then(|doc| doc_int(&doc, "mintUnknownOutcomes"))
            .unwrap_or(0);
        billed_total += billed_row;
        unknown_total += unknown;
        worst_excess =
            worst_excess.max(i64::try_from(billed_row).unwrap_or(i64::MAX) - 1 - unknown);
    }
    let n = rows.len().max(1) as f64;
    f.num("tokens billed per row", billed_total as f64 / n, "ratio");
    f.num(
        "unknown outcomes recorded per row",
        unknown_total as f64 / n,
        "ratio",
    )
    .must(
        unknown_total == i64::try_from(rows.len()).unwrap_or(i64::MAX),
        "1.00 (one lost answer each)",
    );
    f.add(
        "billed beyond 1 + unknown outcomes, worst row",
        worst_excess,
    )
    .must(worst_excess <= 0, "<= 0");
    f.add("EXPIRED views", expired_views)
        .must(expired_views == 0, "0");
    f.add("5xx answers", five_xx).must(five_xx == 0, "0");
    f.num(
        "until every row held a new token",
        started.elapsed().as_secs_f64(),
        "s",
    );
    Ok(())
}

/// An app SIGKILLed while its mint is held by the sim: the claim outlives it, another
/// replica recovers the row once the claim expires, and both attempts are in `mintAttempts`.
async fn killed_mid_mint(stack: &Stack, f: &mut Figures) -> anyhow::Result<()> {
    let victim = stack.apps.len() - 1;
    let row = stack
        .create_many("chaos-kill", 1, 1)
        .await?
        .pop()
        .context("no row")?;
    let attempts_before = mint_attempts(stack, std::slice::from_ref(&row)).await[0];
    let counters = stack.sim.counters();
    let calls_before = counters.token_calls;
    let minted_before = counters
        .tokens_minted_by_client
        .get(&row.parent_id)
        .copied()
        .unwrap_or(0);
    // Longer than our patience, shorter than the client's 10 s timeout.
    stack
        .sim
        .set_latency(Endpoint::Token, Duration::from_secs(8));
    expire_and_wait_marked(stack, &row).await?;
    let hanging = stack.poll(victim, &row);
    let kill = async {
        for _ in 0..200 {
            if stack.sim.counters().token_calls > calls_before {
                stack.apps[victim].kill().await;
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    };
    let (hung, killed) = tokio::join!(hanging, kill);
    let killed_at = Instant::now();
    stack.sim.set_latency(Endpoint::Token, Duration::ZERO);
    if !killed {
        bail!(
            "the victim never called the token endpoint (its poll answered {})",
            hung.http
        );
    }
    f.add(
        "victim's poll",
        if hung.http == 0 {
            "cut off".to_owned()
        } else {
            hung.http.to_string()
        },
    );
    let doc = stack.row_doc(&row.row_id).await.context("row gone")?;
    let claimed = doc
        .get_document("recreation")
        .ok()
        .and_then(|r| r.get("claimId"))
        .is_some_and(|c| !matches!(c, mongodb::bson::Bson::Null));
    f.add("claim left by the victim", claimed)
        .must(claimed, "true");
    let first = stack.poll(0, &row).await;
    f.add(
        "view while the claim lives",
        if first.token.is_none() {
            "pending"
        } else {
            "token"
        },
    )
    .must(
        first.token.is_none() && !first.is_expired() && first.http == 200,
        "pending",
    );
    let claim_ttl = stack.settings.claim_ttl.as_secs_f64();
    f.num("claim TTL (waited for in full)", claim_ttl, "s");
    let t = Instant::now();
    // The claim's TTL plus room for the recovery itself.
    let deadline = usize::try_from(stack.settings.claim_ttl.as_secs())?.saturating_add(20);
    let mut recovered = None;
    for i in 0..(deadline * 5) {
        let p = stack.poll(i % victim, &row).await;
        if p.is_expired() {
            f.add("EXPIRED views", 1usize).must(false, "0");
            break;
        }
        if p.token.is_some() && p.scan_ref.as_deref().is_some_and(|s| s != row.scan_ref) {
            recovered = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    f.add("recovered by another replica", recovered.is_some())
        .must(recovered.is_some(), "true");
    f.num("recovery after the claim", t.elapsed().as_secs_f64(), "s");
    let blackout = killed_at.elapsed();
    let bound = stack.settings.claim_ttl + stack.settings.poll_interval;
    f.num("kill → recovered by a peer", blackout.as_secs_f64(), "s")
        .must(
            recovered.is_some() && blackout <= bound,
            format!(
                "<= CLAIM_TTL_MS + one poll interval = {:.0}s",
                bound.as_secs_f64()
            ),
        );
    let doc = stack.row_doc(&row.row_id).await.context("row gone")?;
    let attempts = doc_int(&doc, "mintAttempts").unwrap_or(0) - attempts_before;
    let counters = stack.sim.counters();
    let calls = counters.token_calls - calls_before;
    let minted = counters
        .tokens_minted_by_client
        .get(&row.parent_id)
        .copied()
        .unwrap_or(0)
        - minted_before;
    f.add(
        "mintAttempts added vs token calls",
        format!("{attempts} vs {calls}"),
    )
    .must(
        u64::try_from(attempts).is_ok_and(|a| a == calls) && calls >= 2,
        "equal, at least 2",
    );
    f.add("tokens the sim minted (orphans included)", minted);
    f.add(
        "recreationCount",
        doc_int(&doc, "recreationCount").unwrap_or(-1),
    )
    .must(doc_int(&doc, "recreationCount") == Some(1), "1");
    Ok(())
}
