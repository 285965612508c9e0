//! Start-up index creation: idempotent, and tolerant of indexes the server refuses.

use futures::TryStreamExt;
use idenfy_core::StoreError;
use mongodb::{
    Collection, Database, IndexModel,
    bson::{Document, doc},
    options::IndexOptions,
};

use crate::{Collections, Error, Exec};

/// What [`crate::MongoStores::ensure_indexes`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexReport {
    /// `collection.index` names that exist now (created or already there).
    pub ensured: Vec<String>,
    /// Indexes the server refused; each was logged once at `warn`.
    pub rejected: Vec<RejectedIndex>,
}

/// An index the server refused, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedIndex {
    /// The collection the index was meant for.
    pub collection: String,
    /// The index name.
    pub index: String,
    /// The server's refusal, or how the existing index differs from ours.
    pub reason: String,
}

struct Wanted {
    collection: &'static str,
    name: &'static str,
    keys: Document,
    unique: bool,
    /// What is lost when the server refuses it (for the warning).
    consequence: &'static str,
}

fn wanted(collections: Collections) -> Vec<Wanted> {
    let mut wanted = vec![
        Wanted {
            collection: collections.rows,
            // id-server's (non-unique, sparse) index has this same default name; on a shared
            // database the server refuses ours and the warning says so.
            name: "idenfyScanRef_1",
            keys: doc! { "idenfyScanRef": 1 },
            unique: true,
            consequence: "scanRef uniqueness is not enforced by the database",
        },
        Wanted {
            collection: collections.rows,
            name: "scanRefHistory.scanRef_1",
            keys: doc! { "scanRefHistory.scanRef": 1 },
            unique: false,
            consequence: "webhooks for superseded scanRefs scan the collection",
        },
        Wanted {
            collection: collections.rows,
            name: "sigDigest_1_status_1_createdAt_-1",
            keys: doc! { "sigDigest": 1, "status": 1, "createdAt": -1 },
            unique: false,
            consequence: "listing and reuse lookups scan the collection",
        },
    ];
    for parents in [collections.gov_id_parents, collections.clean_hands_parents] {
        wanted.push(Wanted {
            collection: parents,
            name: "idenfySessionId_1",
            keys: doc! { "idenfySessionId": 1 },
            unique: false,
            consequence: "failing linked parents scans the collection",
        });
    }
    wanted
}

pub(crate) async fn ensure(
    database: &Database,
    collections: Collections,
    exec: Exec,
) -> Result<IndexReport, StoreError> {
    let mut report = IndexReport::default();
    for index in wanted(collections) {
        let model = IndexModel::builder()
            .keys(index.keys.clone())
            .options(
                IndexOptions::builder()
                    .name(index.name.to_owned())
                    .unique(index.unique.then_some(true))
                    .build(),
            )
            .build();
        let collection = database.collection::<Document>(index.collection);
        let outcome = match exec.run(collection.create_index(model)).await {
            // Some servers (FerretDB 1.x) answer OK when an index of that name and keys
            // exists with other options; check what is really there.
            Ok(_) => verify(&collection, &index, exec).await?,
            Err(error) if error.is_server_rejection() => Err(rejection_reason(&error)),
            Err(error) => return Err(error.into()),
        };
        match outcome {
            Ok(()) => report
                .ensured
                .push(format!("{}.{}", index.collection, index.name)),
            Err(reason) => {
                tracing::warn!(
                    collection = index.collection,
                    index = index.name,
                    %reason,
                    "index not ensured; continuing without it: {}",
                    index.consequence
                );
                report.rejected.push(RejectedIndex {
                    collection: index.collection.to_owned(),
                    index: index.name.to_owned(),
                    reason,
                });
            }
        }
    }
    Ok(report)
}

/// `Ok(Err(reason))` when the index named like ours has other keys or uniqueness.
async fn verify(
    collection: &Collection<Document>,
    index: &Wanted,
    exec: Exec,
) -> Result<Result<(), String>, StoreError> {
    let list = collection.list_indexes();
    let existing: Vec<IndexModel> = exec
        .run(async move { list.await?.try_collect().await })
        .await?;
    let found = existing.iter().find(|model| {
        model
            .options
            .as_ref()
            .and_then(|options| options.name.as_deref())
            == Some(index.name)
    });
    let Some(found) = found else {
        return Ok(Err(
            "the server reported success but lists no such index".to_owned()
        ));
    };
    let unique = found
        .options
        .as_ref()
        .and_then(|options| options.unique)
        .unwrap_or(false);
    if !same_keys(&found.keys, &index.keys) || unique != index.unique {
        return Ok(Err(format!(
            "an index of this name already exists with keys {} and unique = {unique}",
            found.keys
        )));
    }
    Ok(Ok(()))
}

/// Same fields in the same order and directions (1 and 1.0 and 1_i64 are the same).
fn same_keys(a: &Document, b: &Document) -> bool {
    fn direction(value: &mongodb::bson::Bson) -> Option<i64> {
        match value {
            mongodb::bson::Bson::Int32(n) => Some(i64::from(*n).signum()),
            mongodb::bson::Bson::Int64(n) => Some(n.signum()),
            mongodb::bson::Bson::Double(f) if *f > 0.0 => Some(1),
            mongodb::bson::Bson::Double(f) if *f < 0.0 => Some(-1),
            _ => None,
        }
    }
    a.len() == b.len()
        && a.iter().zip(b.iter()).all(|((ka, va), (kb, vb))| {
            ka == kb && direction(va).is_some() && direction(va) == direction(vb)
        })
}

fn rejection_reason(error: &Error) -> String {
    match error {
        Error::Driver(driver) => match driver.kind.as_ref() {
            mongodb::error::ErrorKind::Command(command) => {
                format!(
                    "{} ({}): {}",
                    command.code_name, command.code, command.message
                )
            }
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}
