//! Operational behaviour of `MongoStores`: indexes at start-up, readiness, environments,
//! error mapping when the server is away, and the write modes (serialised on FerretDB).

use std::io::Write as _;
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use std::time::{Duration, Instant};

use chrono::Utc;
use idenfy_core::{
    Environment, Flow, IdenfyRow, IntentStore, ParentId, ParentStore, RowId, RowStore, StoreError,
};
use mongodb::{
    IndexModel,
    bson::{Document, doc},
    error::ErrorKind,
    event::{EventHandler, command::CommandEvent},
    options::{ClientOptions, IndexOptions},
};
use store_mongo::{Collections, MongoOptions, MongoStores, WriteMode, WriteModeSetting};

use crate::support::{finish, stores};

#[tokio::test]
async fn ensure_indexes_is_idempotent_and_ping_answers() {
    let Some(stores) = stores(
        "store-mongo operations::ensure_indexes_is_idempotent",
        Environment::Live,
    )
    .await
    else {
        return;
    };
    stores.ping().await.expect("ping");
    let again = stores.ensure_indexes().await.expect("second run");
    assert!(again.rejected.is_empty(), "{again:?}");
    assert_eq!(again.ensured.len(), 5, "{again:?}");
    let names: Vec<String> = stores
        .database()
        .collection::<Document>("idenfysessions")
        .list_index_names()
        .await
        .expect("list indexes");
    for name in [
        "idenfyScanRef_1",
        "scanRefHistory.scanRef_1",
        "sigDigest_1_status_1_createdAt_-1",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    finish(stores).await;
}

/// id-server's own (non-unique, sparse) `idenfyScanRef_1` already exists in a shared
/// database: ours is refused, reported, and the rest still gets created.
#[tokio::test]
async fn a_refused_index_is_reported_not_fatal() {
    let Some(stores) = stores(
        "store-mongo operations::a_refused_index_is_reported_not_fatal",
        Environment::Sandbox,
    )
    .await
    else {
        return;
    };
    // `stores()` already created our indexes in this database; start over like a database
    // that only id-server has used.
    let rows = stores
        .database()
        .collection::<Document>("sandboxidenfysessions");
    rows.drop().await.expect("drop");
    let legacy = IndexModel::builder()
        .keys(doc! { "idenfyScanRef": 1 })
        .options(
            IndexOptions::builder()
                .name("idenfyScanRef_1".to_owned())
                .build(),
        )
        .build();
    rows.create_index(legacy).await.expect("id-server's index");

    let report = stores.ensure_indexes().await.expect("not fatal");
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert_eq!(report.rejected[0].index, "idenfyScanRef_1");
    assert_eq!(report.rejected[0].collection, "sandboxidenfysessions");
    assert_eq!(report.ensured.len(), 4, "{report:?}");
    finish(stores).await;
}

#[tokio::test]
async fn environments_use_their_own_collections() {
    let Some(live) = stores(
        "store-mongo operations::environments_use_their_own_collections",
        Environment::Live,
    )
    .await
    else {
        return;
    };
    let sandbox = live.for_environment(Environment::Sandbox);
    assert_eq!(
        sandbox.collections(),
        Collections::for_environment(Environment::Sandbox)
    );
    let now = Utc::now();
    let token = idenfy_core::MintedToken {
        auth_token: idenfy_core::AuthToken::new("t"),
        scan_ref: idenfy_core::ScanRef::new("scan-sandbox-only"),
        redirect_url: "https://example.invalid".into(),
        expires_at: None,
        minted_at: now,
    };
    let row = IdenfyRow::new(
        RowId::generate(now),
        idenfy_core::SigDigest::from_stored("sig"),
        Flow::GovId,
        ParentId::generate(now),
        &token,
        now,
    );
    sandbox.rows().insert(&row).await.expect("insert");
    assert!(sandbox.rows().get(&row.id).await.expect("get").is_some());
    assert!(
        live.rows().get(&row.id).await.expect("get").is_none(),
        "live does not see sandbox rows"
    );
    let count = |name: &'static str| {
        let collection = live.database().collection::<Document>(name);
        async move { collection.count_documents(doc! {}).await.expect("count") }
    };
    assert_eq!(count("sandboxidenfysessions").await, 1);
    assert_eq!(count("idenfysessions").await, 0);

    let parent = idenfy_core::Parent {
        id: ParentId::generate(now),
        flow: Flow::CleanHands,
        sig_digest: None,
        status: idenfy_core::ParentStatus::InProgress,
        idenfy_session_id: None,
        failure_reason: None,
        created_at: None,
    };
    sandbox.parents().insert(&parent).await.expect("insert");
    assert_eq!(count("sandboxamlcheckssessions").await, 1);
    assert_eq!(count("amlcheckssessions").await, 0);
    assert!(live.intents().get("nothing").await.expect("get").is_none());
    finish(live).await;
}

