//! The harness `cargo xtask bench` and `cargo xtask chaos` share: their options, choosing
//! scenarios with `--only`, the real stack (servers, idenfy-sim, the `idenfy-app` replicas)
//! started around the chosen scenarios and torn down again (also on Ctrl-C), the figures
//! and checks the scenarios produce, and the report.
//!
//! A command is a [`Suite`]: a table of named scenarios (an enum) and a run of each on the
//! [`Stack`] that adds [`Figure`]s. A figure may carry a [`Check`]: a rule it must meet
//! ([`Figure::must`]: a miss fails the scenario, and a failed scenario fails the command)
//! or a target ([`Figure::target`]: a miss is reported, never a failure). A scenario that
//! cannot finish fails with its error, and the others still run.
//!
//! Each scenario prints PASS or FAIL as it ends. The run ends with a markdown report, on
//! stdout and in `target/bench/<stem>.md` (stem `report` for bench, `chaos` for chaos, plus
//! `-quick` for `--quick` and `-only` for `--only`, so a partial run never replaces a full
//! one's), each figure next to the previous run's (kept in the sidecar `<stem>.json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dev_services::{Backend, MongoServer};
use idenfy_sim::Endpoint;
use serde_json::json;

use crate::stack::{self, AppSettings, Services, Stack};

/// Options of `cargo xtask bench` and `cargo xtask chaos`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Small sizes and a debug build (what `cargo xtask ci` runs).
    #[arg(long)]
    pub(crate) quick: bool,
    /// Where the servers come from: auto, external, docker or local (chaos stops and
    /// restarts servers, which needs local).
    #[arg(long, env = dev_services::BACKEND_VAR, default_value = "auto", value_parser = crate::parse_backend)]
    pub(crate) backend: Backend,
    /// The MongoDB-protocol server the apps use: mongo-java-server (atomic writes, the
    /// default) or ferretdb (serialised writes), both started by the local backend.
    #[arg(long, env = dev_services::MONGO_SERVER_VAR, default_value = "mongo-java-server", value_parser = crate::parse_mongo)]
    pub(crate) mongo: MongoServer,
    /// Run only the scenarios whose name contains one of these comma-separated texts
    /// (case-insensitive; a scenario's whole name selects just that one), e.g.
    /// `--only herd`, `--only webhooks` or `--only storm,killed`; the report then goes to a
    /// `*-only.md` file so it never replaces a full run's.
    #[arg(long)]
    pub(crate) only: Option<String>,
}

/// A command made of scenarios, run by [`run`].
pub(crate) trait Suite: Sized {
    /// The command (`bench`, `chaos`): names the report and the folders of the servers and
    /// the app logs.
    const NAME: &'static str;
    /// The report's file name without `-quick`, `-only` and the extension.
    const REPORT: &'static str;
    /// Whether each scenario starts on empty collections, once every app is ready again, as
    /// on a fresh deployment (on FerretDB every lookup scans its whole collection, so one
    /// scenario's rows would slow the next one down).
    const FRESH_DATA: bool;
    /// The scenarios: an enum, every variant named in [`Suite::SCENARIOS`].
    type Scenario: Copy + 'static;
    /// Every scenario with its name (as in the report and for `--only`), in the order they
    /// run.
    const SCENARIOS: &'static [(&'static str, Self::Scenario)];

    /// The suite with the sizes of a `--quick` or a full run.
    fn new(quick: bool) -> Self;
    /// How the apps are configured.
    fn settings(&self) -> AppSettings;
    /// The report header's lines (markdown list items) on the sizes of the run.
    fn describe(&self, settings: &AppSettings) -> String;
    /// Runs once the apps are up, before the first scenario.
    async fn before(&mut self, _stack: &Stack) {}
    /// Runs one scenario, adding its figures to `figures`.
    async fn run(
        &mut self,
        scenario: Self::Scenario,
        stack: &Stack,
        services: &mut Services,
        figures: &mut Figures,
    ) -> anyhow::Result<()>;
    /// Adds figures that belong to no single scenario, after the last one.
    fn after(&self, _figures: &mut Figures) {}
}

