//! `ParentStore` on id-server's parent sessions: gov-id `sessions` and clean-hands
//! `amlcheckssessions` (and their sandbox twins). Writes touch only `status`,
//! `verificationFailureReason` and `idenfySessionId`.

use idenfy_core::{
    Flow, Parent, ParentId, ParentStatus, ParentStore, RowId, SigDigest, StoreError, Write,
};
use mongodb::{
    Collection, Database,
    bson::{Bson, Document, doc},
};

use crate::{
    Collections, Exec,
    codec::{Reader, date, id_match, object_id},
    writes::{Writes, matched},
};

/// The parents of one environment, both flows. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoParentStore {
    gov_id: Collection<Document>,
    clean_hands: Collection<Document>,
    writes: Writes,
}

impl MongoParentStore {
    pub(crate) fn new(database: &Database, collections: Collections, writes: Writes) -> Self {
        MongoParentStore {
            gov_id: database.collection(collections.gov_id_parents),
            clean_hands: database.collection(collections.clean_hands_parents),
            writes,
        }
    }

    fn exec(&self) -> Exec {
        self.writes.exec
    }

    /// The collection holding parents of `flow`.
    pub fn collection(&self, flow: Flow) -> &Collection<Document> {
        match flow {
            Flow::GovId => &self.gov_id,
            Flow::CleanHands => &self.clean_hands,
        }
    }

    /// ONE conditional `update_one` on the parent `id` of `flow` (under its mutex in
    /// serialised mode).
    async fn update(
        &self,
        flow: Flow,
        id: &ParentId,
        filter: Document,
        update: Document,
    ) -> Result<Write, StoreError> {
        let collection = self.collection(flow);
        self.writes
            .guarded(collection.name(), id.as_str(), || async {
                let result = self
                    .exec()
                    .run(collection.update_one(filter, update))
                    .await?;
                Ok(matched(result.matched_count))
            })
            .await
    }
}

fn failed(reason: &str) -> Document {
    let mut set = doc! { "status": ParentStatus::VerificationFailed.as_str() };
    // As id-server's failSession: the reason is written only when there is one.
    if !reason.is_empty() {
        set.insert("verificationFailureReason", reason);
    }
    doc! { "$set": set }
}

impl ParentStore for MongoParentStore {
    async fn get(&self, flow: Flow, id: &ParentId) -> Result<Option<Parent>, StoreError> {
        let filter = doc! { "_id": id_match(id.as_str(), "parent id")? };
        let found = self
            .exec()
            .run(
                self.collection(flow)
                    .find_one(filter)
                    .max_time(self.exec().timeout),
            )
            .await?;
        found
            .as_ref()
            .map(|document| decode_parent(document, flow))
            .transpose()
    }

    async fn find_any(&self, id: &ParentId) -> Result<Option<Parent>, StoreError> {
        for flow in Flow::ALL {
            if let Some(parent) = self.get(flow, id).await? {
                return Ok(Some(parent));
            }
        }
        Ok(None)
    }

    async fn insert(&self, parent: &Parent) -> Result<(), StoreError> {
        let mut document = doc! {
            "_id": object_id(parent.id.as_str(), "parent id")?,
            // id-server dispatches on the provider; a parent we create is an iDenfy one.
            "idvProvider": "idenfy",
            "status": parent.status.as_str(),
        };
        if let Some(sig_digest) = &parent.sig_digest {
            document.insert("sigDigest", sig_digest.expose());
        }
        if let Some(row) = &parent.idenfy_session_id {
            document.insert("idenfySessionId", object_id(row.as_str(), "row id")?);
        }
        if let Some(reason) = &parent.failure_reason {
            document.insert("verificationFailureReason", reason.as_str());
        }
        if let Some(created_at) = parent.created_at {
            document.insert("createdAt", date(created_at));
        }
        self.exec()
            .run(self.collection(parent.flow).insert_one(document))
            .await?;
        Ok(())
    }

    async fn link_row(&self, flow: Flow, id: &ParentId, row: &RowId) -> Result<Write, StoreError> {
        let filter = doc! {
            "_id": id_match(id.as_str(), "parent id")?,
            "$or": [
                { "idenfySessionId": { "$exists": false } },
                { "idenfySessionId": Bson::Null },
                { "idenfySessionId": id_match(row.as_str(), "row id")? },
            ],
        };
        let update = doc! { "$set": { "idenfySessionId": object_id(row.as_str(), "row id")? } };
        self.update(flow, id, filter, update).await
    }

    async fn fail(&self, flow: Flow, id: &ParentId, reason: &str) -> Result<Write, StoreError> {
        let filter = doc! {
            "_id": id_match(id.as_str(), "parent id")?,
            "status": ParentStatus::InProgress.as_str(),
        };
        self.update(flow, id, filter, failed(reason)).await
    }

    async fn fail_all_linked(&self, row: &RowId, reason: &str) -> Result<u64, StoreError> {
        let filter = doc! {
            "idenfySessionId": id_match(row.as_str(), "row id")?,
            "status": ParentStatus::InProgress.as_str(),
        };
        let mut changed = 0;
        for flow in Flow::ALL {
            changed += self
                .writes
                .update_many(self.collection(flow), filter.clone(), failed(reason))
                .await?;
        }
        Ok(changed)
    }
}

/// Reads the fields we model from a parent written by id-server (every field is optional
/// in its schemas; we need at least a status).
fn decode_parent(document: &Document, flow: Flow) -> Result<Parent, StoreError> {
    let described = Reader::describe_id(document);
    let r = Reader::new(document, &described);
    let id = ParentId::parse(&r.id_hex("_id")?).map_err(|e| r.corrupt("_id", e))?;
    let idenfy_session_id = r
        .opt_id_hex("idenfySessionId")?
        .map(|hex| RowId::parse(&hex).map_err(|e| r.corrupt("idenfySessionId", e)))
        .transpose()?;
    Ok(Parent {
        id,
        flow,
        sig_digest: r.opt_str("sigDigest")?.map(SigDigest::from_stored),
        status: ParentStatus::parse(r.str("status")?),
        idenfy_session_id,
        failure_reason: r.opt_str("verificationFailureReason")?.map(str::to_owned),
        created_at: r.opt_date("createdAt")?,
    })
}
