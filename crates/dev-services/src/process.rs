//! Local processes: free ports, detached spawning, liveness and termination by pid.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitOptions};

use crate::error::IoContext;
use crate::{Error, Result};

/// A port that was free a moment ago: bind `127.0.0.1:0`, read the port, close.
/// (In Valkey's configuration `port 0` means "no TCP listener", so we must pick one.)
/// Another process may take it before it is used: bind it soon, and be ready to retry.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context(|| "binding 127.0.0.1:0 to find a free port".to_owned())?;
    let port = listener
        .local_addr()
        .context(|| "reading the address of 127.0.0.1:0".to_owned())?
        .port();
    Ok(port)
}

/// Starts `argv` with output appended to `log`, in its own process group (so a Ctrl-C in
/// the terminal reaches xtask, which then stops the servers in order), and does not wait.
pub(crate) fn spawn_detached(argv: &[String], log: &Path) -> Result<u32> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::Setup("empty command line".to_owned()))?;
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .context(|| format!("opening {}", log.display()))?;
    let err = out
        .try_clone()
        .context(|| format!("duplicating {}", log.display()))?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .context(|| format!("starting {}", argv.join(" ")))?;
    // Dropping a std Child neither kills nor waits; `is_alive` reaps it later if it is ours.
    Ok(child.id())
}

/// Whether `pid` is a live process (not a zombie). Reaps it first if it is our child.
pub(crate) fn is_alive(pid: u32) -> bool {
    let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    // Reap if it is our own exited child; ECHILD for anyone else's, which is fine.
    let _ = rustix::process::waitpid(Some(raw), WaitOptions::NOHANG);
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name: "123 (name) S ...".
        Ok(stat) => !matches!(
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next()),
            Some('Z' | 'X') | None
        ),
        Err(_) if Path::new("/proc/self/stat").exists() => false,
        // No procfs: ask the kernel.
        Err(_) => rustix::process::test_kill_process(raw).is_ok(),
    }
}

/// Whether `pid` still runs `program` (guards against killing a recycled pid).
pub(crate) fn runs(pid: u32, program: &str) -> bool {
    if !Path::new("/proc/self/exe").exists() {
        return true;
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let exe_matches = exe
        .as_deref()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with(program));
    exe_matches
        || std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(program))
}

/// SIGTERM, wait up to `grace`, then SIGKILL and wait; returns once the process is gone.
/// A pid that no longer runs `program` is treated as already gone.
pub(crate) async fn terminate(pid: u32, program: &str, grace: Duration) -> Result<()> {
    if !is_alive(pid) || !runs(pid, program) {
        return Ok(());
    }
    let raw = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| Error::Setup(format!("invalid pid {pid}")))?;
    let _ = rustix::process::kill_process(raw, Signal::TERM);
    if wait_gone(pid, grace).await {
        return Ok(());
    }
    eprintln!("{program} (pid {pid}) ignored SIGTERM for {grace:?}; sending SIGKILL");
    let _ = rustix::process::kill_process(raw, Signal::KILL);
    if wait_gone(pid, Duration::from_secs(5)).await {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "{program} (pid {pid}) is still alive after SIGKILL"
        )))
    }
}

/// SIGKILL (no grace: a crash, as chaos runs want it) and wait until the process is gone.
/// A pid that no longer runs `program` is treated as already gone.
pub(crate) async fn kill(pid: u32, program: &str) -> Result<()> {
    if !is_alive(pid) || !runs(pid, program) {
        return Ok(());
    }
    let raw = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| Error::Setup(format!("invalid pid {pid}")))?;
    let _ = rustix::process::kill_process(raw, Signal::KILL);
    if wait_gone(pid, Duration::from_secs(5)).await {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "{program} (pid {pid}) is still alive after SIGKILL"
        )))
    }
}

async fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if !is_alive(pid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The last `lines` lines of a log file, for error messages (headed by the file's path; an
/// unreadable file gives no lines).
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    format!("last lines of {}:\n{tail}", log.display())
}

/// Runs `program --version`-like commands and returns trimmed stdout (or an error).
pub(crate) fn capture(program: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context(|| format!("running {} {}", program.display(), args.join(" ")))?;
    if !output.status.success() {
        return Err(Error::Command {
            command: format!("{} {}", program.display(), args.join(" ")),
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::{free_port, log_tail};

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port().expect("a free port");
        assert_ne!(port, 0);
        let listener = std::net::TcpListener::bind(("127.0.0.1", port));
        assert!(listener.is_ok(), "port {port}: {listener:?}");
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(crate::unique_name("logtail"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join("server.log");
        std::fs::write(&log, "one\ntwo\nthree\nfour\n").expect("write");
        assert_eq!(
            log_tail(&log, 2),
            format!("last lines of {}:\nthree\nfour", log.display())
        );
        assert!(log_tail(&log, 10).ends_with(":\none\ntwo\nthree\nfour"));
        let missing = dir.join("missing.log");
        assert_eq!(
            log_tail(&missing, 5),
            format!("last lines of {}:\n", missing.display())
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
