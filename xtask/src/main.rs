//! Project automation: `cargo xtask services|test|ci|bench|chaos`.
//!
//! A thin dispatcher; each subcommand lives in its own module. Run `cargo xtask` for help.

mod bench;
mod chaos;
mod ci;
mod harness;
mod herd;
mod load;
mod probe;
mod run_tests;
mod services;
mod shell;
mod stack;
#[cfg(test)]
mod tidy;

use clap::{Parser, Subcommand};
use dev_services::Backend;

/// Project automation for idenfy-sessions.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Provision, start, stop and inspect the MongoDB-protocol and Valkey servers.
    Services {
        #[command(subcommand)]
        action: ServicesAction,
    },
    /// Start the services, run `cargo test` against them, and stop them again.
    ///
    /// Arguments after `--` go to `cargo test`, e.g.
    /// `cargo xtask test -- -p store-mongo -- --nocapture`. Without `-p`/`--package`,
    /// `--workspace` is added.
    Test {
        #[command(flatten)]
        backend: BackendArg,
        /// Extra `cargo test` arguments.
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Everything CI checks: fmt, clippy, cargo-deny, the tests (as `test`), then
    /// `bench --quick` and `chaos --quick`.
    Ci {
        #[command(flatten)]
        backend: BackendArg,
    },
    /// Measure the cached poll path, a herd, reconciling and memory on the real stack;
    /// prints a table and writes target/bench/report.md.
    Bench(harness::Args),
    /// Fault-injection runs on the real stack (Valkey, the store, iDenfy, app crashes,
    /// webhook storms); PASS/FAIL per scenario, and a table in target/bench/chaos.md.
    Chaos(harness::Args),
}

#[derive(Debug, Subcommand)]
enum ServicesAction {
    /// Install `valkey-server`, mongo-java-server and FerretDB if missing (idempotent).
    Install,
    /// Start Valkey, mongo-java-server and FerretDB on free 127.0.0.1 ports and record them in
    /// target/services/state.json.
    Up {
        #[command(flatten)]
        backend: BackendArg,
    },
    /// Stop the servers and wait until they are gone.
    Down,
    /// Show what runs and whether it answers.
    Status,
    /// Race compare-and-sets and time reads and conditional updates on every
    /// MongoDB-protocol server the backend runs (starts servers of its own).
    Probe(probe::Args),
}

#[derive(Debug, clap::Args)]
struct BackendArg {
    /// Where the servers come from: auto, external, docker or local.
    #[arg(long, env = dev_services::BACKEND_VAR, default_value = "auto", value_parser = parse_backend)]
    backend: Backend,
}

fn parse_mongo(value: &str) -> Result<dev_services::MongoServer, String> {
    value
        .parse()
        .map_err(|error: dev_services::Error| error.to_string())
}

fn parse_backend(value: &str) -> Result<Backend, String> {
    value
        .parse()
        .map_err(|error: dev_services::Error| error.to_string())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Services { action } => services::run(action).await,
        Command::Test {
            backend,
            cargo_args,
        } => run_tests::run(backend.backend, &cargo_args).await,
        Command::Ci { backend } => ci::run(backend.backend).await,
        Command::Bench(args) => harness::run::<bench::Bench>(args).await,
        Command::Chaos(args) => harness::run::<chaos::Chaos>(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
