//! Running cargo and other commands from xtask, with timing, and waiting for Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The workspace root (xtask sits one level below it).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// The cargo that runs us (`CARGO`, set by `cargo run`), else `cargo` from `PATH`.
pub(crate) fn cargo() -> tokio::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = tokio::process::Command::new(cargo);
    command.current_dir(workspace_root()).kill_on_drop(true);
    command
}

/// Runs `command` to completion, failing on a non-zero exit or on Ctrl-C/SIGTERM (after
/// killing the child).
pub(crate) async fn run(mut command: tokio::process::Command) -> anyhow::Result<()> {
    let description = describe(&command);
    println!("$ {description}");
    let mut child = command
        .spawn()
        .with_context(|| format!("starting `{description}`"))?;
    tokio::select! {
        status = child.wait() => {
            let status = status.with_context(|| format!("waiting for `{description}`"))?;
            if !status.success() {
                bail!("`{description}` failed ({status})");
            }
            Ok(())
        }
        signal = interrupted() => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            bail!("interrupted by {signal} while running `{description}`");
        }
    }
}

/// Resolves when the user interrupts (Ctrl-C) or the process is asked to terminate.
/// Once this has been polled, those signals no longer kill xtask outright, which is what
/// lets `test` stop the services before exiting.
pub(crate) async fn interrupted() -> &'static str {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return "SIGINT";
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

fn describe(command: &tokio::process::Command) -> String {
    let command = command.as_std();
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|word| word.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints a phase header, runs it, prints how long it took.
pub(crate) struct Phases {
    done: Vec<(&'static str, Duration, bool)>,
}

impl Phases {
    pub(crate) fn new() -> Phases {
        Phases { done: Vec::new() }
    }

    pub(crate) async fn run<F>(&mut self, name: &'static str, phase: F) -> anyhow::Result<()>
    where
        F: Future<Output = anyhow::Result<()>>,
    {
        println!("\n==> {name}");
        let started = Instant::now();
        let result = phase.await;
        let elapsed = started.elapsed();
        let verdict = if result.is_ok() { "ok" } else { "FAILED" };
        println!("<== {name}: {verdict} in {:.1}s", elapsed.as_secs_f64());
        self.done.push((name, elapsed, result.is_ok()));
        result.with_context(|| format!("phase `{name}`"))
    }

    pub(crate) fn summary(&self) {
        println!("\nphase      time     result");
        let mut total = Duration::ZERO;
        for (name, elapsed, ok) in &self.done {
            total += *elapsed;
            let verdict = if *ok { "ok" } else { "FAILED" };
            println!("{name:<10} {:>6.1}s  {verdict}", elapsed.as_secs_f64());
        }
        println!("{:<10} {:>6.1}s", "total", total.as_secs_f64());
    }
}
