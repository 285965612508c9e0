//! Choosing where the servers come from, and saying so.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::layout::non_empty_var;
use crate::{BACKEND_VAR, Error, MONGODB_URI_VAR, Result, VALKEY_URL_VAR};

/// Where the MongoDB-protocol and Valkey servers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `external` if both URLs are in the environment, else `docker` if an engine answers,
    /// else `local`.
    Auto,
    /// `MONGODB_URI` and `VALKEY_URL` are given; nothing is started.
    External,
    /// Containers through testcontainers (`mongo:8.0`, `valkey/valkey:8.1`).
    Docker,
    /// FerretDB and `valkey-server` as local processes on free loopback ports.
    Local,
}

/// The images the Docker backend runs; pinned, because the testcontainers defaults are old.
pub const MONGO_IMAGE: (&str, &str) = ("mongo", "8.0");
/// See [`MONGO_IMAGE`].
pub const VALKEY_IMAGE: (&str, &str) = ("valkey/valkey", "8.1");

impl Backend {
    /// The backend named by `IDENFY_SERVICES_BACKEND`, `auto` when unset.
    pub fn from_env() -> Result<Backend> {
        non_empty_var(BACKEND_VAR).map_or(Ok(Backend::Auto), |value| value.parse())
    }

    /// Turns `auto` into a concrete backend and checks that the chosen one can work.
    /// Prints the choice and the reason every time.
    pub async fn resolve(self) -> Result<Backend> {
        let external = external_urls();
        let (chosen, reason) = match self {
            Backend::External => match external {
                Some(_) => (Backend::External, "requested".to_owned()),
                None => {
                    return Err(Error::Setup(format!(
                        "backend `external` needs both {MONGODB_URI_VAR} and {VALKEY_URL_VAR} in the environment"
                    )));
                }
            },
            Backend::Docker => {
                if !cfg!(feature = "docker") {
                    return Err(Error::Setup(
                        "backend `docker` needs dev-services built with its `docker` feature (xtask enables it)".to_owned(),
                    ));
                }
                match docker_engine().await {
                    Ok(engine) => (Backend::Docker, format!("requested; engine at {engine}")),
                    Err(why) => {
                        return Err(Error::Setup(format!(
                            "backend `docker` requested, but no Docker engine answers: {why}"
                        )));
                    }
                }
            }
            Backend::Local => (Backend::Local, "requested".to_owned()),
            Backend::Auto => {
                if external.is_some() {
                    (
                        Backend::External,
                        format!("auto: {MONGODB_URI_VAR} and {VALKEY_URL_VAR} are set"),
                    )
                } else if !cfg!(feature = "docker") {
                    (
                        Backend::Local,
                        format!(
                            "auto: {MONGODB_URI_VAR}/{VALKEY_URL_VAR} not set; built without the docker feature"
                        ),
                    )
                } else {
                    match docker_engine().await {
                        Ok(engine) => (
                            Backend::Docker,
                            format!(
                                "auto: {MONGODB_URI_VAR}/{VALKEY_URL_VAR} not set; Docker engine at {engine}"
                            ),
                        ),
                        Err(why) => (
                            Backend::Local,
                            format!(
                                "auto: {MONGODB_URI_VAR}/{VALKEY_URL_VAR} not set; no Docker engine ({why})"
                            ),
                        ),
                    }
                }
            }
        };
        println!("services backend: {chosen} ({reason})");
        Ok(chosen)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::External => "external",
            Backend::Docker => "docker",
            Backend::Local => "local",
        })
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(value: &str) -> Result<Backend> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "external" => Ok(Backend::External),
            "docker" => Ok(Backend::Docker),
            "local" => Ok(Backend::Local),
            other => Err(Error::Setup(format!(
                "unknown services backend `{other}` (expected auto, external, docker or local)"
            ))),
        }
    }
}

/// Both URLs from the environment, if both are set.
pub(crate) fn external_urls() -> Option<crate::ServiceUrls> {
    Some(crate::ServiceUrls {
        mongodb_uri: non_empty_var(MONGODB_URI_VAR)?,
        valkey_url: non_empty_var(VALKEY_URL_VAR)?,
    })
}

/// Finds a Docker engine that answers, the way testcontainers would look for it
/// (`DOCKER_HOST`, else the default socket). Returns where it is, or why there is none.
pub(crate) async fn docker_engine() -> Result<String, String> {
    const TIMEOUT: Duration = Duration::from_secs(3);
    let host = non_empty_var("DOCKER_HOST");
    let socket = match host.as_deref() {
        None => PathBuf::from("/var/run/docker.sock"),
        Some(host) => match host.strip_prefix("unix://") {
            Some(path) => PathBuf::from(path),
            // TCP or SSH engines: let the docker CLI answer for them.
            None => return docker_cli_info(host, TIMEOUT).await,
        },
    };
    if !socket.exists() {
        return Err(format!(
            "{} absent{}",
            socket.display(),
            if host.is_none() {
                ", DOCKER_HOST unset"
            } else {
                ""
            }
        ));
    }
    let ping = async {
        let mut stream = tokio::net::UnixStream::connect(&socket).await?;
        stream
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    match tokio::time::timeout(TIMEOUT, ping).await {
        Ok(Ok(response)) if response.starts_with("HTTP/1.") && response.contains(" 200 ") => {
            Ok(format!("unix://{}", socket.display()))
        }
        Ok(Ok(response)) => Err(format!(
            "{} answered `{}`",
            socket.display(),
            response.lines().next().unwrap_or_default()
        )),
        Ok(Err(error)) => Err(format!("{}: {error}", socket.display())),
        Err(_) => Err(format!(
            "{} did not answer within {TIMEOUT:?}",
            socket.display()
        )),
    }
}

async fn docker_cli_info(host: &str, timeout: Duration) -> Result<String, String> {
    let output = tokio::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, output).await {
        Ok(Ok(output)) if output.status.success() => Ok(host.to_owned()),
        Ok(Ok(output)) => Err(format!(
            "`docker info` against {host}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Ok(Err(error)) => Err(format!("`docker info` against {host}: {error}")),
        Err(_) => Err(format!("`docker info` against {host} timed out")),
    }
}
