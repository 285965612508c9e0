//! The idenfy-core store ports on the official MongoDB driver, on id-server's collections.
//!
//! [`MongoStores::connect`] builds one driver `Client` (timeouts set explicitly, see
//! [`MongoOptions`]) and hands out three cheap, cloneable stores for ONE environment:
//!
//! | port | store | live collection | sandbox collection |
//! |---|---|---|---|
//! | `RowStore` | [`MongoRowStore`] | `idenfysessions` | `sandboxidenfysessions` |
//! | `ParentStore` | [`MongoParentStore`] | `sessions`, `amlcheckssessions` | `sandboxsessions`, `sandboxamlcheckssessions` |
//! | `IntentStore` | [`MongoIntentStore`] | `idenfycreationintents` | `sandboxidenfycreationintents` |
//!
//! How it keeps id-server's documents intact:
//! - every conditional write is ONE server-side `update_one` (matched count) or
//!   `find_one_and_update` whose filter is exactly the port's condition, with field-level
//!   `$set`/`$unset`/`$inc`/`$push` only, never a replacement, so unmodelled fields survive;
//! - ids are ObjectIds and times are BSON dates, as id-server writes them; string ids and
//!   missing new fields are tolerated on read; a document that cannot be read is
//!   `StoreError::Corrupt`, never a panic;
//! - no transactions (FerretDB has none, and none are needed).
//!
//! Write modes ([`WriteMode`], chosen by [`MongoOptions::write_mode`]): **atomic**, the
//! default, sends each conditional write as that one operation, which MongoDB applies
//! atomically per document. FerretDB 1.x does not (it reads, modifies in its own process and
//! writes the whole document back, so two compare-and-sets can both match); with `auto` it is
//! detected via `buildInfo` and gets **serialised** writes: the same single operation inside
//! a per-document mutex document in [`WRITE_LOCKS_COLLECTION`]. All of that lives in the
//! private `serialised` module; nothing of it runs on MongoDB.
//!
//! Errors: duplicate key (E11000) → `Conflict`; timeouts, network and server-selection
//! failures → `Unavailable`; anything else → `Backend`. The driver error is kept as `source`.

#![warn(missing_docs)]

mod codec;
mod error;
mod indexes;
mod intents;
mod parents;
mod rows;
mod serialised;
mod writes;

use std::time::Duration;

use idenfy_core::{Environment, StoreError};
use mongodb::{Client, Database, bson::doc, options::ClientOptions};

pub use error::Error;
pub use indexes::{IndexReport, RejectedIndex};
pub use intents::MongoIntentStore;
pub use parents::MongoParentStore;
pub use rows::MongoRowStore;
pub use serialised::WRITE_LOCKS_COLLECTION;
pub use writes::{WriteMode, WriteModeSetting};

/// The MongoDB driver this crate is built against, so that a consumer building its own
/// [`Client`] for [`MongoStores::from_client`] uses the very same version.
pub use mongodb;

use writes::Writes;

/// Default for [`MongoOptions::server_selection_timeout`]: fail fast when no server answers
/// (the driver's own default is 30 s).
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Default for [`MongoOptions::connect_timeout`] (the driver's own default is 10 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default for [`MongoOptions::operation_timeout`]: well inside iDenfy's 10 s webhook budget.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Connection settings. `None` means: the URI's value if it sets one
/// (`serverSelectionTimeoutMS`, `connectTimeoutMS`, `appName`), else the default constant.
#[derive(Clone, Debug, Default)]
pub struct MongoOptions {
    /// How long an operation waits for a usable server before failing `Unavailable`.
    pub server_selection_timeout: Option<Duration>,
    /// TCP connect (and handshake) timeout of one connection.
    pub connect_timeout: Option<Duration>,
    /// Upper bound of every store operation, end to end (server selection, network, server
    /// time). Also sent as `maxTimeMS` on reads and `findAndModify`. Default 5 s.
    pub operation_timeout: Option<Duration>,
    /// Connection-pool size per server (driver default 10).
    pub max_pool_size: Option<u32>,
    /// `appName` shown in the server's logs (default `idenfy-sessions`).
    pub app_name: Option<String>,
    /// How conditional writes are made. `Auto` (the default): serialised per document when
    /// the server is FerretDB, whose updates are not atomic under concurrency (detected
    /// once, on the first write), atomic single operations everywhere else.
    pub write_mode: WriteModeSetting,
}

/// Collection names of one environment (id-server's names, plus our intents collection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Collections {
    /// The iDenfy rows (`idenfysessions`).
    pub rows: &'static str,
    /// The gov-id parents (`sessions`).
    pub gov_id_parents: &'static str,
    /// The clean-hands parents (`amlcheckssessions`).
    pub clean_hands_parents: &'static str,
    /// The creation intents (`idenfycreationintents`).
    pub intents: &'static str,
}

impl Collections {
    /// The collections of `environment` (sandbox names carry a `sandbox` prefix).
    pub fn for_environment(environment: Environment) -> Collections {
        match environment {
            Environment::Live => Collections {
                rows: "idenfysessions",
                gov_id_parents: "sessions",
                clean_hands_parents: "amlcheckssessions",
                intents: "idenfycreationintents",
            },
            Environment::Sandbox => Collections {
                rows: "sandboxidenfysessions",
                gov_id_parents: "sandboxsessions",
                clean_hands_parents: "sandboxamlcheckssessions",
                intents: "sandboxidenfycreationintents",
            },
        }
    }
}

/// Histogram of the time of every driver call (reads, writes, write mutexes), in seconds:
/// how much of a request's time is spent waiting for the server.
pub const STORE_CALL_SECONDS: &str = "idenfy_store_call_seconds";

