//! Helpers for integration tests: finding the services, naming per-test databases and keys,
//! and stopping/restarting the local Valkey and MongoDB-protocol servers.

use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::backend::external_urls;
use crate::layout::non_empty_var;
use crate::local::{STOP_GRACE, VALKEY_PROGRAM, start_mongo_process, start_valkey};
use crate::process::{is_alive, kill, terminate};
use crate::{
    Backend, Error, Layout, MONGO_SERVER_VAR, MONGODB_URI_VAR, MongoServer, REQUIRE_SERVICES_VAR,
    Result, ServiceState, ServiceUrls, State, VALKEY_URL_VAR,
};

/// The servers `test` should use: `MONGODB_URI` and `VALKEY_URL` from the environment, else
/// the ones recorded by `cargo xtask services up` (the MongoDB-protocol server named by
/// `IDENFY_MONGO_SERVER`, mongo-java-server when unset).
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
        let server = match non_empty_var(MONGO_SERVER_VAR).map(|name| name.parse::<MongoServer>()) {
            None => MongoServer::JavaServer,
            Some(Ok(server)) => server,
            Some(Err(error)) => panic!("{test}: {MONGO_SERVER_VAR}: {error}"),
        };
        let Some(mongo) = state.mongo(server) else {
            panic!(
                "{test}: {MONGO_SERVER_VAR} names {server}, which the {} backend does not run",
                state.backend
            );
        };
        return Some(ServiceUrls {
            mongodb_uri: mongo.url.clone(),
            valkey_url: state.valkey.url.clone(),
        });
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

