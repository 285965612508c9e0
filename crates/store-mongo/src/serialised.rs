//! Serialised writes: the FerretDB workaround, and everything about it, in one place.
//!
//! FerretDB 1.x applies an update by reading the matching documents, modifying them in its
//! own process and writing each whole document back by `_id`, unconditionally. Two
//! concurrent compare-and-set updates can then both match (two claimants win), and
//! concurrent updates of different fields can lose each other's writes. It has no
//! transactions either, but it does enforce unique `_id`s atomically. So in serialised mode
//! each conditional write first inserts a short-lived mutex document
//! `{_id: "<collection>:<docId>", owner, expiresAt}` into [`WRITE_LOCKS_COLLECTION`], runs
//! the same single conditional operation, and deletes the mutex again. Only writers going
//! through this crate take part; reads never wait. MongoDB (and mongo-java-server) never
//! come here: their conditional updates are atomic per document.
//!
//! What this costs, and how it is kept bounded:
//! - writers of one process first queue on an in-process mutex per document, so only one of
//!   them at a time knocks on the server's mutex (contention between processes remains);
//! - waiting for a held mutex polls it with reads and is bounded by the store's operation
//!   timeout (then `Unavailable`, [`crate::Error::MutexTimeout`]);
//! - a mutex left behind by a crashed or cancelled writer expires after a lease of twice the
//!   operation timeout (plus a second): longer than any operation may take, on our side or
//!   the server's, so a holder still inside its operation is never broken;
//! - claims never wait: a document another writer is busy with reports "busy", which the
//!   stores turn into `NotMatched`. This is the one place where a claim can lose without a
//!   competing claim having won: a claim is a race, the busy writer is usually the peer that
//!   wins it, and every caller re-reads the row after `NotMatched` anyway. The idenfy-core
//!   ports do not know about it; on MongoDB a claim reports `NotMatched` only when its
//!   condition does not hold.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::TryStreamExt;
use idenfy_core::{
    Nonce, StoreError,
    settings::{Backoff, Jitter},
};
use mongodb::{
    Collection, Database,
    bson::{Bson, Document, doc},
};
use tokio::sync::OwnedMutexGuard;

use crate::{Error, Exec, codec::date};

/// Where serialised mode keeps its per-document mutexes (shared by both environments; the
/// key names the collection).
pub const WRITE_LOCKS_COLLECTION: &str = "idenfywritelocks";

/// The per-document mutexes of one [`crate::MongoStores`].
#[derive(Clone, Debug)]
pub(crate) struct Serialised {
    exec: Exec,
    locks: Collection<Document>,
    local: LocalLocks,
}

impl Serialised {
    pub(crate) fn new(database: &Database, exec: Exec) -> Serialised {
        Serialised {
            exec,
            locks: database.collection(WRITE_LOCKS_COLLECTION),
            local: LocalLocks::default(),
        }
    }

