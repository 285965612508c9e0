//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

use crate::Backend;

/// Everything that can go wrong while provisioning, starting or finding services.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed; `context` says which one.
    #[error("{context}")]
    Io {
        /// What was being done (and to which path).
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An external command (pip, go, apt-get, docker, ...) failed or printed something unexpected.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and output, or what was unexpected.
        detail: String,
    },
    /// A provisioning or configuration problem explained in words.
    #[error("{0}")]
    Setup(String),
    /// A server was started but did not answer in time.
    #[error("{service} did not answer within {}s: {detail}", waited.as_secs())]
    NotReady {
        /// Which server.
        service: &'static str,
        /// How long it was given.
        waited: Duration,
        /// The last probe's failure (for a local process, with the tail of its log).
        detail: String,
    },
    /// The operation needs local processes, and the services come from elsewhere.
    #[error("{what} is not supported on the {backend} backend (only on `local`)")]
    Unsupported {
        /// The backend in use.
        backend: Backend,
        /// The operation that needs local processes.
        what: &'static str,
    },
    /// No state file: nothing was started by `cargo xtask services up`.
    #[error("no services state at {}; run `cargo xtask services up` first", .0.display())]
    NoState(PathBuf),
    /// The state file exists but cannot be read or written as JSON.
    #[error("state file {}", path.display())]
    StateFile {
        /// The state file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The Docker backend failed (engine unreachable, pull failed, ...).
    #[cfg(feature = "docker")]
    #[error("docker backend")]
    Docker(#[from] testcontainers::TestcontainersError),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a human-readable context to I/O errors.
pub(crate) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}
