//! The [`crate::RecreateLock`] suite. Every behaviour takes the caller's `sleep` (real time:
//! the Valkey adapter runs these against a real server).

use futures::future::join_all;

use super::{Duration, Future, fixtures};
use crate::{LockGuard, Nonce, RecreateLock, RowId};

/// TTL of the locks the suite lets expire.
pub const SHORT_TTL: Duration = Duration::from_millis(200);
/// How long the suite sleeps for a `SHORT_TTL` lock to expire.
pub const PAST_SHORT_TTL: Duration = Duration::from_millis(500);
/// TTL of the locks the suite never lets expire.
pub const LONG_TTL: Duration = Duration::from_secs(30);

fn row() -> RowId {
    RowId::generate(fixtures::now())
}

async fn take<L: RecreateLock>(lock: &L, row: &RowId, ttl: Duration) -> LockGuard {
    let guard = lock
        .acquire(row, ttl)
        .await
        .expect("lock reachable")
        .expect("the key is free");
    assert_eq!(&guard.row, row);
    guard
}

async fn is_held<L: RecreateLock>(lock: &L, row: &RowId) -> bool {
    lock.acquire(row, LONG_TTL)
        .await
        .expect("lock reachable")
        .is_none()
}

/// `acquire` sets the key only if absent: a second acquire gets `None`.
pub async fn acquire_is_exclusive<L, S, F>(lock: &L, _sleep: S)
where
    L: RecreateLock,
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let row = row();
    let _guard = take(lock, &row, LONG_TTL).await;
    assert!(
        lock.acquire(&row, LONG_TTL)
            .await
            .expect("lock reachable")
            .is_none(),
        "held"
    );
}

/// `release` by the owner deletes the key (it can be acquired again, by a fresh owner
/// token); a second release returns `false`.
pub async fn release_frees_the_key<L, S, F>(lock: &L, _sleep: S)
where
    L: RecreateLock,
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let row = row();
    let first = take(lock, &row, LONG_TTL).await;
    assert!(
        lock.release(&first).await.expect("lock reachable"),
        "owner releases"
    );
    assert!(
        !lock.release(&first).await.expect("lock reachable"),
        "already released"
    );
    let second = take(lock, &row, LONG_TTL).await;
    assert_ne!(first.owner, second.owner, "owner tokens are fresh");
    assert!(lock.release(&second).await.expect("lock reachable"));
}

/// Compare-and-delete: a guard whose TTL passed cannot delete the lock its
/// successor holds.
pub async fn a_stale_guard_cannot_release_the_new_owners_lock<L, S, F>(lock: &L, sleep: S)
where
    L: RecreateLock,
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let row = row();
    let stale = take(lock, &row, SHORT_TTL).await;
    sleep(PAST_SHORT_TTL).await;
    let current = take(lock, &row, LONG_TTL).await;
    assert!(
        !lock.release(&stale).await.expect("lock reachable"),
        "stale guard"
    );
    assert!(is_held(lock, &row).await, "the new owner still holds it");
    assert!(lock.release(&current).await.expect("lock reachable"));
}

/// A key whose TTL passed counts as absent: release returns `false`, acquire succeeds.
pub async fn an_expired_key_counts_as_absent<L, S, F>(lock: &L, sleep: S)
where
    L: RecreateLock,
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let row = row();
    let guard = take(lock, &row, SHORT_TTL).await;
    sleep(PAST_SHORT_TTL).await;
    assert!(
        !lock.release(&guard).await.expect("lock reachable"),
        "expired"
    );
    let again = take(lock, &row, LONG_TTL).await;
    assert!(lock.release(&again).await.expect("lock reachable"));
}

/// A guard with a wrong owner token releases nothing.
pub async fn a_forged_guard_releases_nothing<L, S, F>(lock: &L, _sleep: S)
where
    L: RecreateLock,
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let row = row();
    let guard = take(lock, &row, LONG_TTL).await;
    let forged = LockGuard {
        row: row.clone(),
        owner: Nonce::random(),
    };
    assert!(!lock.release(&forged).await.expect("lock reachable"));
    assert!(is_held(lock, &row).await, "still held");
    let elsewhere = LockGuard {
        row: self::row(),
        owner: guard.owner.clone(),
    };
    assert!(
        !lock.release(&elsewhere).await.expect("lock reachable"),
        "other row, never locked"
    );
    assert!(lock.release(&guard).await.expect("lock reachable"));
}

/// Locks of distinct rows are independent.
pub async fn distinct_rows_are_independent<L, S, F>(lock: &L, _sleep: S)
where
    L: RecreateLock,
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let (one, two) = (row(), row());
    let first = take(lock, &one, LONG_TTL).await;
    let second = take(lock, &two, LONG_TTL).await;
    assert!(lock.release(&first).await.expect("lock reachable"));
    assert!(
        is_held(lock, &two).await,
        "releasing one row leaves the other locked"
    );
    assert!(lock.release(&second).await.expect("lock reachable"));
}

/// Of many concurrent `acquire`s of one key, exactly one wins.
pub async fn one_of_concurrent_acquirers_wins<L, S, F>(lock: &L, _sleep: S)
where
    L: RecreateLock,
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let row = row();
    let results = join_all((0..8).map(|_| lock.acquire(&row, LONG_TTL))).await;
    let winners: Vec<LockGuard> = results
        .into_iter()
        .filter_map(|r| r.expect("lock reachable"))
        .collect();
    assert_eq!(winners.len(), 1, "exactly one owner");
    for guard in &winners {
        assert!(lock.release(guard).await.expect("lock reachable"));
    }
}