/// With nothing listening, `connect` still succeeds (it does not wait for the server), and
/// every operation fails `Unavailable` through the server-selection timeout (500 ms here)
/// instead of hanging or running into the (longer) operation timeout.
#[tokio::test]
async fn an_unreachable_server_is_unavailable_after_server_selection() {
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let options = MongoOptions {
        server_selection_timeout: Some(Duration::from_millis(500)),
        operation_timeout: Some(Duration::from_secs(30)),
        ..MongoOptions::default()
    };
    let stores = hang_guard(MongoStores::connect(
        &format!("mongodb://127.0.0.1:{port}/"),
        "nowhere",
        Environment::Live,
        options,
    ))
    .await
    .expect("connect does not wait for the server");

    hang_guard(async {
        let row = stores.rows().get(&RowId::generate(Utc::now())).await;
        assert_server_selection(row, "get");
        assert_server_selection(stores.ping().await, "ping");
        let fail = stores
            .parents()
            .fail(Flow::GovId, &ParentId::generate(Utc::now()), "r")
            .await;
        assert_server_selection(fail, "fail");
        assert_server_selection(stores.ensure_indexes().await, "ensure_indexes");
    })
    .await;
    stores.shutdown().await;
}

/// `Unavailable`, with the driver's server-selection error as its source.
fn assert_server_selection<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    let source = unavailable_source(&result, what);
    assert!(
        matches!(source, store_mongo::Error::Driver(error)
            if matches!(error.kind.as_ref(), ErrorKind::ServerSelection { .. })),
        "{what}: not a server-selection failure: {source:?}"
    );
}

/// The store error behind an `Unavailable`; fails the test on anything else.
fn unavailable_source<'a, T: std::fmt::Debug>(
    result: &'a Result<T, StoreError>,
    what: &str,
) -> &'a store_mongo::Error {
    let Err(StoreError::Unavailable(source)) = result else {
        panic!("{what}: {result:?}");
    };
    source
        .downcast_ref::<store_mongo::Error>()
        .unwrap_or_else(|| panic!("{what}: not a store-mongo error: {source:?}"))
}

/// Fails the test if `future` hangs. It bounds a hang, not speed: a minute is far beyond
/// what any step here takes on a loaded machine.
async fn hang_guard<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("hang guard: no progress within 60 s")
}

/// The per-operation timeout bounds an operation even when the server accepts the TCP
/// connection and then never answers: the operation ends as our own `Timeout`, long before
/// the driver's 30 s server selection and connect timeouts would end it.
#[tokio::test]
async fn a_silent_server_hits_the_operation_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accept connections and keep them open without ever answering.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let options = MongoOptions {
        operation_timeout: Some(Duration::from_millis(700)),
        server_selection_timeout: Some(Duration::from_secs(30)),
        connect_timeout: Some(Duration::from_secs(30)),
        ..MongoOptions::default()
    };
    let stores = MongoStores::connect(
        &format!("mongodb://127.0.0.1:{port}/"),
        "silent",
        Environment::Live,
        options,
    )
    .await
    .expect("connect");
    let result = hang_guard(stores.ping()).await;
    let source = unavailable_source(&result, "ping");
    assert!(
        matches!(source, store_mongo::Error::Timeout(limit) if *limit == Duration::from_millis(700)),
        "ended by the operation timeout: {source:?}"
    );
    silent.abort();
}

/// `auto` serialises writes on FerretDB, whose updates are not atomic, and only there; and
/// the mode is the one this run means to exercise (`cargo xtask test` runs this suite once
/// per server and says which mode it expects in `IDENFY_EXPECT_WRITE_MODE`).
#[tokio::test]
async fn auto_write_mode_is_serialised_exactly_on_ferretdb_and_is_the_one_expected() {
    let Some(stores) = stores(
        "store-mongo operations::auto_write_mode_is_serialised_exactly_on_ferretdb",
        Environment::Live,
    )
    .await
    else {
        return;
    };
    let info = stores
        .database()
        .run_command(doc! { "buildInfo": 1 })
        .await
        .expect("buildInfo");
    let ferretdb = info.contains_key("ferretdbVersion");
    let mode = stores.write_mode().await.expect("detect");
    let expected_here = if ferretdb {
        WriteMode::Serialised
    } else {
        WriteMode::Atomic
    };
    assert_eq!(mode, expected_here, "ferretdb: {ferretdb}");
    match std::env::var(dev_services::EXPECT_WRITE_MODE_VAR) {
        Ok(expected) => assert_eq!(
            mode.as_str(),
            expected.trim(),
            "{} names the mode this run exercises",
            dev_services::EXPECT_WRITE_MODE_VAR
        ),
        Err(_) => {
            let _ = writeln!(
                std::io::stderr(),
                "store-mongo suite runs in {mode} write mode ({} unset)",
                dev_services::EXPECT_WRITE_MODE_VAR
            );
        }
    }
    finish(stores).await;
}