/// Counter of driver calls (reads, writes, write mutexes): store calls per request is the
/// cost of a request to the shared store, the figure to keep low under herds.
pub const STORE_CALLS: &str = "idenfy_store_calls_total";

/// Runs driver futures under the per-operation timeout.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exec {
    pub(crate) timeout: Duration,
}

impl Exec {
    /// One driver call, counted ([`STORE_CALLS`]), timed ([`STORE_CALL_SECONDS`]) and bounded
    /// by the timeout.
    pub(crate) async fn run<T>(
        self,
        operation: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T, Error> {
        metrics::counter!(STORE_CALLS).increment(1);
        let started = tokio::time::Instant::now();
        let result = tokio::time::timeout(self.timeout, operation).await;
        metrics::histogram!(STORE_CALL_SECONDS).record(started.elapsed().as_secs_f64());
        match result {
            Ok(result) => result.map_err(Error::from),
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }
}

/// The three stores of one environment over one shared driver `Client`.
#[derive(Clone, Debug)]
pub struct MongoStores {
    client: Client,
    database: Database,
    environment: Environment,
    writes: Writes,
}

impl MongoStores {
    /// Parses `uri`, applies [`MongoOptions`] and builds the driver client.
    ///
    /// Does not wait for the server: the driver connects lazily and in the background, so
    /// this returns promptly even while MongoDB is down (use [`MongoStores::ping`] for
    /// readiness). Fails only on an invalid URI or options.
    pub async fn connect(
        uri: &str,
        database: &str,
        environment: Environment,
        options: MongoOptions,
    ) -> Result<MongoStores, Error> {
        let mut client_options = ClientOptions::parse(uri).await?;
        client_options.server_selection_timeout = options
            .server_selection_timeout
            .or(client_options.server_selection_timeout)
            .or(Some(DEFAULT_SERVER_SELECTION_TIMEOUT));
        client_options.connect_timeout = options
            .connect_timeout
            .or(client_options.connect_timeout)
            .or(Some(DEFAULT_CONNECT_TIMEOUT));
        if options.max_pool_size.is_some() {
            client_options.max_pool_size = options.max_pool_size;
        }
        // An operation cut off by our timeout costs its connection; after a burst of them
        // the driver's default of two connections established at a time refills the pool
        // so slowly that every operation times out waiting for one, long after the server
        // is answering again. Let the whole pool reconnect at once instead.
        if client_options.max_connecting.is_none() {
            client_options.max_connecting = Some(client_options.max_pool_size.unwrap_or(10).max(2));
        }
        client_options.app_name = options
            .app_name
            .clone()
            .or(client_options.app_name)
            .or_else(|| Some("idenfy-sessions".to_owned()));
        let client = Client::with_options(client_options)?;
        Ok(MongoStores::from_client(
            client,
            database,
            environment,
            &options,
        ))
    }

    /// Wraps an existing client (share one `Client` between components). Of `options`, only
    /// `operation_timeout` and `write_mode` apply; the client's own settings stay.
    pub fn from_client(
        client: Client,
        database: &str,
        environment: Environment,
        options: &MongoOptions,
    ) -> MongoStores {
        let database = client.database(database);
        let exec = Exec {
            timeout: options
                .operation_timeout
                .unwrap_or(DEFAULT_OPERATION_TIMEOUT),
        };
        let writes = Writes::new(&database, exec, options.write_mode);
        MongoStores {
            client,
            database,
            environment,
            writes,
        }
    }

    /// The same database and client, for the other environment (live ↔ sandbox).
    pub fn for_environment(&self, environment: Environment) -> MongoStores {
        MongoStores {
            environment,
            ..self.clone()
        }
    }

    /// The environment whose collections the stores use.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The collection names of this environment.
    pub fn collections(&self) -> Collections {
        Collections::for_environment(self.environment)
    }

    /// The driver client, shared by every store handed out.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The database holding the collections.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The row store of this environment (a cheap handle on the shared client).
    pub fn rows(&self) -> MongoRowStore {
        MongoRowStore::new(&self.database, self.collections(), self.writes.clone())
    }

    /// The parent store of this environment (a cheap handle on the shared client).
    pub fn parents(&self) -> MongoParentStore {
        MongoParentStore::new(&self.database, self.collections(), self.writes.clone())
    }

    /// The intent store of this environment (a cheap handle on the shared client).
    pub fn intents(&self) -> MongoIntentStore {
        MongoIntentStore::new(&self.database, self.collections(), self.writes.clone())
    }

    /// The write mode in force: detected on the first call (and logged at `info`) unless
    /// [`MongoOptions::write_mode`] forced one.
    pub async fn write_mode(&self) -> Result<WriteMode, StoreError> {
        self.writes.mode().await
    }

    /// Readiness: a `ping` round trip within the operation timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.writes
            .exec
            .run(self.database.run_command(doc! { "ping": 1 }))
            .await?;
        Ok(())
    }

    /// Creates this environment's indexes, idempotently; call at start-up (and in every test
    /// database). An index the server rejects (an option it does not support, a conflicting
    /// existing index such as id-server's non-unique `idenfyScanRef_1`, duplicates that block
    /// a unique index) is logged once at `warn` and listed in the report; it is not fatal.
    /// Only an unreachable server is an error.
    pub async fn ensure_indexes(&self) -> Result<IndexReport, StoreError> {
        indexes::ensure(&self.database, self.collections(), self.writes.exec).await
    }

    /// Closes the driver's connections and background tasks (end of `main`, test teardown).
    pub async fn shutdown(self) {
        self.client.shutdown().await;
    }
}

#[cfg(test)]
mod tests;
