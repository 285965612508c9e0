//! How conditional writes reach the server: the write mode, chosen once per
//! [`crate::MongoStores`].
//!
//! - [`WriteMode::Atomic`] (the default, and what MongoDB needs): every conditional write is
//!   ONE server-side `update_one` / `find_one_and_update` / `update_many`, which MongoDB
//!   evaluates and applies atomically per document.
//! - [`WriteMode::Serialised`] (FerretDB only): the same single operation, inside a
//!   per-document mutex; see [`crate::serialised`] for why and how.
//!
//! [`crate::MongoOptions::write_mode`] forces a mode; unset (`auto`), the server is asked
//! once (`buildInfo`), and FerretDB gets serialised writes, everything else atomic ones.

use std::{fmt, str::FromStr, sync::Arc};

use idenfy_core::{StoreError, Write};
use mongodb::{
    Collection, Database,
    bson::{Document, doc},
};
use tokio::sync::OnceCell;

use crate::{Exec, serialised::Serialised};

/// How conditional writes are made; see the module docs of `writes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteMode {
    /// One server-side operation per conditional write (MongoDB, mongo-java-server).
    Atomic,
    /// The same operation inside a per-document mutex document (FerretDB 1.x, whose
    /// conditional updates are not atomic).
    Serialised,
}

impl WriteMode {
    /// `atomic` or `serialised`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Atomic => "atomic",
            WriteMode::Serialised => "serialised",
        }
    }
}

impl fmt::Display for WriteMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `MONGODB_WRITE_MODE`'s values: `auto` (detect), `atomic` or `serialised`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteModeSetting {
    /// Serialised on FerretDB, atomic elsewhere (asked once, on first use).
    #[default]
    Auto,
    /// This mode, whatever the server says.
    Forced(WriteMode),
}

impl FromStr for WriteModeSetting {
    type Err = String;

    fn from_str(value: &str) -> Result<WriteModeSetting, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(WriteModeSetting::Auto),
            "atomic" => Ok(WriteModeSetting::Forced(WriteMode::Atomic)),
            "serialised" | "serialized" => Ok(WriteModeSetting::Forced(WriteMode::Serialised)),
            other => Err(format!(
                "`{other}` is not a write mode (expected auto, atomic or serialised)"
            )),
        }
    }
}

impl fmt::Display for WriteModeSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteModeSetting::Auto => f.write_str("auto"),
            WriteModeSetting::Forced(mode) => mode.fmt(f),
        }
    }
}

/// The stores' shared write path.
#[derive(Clone, Debug)]
pub(crate) struct Writes {
    pub(crate) exec: Exec,
    database: Database,
    mode: Arc<OnceCell<WriteMode>>,
    serialised: Serialised,
}

impl Writes {
    pub(crate) fn new(database: &Database, exec: Exec, setting: WriteModeSetting) -> Writes {
        Writes {
            exec,
            database: database.clone(),
            mode: Arc::new(match setting {
                WriteModeSetting::Auto => OnceCell::new(),
                WriteModeSetting::Forced(mode) => OnceCell::new_with(Some(mode)),
            }),
            serialised: Serialised::new(database, exec),
        }
    }

    /// The mode in force (detected on first use when `auto`, then cached).
    pub(crate) async fn mode(&self) -> Result<WriteMode, StoreError> {
        let mode = self
            .mode
            .get_or_try_init(|| async {
                let info = self
                    .exec
                    .run(self.database.run_command(doc! { "buildInfo": 1 }))
                    .await?;
                let mode = if info.contains_key("ferretdbVersion") {
                    WriteMode::Serialised
                } else {
                    WriteMode::Atomic
                };
                let server = if mode == WriteMode::Serialised {
                    "FerretDB"
                } else {
                    "a server with atomic conditional updates"
                };
                // Debug: the app logs the mode in force once at start-up, for every setting.
                tracing::debug!(
                    write_mode = mode.as_str(),
                    "MONGODB_WRITE_MODE=auto: {server} detected, conditional writes are {mode}"
                );
                Ok::<WriteMode, StoreError>(mode)
            })
            .await?;
        Ok(*mode)
    }

    /// Runs `operation` (ONE conditional write on the document `collection`/`id`); in
    /// serialised mode inside that document's mutex (waiting for it if need be).
    pub(crate) async fn guarded<T, F, Fut>(
        &self,
        collection: &str,
        id: &str,
        operation: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        match self.mode().await? {
            WriteMode::Atomic => operation().await,
            WriteMode::Serialised => self.serialised.guarded(collection, id, operation).await,
        }
    }

    /// `update_many(filter, update)`: one server-side operation in atomic mode; in serialised
    /// mode one guarded `update_one` per matching document, each with the same condition.
    /// Returns how many documents changed.
    pub(crate) async fn update_many(
        &self,
        collection: &Collection<Document>,
        filter: Document,
        update: Document,
    ) -> Result<u64, StoreError> {
        match self.mode().await? {
            WriteMode::Atomic => {
                let result = self
                    .exec
                    .run(collection.update_many(filter, update))
                    .await?;
                Ok(result.modified_count)
            }
            WriteMode::Serialised => {
                self.serialised
                    .update_each(collection, filter, update)
                    .await
            }
        }
    }

    /// Like [`Self::guarded`] for a claim. `Ok(None)` only in serialised mode, when another
    /// writer holds the document's mutex (the stores report that as `NotMatched`).
    pub(crate) async fn claim<T, F, Fut>(
        &self,
        collection: &str,
        id: &str,
        operation: F,
    ) -> Result<Option<T>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        match self.mode().await? {
            WriteMode::Atomic => operation().await.map(Some),
            WriteMode::Serialised => self.serialised.claim(collection, id, operation).await,
        }
    }
}

/// `Applied` when the filter matched a document.
pub(crate) fn matched(count: u64) -> Write {
    if count > 0 {
        Write::Applied
    } else {
        Write::NotMatched
    }
}

#[cfg(test)]
mod tests {
    use super::{WriteMode, WriteModeSetting};

    #[test]
    fn write_mode_settings_parse_and_print() {
        for (text, setting) in [
            ("auto", WriteModeSetting::Auto),
            (" Atomic ", WriteModeSetting::Forced(WriteMode::Atomic)),
            (
                "serialised",
                WriteModeSetting::Forced(WriteMode::Serialised),
            ),
            (
                "serialized",
                WriteModeSetting::Forced(WriteMode::Serialised),
            ),
        ] {
            assert_eq!(text.parse::<WriteModeSetting>(), Ok(setting), "{text}");
        }
        assert_eq!(WriteModeSetting::default().to_string(), "auto");
        assert_eq!(
            WriteModeSetting::Forced(WriteMode::Serialised).to_string(),
            "serialised"
        );
        let error = "fast".parse::<WriteModeSetting>().expect_err("not a mode");
        assert!(error.contains("auto, atomic or serialised"), "{error}");
    }
}
