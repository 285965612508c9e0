//! idenfy-core's recreate-lock conformance suite, unchanged, against `ValkeyLock` on a real
//! Valkey (a fresh key prefix per test).
//!
//! The factory uses `return` to skip a test when no server is configured: the macro inlines
//! the factory expression into the test body, so `return` ends the test early.

use std::future::ready;

use idenfy_core::Environment;

use crate::support::lock;

idenfy_core::recreate_lock_conformance!(
    match lock("lock-valkey conformance::recreate_lock", Environment::Live).await {
        Some(lock) => ready(lock),
        None => return,
    },
    |d| tokio::time::sleep(d),
);

/// The sandbox key space behaves the same.
mod sandbox {
    use std::future::ready;

    use idenfy_core::Environment;

    use crate::support::lock;

    idenfy_core::recreate_lock_conformance!(
        match lock(
            "lock-valkey conformance::sandbox::recreate_lock",
            Environment::Sandbox
        )
        .await
        {
            Some(lock) => ready(lock),
            None => return,
        },
        |d| tokio::time::sleep(d),
    );
}