/// Runs the suite's scenarios that `args` selects on a stack of their own, reports them, and
/// fails when a scenario failed.
pub(crate) async fn run<S: Suite>(args: Args) -> anyhow::Result<()> {
    let names: Vec<&str> = S::SCENARIOS.iter().map(|&(name, _)| name).collect();
    let chosen: Vec<_> = select(args.only.as_deref(), &names)
        .into_iter()
        .map(|i| S::SCENARIOS[i])
        .collect();
    if chosen.is_empty() {
        bail!(
            "no {} scenario matches --only {:?}; the scenarios: {}",
            S::NAME,
            args.only.unwrap_or_default(),
            names.join(", ")
        );
    }
    let started = Instant::now();
    let mut suite = S::new(args.quick);
    let settings = suite.settings();
    let binary = stack::build_app(settings.release).await?;
    let built = started.elapsed();
    let mut services = Services::start(S::NAME, args.backend, args.mongo).await?;
    let mut report = Report::new(header(&suite, args.quick, &settings, &services));
    let logs = stack::bench_dir().join("logs").join(S::NAME);
    let running = Instant::now();
    // On Ctrl-C the run is dropped (which kills the apps) and the servers are still stopped.
    let result = tokio::select! {
        result = on_stack(&mut suite, &chosen, &binary, &mut services, settings, &logs, &mut report) => result,
        signal = crate::shell::interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
    };
    let ran = running.elapsed();
    let failed = result.is_err() || report.verdicts.iter().any(|v| !v.pass);
    services.stop(failed).await?;
    if failed {
        println!("app logs kept in {}", logs.display());
    }
    result?;
    let written = report.write(&format!(
        "{}{}{}",
        S::REPORT,
        if args.quick { "-quick" } else { "" },
        if args.only.is_some() { "-only" } else { "" }
    ))?;
    let passed = report.verdicts.iter().filter(|v| v.pass).count();
    println!(
        "{} finished in {:.1}s (build {:.1}s, scenarios {:.1}s): {passed}/{} PASS; wrote {}",
        S::NAME,
        started.elapsed().as_secs_f64(),
        built.as_secs_f64(),
        ran.as_secs_f64(),
        report.verdicts.len(),
        written.display()
    );
    let failures: Vec<String> = report
        .figures
        .iter()
        .filter(|f| f.failed())
        .map(Figure::failure)
        .collect();
    if !failures.is_empty() {
        bail!("{} scenarios failed:\n  {}", S::NAME, failures.join("\n  "));
    }
    Ok(())
}

/// The indices of the `names` that `--only` selects, in order (all without `--only`): a
/// comma-separated part that is a whole name (case-insensitive) selects just that one, any
/// other part every name containing it.
fn select(only: Option<&str>, names: &[&str]) -> Vec<usize> {
    let names: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
    let parts: Vec<String> = only.map_or_else(Vec::new, |only| {
        only.split(',')
            .map(|part| part.trim().to_lowercase())
            .filter(|part| !part.is_empty())
            .collect()
    });
    (0..names.len())
        .filter(|&i| {
            only.is_none()
                || parts.iter().any(|part| {
                    if names.contains(part) {
                        *part == names[i]
                    } else {
                        names[i].contains(part.as_str())
                    }
                })
        })
        .collect()
}

/// Starts the apps, runs `scenarios` on them one after the other, and stops the apps.
async fn on_stack<S: Suite>(
    suite: &mut S,
    scenarios: &[(&'static str, S::Scenario)],
    binary: &Path,
    services: &mut Services,
    settings: AppSettings,
    logs: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let stack = Stack::start(binary, services, settings, logs).await?;
    suite.before(&stack).await;
    for &(name, scenario) in scenarios {
        println!("\n==> {name}");
        let took = Instant::now();
        let mut figures = Figures::under(name);
        let result = async {
            if S::FRESH_DATA {
                settle(&stack).await;
                stack
                    .clear_data()
                    .await
                    .context("emptying the collections")?;
            }
            suite.run(scenario, &stack, services, &mut figures).await
        }
        .await;
        if let Err(error) = result {
            figures.label(name);
            figures
                .add(format!("could not finish: {error:#}"), "")
                .must(false, "finished");
        }
        // Whatever a scenario injected must not leak into the next one.
        stack.sim.set_latency(Endpoint::Token, Duration::ZERO);
        report.scenario(name, took.elapsed(), figures.list);
    }
    let mut figures = Figures::under("");
    suite.after(&mut figures);
    report.figures.extend(figures.list);
    stack.shutdown().await;
    Ok(())
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

/// The report's header: the command, the machine, the servers and the apps, then the
/// suite's own lines.
fn header<S: Suite>(suite: &S, quick: bool, settings: &AppSettings, services: &Services) -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!(
        "# idenfy-sessions {} ({})\n\n- date: {}\n- machine: {cores} cores\n- rustc: {}\n\
         - MongoDB protocol: {} ({} backend)\n- Valkey: {}\n- apps: {}\n{}",
        S::NAME,
        if quick { "quick" } else { "full" },
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        stack::rustc_version(),
        services.mongo_label().lines().next().unwrap_or(""),
        services.state.backend,
        services.state.valkey.version.lines().next().unwrap_or(""),
        settings.describe(),
        suite.describe(settings)
    )
}

// ---------------------------------------------------------------------------------------
// Figures and checks

/// One measured figure, perhaps judged by a [`Check`].
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    /// The report's scenario column: the scenario's name or a part of it (`cached poll c=16`).
    label: String,
    name: String,
    value: Value,
    check: Option<Check>,
}

/// A figure's value.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// A number and its unit; kept for the next run's comparison.
    Number(f64, String),
    /// Anything else, e.g. a list of answers, or why a number is absent.
    Text(String),
}

