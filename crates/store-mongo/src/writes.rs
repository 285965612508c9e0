//! Conditional writes, and per-document write serialisation for servers whose conditional
//! updates are not atomic.
//!
//! On MongoDB an `update_one`/`findAndModify` evaluates its filter and applies the update
//! atomically per document, so every conditional write is that one operation. FerretDB 1.x
//! is different: it reads the matching documents, applies the update in its own process
//! and writes the whole document back by `_id`, unconditionally. Two concurrent
//! compare-and-set updates can then both match (two claimants win), and concurrent updates
//! of different fields can lose each other's writes. FerretDB has no transactions either,
//! but it does enforce unique `_id`s atomically, so in "serialised" mode each write first
//! inserts a short-lived mutex document `{_id: "<collection>:<docId>"}` into
//! [`WRITE_LOCKS_COLLECTION`], runs the same single conditional operation, and deletes the
//! mutex again. Only writers going through this crate take part; reads never wait.
//!
//! The mode is detected once per [`crate::MongoStores`] (`buildInfo` reports
//! `ferretdbVersion`) unless [`crate::MongoOptions::serialize_writes`] forces it.

use std::{sync::Arc, time::Duration};

use idenfy_core::{Nonce, StoreError, Write};
use mongodb::{
    Collection, Database,
    bson::{Bson, Document, doc},
};
use tokio::sync::OnceCell;

use crate::{Error, Exec, codec::date};

/// Where serialised mode keeps its per-document mutexes (shared by both environments; the
/// key names the collection).
pub const WRITE_LOCKS_COLLECTION: &str = "idenfywritelocks";

/// How the stores of one [`crate::MongoStores`] write.
#[derive(Clone, Debug)]
pub(crate) struct Writes {
    pub(crate) exec: Exec,
    database: Database,
    locks: Collection<Document>,
    serialised: Arc<OnceCell<bool>>,
}

impl Writes {
    pub(crate) fn new(database: &Database, exec: Exec, forced: Option<bool>) -> Writes {
        Writes {
            exec,
            database: database.clone(),
            locks: database.collection(WRITE_LOCKS_COLLECTION),
            serialised: Arc::new(
                forced.map_or_else(OnceCell::new, |on| OnceCell::new_with(Some(on))),
            ),
        }
    }

    /// Whether writes are serialised (detected on first use, then cached).
    pub(crate) async fn serialised(&self) -> Result<bool, StoreError> {
        let on = self
            .serialised
            .get_or_try_init(|| async {
                let info = self
                    .exec
                    .run(self.database.run_command(doc! { "buildInfo": 1 }))
                    .await?;
                let ferretdb = info.contains_key("ferretdbVersion");
                if ferretdb {
                    tracing::info!(
                        "FerretDB detected: conditional writes are serialised per document \
                         (its updates are not atomic under concurrency)"
                    );
                }
                Ok::<bool, StoreError>(ferretdb)
            })
            .await?;
        Ok(*on)
    }

    /// Runs `operation` (ONE conditional write on the document `collection`/`id`), holding
    /// that document's mutex in serialised mode.
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
        if !self.serialised().await? {
            return operation().await;
        }
        let key = format!("{collection}:{id}");
        let owner = Nonce::random();
        self.lock(&key, &owner).await?;
        let result = operation().await;
        // A failed unlock is not fatal: the mutex expires after its lease.
        let unlock = self
            .exec
            .run(
                self.locks
                    .delete_one(doc! { "_id": &key, "owner": owner.as_str() }),
            )
            .await;
        if let Err(error) = unlock {
            tracing::warn!(key, error = %error, "could not delete a write mutex; it expires by itself");
        }
        result
    }

    /// Leases are longer than any operation may take, so a live holder is never broken.
    fn lease(&self) -> Duration {
        self.exec.timeout.saturating_add(Duration::from_secs(1))
    }

    async fn lock(&self, key: &str, owner: &Nonce) -> Result<(), StoreError> {
        let started = tokio::time::Instant::now();
        let mut attempt: u32 = 0;
        loop {
            let now = chrono::Utc::now();
            let expires_at = chrono::TimeDelta::from_std(self.lease())
                .ok()
                .and_then(|lease| now.checked_add_signed(lease))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
            let mutex = doc! { "_id": key, "owner": owner.as_str(), "expiresAt": date(expires_at) };
            match self.exec.run(self.locks.insert_one(mutex)).await {
                Ok(_) => return Ok(()),
                Err(error) if error.is_duplicate_key() => self.break_if_stale(key, now).await?,
                Err(error) => return Err(error.into()),
            }
            if started.elapsed() >= self.exec.timeout {
                return Err(StoreError::Unavailable(Box::new(Error::Timeout(
                    self.exec.timeout,
                ))));
            }
            attempt = attempt.saturating_add(1);
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// A mutex left behind by a crashed or cancelled writer is deleted once its lease passed.
    async fn break_if_stale(
        &self,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let Some(held) = self
            .exec
            .run(self.locks.find_one(doc! { "_id": key }))
            .await?
        else {
            return Ok(());
        };
        let stale = matches!(
            held.get("expiresAt"),
            Some(Bson::DateTime(until)) if until.timestamp_millis() < now.timestamp_millis()
        );
        if stale && let Some(Bson::String(stale_owner)) = held.get("owner") {
            tracing::warn!(key, "breaking an expired write mutex");
            self.exec
                .run(
                    self.locks
                        .delete_one(doc! { "_id": key, "owner": stale_owner.as_str() }),
                )
                .await?;
        }
        Ok(())
    }
}

/// 2, 4, 6, ... ms, at most 20 ms, plus up to 3 ms of jitter so waiters spread out.
fn backoff(attempt: u32) -> Duration {
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos())
            % 3_000,
    );
    Duration::from_millis(u64::from(attempt.min(10)) * 2) + Duration::from_micros(jitter)
}

/// `Applied` when the filter matched a document.
pub(crate) fn matched(count: u64) -> Write {
    if count > 0 {
        Write::Applied
    } else {
        Write::NotMatched
    }
}
