//! Smoke tests: the driver operations store-mongo is built on behave as we rely on
//! against the real server (conditional updates, findAndModify, unique indexes).

use std::time::Duration;

use dev_services::{unique_name, urls_for_test};
use mongodb::bson::{Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};

/// A client and a database of this test's own, or `None` (test skipped) without a server.
async fn database(test: &str) -> Option<(Client, Database)> {
    let urls = urls_for_test(test)?;
    let mut options = ClientOptions::parse(&urls.mongodb_uri)
        .await
        .expect("MONGODB_URI is a valid connection string");
    options.server_selection_timeout = Some(Duration::from_secs(5));
    let client = Client::with_options(options).expect("client options are valid");
    let database = client.database(&unique_name("smoke"));
    Some((client, database))
}

/// Drops the test's database and closes the client (one client per test: the driver binds
/// its background tasks to the runtime that created it, and each `#[tokio::test]` has its own).
async fn finish(client: Client, database: Database) {
    database.drop().await.expect("dropping the test database");
    client.shutdown().await;
}

fn rows(database: &Database) -> Collection<Document> {
    database.collection("rows")
}

#[tokio::test]
async fn insert_and_find_by_id() {
    let Some((client, database)) = database("store-mongo smoke::insert_and_find_by_id").await
    else {
        return;
    };
    let rows = rows(&database);
    rows.insert_one(doc! { "_id": "row-1", "scanRef": "scan-1", "version": 1_i64 })
        .await
        .expect("insert");

    let found = rows
        .find_one(doc! { "_id": "row-1" })
        .await
        .expect("find")
        .expect("the row exists");
    assert_eq!(found.get_str("scanRef").expect("scanRef"), "scan-1");
    assert_eq!(found.get_i64("version").expect("version"), 1);
    assert!(
        rows.find_one(doc! { "_id": "row-2" })
            .await
            .expect("find")
            .is_none()
    );

    finish(client, database).await;
}

#[tokio::test]
async fn conditional_update_reports_matched_count() {
    let Some((client, database)) =
        database("store-mongo smoke::conditional_update_reports_matched_count").await
    else {
        return;
    };
    let rows = rows(&database);
    rows.insert_one(doc! { "_id": "row-1", "scanRef": "scan-1", "version": 1_i64 })
        .await
        .expect("insert");

    // Compare-and-set on a stale scanRef: no match, nothing written.
    let stale = rows
        .update_one(
            doc! { "_id": "row-1", "scanRef": "scan-0" },
            doc! { "$set": { "scanRef": "scan-2" }, "$inc": { "version": 1_i64 } },
        )
        .await
        .expect("update");
    assert_eq!((stale.matched_count, stale.modified_count), (0, 0));

    // On the current scanRef: one match, one modification.
    let current = rows
        .update_one(
            doc! { "_id": "row-1", "scanRef": "scan-1" },
            doc! { "$set": { "scanRef": "scan-2" }, "$inc": { "version": 1_i64 } },
        )
        .await
        .expect("update");
    assert_eq!((current.matched_count, current.modified_count), (1, 1));

    // A no-op update matches but modifies nothing (test matched_count, not modified_count).
    let no_op = rows
        .update_one(
            doc! { "_id": "row-1" },
            doc! { "$set": { "scanRef": "scan-2" } },
        )
        .await
        .expect("update");
    assert_eq!((no_op.matched_count, no_op.modified_count), (1, 0));

    let row = rows
        .find_one(doc! { "_id": "row-1" })
        .await
        .expect("find")
        .expect("the row exists");
    assert_eq!(row.get_i64("version").expect("version"), 2);

    finish(client, database).await;
}

#[tokio::test]
async fn find_one_and_update_returns_the_document_after() {
    let Some((client, database)) =
        database("store-mongo smoke::find_one_and_update_returns_the_document_after").await
    else {
        return;
    };
    let rows = rows(&database);
    rows.insert_one(doc! { "_id": "row-1", "scanRef": "scan-1", "version": 1_i64 })
        .await
        .expect("insert");

    let after = rows
        .find_one_and_update(
            doc! { "_id": "row-1", "version": 1_i64 },
            doc! { "$set": { "scanRef": "scan-2" }, "$inc": { "version": 1_i64 } },
        )
        .return_document(ReturnDocument::After)
        .await
        .expect("findAndModify")
        .expect("the filter matched");
    assert_eq!(after.get_str("scanRef").expect("scanRef"), "scan-2");
    assert_eq!(after.get_i64("version").expect("version"), 2);

    // The same compare-and-set again: the version moved on, so nothing matches.
    let conflict = rows
        .find_one_and_update(
            doc! { "_id": "row-1", "version": 1_i64 },
            doc! { "$set": { "scanRef": "scan-3" }, "$inc": { "version": 1_i64 } },
        )
        .return_document(ReturnDocument::After)
        .await
        .expect("findAndModify");
    assert!(conflict.is_none());

    finish(client, database).await;
}

#[tokio::test]
async fn unique_index_rejects_a_duplicate_with_code_11000() {
    let Some((client, database)) =
        database("store-mongo smoke::unique_index_rejects_a_duplicate_with_code_11000").await
    else {
        return;
    };
    let rows = rows(&database);
    rows.create_index(
        IndexModel::builder()
            .keys(doc! { "scanRef": 1 })
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name("scanRef_unique".to_owned())
                    .build(),
            )
            .build(),
    )
    .await
    .expect("create the unique index");
    rows.insert_one(doc! { "_id": "row-1", "scanRef": "scan-1" })
        .await
        .expect("first insert");

    let error = rows
        .insert_one(doc! { "_id": "row-2", "scanRef": "scan-1" })
        .await
        .expect_err("a second row with the same scanRef must be rejected");
    match *error.kind {
        ErrorKind::Write(WriteFailure::WriteError(ref write_error)) => {
            assert_eq!(write_error.code, 11000, "{error}");
        }
        _ => panic!("expected a duplicate-key write error, got {error}"),
    }

    finish(client, database).await;
}