/// A rule a figure is judged by.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    rule: String,
    met: bool,
    /// Whether a miss fails the scenario (a rule) or is only reported (a target).
    must: bool,
}

impl Figure {
    /// Judges the figure by `rule`: unless `met`, the scenario and the command fail.
    pub(crate) fn must(&mut self, met: bool, rule: impl Into<String>) {
        self.check = Some(Check {
            rule: rule.into(),
            met,
            must: true,
        });
    }

    /// Holds the figure against a target: a miss is reported, not a failure.
    pub(crate) fn target(&mut self, met: bool, rule: impl Into<String>) {
        self.check = Some(Check {
            rule: rule.into(),
            met,
            must: false,
        });
    }

    fn failed(&self) -> bool {
        self.check.as_ref().is_some_and(|c| c.must && !c.met)
    }

    fn key(&self) -> String {
        format!("{} | {}", self.label, self.name)
    }

    fn display(&self) -> String {
        match &self.value {
            Value::Number(value, unit) => format_value(*value, unit),
            Value::Text(text) => text.clone(),
        }
    }

    /// The report's check column.
    fn verdict(&self) -> String {
        let Some(Check { rule, met, must }) = &self.check else {
            return String::new();
        };
        match (must, met) {
            (true, true) => format!("ok ({rule})"),
            (true, false) => format!("**FAIL** (must be {rule})"),
            (false, true) => format!("met (target {rule})"),
            (false, false) => format!("missed (target {rule})"),
        }
    }

    /// A failed check, for the command's error.
    fn failure(&self) -> String {
        let rule = self.check.as_ref().map_or("", |c| c.rule.as_str());
        format!(
            "{} / {}: {} (must be {rule})",
            self.label,
            self.name,
            self.display()
        )
    }
}

/// [`Figures::add`]'s values: texts and flags as they print, counts as numbers without a unit.
macro_rules! values {
    ($($t:ty => |$v:ident| $value:expr),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from($v: $t) -> Value {
                $value
            }
        }
    )*};
}
values!(
    &str => |v| Value::Text(v.to_owned()),
    String => |v| Value::Text(v),
    bool => |v| Value::Text(v.to_string()),
    u16 => |v| Value::Number(f64::from(v), String::new()),
    u64 => |v| Value::Number(v as f64, String::new()),
    usize => |v| Value::Number(v as f64, String::new()),
    i64 => |v| Value::Number(v as f64, String::new()),
    f64 => |v| Value::Number(v, String::new()),
);

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

/// The figures a scenario adds, in order.
#[derive(Debug)]
pub(crate) struct Figures {
    /// The scenario column of the figures added next.
    label: String,
    list: Vec<Figure>,
}

impl Figures {
    fn under(label: &str) -> Figures {
        Figures {
            label: label.to_owned(),
            list: Vec::new(),
        }
    }

    /// Files the figures added from now on under `label` in the report's scenario column.
    pub(crate) fn label(&mut self, label: impl Into<String>) {
        self.label = label.into();
    }

    /// A count, a text or a flag.
    pub(crate) fn add(&mut self, name: impl Into<String>, value: impl Into<Value>) -> &mut Figure {
        self.list.push(Figure {
            label: self.label.clone(),
            name: name.into(),
            value: value.into(),
            check: None,
        });
        let last = self.list.len() - 1;
        &mut self.list[last]
    }

    /// A number with its unit (`ms`, `req/s`, `ratio`, `of 40`, ...).
    pub(crate) fn num(
        &mut self,
        name: impl Into<String>,
        value: f64,
        unit: impl Into<String>,
    ) -> &mut Figure {
        self.add(name, Value::Number(value, unit.into()))
    }
}

// ---------------------------------------------------------------------------------------
// The report

/// How one scenario went.
#[derive(Debug)]
struct Verdict {
    name: &'static str,
    pass: bool,
    took: Duration,
}

/// A run's figures and verdicts.
#[derive(Debug)]
struct Report {
    header: String,
    figures: Vec<Figure>,
    verdicts: Vec<Verdict>,
}

impl Report {
    fn new(header: String) -> Report {
        Report {
            header,
            figures: Vec::new(),
            verdicts: Vec::new(),
        }
    }

