//! The xtask-facing operations: `up`, `down`, `status`.

use std::time::Duration;

use crate::backend::external_urls;
use crate::probe::{mongo_ping, valkey_ping};
use crate::process::is_alive;
use crate::{Backend, Error, Layout, Result, ServiceState, State, install, local};

/// What [`up`] did.
#[derive(Debug)]
pub struct Up {
    /// Where the services are.
    pub state: State,
    /// `true` if this call started them (so the caller should stop them again);
    /// `false` if they were already running or are external.
    pub started: bool,
}

/// Starts the services on `backend` (resolving `auto`, and printing the choice), waits until
/// both answer, and records them in the state file. Reuses services that already run.
pub async fn up(backend: Backend) -> Result<Up> {
    up_in(&Layout::from_env(), backend).await
}

/// [`up`] with an explicit layout (see [`Layout::isolated`]).
pub async fn up_in(layout: &Layout, backend: Backend) -> Result<Up> {
    let state_file = layout.state_file.clone();
    if let Some(state) = State::load(&state_file)? {
        if healthy(&state).await {
            println!(
                "services already running ({} backend, state file {})",
                state.backend,
                state_file.display()
            );
            print_state(&state);
            return Ok(Up {
                state,
                started: false,
            });
        }
        println!("state file {} is stale; cleaning up", state_file.display());
        down_in(layout).await?;
    }
    let backend = backend.resolve().await?;
    let state = match backend {
        Backend::External | Backend::Auto => {
            let urls = external_urls().ok_or_else(|| {
                Error::Setup("external backend chosen without both URLs".to_owned())
            })?;
            let state = State {
                backend: Backend::External,
                started_at: 0,
                mongodb: external_service(urls.mongodb_uri),
                valkey: external_service(urls.valkey_url),
                ferretdb: None,
            };
            print_state(&state);
            // Nothing was started, so nothing is recorded and nothing is stopped later.
            return Ok(Up {
                state,
                started: false,
            });
        }
        Backend::Docker => docker_up().await?,
        Backend::Local => {
            let tools = install().await?;
            local::up(layout, &tools).await?
        }
    };
    state.save(&state_file)?;
    println!("services up; state file {}", state_file.display());
    print_state(&state);
    Ok(Up {
        state,
        started: true,
    })
}

#[cfg(feature = "docker")]
async fn docker_up() -> Result<State> {
    crate::docker::up().await
}

#[cfg(not(feature = "docker"))]
async fn docker_up() -> Result<State> {
    Err(Error::Setup(
        "dev-services was built without its `docker` feature".to_owned(),
    ))
}

fn external_service(url: String) -> ServiceState {
    ServiceState {
        url,
        port: 0,
        pid: None,
        container_id: None,
        version: "external".to_owned(),
        command: Vec::new(),
        log: None,
    }
}

/// Stops whatever the state file records, waits until the processes (or containers) are
/// gone, and removes the state file. Returns whether there was anything to stop.
pub async fn down() -> Result<bool> {
    down_in(&Layout::from_env()).await
}

/// [`down`] with an explicit layout (see [`Layout::isolated`]).
pub async fn down_in(layout: &Layout) -> Result<bool> {
    let state_file = layout.state_file.clone();
    let state = State::load(&state_file)?;
    if let Some(state) = &state
        && state.backend == Backend::Docker
    {
        docker_down(state).await?;
    }
    // Also sweeps pid files, which catch a local start-up interrupted before it was recorded.
    let stopped = local::down(layout, state.as_ref()).await?;
    State::remove(&state_file)?;
    if state.is_none() && !stopped {
        println!("no services running (no {})", state_file.display());
        return Ok(false);
    }
    println!("services down");
    Ok(true)
}

