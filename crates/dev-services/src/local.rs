//! The `local` backend: `valkey-server`, mongo-java-server and FerretDB (SQLite) as
//! processes on loopback ports.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::IoContext;
use crate::probe::{mongo_ping, valkey_ping, wait_until};
use crate::process::{capture, free_port, is_alive, log_tail, spawn_detached, terminate};
use crate::{Backend, Layout, MongoServer, Result, ServiceState, State, Tools};

pub(crate) const VALKEY_PROGRAM: &str = "valkey-server";
pub(crate) const FERRETDB_PROGRAM: &str = "ferretdb";
pub(crate) const JAVA_SERVER_PROGRAM: &str = "mongo-java-server";
const VALKEY_READY_WITHIN: Duration = Duration::from_secs(20);
const MONGO_READY_WITHIN: Duration = Duration::from_secs(60);
/// Environment variable choosing mongo-java-server's storage: `h2` (default: a file under
/// `target/services`, kept across a stop and restart, like a database) or `memory`.
pub const JAVA_SERVER_STORAGE_VAR: &str = "IDENFY_MONGO_JAVA_STORAGE";
/// How long a server gets to exit after SIGTERM before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// Starts the three servers and returns their state (not yet saved). If one fails, those
/// already started are stopped again.
pub(crate) async fn up(layout: &Layout, tools: &Tools) -> Result<State> {
    let valkey = start_valkey_fresh(layout, tools).await?;
    let mut started: Vec<(u32, &'static str)> = valkey
        .pid
        .map(|pid| (pid, VALKEY_PROGRAM))
        .into_iter()
        .collect();
    let servers = async {
        let mongodb = start_java_server(layout, tools).await?;
        started.extend(mongodb.pid.map(|pid| (pid, JAVA_SERVER_PROGRAM)));
        let ferretdb = start_ferretdb(layout, tools).await?;
        Ok::<_, crate::Error>((mongodb, ferretdb))
    };
    let (mongodb, ferretdb) = match servers.await {
        Ok(servers) => servers,
        Err(error) => {
            for (pid, program) in started {
                let _ = terminate(pid, program, STOP_GRACE).await;
            }
            return Err(error);
        }
    };
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    Ok(State {
        backend: Backend::Local,
        started_at,
        mongodb,
        valkey,
        ferretdb: Some(ferretdb),
    })
}

async fn start_valkey_fresh(layout: &Layout, tools: &Tools) -> Result<ServiceState> {
    let dir = layout.services_dir.join("valkey");
    std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    let port = free_port()?;
    let command: Vec<String> = vec![
        tools.valkey_server.display().to_string(),
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "no".into(),
        "--daemonize".into(),
        "no".into(),
        "--dir".into(),
        dir.display().to_string(),
    ];
    let log = dir.join("valkey.log");
    let url = format!("redis://127.0.0.1:{port}");
    let pid = start_valkey(&command, &log, &url).await?;
    let version = capture(&tools.valkey_server, &["--version"])?;
    Ok(ServiceState {
        url,
        port,
        pid: Some(pid),
        container_id: None,
        version,
        command,
        log: Some(log),
    })
}

/// Spawns Valkey with `command` and waits until it answers `PING` on `url`.
pub(crate) async fn start_valkey(command: &[String], log: &Path, url: &str) -> Result<u32> {
    let pid = spawn_detached(command, log)?;
    write_pid_file(log, VALKEY_PROGRAM, pid)?;
    let ready = wait_until(
        "valkey-server",
        VALKEY_READY_WITHIN,
        || is_alive(pid),
        || valkey_ping(url, Duration::from_secs(1)),
    )
    .await;
    if let Err(error) = ready {
        let _ = terminate(pid, VALKEY_PROGRAM, STOP_GRACE).await;
        return Err(with_log(error, log));
    }
    Ok(pid)
}

async fn start_ferretdb(layout: &Layout, tools: &Tools) -> Result<ServiceState> {
    let dir = layout.services_dir.join("ferretdb");
    let data = dir.join("data");
    let state_dir = dir.join("state");
    // A fresh database on every `up`: tests create unique names, so nothing of value is lost.
    if data.exists() {
        std::fs::remove_dir_all(&data).context(|| format!("removing {}", data.display()))?;
    }
    for path in [&data, &state_dir] {
        std::fs::create_dir_all(path).context(|| format!("creating {}", path.display()))?;
    }
    let port = free_port()?;
    let command: Vec<String> = vec![
        tools.ferretdb.display().to_string(),
        "--handler=sqlite".into(),
        // FerretDB wants a directory URL with a trailing slash. It runs SQLite in WAL mode;
        // `synchronous(normal)` skips the fsync per commit, which loses nothing when a
        // process dies (only on power loss, which a throwaway test server does not care
        // about) and lets it commit about half again as many writes per second.
        format!(
            "--sqlite-url=file:{}/?_pragma=synchronous(normal)",
            data.display()
        ),
        format!("--state-dir={}", state_dir.display()),
        format!("--listen-addr=127.0.0.1:{port}"),
        // `-` disables the debug HTTP listener, whose default 127.0.0.1:8088 would collide
        // between instances.
        "--debug-addr=-".into(),
        "--telemetry=disable".into(),
        "--log-level=warn".into(),
    ];
    let log = dir.join("ferretdb.log");
    let url = format!("mongodb://127.0.0.1:{port}/");
    let pid = start_mongo_process(MongoServer::FerretDb, &command, &log, &url).await?;
    let version = crate::install::ferretdb_version(&tools.ferretdb)?;
    Ok(ServiceState {
        url,
        port,
        pid: Some(pid),
        container_id: None,
        version,
        command,
        log: Some(log),
    })
}

async fn start_java_server(layout: &Layout, tools: &Tools) -> Result<ServiceState> {
    let dir = layout.services_dir.join(JAVA_SERVER_PROGRAM);
    let data = dir.join("data");
    if data.exists() {
        std::fs::remove_dir_all(&data).context(|| format!("removing {}", data.display()))?;
    }
    std::fs::create_dir_all(&data).context(|| format!("creating {}", data.display()))?;
    let storage = java_server_storage()?;
    let port = free_port()?;
    let mut command: Vec<String> = vec![
        tools.mongo_java_server.display().to_string(),
        "--port".into(),
        port.to_string(),
        "--backend".into(),
        storage.to_owned(),
    ];
    if storage == "h2" {
        command.extend(["--data".to_owned(), data.display().to_string()]);
    }
    let log = dir.join("mongo-java-server.log");
    let url = format!("mongodb://127.0.0.1:{port}/");
    let pid = start_mongo_process(MongoServer::JavaServer, &command, &log, &url).await?;
    let version = capture(&tools.mongo_java_server, &["--version"])?;
    println!("mongo-java-server storage: {storage} (set {JAVA_SERVER_STORAGE_VAR}=h2|memory)");
    Ok(ServiceState {
        url,
        port,
        pid: Some(pid),
        container_id: None,
        version: format!("{version} ({storage} backend)"),
        command,
        log: Some(log),
    })
}

/// `h2` unless [`JAVA_SERVER_STORAGE_VAR`] says `memory`.
fn java_server_storage() -> Result<&'static str> {
    match crate::layout::non_empty_var(JAVA_SERVER_STORAGE_VAR)
        .as_deref()
        .map(str::trim)
    {
        None | Some("h2") => Ok("h2"),
        Some("memory") => Ok("memory"),
        Some(other) => Err(crate::Error::Setup(format!(
            "{JAVA_SERVER_STORAGE_VAR}={other}: expected `h2` or `memory`"
        ))),
    }
}

