//! The port conformance suite on the in-memory adapters, plainly and with random delays
//! injected into every store and lock operation (to shuffle concurrent interleavings).

use std::time::Duration;

use idenfy_core::{
    SystemClock,
    memory::{Delay, MemoryIntentStore, MemoryLock, MemoryParentStore, MemoryRowStore, delay},
};
use rand::Rng;

idenfy_core::row_store_conformance!(async { MemoryRowStore::new() });
idenfy_core::parent_store_conformance!(async { MemoryParentStore::new() });
idenfy_core::intent_store_conformance!(async { MemoryIntentStore::new() });
idenfy_core::recreate_lock_conformance!(async { MemoryLock::new(SystemClock) }, |d| {
    tokio::time::sleep(d)
});

/// Sleeps 0–2 ms, or just yields, at random.
fn jitter() -> Delay {
    delay(|| async {
        let micros = rand::rng().random_range(0..2_000);
        if micros < 500 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_micros(micros)).await;
        }
    })
}

mod delayed {
    use super::*;

    idenfy_core::row_store_conformance!(async { MemoryRowStore::new().with_delay(jitter()) });
    idenfy_core::parent_store_conformance!(async { MemoryParentStore::new().with_delay(jitter()) });
    idenfy_core::intent_store_conformance!(async { MemoryIntentStore::new().with_delay(jitter()) });
    idenfy_core::recreate_lock_conformance!(
        async { MemoryLock::new(SystemClock).with_delay(jitter()) },
        |d| tokio::time::sleep(d),
    );
}
