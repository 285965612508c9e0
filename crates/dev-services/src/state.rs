//! The state file: what was started, where it listens, and how to find it again.

use std::path::{Path, PathBuf};

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
    /// The MongoDB-protocol server (FerretDB locally, `mongo:8.0` in Docker).
    pub mongodb: ServiceState,
    /// The Valkey server.
    pub valkey: ServiceState,
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

    /// The URLs tests connect to.
    pub fn urls(&self) -> ServiceUrls {
        ServiceUrls {
            mongodb_uri: self.mongodb.url.clone(),
            valkey_url: self.valkey.url.clone(),
        }
    }
}