/// Spawns a MongoDB-protocol server with `command` (keeping whatever data its directory
/// holds) and waits until it answers `ping` on `url`.
pub(crate) async fn start_mongo_process(
    server: MongoServer,
    command: &[String],
    log: &Path,
    url: &str,
) -> Result<u32> {
    let program = server.program();
    let pid = spawn_detached(command, log)?;
    write_pid_file(log, program, pid)?;
    let ready = wait_until(
        program,
        MONGO_READY_WITHIN,
        || is_alive(pid),
        || mongo_ping(url, Duration::from_secs(2)),
    )
    .await;
    if let Err(error) = ready {
        let _ = terminate(pid, program, STOP_GRACE).await;
        return Err(with_log(error, log));
    }
    Ok(pid)
}

/// The pid file next to a server's log. Written right after spawning, before readiness, so
/// that a start-up interrupted half-way (Ctrl-C) leaves something [`down`] can find.
fn pid_file(log: &Path, program: &str) -> PathBuf {
    log.with_file_name(format!("{program}.pid"))
}

fn write_pid_file(log: &Path, program: &str, pid: u32) -> Result<()> {
    let path = pid_file(log, program);
    std::fs::write(&path, format!("{pid}\n")).context(|| format!("writing {}", path.display()))
}

/// Stops the servers of a local state, plus anything the pid files under
/// `target/services` name, and waits until they are gone.
pub(crate) async fn down(layout: &Layout, state: Option<&State>) -> Result<bool> {
    let mut targets: Vec<(u32, &'static str)> = Vec::new();
    if let Some(state) = state {
        for server in MongoServer::ALL {
            if let Some(service) = state.mongo(server) {
                targets.extend(service.pid.map(|pid| (pid, server.program())));
            }
        }
        targets.extend(state.valkey.pid.map(|pid| (pid, VALKEY_PROGRAM)));
    }
    let programs = [FERRETDB_PROGRAM, JAVA_SERVER_PROGRAM, VALKEY_PROGRAM];
    let pid_files = programs.map(|program| {
        let log = match program {
            VALKEY_PROGRAM => "valkey/valkey.log".to_owned(),
            other => format!("{other}/{other}.log"),
        };
        pid_file(&layout.services_dir.join(log), program)
    });
    for (path, program) in pid_files.iter().zip(programs) {
        let pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        if let Some(pid) = pid
            && !targets.contains(&(pid, program))
        {
            targets.push((pid, program));
        }
    }
    let mut stopped_any = false;
    let mut first_error = None;
    for (pid, program) in targets {
        if !is_alive(pid) {
            continue;
        }
        match terminate(pid, program, STOP_GRACE).await {
            Ok(()) => {
                stopped_any = true;
                println!("stopped {program} (pid {pid})");
            }
            Err(error) => {
                eprintln!("could not stop {program} (pid {pid}): {error}");
                first_error.get_or_insert(error);
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    for path in &pid_files {
        let _ = std::fs::remove_file(path);
    }
    Ok(stopped_any)
}

fn with_log(error: crate::Error, log: &Path) -> crate::Error {
    match error {
        crate::Error::NotReady {
            service,
            waited,
            detail,
        } => crate::Error::NotReady {
            service,
            waited,
            detail: format!("{detail}\n{}", log_tail(log, 20)),
        },
        other => other,
    }
}
