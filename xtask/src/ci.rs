//! `cargo xtask ci`: if this passes locally, CI is green.

use dev_services::Backend;

use crate::harness;
use crate::shell::{self, Phases, cargo};

/// fmt, clippy, the production build, `cargo doc` (warnings denied), `cargo package`,
/// cargo-deny (installed on first use), then the tests
/// against real services,
/// then `bench --quick` and `chaos --quick`.
/// Stops at the first failing phase; prints each phase's time and a summary either way.
pub(crate) async fn run(backend: Backend) -> anyhow::Result<()> {
    let mut phases = Phases::new();
    let result = all(&mut phases, backend).await;
    phases.summary();
    result
}

async fn all(phases: &mut Phases, backend: Backend) -> anyhow::Result<()> {
    phases
        .run("fmt", shell::run(with_args(&["fmt", "--all", "--check"])))
        .await?;
    phases
        .run(
            "clippy",
            shell::run(with_args(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])),
        )
        .await?;
    // The production build: no simulator, no dev mode (what the Containerfile ships).
    phases
        .run(
            "check-production",
            shell::run(with_args(&[
                "check",
                "-p",
                "idenfy-app",
                "--no-default-features",
            ])),
        )
        .await?;
    // The crate docs: every intra-doc link resolves and rustdoc has nothing to warn about.
    let mut doc = with_args(&["doc", "--workspace", "--no-deps"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    phases.run("doc", shell::run(doc)).await?;
    // Every crate packages as crates.io would take it (versions on internal dependencies,
    // metadata); compiling the packages again would only repeat the clippy phase.
    phases
        .run(
            "package",
            shell::run(with_args(&[
                "package",
                "--workspace",
                "--no-verify",
                "--allow-dirty",
                "--quiet",
            ])),
        )
        .await?;
    phases.run("deny", deny()).await?;
    phases
        .run("test", crate::run_tests::run(backend, &[]))
        .await?;
    // Small measurement and fault runs, so that neither command rots.
    phases
        .run("bench", harness::run::<crate::bench::Bench>(quick(backend)))
        .await?;
    phases
        .run("chaos", harness::run::<crate::chaos::Chaos>(quick(backend)))
        .await?;
    Ok(())
}

/// `cargo deny check bans licenses sources` (advisories need GitHub, which CI cannot reach).
async fn deny() -> anyhow::Result<()> {
    let installed = cargo()
        .args(["deny", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success());
    if !installed {
        println!("cargo-deny is not installed; installing it (takes a few minutes)");
        shell::run(with_args(&["install", "cargo-deny", "--locked"])).await?;
    }
    shell::run(with_args(&["deny", "check", "bans", "licenses", "sources"])).await
}

/// `--quick` options of bench and chaos: every scenario, on mongo-java-server.
fn quick(backend: Backend) -> harness::Args {
    harness::Args {
        quick: true,
        backend,
        mongo: dev_services::MongoServer::JavaServer,
        only: None,
    }
}

fn with_args(args: &[&str]) -> tokio::process::Command {
    let mut command = cargo();
    command.args(args);
    command
}