    /// Runs `operation` (ONE conditional write on the document `collection`/`id`) holding
    /// that document's mutex, waiting for it (bounded by the operation timeout) if need be.
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
        let key = format!("{collection}:{id}");
        // Waiters queue here in this process first; the wait is bounded like any store
        // call, so a pile of writers for one document cannot wait without end.
        let Ok(_local) = tokio::time::timeout(self.exec.timeout, self.local.lock(&key)).await
        else {
            return Err(StoreError::Unavailable(Box::new(Error::MutexTimeout(
                self.exec.timeout,
            ))));
        };
        let owner = Nonce::random();
        self.lock(&key, &owner).await?;
        let held = self.held(&key, &owner);
        let result = operation().await;
        held.release().await;
        result
    }

    /// Like [`Self::guarded`] for a claim, which never waits: `Ok(None)` when another
    /// writer holds the document's mutex (in this process or another).
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
        let key = format!("{collection}:{id}");
        let Some(_local) = self.local.try_lock(&key) else {
            return Ok(None);
        };
        let owner = Nonce::random();
        if !self.try_lock(&key, &owner).await? {
            return Ok(None);
        }
        let held = self.held(&key, &owner);
        let result = operation().await;
        held.release().await;
        result.map(Some)
    }

    /// `update_many` for FerretDB: finds the matching ids, then one guarded `update_one`
    /// per document with the same condition (so a document that changed meanwhile is left
    /// alone). Returns how many documents changed.
    pub(crate) async fn update_each(
        &self,
        collection: &Collection<Document>,
        filter: Document,
        update: Document,
    ) -> Result<u64, StoreError> {
        let find = collection
            .find(filter.clone())
            .projection(doc! { "_id": 1 })
            .max_time(self.exec.timeout);
        let candidates: Vec<Document> = self
            .exec
            .run(async move { find.await?.try_collect().await })
            .await?;
        let mut changed = 0;
        for candidate in candidates {
            let Some(id) = candidate.get("_id").cloned() else {
                continue;
            };
            let key = match &id {
                Bson::ObjectId(oid) => oid.to_hex(),
                Bson::String(text) => text.clone(),
                other => other.to_string(),
            };
            let mut one = filter.clone();
            one.insert("_id", id);
            let update = update.clone();
            let result = self
                .guarded(collection.name(), &key, || async {
                    self.exec
                        .run(collection.update_one(one, update))
                        .await
                        .map_err(StoreError::from)
                })
                .await?;
            changed += result.modified_count;
        }
        Ok(changed)
    }

    /// The mutex `key` of `owner`, just taken: released by [`Held::release`], or in the
    /// background if the write is dropped before that (a cancelled request), since
    /// otherwise every writer of the document would wait out its lease.
    fn held(&self, key: &str, owner: &Nonce) -> Held {
        Held {
            locks: self.locks.clone(),
            exec: self.exec,
            key: Some((key.to_owned(), owner.clone())),
        }
    }

    /// Leases are longer than any operation may take, so a live holder is never broken:
    /// the holder gives up on its write after one operation timeout, and the server may
    /// still be applying it after that, so twice the timeout, plus a second.
    fn lease(&self) -> Duration {
        self.exec
            .timeout
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(1))
    }

    fn mutex_document(
        &self,
        key: &str,
        owner: &Nonce,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Document {
        let expires_at = chrono::TimeDelta::from_std(self.lease())
            .ok()
            .and_then(|lease| now.checked_add_signed(lease))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        doc! { "_id": key, "owner": owner.as_str(), "expiresAt": date(expires_at) }
    }

    /// Inserts the mutex document, retrying with back-off until the store timeout.
    ///
    /// While the mutex is held, the wait polls it with reads and tries the insert again only
    /// once it looks free: a failed insert still takes SQLite's single write lock, so
    /// waiters retrying inserts would crowd out the very writes they wait for.
    async fn lock(&self, key: &str, owner: &Nonce) -> Result<(), StoreError> {
        let started = tokio::time::Instant::now();
        let mut attempt: u32 = 0;
        loop {
            if self.try_lock(key, owner).await? {
                return Ok(());
            }
            loop {
                if started.elapsed() >= self.exec.timeout {
                    return Err(StoreError::Unavailable(Box::new(Error::MutexTimeout(
                        self.exec.timeout,
                    ))));
                }
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(MUTEX_POLL.delay(attempt)).await;
                if self.looks_free(key).await? {
                    break;
                }
            }
        }
    }

    /// The mutex is absent, or held past its lease (which the next attempt breaks).
    async fn looks_free(&self, key: &str) -> Result<bool, StoreError> {
        let held = self
            .exec
            .run(self.locks.find_one(doc! { "_id": key }))
            .await?;
        Ok(held.is_none_or(|held| expired(&held, chrono::Utc::now())))
    }

    /// One attempt at the mutex (a second one right after breaking a stale mutex).
    async fn try_lock(&self, key: &str, owner: &Nonce) -> Result<bool, StoreError> {
        for _ in 0..2 {
            let now = chrono::Utc::now();
            match self
                .exec
                .run(self.locks.insert_one(self.mutex_document(key, owner, now)))
                .await
            {
                Ok(_) => return Ok(true),
                Err(error) if error.is_duplicate_key() => {
                    if !self.break_if_stale(key, now).await? {
                        return Ok(false);
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(false)
    }

    /// A mutex left behind by a crashed or cancelled writer is deleted once its lease
    /// passed. `true` when the mutex is gone (deleted here, or released meanwhile).
    async fn break_if_stale(
        &self,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let Some(held) = self
            .exec
            .run(self.locks.find_one(doc! { "_id": key }))
            .await?
        else {
            return Ok(true);
        };
        if expired(&held, now)
            && let Some(Bson::String(stale_owner)) = held.get("owner")
        {
            tracing::warn!(key, "breaking an expired write mutex");
            self.exec
                .run(
                    self.locks
                        .delete_one(doc! { "_id": key, "owner": stale_owner.as_str() }),
                )
                .await?;
            return Ok(true);
        }
        Ok(false)
    }
}

/// Whether the mutex document `held` is past its lease at `now`.
fn expired(held: &Document, now: chrono::DateTime<chrono::Utc>) -> bool {
    matches!(
        held.get("expiresAt"),
        Some(Bson::DateTime(until)) if until.timestamp_millis() < now.timestamp_millis()
    )
}

/// A held server-side mutex; released in the background when dropped unreleased.
struct Held {
    locks: Collection<Document>,
    exec: Exec,
    key: Option<(String, Nonce)>,
}

impl Held {
    /// Deletes the mutex now (the write finished, well or not).
    async fn release(mut self) {
        if let Some((key, owner)) = self.key.take() {
            unlock(&self.locks, self.exec, &key, &owner).await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some((key, owner)) = self.key.take() else {
            return;
        };
        // Without a runtime (shutting down) the lease still frees the document.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (locks, exec) = (self.locks.clone(), self.exec);
            runtime.spawn(async move { unlock(&locks, exec, &key, &owner).await });
        }
    }
}

/// Deletes the mutex `key` if `owner` still holds it. A failed unlock is not fatal: the
/// mutex expires after its lease.
async fn unlock(locks: &Collection<Document>, exec: Exec, key: &str, owner: &Nonce) {
    let deleted = exec
        .run(locks.delete_one(doc! { "_id": key, "owner": owner.as_str() }))
        .await;
    if let Err(error) = deleted {
        tracing::warn!(key, error = %error, "could not delete a write mutex; it expires by itself");
    }
}

/// In-process mutexes per document key: writers of one process queue here, in memory,
/// before one of them takes the server-side mutex. Entries live only while in use.
#[derive(Clone, Debug, Default)]
struct LocalLocks {
    held: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl LocalLocks {
    fn entry(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(held.entry(key.to_owned()).or_default())
    }

    async fn lock(&self, key: &str) -> LocalGuard {
        let mutex = self.entry(key);
        let guard = Arc::clone(&mutex).lock_owned().await;
        self.guard(key, mutex, guard)
    }

    fn try_lock(&self, key: &str) -> Option<LocalGuard> {
        let mutex = self.entry(key);
        match Arc::clone(&mutex).try_lock_owned() {
            Ok(guard) => Some(self.guard(key, mutex, guard)),
            Err(_) => {
                self.forget_if_unused(key, mutex);
                None
            }
        }
    }

    fn guard(
        &self,
        key: &str,
        mutex: Arc<tokio::sync::Mutex<()>>,
        guard: OwnedMutexGuard<()>,
    ) -> LocalGuard {
        LocalGuard {
            locks: self.clone(),
            key: key.to_owned(),
            mutex: Some(mutex),
            guard: Some(guard),
        }
    }

    /// Drops the map's entry when nobody else holds or waits for it.
    fn forget_if_unused(&self, key: &str, mutex: Arc<tokio::sync::Mutex<()>>) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's reference and ours: nobody else holds or waits.
        if Arc::strong_count(&mutex) == 2 {
            held.remove(key);
        }
    }
}

/// Holds a [`LocalLocks`] entry; unlocks and tidies up on drop.
struct LocalGuard {
    locks: LocalLocks,
    key: String,
    mutex: Option<Arc<tokio::sync::Mutex<()>>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        // The guard holds a reference of its own: release it before counting.
        drop(self.guard.take());
        if let Some(mutex) = self.mutex.take() {
            self.locks.forget_if_unused(&self.key, mutex);
        }
    }
}

/// The wait between polls of a held mutex: 2 ms doubling to at most 20 ms, with equal
/// jitter so that waiters spread out.
const MUTEX_POLL: Backoff =
    Backoff::new(Duration::from_millis(2), Duration::from_millis(20)).with_jitter(Jitter::Equal);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::LocalLocks;

    fn entries(locks: &LocalLocks) -> usize {
        locks
            .held
            .lock()
            .map(|held| held.len())
            .unwrap_or(usize::MAX)
    }

    #[tokio::test]
    async fn a_held_key_refuses_try_lock_and_other_keys_are_independent() {
        let locks = LocalLocks::default();
        let held = locks.lock("rows:a").await;
        assert!(locks.try_lock("rows:a").is_none(), "busy while held");
        let other = locks.try_lock("rows:b");
        assert!(other.is_some(), "another document is not blocked");
        drop(other);
        assert_eq!(
            entries(&locks),
            1,
            "a failed try_lock leaves the holder's entry"
        );
        drop(held);
        assert_eq!(entries(&locks), 0, "entries are removed once unused");
        assert!(locks.try_lock("rows:a").is_some(), "free again");
        assert_eq!(entries(&locks), 0);
    }

    #[tokio::test]
    async fn waiters_queue_and_the_entry_outlives_them_all() {
        let locks = LocalLocks::default();
        let first = locks.lock("rows:a").await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _second = locks.lock("rows:a").await;
                // While the waiter holds it, the entry is still there.
                locks.try_lock("rows:a").is_none()
            })
        };
        // Let the waiter queue up behind `first`.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the waiter waits for the holder");
        drop(first);
        assert!(waiter.await.expect("waiter"), "the waiter got the mutex");
        assert_eq!(entries(&locks), 0);
    }
}
