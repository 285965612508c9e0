//! Helpers for integration tests: finding the services, naming per-test databases and keys,
//! and stopping/restarting the local Valkey.

use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::backend::external_urls;
use crate::layout::non_empty_var;
use crate::local::{STOP_GRACE, VALKEY_PROGRAM, start_valkey};
use crate::process::{is_alive, terminate};
use crate::{
    Backend, Error, Layout, MONGODB_URI_VAR, REQUIRE_SERVICES_VAR, Result, ServiceUrls, State,
    VALKEY_URL_VAR,
};

/// The servers `test` should use: `MONGODB_URI` and `VALKEY_URL` from the environment, else
/// the ones recorded by `cargo xtask services up`.
///
/// When there are none: panics if `CI` is set (to anything but `false`, `0` or empty) or
/// `IDENFY_REQUIRE_SERVICES=1`, so that CI never passes by skipping; otherwise prints
/// `skipping <test>: ...` to stderr and returns `None`, and the test returns early.
pub fn urls_for_test(test: &str) -> Option<ServiceUrls> {
    if let Some(urls) = external_urls() {
        return Some(urls);
    }
    let state_file = Layout::from_env().state_file;
    let recorded = State::load(&state_file).ok().flatten().filter(|state| {
        [&state.mongodb, &state.valkey]
            .iter()
            .all(|service| service.pid.is_none_or(is_alive))
    });
    if let Some(state) = recorded {
        return Some(state.urls());
    }
    if services_required() {
        panic!(
            "{test}: no services. Set {MONGODB_URI_VAR} and {VALKEY_URL_VAR}, or start them with \
             `cargo xtask services up` (state file {}), or run everything with `cargo xtask test`. \
             Skipping is not allowed because CI or {REQUIRE_SERVICES_VAR}=1 is set.",
            state_file.display()
        );
    }
    // Straight to the process's stderr: `eprintln!` would be captured by the test harness
    // and only shown with `--nocapture`, and a skip must never be silent.
    let _ = writeln!(
        std::io::stderr(),
        "skipping {test}: no services (run `cargo xtask services up` or `cargo xtask test`)"
    );
    None
}

/// Whether a missing server must fail the test rather than skip it.
fn services_required() -> bool {
    let ci = std::env::var("CI").is_ok_and(|value| {
        let value = value.trim();
        !(value.is_empty() || value == "0" || value.eq_ignore_ascii_case("false"))
    });
    let required =
        std::env::var(REQUIRE_SERVICES_VAR).is_ok_and(|value| matches!(value.trim(), "1" | "true"));
    ci || required
}

/// A name no other test (in this or a parallel process) uses: `prefix`, then process id,
/// a per-process counter and a random suffix. Only ASCII letters, digits and `_` (safe as a
/// MongoDB/FerretDB database name and as a Valkey key prefix), at most 38 characters.
pub fn unique_name(prefix: &str) -> String {
    const MAX_LEN: usize = 38;
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let prefix: String = prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(16)
        .collect();
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded randomly per process, which is all the randomness we need here.
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u32(counter);
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos()),
    );
    let random = hasher.finish() & 0xffff_ffff;
    let mut name = format!("{prefix}_{:x}_{counter:x}_{random:08x}", std::process::id());
    name.truncate(MAX_LEN);
    name
}

/// Stops and restarts the local Valkey recorded in the state file, on the same port and with
/// the same command line, so a test can exercise "Valkey went away half-way".
///
/// Every test in the run shares that Valkey: a test using this should be the only one
/// touching Valkey while it is down (run it in its own binary, or serialise such tests).
#[derive(Debug)]
pub struct ValkeyControl {
    state_file: PathBuf,
    url: String,
}

impl ValkeyControl {
    /// The Valkey that `cargo xtask services up` (or `cargo xtask test`) started.
    /// An `Unsupported` error on the external and docker backends.
    pub fn from_state() -> Result<ValkeyControl> {
        let state_file = Layout::from_env().state_file;
        let state = State::load(&state_file)?.ok_or_else(|| Error::NoState(state_file.clone()))?;
        if state.backend != Backend::Local {
            return Err(Error::Unsupported {
                backend: state.backend,
                what: "stopping and restarting Valkey",
            });
        }
        if let Some(url) = non_empty_var(VALKEY_URL_VAR)
            && url != state.valkey.url
        {
            return Err(Error::Unsupported {
                backend: Backend::External,
                what: "stopping and restarting a Valkey named by VALKEY_URL",
            });
        }
        Ok(ValkeyControl {
            state_file,
            url: state.valkey.url,
        })
    }

    /// The Valkey URL (unchanged across stop and start).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the Valkey process currently runs.
    pub fn is_running(&self) -> Result<bool> {
        let state = self.load()?;
        Ok(state.valkey.pid.is_some_and(is_alive))
    }

    /// SIGTERM, then waits until the process is gone (SIGKILL after a grace period).
    pub async fn stop(&self) -> Result<()> {
        let mut state = self.load()?;
        if let Some(pid) = state.valkey.pid {
            terminate(pid, VALKEY_PROGRAM, STOP_GRACE).await?;
        }
        state.valkey.pid = None;
        state.save(&self.state_file)
    }

    /// Starts Valkey again with the recorded command line and waits for `PING`.
    /// Does nothing if it is already running.
    pub async fn start(&self) -> Result<()> {
        let mut state = self.load()?;
        if state.valkey.pid.is_some_and(is_alive) {
            return Ok(());
        }
        let log = state.valkey.log.clone().ok_or_else(|| {
            Error::Setup(format!(
                "no Valkey log path in {}",
                self.state_file.display()
            ))
        })?;
        let pid = start_valkey(&state.valkey.command, &log, &state.valkey.url).await?;
        state.valkey.pid = Some(pid);
        state.save(&self.state_file)
    }

    fn load(&self) -> Result<State> {
        State::load(&self.state_file)?.ok_or_else(|| Error::NoState(self.state_file.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::unique_name;

    #[test]
    fn unique_names_are_short_safe_and_distinct() {
        let a = unique_name("store-mongo smoke/with a very long prefix");
        let b = unique_name("store-mongo smoke/with a very long prefix");
        assert_ne!(a, b);
        for name in [&a, &b] {
            assert!(name.len() <= 38, "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{name}"
            );
        }
    }
}