/// Removes the containers with the docker CLI (the containers outlive the xtask process
/// that started them, so there is no testcontainers handle left to drop).
async fn docker_down(state: &State) -> Result<()> {
    for service in [&state.mongodb, &state.valkey] {
        if let Some(id) = &service.container_id {
            let output = tokio::process::Command::new("docker")
                .args(["rm", "--force", "--volumes", id])
                .output()
                .await
                .map_err(|source| Error::Io {
                    context: format!("running `docker rm --force {id}`"),
                    source,
                })?;
            if !output.status.success() {
                return Err(Error::Command {
                    command: format!("docker rm --force --volumes {id}"),
                    detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                });
            }
            println!("removed container {id}");
        }
    }
    Ok(())
}

/// Prints what runs and whether it answers; returns the state, if any.
pub async fn status() -> Result<Option<State>> {
    let state_file = Layout::from_env().state_file;
    let Some(state) = State::load(&state_file)? else {
        println!("no services state at {}", state_file.display());
        if let Some(urls) = external_urls() {
            println!("environment names external services:");
            report(
                "mongodb",
                &urls.mongodb_uri,
                None,
                mongo_ping(&urls.mongodb_uri, PROBE).await,
            );
            report(
                "valkey",
                &urls.valkey_url,
                None,
                valkey_ping(&urls.valkey_url, PROBE).await,
            );
        }
        return Ok(None);
    };
    println!(
        "{} backend, started at {} (unix), state file {}",
        state.backend,
        state.started_at,
        state_file.display()
    );
    let mongo = mongo_ping(&state.mongodb.url, PROBE).await;
    report("mongodb", &state.mongodb.url, Some(&state.mongodb), mongo);
    if let Some(ferretdb) = &state.ferretdb {
        let answer = mongo_ping(&ferretdb.url, PROBE).await;
        report("ferretdb", &ferretdb.url, Some(ferretdb), answer);
    }
    let valkey = valkey_ping(&state.valkey.url, PROBE).await;
    report("valkey", &state.valkey.url, Some(&state.valkey), valkey);
    Ok(Some(state))
}

const PROBE: Duration = Duration::from_secs(2);

fn report(name: &str, url: &str, service: Option<&ServiceState>, answer: Result<(), String>) {
    let answer = match answer {
        Ok(()) => "answers".to_owned(),
        Err(error) => format!("does NOT answer: {error}"),
    };
    let process = match service.and_then(|service| service.pid) {
        Some(pid) if is_alive(pid) => format!(", pid {pid} alive"),
        Some(pid) => format!(", pid {pid} GONE"),
        None => String::new(),
    };
    println!("  {name:<8} {url} {answer}{process}");
    if let Some(service) = service {
        println!("           version: {}", service.version);
        if let Some(log) = &service.log {
            println!("           log: {}", log.display());
        }
    }
}

fn print_state(state: &State) {
    let ferretdb = state.ferretdb.iter().map(|service| ("ferretdb", service));
    let services = [("mongodb", &state.mongodb), ("valkey", &state.valkey)];
    for (name, service) in services.into_iter().chain(ferretdb) {
        let id = match (service.pid, &service.container_id) {
            (Some(pid), _) => format!(" pid {pid}"),
            (None, Some(id)) => format!(" container {id}"),
            (None, None) => String::new(),
        };
        println!("  {name:<8} {}{id} ({})", service.url, service.version);
        if !service.command.is_empty() {
            println!("           command: {}", shell_words(&service.command));
        }
    }
}

/// A command line as one could paste it into a shell.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|word| {
            if !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
            {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether everything a state file records is still alive and answering.
pub(crate) async fn healthy(state: &State) -> bool {
    let processes_alive = [&state.mongodb, &state.valkey]
        .into_iter()
        .chain(&state.ferretdb)
        .all(|service| service.pid.is_none_or(is_alive));
    let ferretdb_answers = match &state.ferretdb {
        Some(ferretdb) => mongo_ping(&ferretdb.url, PROBE).await.is_ok(),
        None => true,
    };
    processes_alive
        && valkey_ping(&state.valkey.url, PROBE).await.is_ok()
        && mongo_ping(&state.mongodb.url, PROBE).await.is_ok()
        && ferretdb_answers
}