    /// Records a finished scenario and prints its verdict, with the checks it failed.
    fn scenario(&mut self, name: &'static str, took: Duration, figures: Vec<Figure>) {
        let pass = !figures.iter().any(Figure::failed);
        let word = if pass { "PASS" } else { "FAIL" };
        println!("{word} {name} ({:.1}s)", took.as_secs_f64());
        for figure in figures.iter().filter(|f| f.failed()) {
            println!("     FAILED: {}", figure.failure());
        }
        self.verdicts.push(Verdict { name, pass, took });
        self.figures.extend(figures);
    }

    /// Prints the report and the verdicts, and writes the report to `<stem>.md` and its
    /// figures to `<stem>.json` in `target/bench/`; returns the report's path.
    fn write(&self, stem: &str) -> anyhow::Result<std::path::PathBuf> {
        let out = stack::bench_dir();
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let sidecar = out.join(format!("{stem}.json"));
        let markdown = self.markdown(&Previous::load(&sidecar));
        println!("\n{markdown}");
        println!("| scenario | result | time |\n|---|---|---:|");
        for v in &self.verdicts {
            let word = if v.pass { "PASS" } else { "FAIL" };
            println!("| {} | {word} | {:.1} s |", v.name, v.took.as_secs_f64());
        }
        let path = out.join(format!("{stem}.md"));
        std::fs::write(&path, &markdown).with_context(|| format!("writing {}", path.display()))?;
        std::fs::write(&sidecar, self.json())
            .with_context(|| format!("writing {}", sidecar.display()))?;
        Ok(path)
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
            let prev = match (previous.figures.get(&f.key()), &f.value) {
                (Some(value), Value::Number(_, unit)) => format_value(*value, unit),
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {prev} | {} |",
                f.label,
                f.name,
                f.display(),
                f.verdict()
            );
        }
        out
    }

    fn json(&self) -> String {
        let figures: BTreeMap<String, f64> = self
            .figures
            .iter()
            .filter_map(|f| match f.value {
                Value::Number(value, _) => Some((f.key(), value)),
                Value::Text(_) => None,
            })
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
    fn load(path: &Path) -> Previous {
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

/// `--only` picks the same scenarios for both commands; a broken rule fails its scenario, a
/// missed target does not; reading a report back from the sidecar gives what was written.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Figures, Previous, Report, select};

    #[test]
    fn only_selects_a_whole_name_alone_and_else_every_name_containing_a_part() {
        let names = ["cached poll", "herd", "herd with webhooks", "Valkey killed"];
        assert_eq!(select(None, &names), [0, 1, 2, 3]);
        assert_eq!(select(Some("herd"), &names), [1]);
        assert_eq!(select(Some("webhooks"), &names), [2]);
        assert_eq!(select(Some(" HERD WITH, valkey"), &names), [2, 3]);
        assert_eq!(select(Some("cached,,nothing"), &names), [0]);
        assert!(select(Some("nothing"), &names).is_empty());
    }

    #[test]
    fn a_broken_rule_fails_its_scenario_and_a_missed_target_does_not() {
        let mut report = Report::new(String::new());
        let mut figures = Figures::under("overload");
        figures
            .num("goodput share of capacity", 78.0, "%")
            .target(false, ">= 90 %");
        report.scenario("overload", Duration::ZERO, figures.list);
        let mut figures = Figures::under("herd");
        figures.add("EXPIRED views seen", 2usize).must(false, "0");
        report.scenario("herd", Duration::ZERO, figures.list);
        let passed: Vec<bool> = report.verdicts.iter().map(|v| v.pass).collect();
        assert_eq!(passed, [true, false]);
        let markdown = report.markdown(&Previous::default());
        assert!(
            markdown.contains("| goodput share of capacity | 78 % | – | missed (target >= 90 %) |")
        );
        assert!(markdown.contains("| herd | EXPIRED views seen | 2 | – | **FAIL** (must be 0) |"));
    }

    #[test]
    fn the_sidecar_round_trips_the_figures() {
        let mut figures = Figures::under("herd");
        figures.num("mints per row", 1.0, "").must(true, "1.00");
        figures.label("cached poll c=1");
        figures.num("final rows: p50", 0.42, "ms");
        figures.add("answers", "[201]");
        let mut report = Report::new(String::new());
        report.figures = figures.list;
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join("report.json");
        std::fs::write(&path, report.json()).unwrap_or_default();
        let previous = Previous::load(&path);
        assert_eq!(previous.figures.get("herd | mints per row"), Some(&1.0));
        let markdown = report.markdown(&previous);
        assert!(markdown.contains("| herd | mints per row | 1 | 1 | ok (1.00) |"));
        assert!(markdown.contains("| cached poll c=1 | final rows: p50 | 0.42 ms | 0.42 ms |  |"));
        assert!(markdown.contains("| cached poll c=1 | answers | [201] | – |  |"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