/// A program a test runs (e.g. `promtool`), found on `PATH`. When it is missing: panics
/// under the same rule as [`urls_for_test`] (CI never passes by skipping), otherwise prints
/// `skipping <test>: ...` to stderr and returns `None`.
pub fn program_for_test(test: &str, program: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    });
    if found.is_some() {
        return found;
    }
    if services_required() {
        panic!(
            "{test}: `{program}` is not on PATH (`.ci/run install` provides it). Skipping is not \
             allowed because CI or {REQUIRE_SERVICES_VAR}=1 is set."
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "skipping {test}: `{program}` is not on PATH (`.ci/run install` provides it)"
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
pub struct ValkeyControl(Control);

impl ValkeyControl {
    /// The Valkey that `cargo xtask services up` (or `cargo xtask test`) started.
    /// An `Unsupported` error on the external and docker backends.
    pub fn from_state() -> Result<ValkeyControl> {
        Self::from_state_file(&Layout::from_env().state_file)
    }

    /// The Valkey recorded in `state_file` (e.g. of an isolated [`Layout`]).
    pub fn from_state_file(state_file: &Path) -> Result<ValkeyControl> {
        Control::new(state_file, Server::Valkey).map(ValkeyControl)
    }

    /// The Valkey URL (unchanged across stop and start).
    pub fn url(&self) -> &str {
        &self.0.url
    }

    /// Whether the Valkey process currently runs.
    pub fn is_running(&self) -> Result<bool> {
        self.0.is_running()
    }

    /// SIGTERM, then waits until the process is gone (SIGKILL after a grace period).
    pub async fn stop(&self) -> Result<()> {
        self.0.stop(false).await
    }

    /// SIGKILL at once (a crash), and waits until the process is gone.
    pub async fn kill(&self) -> Result<()> {
        self.0.stop(true).await
    }

    /// Starts Valkey again with the recorded command line and waits for `PING`.
    /// Does nothing if it is already running.
    pub async fn start(&self) -> Result<()> {
        self.0.start().await
    }
}

/// Stops and restarts one local MongoDB-protocol server recorded in the state file, on the
/// same port, with the same command line and the same data, so a run can exercise "the
/// database went away".
///
/// Every test in the run shares that server: whoever stops it should be the only user
/// while it is down.
#[derive(Debug)]
pub struct MongoControl(Control);

impl MongoControl {
    /// `server` as `cargo xtask services up` (or `cargo xtask test`) started it.
    /// An `Unsupported` error on the external and docker backends.
    pub fn from_state(server: MongoServer) -> Result<MongoControl> {
        Self::from_state_file(&Layout::from_env().state_file, server)
    }

    /// `server` as recorded in `state_file` (e.g. of an isolated [`Layout`]).
    pub fn from_state_file(state_file: &Path, server: MongoServer) -> Result<MongoControl> {
        Control::new(state_file, Server::Mongo(server)).map(MongoControl)
    }

    /// The MongoDB connection string (unchanged across stop and start).
    pub fn url(&self) -> &str {
        &self.0.url
    }

    /// Whether the server process currently runs.
    pub fn is_running(&self) -> Result<bool> {
        self.0.is_running()
    }

    /// SIGTERM, then waits until the process is gone (SIGKILL after a grace period).
    pub async fn stop(&self) -> Result<()> {
        self.0.stop(false).await
    }

    /// SIGKILL at once (a crash), and waits until the process is gone.
    pub async fn kill(&self) -> Result<()> {
        self.0.stop(true).await
    }

    /// Starts the server again with the recorded command line (keeping its data) and
    /// waits until it answers `ping`. Does nothing if it is already running.
    pub async fn start(&self) -> Result<()> {
        self.0.start().await
    }

    /// SIGSTOP: the process stays, its sockets stay open, and nothing answers (a stalled
    /// disk, a GC pause, a frozen VM) until [`MongoControl::resume`].
    pub fn pause(&self) -> Result<()> {
        self.0.signal(rustix::process::Signal::STOP)
    }

    /// SIGCONT after [`MongoControl::pause`].
    pub fn resume(&self) -> Result<()> {
        self.0.signal(rustix::process::Signal::CONT)
    }
}

/// Which recorded server a control drives.
#[derive(Clone, Copy, Debug)]
enum Server {
    Valkey,
    Mongo(MongoServer),
}

impl Server {
    fn program(self) -> &'static str {
        match self {
            Server::Valkey => VALKEY_PROGRAM,
            Server::Mongo(server) => server.program(),
        }
    }

    fn service(self, state: &mut State) -> Result<&mut ServiceState> {
        match self {
            Server::Valkey => Ok(&mut state.valkey),
            Server::Mongo(server) => state
                .mongo_mut(server)
                .ok_or_else(|| Error::Setup(format!("the state file records no {server}"))),
        }
    }
}

/// Stop and start of one server of a local state file; the state file always names the
/// running process (or none), so that `down` stops a restarted server too.
#[derive(Debug)]
struct Control {
    state_file: PathBuf,
    url: String,
    server: Server,
}

impl Control {
    fn new(state_file: &Path, server: Server) -> Result<Control> {
        let mut state =
            State::load(state_file)?.ok_or_else(|| Error::NoState(state_file.to_path_buf()))?;
        if state.backend != Backend::Local {
            return Err(Error::Unsupported {
                backend: state.backend,
                what: match server {
                    Server::Valkey => "stopping and restarting Valkey",
                    Server::Mongo(_) => "stopping and restarting a MongoDB-protocol server",
                },
            });
        }
        let (var, what) = match server {
            Server::Valkey => (
                VALKEY_URL_VAR,
                "stopping and restarting a Valkey named by VALKEY_URL",
            ),
            Server::Mongo(_) => (
                MONGODB_URI_VAR,
                "stopping and restarting a server named by MONGODB_URI",
            ),
        };
        let url = server.service(&mut state)?.url.clone();
        // MONGODB_URI names the server under test; it may be either recorded one.
        let recorded = |given: &str| {
            given == url
                || (matches!(server, Server::Mongo(_))
                    && MongoServer::ALL
                        .iter()
                        .any(|other| state.mongo(*other).is_some_and(|s| s.url == given)))
        };
        if let Some(given) = non_empty_var(var)
            && !recorded(&given)
        {
            return Err(Error::Unsupported {
                backend: Backend::External,
                what,
            });
        }
        Ok(Control {
            state_file: state_file.to_path_buf(),
            url,
            server,
        })
    }

    fn is_running(&self) -> Result<bool> {
        let mut state = self.load()?;
        Ok(self.server.service(&mut state)?.pid.is_some_and(is_alive))
    }

    async fn stop(&self, crash: bool) -> Result<()> {
        let mut state = self.load()?;
        let program = self.server.program();
        if let Some(pid) = self.server.service(&mut state)?.pid {
            if crash {
                kill(pid, program).await?;
            } else {
                terminate(pid, program, STOP_GRACE).await?;
            }
        }
        self.server.service(&mut state)?.pid = None;
        state.save(&self.state_file)
    }

    async fn start(&self) -> Result<()> {
        let mut state = self.load()?;
        let service = self.server.service(&mut state)?;
        if service.pid.is_some_and(is_alive) {
            return Ok(());
        }
        let log = service.log.clone().ok_or_else(|| {
            Error::Setup(format!(
                "no {} log path in {}",
                self.server.program(),
                self.state_file.display()
            ))
        })?;
        let pid = match self.server {
            Server::Valkey => start_valkey(&service.command, &log, &service.url).await?,
            Server::Mongo(server) => {
                start_mongo_process(server, &service.command, &log, &service.url).await?
            }
        };
        service.pid = Some(pid);
        state.save(&self.state_file)
    }

    fn signal(&self, signal: rustix::process::Signal) -> Result<()> {
        let mut state = self.load()?;
        let pid = self
            .server
            .service(&mut state)?
            .pid
            .filter(|pid| is_alive(*pid))
            .ok_or_else(|| Error::Setup(format!("{} is not running", self.server.program())))?;
        let raw = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| Error::Setup(format!("invalid pid {pid}")))?;
        rustix::process::kill_process(raw, signal)
            .map_err(|errno| Error::Setup(format!("signalling pid {pid}: {errno}")))
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
