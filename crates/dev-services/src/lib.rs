//! Real MongoDB-protocol and Valkey servers for development and integration tests.
//!
//! Two audiences use this crate:
//! - `xtask` provisions and drives the servers: [`install`], [`up`], [`down`], [`status`].
//! - Integration tests (as a dev-dependency) find them: [`urls_for_test`], [`unique_name`],
//!   and [`ValkeyControl`] / [`MongoControl`] to stop and restart the local servers
//!   half-way through a test or a chaos run.
//!
//! Where the servers come from is a [`Backend`]: URLs given in the environment, containers
//! through testcontainers (feature `docker`), or local processes on free loopback ports:
//! `valkey-server`, mongo-java-server (atomic writes, the default MongoDB-protocol server)
//! and FerretDB on SQLite (a second, independent implementation; see [`MongoServer`]). What was started is recorded in a state file,
//! `target/services/state.json`, which is how tests and `down` find the processes again.

#![warn(missing_docs)]

mod backend;
#[cfg(feature = "docker")]
mod docker;
mod error;
mod install;
mod layout;
mod local;
mod probe;
mod process;
mod services;
mod state;
mod testing;

pub use backend::{Backend, MONGO_IMAGE, VALKEY_IMAGE};
pub use error::{Error, Result};
pub use install::{FERRETDB_VERSION, MONGO_JAVA_SERVER_VERSION, Tools, install};
pub use layout::Layout;
pub use local::JAVA_SERVER_STORAGE_VAR;
pub use process::{free_port, log_tail};
pub use services::{Up, down, down_in, status, up, up_in};
pub use state::{MongoServer, ServiceState, State};
pub use testing::{MongoControl, ValkeyControl, program_for_test, unique_name, urls_for_test};

/// Environment variable naming the MongoDB connection string tests use.
pub const MONGODB_URI_VAR: &str = "MONGODB_URI";
/// Environment variable naming the Valkey URL tests use.
pub const VALKEY_URL_VAR: &str = "VALKEY_URL";
/// Set to `1` to make tests fail instead of skipping when no services are reachable.
pub const REQUIRE_SERVICES_VAR: &str = "IDENFY_REQUIRE_SERVICES";
/// Environment variable naming the MongoDB-protocol server tests take from the state file
/// (`mongo-java-server`, the default, or `ferretdb`) when `MONGODB_URI` is not set.
pub const MONGO_SERVER_VAR: &str = "IDENFY_MONGO_SERVER";
/// Set by `cargo xtask test` for each leg of the server matrix: the write mode (`atomic` or
/// `serialised`) the store-mongo suite must find in force on the server it runs against.
pub const EXPECT_WRITE_MODE_VAR: &str = "IDENFY_EXPECT_WRITE_MODE";
/// Environment variable choosing the backend: `auto` (default), `external`, `docker`, `local`.
pub const BACKEND_VAR: &str = "IDENFY_SERVICES_BACKEND";
/// Environment variable overriding the state file path (xtask sets it for the tests it runs).
pub const STATE_FILE_VAR: &str = "IDENFY_SERVICES_STATE";

/// Where a test finds its servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceUrls {
    /// A MongoDB connection string, e.g. `mongodb://127.0.0.1:40123/`.
    pub mongodb_uri: String,
    /// A Valkey (Redis protocol) URL, e.g. `redis://127.0.0.1:40124`.
    pub valkey_url: String,
}
