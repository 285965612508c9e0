//! The `/metrics` scrape after traffic: every family described, histograms rather than
//! summaries, the documented counters present at 0, and a bounded `method` label; and
//! Prometheus's own linter, `promtool check metrics`, finds nothing to say about it.

use crate::support::{TestApp, USER, send};

#[tokio::test]
async fn every_family_has_help_and_made_up_methods_do_not_grow_the_scrape() {
    let app = TestApp::start().await;
    let created = app.created(USER).await;
    let (code, _) = app.status(&created.row, USER).await;
    assert_eq!(code, 200);
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).expect("token");
        let (code, _) = send(app.http.request(method, app.url("/healthz"))).await;
        assert_eq!(code, 405);
    }
    let (code, scrape) = send(app.http.get(app.url("/metrics"))).await;
    assert_eq!(code, 200);
    let scrape = scrape.as_str().expect("text");

    let typed: Vec<(&str, &str)> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert!(!typed.is_empty());
    for (family, kind) in &typed {
        assert_ne!(
            *kind, "summary",
            "{family}: histograms aggregate across replicas"
        );
        if family.starts_with("idenfy_") || family.starts_with("http_") {
            assert!(
                scrape.contains(&format!("# HELP {family} ")),
                "{family} has no HELP text"
            );
        }
    }
    for counter in [
        "idenfy_orphaned_mints_total",
        "idenfy_gave_up_total",
        "idenfy_unpersisted_mints_total",
        "idenfy_recreate_lock_total{outcome=\"lost\"}",
    ] {
        assert!(
            scrape.lines().any(|l| l.starts_with(counter)),
            "{counter} is present from start-up"
        );
    }
    assert!(scrape.contains("idenfy_build_info{"));
    assert!(
        scrape.contains("process_open_fds ") && scrape.contains("process_resident_memory_bytes "),
        "process metrics"
    );
    assert!(
        !scrape.contains("MADEUP"),
        "made-up methods are labelled `other`"
    );
    assert!(scrape.contains("method=\"other\""));

    promtool_finds_nothing(scrape);
}

/// `promtool check metrics` reads the scrape on stdin and exits non-zero on any problem
/// (missing HELP, bad unit suffixes, counters without `_total`, ...).
fn promtool_finds_nothing(scrape: &str) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let test = "every_family_has_help_and_made_up_methods_do_not_grow_the_scrape";
    let Some(promtool) = dev_services::program_for_test(test, "promtool") else {
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(scrape.as_bytes())
        .expect("scrape written to promtool");
    let output = child.wait_with_output().expect("promtool finishes");
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
