//! Shared helpers of the store tests: a fresh database per test, with indexes, through our
//! own `MongoStores`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dev_services::{unique_name, urls_for_test};
use idenfy_core::Environment;
use store_mongo::{MongoOptions, MongoStores};

/// The options tests use: the production defaults, with a little more room for a busy CI
/// machine running many tests against one server (FerretDB is the slow one).
pub fn options() -> MongoOptions {
    MongoOptions {
        operation_timeout: Some(Duration::from_secs(20)),
        server_selection_timeout: Some(Duration::from_secs(5)),
        ..MongoOptions::default()
    }
}

/// Stores of `environment` on a database of this test's own, indexes ensured; `None` (the
/// test skips) without a server.
pub async fn stores(test: &str, environment: Environment) -> Option<MongoStores> {
    let urls = urls_for_test(test)?;
    let stores = MongoStores::connect(
        &urls.mongodb_uri,
        &unique_name(DATABASE_PREFIX),
        environment,
        options(),
    )
    .await
    .expect("MONGODB_URI is a valid connection string");
    sweep_once(&stores).await;
    let report = stores.ensure_indexes().await.expect("creating indexes");
    assert!(
        report.rejected.is_empty(),
        "a fresh database must accept every index: {:?}",
        report.rejected
    );
    Some(stores)
}

/// Drops the test's database and closes the client.
pub async fn finish(stores: MongoStores) {
    stores
        .database()
        .drop()
        .await
        .expect("dropping the test database");
    stores.shutdown().await;
}

/// Prefix of every database these tests create (`<prefix>_<pid hex>_<counter>_<random>`).
pub const DATABASE_PREFIX: &str = "storeit";

/// The conformance macros give a test no place to drop its database, so instead the first
/// test of each run drops the databases of earlier runs whose process is gone. A failed
/// run's databases thus stay around for inspection until the next run.
async fn sweep_once(stores: &MongoStores) {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(names) = stores.client().list_database_names().await else {
        return;
    };
    for name in names {
        let mut parts = name.split('_');
        if parts.next() != Some(DATABASE_PREFIX) {
            continue;
        }
        let Some(pid) = parts
            .next()
            .and_then(|pid| u32::from_str_radix(pid, 16).ok())
        else {
            continue;
        };
        let alive =
            pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            // Best effort: another run may be sweeping the same database.
            let _ = stores.client().database(&name).drop().await;
        }
    }
}
