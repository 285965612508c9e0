//! `IntentStore` on our own `idenfycreationintents` / `sandboxidenfycreationintents`:
//! one document per idempotency key, the key being its `_id` (so uniqueness needs no index).

use idenfy_core::{
    AuthToken, CreationIntent, Flow, IntentState, IntentStore, MintedToken, Nonce, ParentId, RowId,
    ScanRef, SigDigest, StoreError, Timestamp, Write,
};
use mongodb::{
    Collection, Database,
    bson::{Bson, Document, doc},
};

use crate::{
    Collections, Exec,
    codec::{Reader, count, date, object_id},
    writes::{Writes, matched},
};

/// The creation intents of one environment. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoIntentStore {
    intents: Collection<Document>,
    writes: Writes,
}

impl MongoIntentStore {
    pub(crate) fn new(database: &Database, collections: Collections, writes: Writes) -> Self {
        MongoIntentStore {
            intents: database.collection(collections.intents),
            writes,
        }
    }

    fn exec(&self) -> Exec {
        self.writes.exec
    }

    /// The underlying collection (tests, operational tooling).
    pub fn collection(&self) -> &Collection<Document> {
        &self.intents
    }

    /// ONE conditional `update_one` on the intent `key` (under its mutex in serialised mode).
    async fn update(
        &self,
        key: &str,
        filter: Document,
        update: Document,
    ) -> Result<Write, StoreError> {
        self.writes
            .guarded(self.intents.name(), key, || async {
                let result = self
                    .exec()
                    .run(self.intents.update_one(filter, update))
                    .await?;
                Ok(matched(result.matched_count))
            })
            .await
    }
}

fn state_str(state: IntentState) -> &'static str {
    match state {
        IntentState::Pending => "pending",
        IntentState::Done => "done",
        IntentState::Failed => "failed",
    }
}

fn encode_minted(minted: &MintedToken) -> Document {
    let mut document = doc! {
        "authToken": minted.auth_token.expose(),
        "scanRef": minted.scan_ref.as_str(),
        "redirectUrl": minted.redirect_url.as_str(),
        "mintedAt": date(minted.minted_at),
    };
    if let Some(expires_at) = minted.expires_at {
        document.insert("expiresAt", date(expires_at));
    }
    document
}

impl IntentStore for MongoIntentStore {
    async fn insert(&self, intent: &CreationIntent) -> Result<(), StoreError> {
        let mut document = doc! {
            "_id": intent.key.as_str(),
            "sigDigest": intent.sig_digest.expose(),
            "flow": intent.flow.as_str(),
            "parentId": object_id(intent.parent_id.as_str(), "parent id")?,
            "rowId": object_id(intent.row_id.as_str(), "row id")?,
            "state": state_str(intent.state),
            "claimId": intent.claim_id.as_str(),
            "claimedUntil": date(intent.claimed_until),
            "createdAt": date(intent.created_at),
        };
        if let Some(minted) = &intent.minted {
            document.insert("minted", encode_minted(minted));
        }
        if intent.unknown_mint_outcomes > 0 {
            document.insert("mintUnknownOutcomes", count(intent.unknown_mint_outcomes));
        }
        if let Some(at) = intent.last_unknown_mint_at {
            document.insert("lastMintUnknownAt", date(at));
        }
        self.exec().run(self.intents.insert_one(document)).await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<CreationIntent>, StoreError> {
        let found = self
            .exec()
            .run(
                self.intents
                    .find_one(doc! { "_id": key })
                    .max_time(self.exec().timeout),
            )
            .await?;
        found.as_ref().map(decode_intent).transpose()
    }

    async fn reclaim(
        &self,
        key: &str,
        claim_id: &Nonce,
        claimed_until: Timestamp,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        let filter = doc! {
            "_id": key,
            "$or": [
                { "state": state_str(IntentState::Failed) },
                { "state": state_str(IntentState::Pending), "claimedUntil": { "$lt": date(now) } },
            ],
        };
        self.update(
            key,
            filter,
            doc! { "$set": {
                "state": state_str(IntentState::Pending),
                "claimId": claim_id.as_str(),
                "claimedUntil": date(claimed_until),
            } },
        )
        .await
    }

    async fn record_mint(
        &self,
        key: &str,
        claim_id: &Nonce,
        minted: &MintedToken,
    ) -> Result<Write, StoreError> {
        self.update(
            key,
            doc! { "_id": key, "claimId": claim_id.as_str() },
            doc! { "$set": { "minted": encode_minted(minted) } },
        )
        .await
    }

    async fn finish(
        &self,
        key: &str,
        claim_id: &Nonce,
        state: IntentState,
    ) -> Result<Write, StoreError> {
        self.update(
            key,
            doc! { "_id": key, "claimId": claim_id.as_str() },
            doc! { "$set": { "state": state_str(state) } },
        )
        .await
    }

    async fn record_unknown_mint(
        &self,
        key: &str,
        claim_id: &Nonce,
        retry_at: Timestamp,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        self.update(
            key,
            doc! { "_id": key, "claimId": claim_id.as_str() },
            doc! {
                "$set": {
                    "state": state_str(IntentState::Failed),
                    "claimedUntil": date(retry_at),
                    "lastMintUnknownAt": date(now),
                },
                "$inc": { "mintUnknownOutcomes": 1 },
            },
        )
        .await
    }
}

fn decode_intent(document: &Document) -> Result<CreationIntent, StoreError> {
    let described = Reader::describe_id(document);
    let r = Reader::new(document, &described);
    let key = match document.get("_id") {
        Some(Bson::String(key)) => key.clone(),
        _ => return Err(r.corrupt("_id", "is not a string key")),
    };
    let flow_raw = r.str("flow")?;
    let flow = Flow::parse(flow_raw)
        .ok_or_else(|| r.corrupt("flow", format!("is `{flow_raw}`, not a flow")))?;
    let state = match r.str("state")? {
        "pending" => IntentState::Pending,
        "done" => IntentState::Done,
        "failed" => IntentState::Failed,
        other => return Err(r.corrupt("state", format!("is `{other}`, not an intent state"))),
    };
    let minted = r
        .opt_doc("minted")?
        .map(|nested| {
            let m = r.nested(nested, "minted");
            Ok::<_, StoreError>(MintedToken {
                auth_token: AuthToken::new(m.str("authToken")?),
                scan_ref: ScanRef::new(m.str("scanRef")?),
                redirect_url: m.str("redirectUrl")?.to_owned(),
                expires_at: m.opt_date("expiresAt")?,
                minted_at: m.date("mintedAt")?,
            })
        })
        .transpose()?;
    Ok(CreationIntent {
        sig_digest: SigDigest::from_stored(r.str("sigDigest")?),
        flow,
        parent_id: ParentId::parse(&r.id_hex("parentId")?).map_err(|e| r.corrupt("parentId", e))?,
        row_id: RowId::parse(&r.id_hex("rowId")?).map_err(|e| r.corrupt("rowId", e))?,
        state,
        claimed_until: r.date("claimedUntil")?,
        claim_id: Nonce::from_stored(r.str("claimId")?),
        minted,
        created_at: r.date("createdAt")?,
        unknown_mint_outcomes: r.count("mintUnknownOutcomes")?,
        last_unknown_mint_at: r.opt_date("lastMintUnknownAt")?,
        key,
    })
}