/// Serialised mode (forced here, so this runs on MongoDB too): a mutex left by a crashed
/// writer is broken once its lease passed; a live one makes a claim report `NotMatched`
/// without waiting, and any other write wait and give up `Unavailable` after the operation
/// timeout rather than write unguarded.
#[tokio::test]
async fn serialised_writes_break_stale_mutexes_and_wait_for_live_ones() {
    const TIMEOUT: Duration = Duration::from_millis(1500);
    let Some(urls) = dev_services::urls_for_test(
        "store-mongo operations::serialised_writes_break_stale_mutexes",
    ) else {
        return;
    };
    let options = MongoOptions {
        write_mode: WriteModeSetting::Forced(WriteMode::Serialised),
        operation_timeout: Some(TIMEOUT),
        ..crate::support::options()
    };
    // Counts the reads of the mutex collection: an attempt at a held mutex reads it once (is
    // it stale?), and a writer waiting for it reads it again on every poll.
    let mutex_reads = Arc::new(AtomicUsize::new(0));
    let mut client_options = ClientOptions::parse(&urls.mongodb_uri)
        .await
        .expect("MONGODB_URI is a valid connection string");
    client_options.server_selection_timeout = options.server_selection_timeout;
    client_options.command_event_handler = Some(EventHandler::callback({
        let mutex_reads = mutex_reads.clone();
        move |event: CommandEvent| {
            if let CommandEvent::Started(started) = event
                && started.command_name == "find"
                && started.command.get_str("find") == Ok(store_mongo::WRITE_LOCKS_COLLECTION)
            {
                mutex_reads.fetch_add(1, Ordering::SeqCst);
            }
        }
    }));
    let client = mongodb::Client::with_options(client_options).expect("client");
    let database = dev_services::unique_name(crate::support::DATABASE_PREFIX);
    let stores = MongoStores::from_client(client, &database, Environment::Live, &options);
    assert_eq!(
        stores.write_mode().await.expect("forced"),
        WriteMode::Serialised
    );
    let now = idenfy_core::conformance::fixtures::now();
    let row = idenfy_core::conformance::fixtures::row(now);
    stores.rows().insert(&row).await.expect("insert");
    let locks = stores
        .database()
        .collection::<Document>(store_mongo::WRITE_LOCKS_COLLECTION);
    let key = format!("idenfysessions:{}", row.id);
    let past = mongodb::bson::DateTime::from_millis(
        (now - chrono::TimeDelta::seconds(1)).timestamp_millis(),
    );
    locks
        .insert_one(doc! { "_id": &key, "owner": "crashed", "expiresAt": past })
        .await
        .expect("a stale mutex");

    let w = stores
        .rows()
        .claim_poll(&row.id, &row.scan_ref, now, now)
        .await
        .expect("poll");
    assert_eq!(w, idenfy_core::Write::Applied, "the stale mutex was broken");
    assert_eq!(
        locks.count_documents(doc! {}).await.expect("count"),
        0,
        "and ours released"
    );

    let future = mongodb::bson::DateTime::from_millis(
        (now + chrono::TimeDelta::seconds(60)).timestamp_millis(),
    );
    locks
        .insert_one(doc! { "_id": &key, "owner": "alive", "expiresAt": future })
        .await
        .expect("a live mutex");
    let later = now + chrono::TimeDelta::seconds(30);
    let reads_before = mutex_reads.load(Ordering::SeqCst);
    let claimed = hang_guard(
        stores
            .rows()
            .claim_poll(&row.id, &row.scan_ref, later, later),
    )
    .await
    .expect("a busy row is not an error for a claim");
    // The live mutex outlasts any wait, so a claim that waited could only have ended in a
    // mutex timeout; and it read the mutex once (its one attempt), never polling it.
    assert_eq!(claimed, idenfy_core::Write::NotMatched);
    assert_eq!(
        mutex_reads.load(Ordering::SeqCst) - reads_before,
        1,
        "a claim never waits for the mutex"
    );
    let reads_before = mutex_reads.load(Ordering::SeqCst);

    let started = Instant::now();
    let result = hang_guard(stores.rows().mark_expired(&row.id, &row.scan_ref, later)).await;
    let source = unavailable_source(&result, "mark_expired");
    assert!(
        matches!(source, store_mongo::Error::MutexTimeout(limit) if *limit == TIMEOUT),
        "gave up waiting for the mutex: {source:?}"
    );
    // From below only: it waited out the operation timeout, polling the mutex meanwhile.
    let waited = started.elapsed();
    assert!(waited >= TIMEOUT, "waited {waited:?}");
    assert!(
        mutex_reads.load(Ordering::SeqCst) - reads_before > 1,
        "the write polled the mutex while it waited"
    );
    let unchanged = stores.rows().get(&row.id).await.expect("get").expect("row");
    assert_eq!(
        unchanged.last_polled_at,
        Some(now),
        "nothing written without the mutex"
    );
    assert_eq!(unchanged.verification_status, row.verification_status);
    assert_eq!(
        locks.count_documents(doc! {}).await.expect("count"),
        1,
        "the live mutex is left alone"
    );
    finish(stores).await;
}
