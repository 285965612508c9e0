//! Shared helpers of the lock tests: a `ValkeyLock` with a key prefix of the test's own.

use dev_services::{unique_name, urls_for_test};
use idenfy_core::Environment;
use lock_valkey::{ValkeyLock, ValkeyOptions};

/// A connected lock of `environment` whose keys start with a fresh prefix; `None` (the test
/// skips) without a server.
pub async fn lock(test: &str, environment: Environment) -> Option<ValkeyLock> {
    let urls = urls_for_test(test)?;
    let lock = ValkeyLock::connect(&urls.valkey_url, environment, ValkeyOptions::default())
        .await
        .expect("VALKEY_URL is a valid URL");
    lock.ping().await.expect("Valkey answers");
    Some(lock.with_key_prefix(format!("{}:", unique_name("lock"))))
}
