//! The port conformance suite (feature `testing`): every MUST of [`crate::ports`], run
//! unchanged against the in-memory adapters, `store-mongo` and `lock-valkey`.
//!
//! One `pub async fn` per behaviour, in one module (and file) per port ([`row_store`],
//! [`parent_store`], [`intent_store`], [`recreate_lock`]), plus one macro per port that
//! expands into a module of `#[tokio::test]`s, one per behaviour, each on a fresh subject
//! built by an async factory expression:
//!
//! ```
//! use idenfy_core::memory::{MemoryIntentStore, MemoryLock, MemoryParentStore, MemoryRowStore};
//!
//! idenfy_core::row_store_conformance!(async { MemoryRowStore::new() });
//! idenfy_core::parent_store_conformance!(async { MemoryParentStore::new() });
//! idenfy_core::intent_store_conformance!(async { MemoryIntentStore::new() });
//! // The lock suite waits for TTLs in real time: pass a sleep of your runtime.
//! idenfy_core::recreate_lock_conformance!(
//!     async { MemoryLock::new(idenfy_core::SystemClock) },
//!     |d| tokio::time::sleep(d),
//! );
//! # fn main() {}
//! ```
//!
//! Each macro expands to `mod row_store { use super::*; #[tokio::test] async fn …() }` (and
//! `parent_store`, `intent_store`, `recreate_lock`), so the factory may use anything in
//! scope, e.g. `async { fresh_mongo_store().await }`; the calling crate needs `tokio`
//! (macros, rt) as a dev-dependency. Fixtures use fresh random ids, scanRefs and
//! sigDigests, so every behaviour may share one database; timestamps are whole
//! milliseconds, the precision of storage.

use std::{future::Future, time::Duration};

use chrono::TimeDelta;

pub mod fixtures;
pub mod intent_store;
pub mod parent_store;
pub mod recreate_lock;
pub mod row_store;

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

/// Expands `[$($case),*]` of `$suite` into `mod $suite { #[tokio::test] … }`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($suite:ident, $factory:expr, sleep = $sleep:expr, [$($case:ident),* $(,)?]) => {
        #[allow(unused_imports)]
        mod $suite {
            use super::*;
            $(
                #[::tokio::test]
                async fn $case() {
                    let subject = $factory.await;
                    $crate::conformance::$suite::$case(&subject, $sleep).await;
                }
            )*
        }
    };
    ($suite:ident, $factory:expr, [$($case:ident),* $(,)?]) => {
        #[allow(unused_imports)]
        mod $suite {
            use super::*;
            $(
                #[::tokio::test]
                async fn $case() {
                    let subject = $factory.await;
                    $crate::conformance::$suite::$case(&subject).await;
                }
            )*
        }
    };
}

/// The [`conformance::row_store`](crate::conformance::row_store) suite as a module
/// `row_store` of `#[tokio::test]`s, each on a fresh store from `$factory`, an expression
/// of a future yielding a `RowStore` (e.g. `async { MemoryRowStore::new() }`).
#[macro_export]
macro_rules! row_store_conformance {
    ($factory:expr $(,)?) => {
        $crate::__conformance_tests!(
            row_store,
            $factory,
            [
                get_returns_the_inserted_row,
                insert_rejects_a_duplicate_id,
                insert_rejects_a_duplicate_scan_ref,
                find_by_scan_ref_finds_the_current_scan_ref,
                find_by_superseded_scan_ref_finds_history_entries,
                find_reusable_picks_the_newest_approved_complete_row,
                list_recent_is_newest_first_within_the_window,
                claim_poll_matches_once_per_interval,
                claim_poll_skips_final_rows_and_other_scan_refs,
                claim_poll_admits_one_of_concurrent_pollers,
                apply_status_writes_and_returns_the_row,
                apply_status_leaves_unset_fields_alone,
                apply_status_never_replaces_a_final_decision,
                apply_status_finalises_a_non_final_decision,
                apply_status_never_unexpires_a_row,
                apply_status_ignores_other_scan_refs,
                mark_expired_sets_only_the_verification_status,
                claim_recreation_sets_the_claim_and_counts_the_attempt,
                claim_recreation_requires_an_expired_current_token,
                claim_recreation_respects_the_cap_and_the_attempts,
                claim_recreation_takes_a_row_id_server_failed_on_expiry,
                release_claim_counts_unknown_outcomes_for_good,
                claim_recreation_is_exclusive_while_the_claim_lives,
                claim_recreation_admits_one_of_concurrent_claims,
                release_claim_only_by_the_holder,
                persist_recreation_swaps_in_the_new_token,
                persist_recreation_requires_the_claim_and_the_expired_old_token,
                persist_recreation_after_a_takeover_is_rejected,
                record_orphaned_mint_appends,
                give_up_fails_the_row_and_drops_the_claim,
                give_up_is_conditional,
                update_superseded_touches_only_the_history_entry,
                writes_touch_only_their_own_row,
            ]
        );
    };
}

/// The [`conformance::parent_store`](crate::conformance::parent_store) suite as a module
/// `parent_store` of `#[tokio::test]`s, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! parent_store_conformance {
    ($factory:expr $(,)?) => {
        $crate::__conformance_tests!(
            parent_store,
            $factory,
            [
                get_returns_the_inserted_parent,
                insert_rejects_a_duplicate_id,
                find_any_looks_in_gov_id_first,
                link_row_links_once,
                fail_only_fails_in_progress_parents,
                fail_all_linked_covers_both_flows_once,
            ]
        );
    };
}

/// The [`conformance::intent_store`](crate::conformance::intent_store) suite as a module
/// `intent_store` of `#[tokio::test]`s, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! intent_store_conformance {
    ($factory:expr $(,)?) => {
        $crate::__conformance_tests!(
            intent_store,
            $factory,
            [
                get_returns_the_inserted_intent,
                insert_rejects_a_duplicate_key,
                reclaim_takes_over_failed_or_expired_intents,
                record_mint_requires_the_claim,
                record_unknown_mint_counts_and_defers,
                finish_requires_the_claim,
            ]
        );
    };
}

/// The [`conformance::recreate_lock`](crate::conformance::recreate_lock) suite as a module
/// `recreate_lock` of `#[tokio::test]`s, each on a fresh lock from `$factory`; `$sleep` is
/// a `Fn(Duration) -> impl Future<Output = ()>` in real time, e.g. `|d| tokio::time::sleep(d)`.
#[macro_export]
macro_rules! recreate_lock_conformance {
    ($factory:expr, $sleep:expr $(,)?) => {
        $crate::__conformance_tests!(
            recreate_lock,
            $factory,
            sleep = $sleep,
            [
                acquire_is_exclusive,
                release_frees_the_key,
                a_stale_guard_cannot_release_the_new_owners_lock,
                an_expired_key_counts_as_absent,
                a_forged_guard_releases_nothing,
                distinct_rows_are_independent,
                one_of_concurrent_acquirers_wins,
            ]
        );
    };
}
