//! The state file: what was started, where it listens, and how to find it again.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::{Backend, Error, Result, ServiceUrls};

/// Contents of `target/services/state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// The concrete backend (`local` or `docker`; `external` is never written).
    pub backend: Backend,
    /// Seconds since the Unix epoch when `up` finished.
    pub started_at: u64,
    /// The default MongoDB-protocol server: mongo-java-server locally (atomic writes, the
    /// path production takes on MongoDB), `mongo:8.0` in Docker.
    pub mongodb: ServiceState,
    /// The Valkey server.
    pub valkey: ServiceState,
    /// The second MongoDB-protocol server of the local backend: FerretDB on SQLite, whose
    /// writes `store-mongo` serialises. `None` on the other backends.
    #[serde(default)]
    pub ferretdb: Option<ServiceState>,
}

/// The MongoDB-protocol servers the local backend runs side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MongoServer {
    /// mongo-java-server: atomic conditional writes; the default everywhere.
    #[serde(rename = "mongo-java-server")]
    JavaServer,
    /// FerretDB 1.x on SQLite: non-atomic conditional writes (serialised by `store-mongo`).
    #[serde(rename = "ferretdb")]
    FerretDb,
}

impl MongoServer {
    /// Both, the default first.
    pub const ALL: [MongoServer; 2] = [MongoServer::JavaServer, MongoServer::FerretDb];

    /// The program name (also the name of its directory under `target/services`).
    pub fn program(self) -> &'static str {
        match self {
            MongoServer::JavaServer => crate::local::JAVA_SERVER_PROGRAM,
            MongoServer::FerretDb => crate::local::FERRETDB_PROGRAM,
        }
    }
}

impl fmt::Display for MongoServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program())
    }
}

impl FromStr for MongoServer {
    type Err = Error;

    fn from_str(value: &str) -> Result<MongoServer> {
        match value.trim().to_ascii_lowercase().as_str() {
            "mongo-java-server" | "java" | "mongo-java" => Ok(MongoServer::JavaServer),
            "ferretdb" | "ferret" => Ok(MongoServer::FerretDb),
            other => Err(Error::Setup(format!(
                "unknown MongoDB-protocol server `{other}` (expected mongo-java-server or ferretdb)"
            ))),
        }
    }
}

/// One running server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceState {
    /// The URL clients connect to.
    pub url: String,
    /// The loopback port it listens on.
    pub port: u16,
    /// Process id (local backend); `None` while stopped through [`crate::ValkeyControl`].
    pub pid: Option<u32>,
    /// Container id (docker backend).
    pub container_id: Option<String>,
    /// What `--version` printed, or the image tag.
    pub version: String,
    /// The exact command line (local backend), or the image (docker backend).
    pub command: Vec<String>,
    /// Where the process writes its output (local backend).
    pub log: Option<PathBuf>,
}

impl State {
    /// Reads the state file; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<State>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(error).context(|| format!("reading {}", path.display()));
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| Error::StateFile {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Writes the state file atomically (write to a sibling, then rename), so a test reading
    /// it concurrently never sees half a file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|source| Error::StateFile {
            path: path.to_path_buf(),
            source,
        })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        }
        let partial = path.with_extension(format!("json.{}.partial", std::process::id()));
        std::fs::write(&partial, text + "\n")
            .context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path).context(|| format!("renaming to {}", path.display()))
    }

    /// Removes the state file if it exists.
    pub fn remove(path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(error).context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// The recorded `server`: on the local backend, [`MongoServer::JavaServer`] is
    /// [`State::mongodb`]; elsewhere only the default server exists, as `JavaServer`'s slot.
    pub fn mongo(&self, server: MongoServer) -> Option<&ServiceState> {
        match server {
            MongoServer::JavaServer => Some(&self.mongodb),
            MongoServer::FerretDb => self.ferretdb.as_ref(),
        }
    }

    /// Mutable [`State::mongo`].
    pub fn mongo_mut(&mut self, server: MongoServer) -> Option<&mut ServiceState> {
        match server {
            MongoServer::JavaServer => Some(&mut self.mongodb),
            MongoServer::FerretDb => self.ferretdb.as_mut(),
        }
    }

    /// The URLs tests connect to.
    pub fn urls(&self) -> ServiceUrls {
        ServiceUrls {
            mongodb_uri: self.mongodb.url.clone(),
            valkey_url: self.valkey.url.clone(),
        }
    }
}
