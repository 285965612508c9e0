//! `RowStore` on `idenfysessions` / `sandboxidenfysessions`: id-server's iDenfy rows plus
//! the recovery fields we add.

use futures::TryStreamExt;
use idenfy_core::{
    AuthToken, Claim, Flow, IdenfyRow, Nonce, OrphanedMint, ParentId, Recreated, Recreation,
    RecreationLimits, RowId, RowStatus, RowStore, ScanRef, SigDigest, StatusUpdate, StoreError,
    SupersededScanRef, Timestamp, VerificationStatus, Write, reasons,
};
use mongodb::{
    Collection, Database,
    bson::{Bson, Document, doc},
    options::ReturnDocument,
};

use crate::{
    Collections, Exec,
    codec::{Reader, absent_or_before, absent_or_below, count, date, id_match, object_id},
    writes::{Writes, matched},
};

const EXPIRED: &str = "EXPIRED";

/// The rows of one environment. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MongoRowStore {
    rows: Collection<Document>,
    writes: Writes,
}

impl MongoRowStore {
    pub(crate) fn new(database: &Database, collections: Collections, writes: Writes) -> Self {
        MongoRowStore {
            rows: database.collection(collections.rows),
            writes,
        }
    }

    fn exec(&self) -> Exec {
        self.writes.exec
    }

    /// The underlying collection (tests, operational tooling).
    pub fn collection(&self) -> &Collection<Document> {
        &self.rows
    }

    async fn find_one(&self, filter: Document) -> Result<Option<IdenfyRow>, StoreError> {
        let found = self
            .exec()
            .run(self.rows.find_one(filter).max_time(self.exec().timeout))
            .await?;
        found.as_ref().map(decode_row).transpose()
    }

    /// ONE conditional `update_one` on the row `id` (under its mutex in serialised mode).
    async fn update(
        &self,
        id: &RowId,
        filter: Document,
        update: Document,
    ) -> Result<Write, StoreError> {
        self.writes
            .guarded(self.rows.name(), id.as_str(), || {
                self.update_one(filter, update)
            })
            .await
    }

    async fn update_one(&self, filter: Document, update: Document) -> Result<Write, StoreError> {
        let result = self
            .exec()
            .run(self.rows.update_one(filter, update))
            .await?;
        Ok(matched(result.matched_count))
    }

    /// ONE conditional `update_one` that claims the row `id`: in serialised mode it never
    /// waits for the row's mutex, and a row busy with another writer reports `NotMatched`.
    async fn claim(
        &self,
        id: &RowId,
        filter: Document,
        update: Document,
    ) -> Result<Write, StoreError> {
        let claimed = self
            .writes
            .claim(self.rows.name(), id.as_str(), || {
                self.update_one(filter, update)
            })
            .await?;
        Ok(claimed.unwrap_or(Write::NotMatched))
    }
}

/// `{_id, idenfyScanRef}`: the row, and only while `scan_ref` is its CURRENT scanRef.
fn current(id: &RowId, scan_ref: &ScanRef) -> Result<Document, StoreError> {
    Ok(doc! {
        "_id": id_match(id.as_str(), "row id")?,
        "idenfyScanRef": scan_ref.as_str(),
    })
}

/// `final` not true (absent counts as not final).
fn not_final(filter: &mut Document) {
    filter.insert("final", doc! { "$ne": true });
}

/// Adds `conditions` under `$and`, so several `$or`s can coexist in one filter.
fn all_of(filter: &mut Document, conditions: Vec<Document>) {
    filter.insert(
        "$and",
        conditions
            .into_iter()
            .map(Bson::Document)
            .collect::<Vec<_>>(),
    );
}

fn opt_date(ts: Option<Timestamp>) -> Bson {
    ts.map_or(Bson::Null, date)
}

impl RowStore for MongoRowStore {
    async fn get(&self, id: &RowId) -> Result<Option<IdenfyRow>, StoreError> {
        // The hot path of every status poll: plain equality on the ObjectId, which FerretDB
        // serves from its `_id` index (an `$in` of both spellings made it scan; `cargo xtask
        // bench` measured 7x slower). The hex-string spelling is only tried on a miss.
        let oid = object_id(id.as_str(), "row id")?;
        if let Some(row) = self.find_one(doc! { "_id": oid }).await? {
            return Ok(Some(row));
        }
        self.find_one(doc! { "_id": id.as_str() }).await
    }

    async fn find_by_scan_ref(&self, scan_ref: &ScanRef) -> Result<Option<IdenfyRow>, StoreError> {
        self.find_one(doc! { "idenfyScanRef": scan_ref.as_str() })
            .await
    }

    async fn find_by_superseded_scan_ref(
        &self,
        scan_ref: &ScanRef,
    ) -> Result<Option<IdenfyRow>, StoreError> {
        self.find_one(doc! { "scanRefHistory.scanRef": scan_ref.as_str() })
            .await
    }

    async fn insert(&self, row: &IdenfyRow) -> Result<(), StoreError> {
        let document = encode_row(row)?;
        self.exec().run(self.rows.insert_one(document)).await?;
        Ok(())
    }

    async fn find_reusable(
        &self,
        sig_digest: &SigDigest,
        flow: Flow,
        since: Timestamp,
    ) -> Result<Option<IdenfyRow>, StoreError> {
        let filter = doc! {
            "sigDigest": sig_digest.expose(),
            "status": RowStatus::Complete.as_str(),
            "createdAt": { "$gte": date(since) },
            "createdByFlow": flow.as_str(),
            "idenfyVerificationStatus": VerificationStatus::Approved.as_str(),
        };
        let found = self
            .exec()
            .run(
                self.rows
                    .find_one(filter)
                    .sort(doc! { "createdAt": -1 })
                    .max_time(self.exec().timeout),
            )
            .await?;
        found.as_ref().map(decode_row).transpose()
    }

    async fn list_recent(
        &self,
        sig_digest: &SigDigest,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<IdenfyRow>, StoreError> {
        let filter = doc! {
            "sigDigest": sig_digest.expose(),
            "createdAt": { "$gte": date(since) },
        };
        let find = self
            .rows
            .find(filter)
            .sort(doc! { "createdAt": -1 })
            .limit(i64::from(limit))
            .max_time(self.exec().timeout);
        let documents: Vec<Document> = self
            .exec()
            .run(async move { find.await?.try_collect().await })
            .await?;
        documents.iter().map(decode_row).collect()
    }

    async fn claim_poll(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        due_before: Timestamp,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        let mut filter = current(id, scan_ref)?;
        not_final(&mut filter);
        all_of(
            &mut filter,
            vec![absent_or_before("lastPolledAt", due_before)],
        );
        self.claim(id, filter, doc! { "$set": { "lastPolledAt": date(now) } })
            .await
    }

    async fn apply_status(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        update: &StatusUpdate,
        now: Timestamp,
    ) -> Result<Option<IdenfyRow>, StoreError> {
        let mut filter = current(id, scan_ref)?;
        not_final(&mut filter);
        if !update.status.is_decision() {
            // A non-decision that lost a race never un-expires a row.
            filter.insert(
                "idenfyVerificationStatus",
                doc! { "$nin": [
                    VerificationStatus::Expired.as_str(),
                    VerificationStatus::ExpiredDeleted.as_str(),
                ] },
            );
        }
        let mut set = doc! {
            "idenfyVerificationStatus": update.status.as_str(),
            "final": update.is_final,
            "updatedAt": date(now),
        };
        if let Some(row_status) = update.row_status {
            set.insert("status", row_status.as_str());
        }
        if let Some(reason) = &update.failure_reason {
            set.insert("verificationFailureReason", reason.as_str());
        }
        if let Some(checked_at) = update.checked_at {
            set.insert("lastCheckedAt", date(checked_at));
        }
        let after = self
            .writes
            .guarded(self.rows.name(), id.as_str(), || async {
                Ok(self
                    .exec()
                    .run(
                        self.rows
                            .find_one_and_update(filter, doc! { "$set": set })
                            .return_document(ReturnDocument::After)
                            .max_time(self.exec().timeout),
                    )
                    .await?)
            })
            .await?;
        after.as_ref().map(decode_row).transpose()
    }

    async fn mark_expired(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        let mut filter = current(id, scan_ref)?;
        not_final(&mut filter);
        self.update(
            id,
            filter,
            doc! { "$set": { "idenfyVerificationStatus": EXPIRED, "updatedAt": date(now) } },
        )
        .await
    }

    async fn claim_recreation(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        limits: RecreationLimits,
        claim: &Claim,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        let mut filter = current(id, scan_ref)?;
        filter.insert("idenfyVerificationStatus", EXPIRED);
        not_final(&mut filter);
        all_of(
            &mut filter,
            vec![
                // Not given up by us; a row id-server failed on expiry recovers.
                doc! { "$or": [
                    { "status": { "$ne": RowStatus::Failed.as_str() } },
                    { "verificationFailureReason": { "$ne": reasons::RECREATION_LIMIT } },
                ] },
                absent_or_below("recreationCount", limits.cap),
                absent_or_below("mintAttempts", limits.max_attempts),
                absent_or_before("recreation.claimedUntil", now),
            ],
        );
        self.claim(
            id,
            filter,
            doc! {
                "$set": {
                    "recreation.claimId": claim.claim_id.as_str(),
                    "recreation.claimedUntil": date(claim.claimed_until),
                    "updatedAt": date(now),
                },
                "$inc": { "mintAttempts": 1 },
            },
        )
        .await
    }

    async fn release_claim(
        &self,
        id: &RowId,
        claim_id: &Nonce,
        failure: &idenfy_core::MintFailure,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        let filter = doc! {
            "_id": id_match(id.as_str(), "row id")?,
            "recreation.claimId": claim_id.as_str(),
        };
        let mut set = doc! {
            "recreation.lastError": failure.last_error.as_str(),
            "recreation.nextAttemptAt": date(failure.next_attempt_at),
            "updatedAt": date(now),
        };
        let mut inc = doc! { "recreation.consecutiveFailures": 1 };
        if failure.outcome_unknown {
            set.insert("lastMintUnknownAt", date(now));
            inc.insert("mintUnknownOutcomes", 1);
        }
        self.update(
            id,
            filter,
            doc! {
                "$unset": { "recreation.claimId": "", "recreation.claimedUntil": "" },
                "$set": set,
                "$inc": inc,
            },
        )
        .await
    }

    async fn persist_recreation(
        &self,
        id: &RowId,
        old_scan_ref: &ScanRef,
        claim_id: &Nonce,
        recreated: &Recreated,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        let mut filter = current(id, old_scan_ref)?;
        filter.insert("idenfyVerificationStatus", EXPIRED);
        filter.insert("recreation.claimId", claim_id.as_str());
        let token = &recreated.token;
        let mut set = doc! {
            "idenfyAuthToken": token.auth_token.expose(),
            "idenfyScanRef": token.scan_ref.as_str(),
            "tokenMintedAt": date(token.minted_at),
            "status": RowStatus::InProgress.as_str(),
            // id-server writes null here on recreation; keep its shape.
            "idenfyVerificationStatus": Bson::Null,
            "verificationFailureReason": Bson::Null,
            "updatedAt": date(now),
        };
        // The whole `recreation` object is claim + back-off state: all of it is cleared.
        let mut unset = doc! {
            "final": "",
            "lastPolledAt": "",
            "lastCheckedAt": "",
            "recreation": "",
        };
        match token.expires_at {
            Some(expires_at) => {
                set.insert("tokenExpiresAt", date(expires_at));
            }
            None => {
                unset.insert("tokenExpiresAt", "");
            }
        }
        let superseded = doc! {
            "scanRef": old_scan_ref.as_str(),
            "mintedAt": opt_date(recreated.old_minted_at),
            "supersededAt": date(now),
            "lastStatus": recreated.old_status.as_ref().map_or(Bson::Null, |s| Bson::String(s.as_str().to_owned())),
            "final": false,
        };
        self.update(
            id,
            filter,
            doc! {
                "$set": set,
                "$unset": unset,
                "$inc": { "recreationCount": 1 },
                "$push": { "scanRefHistory": superseded },
            },
        )
        .await
    }

    async fn record_orphaned_mint(
        &self,
        id: &RowId,
        orphan: &OrphanedMint,
    ) -> Result<Write, StoreError> {
        self.update(
            id,
            doc! { "_id": id_match(id.as_str(), "row id")? },
            doc! { "$push": { "orphanedMints": {
                "scanRef": orphan.scan_ref.as_str(),
                "mintedAt": date(orphan.minted_at),
            } } },
        )
        .await
    }

    async fn give_up(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        reason: &str,
        now: Timestamp,
    ) -> Result<Write, StoreError> {
        let mut filter = current(id, scan_ref)?;
        filter.insert("idenfyVerificationStatus", EXPIRED);
        not_final(&mut filter);
        self.update(
            id,
            filter,
            doc! {
                "$set": {
                    "status": RowStatus::Failed.as_str(),
                    "verificationFailureReason": reason,
                    "updatedAt": date(now),
                },
                "$unset": { "recreation.claimId": "", "recreation.claimedUntil": "" },
            },
        )
        .await
    }

    async fn update_superseded(
        &self,
        id: &RowId,
        scan_ref: &ScanRef,
        status: &VerificationStatus,
        is_final: bool,
    ) -> Result<Write, StoreError> {
        // FerretDB 1.x supports neither `$elemMatch` on fields nor the positional `$`
        // update, so the entry is addressed by its index. History is append-only, and the
        // write's filter re-checks that the entry at that index has this scanRef and is not
        // final, so the single update stays exactly the documented condition.
        let id_filter = id_match(id.as_str(), "row id")?;
        self.writes
            .guarded(self.rows.name(), id.as_str(), || async {
                let projection = doc! { "scanRefHistory": 1 };
                let Some(document) = self
                    .exec()
                    .run(
                        self.rows
                            .find_one(doc! { "_id": id_filter.clone() })
                            .projection(projection)
                            .max_time(self.exec().timeout),
                    )
                    .await?
                else {
                    return Ok(Write::NotMatched);
                };
                let described = Reader::describe_id(&document);
                let history = Reader::new(&document, &described).docs("scanRefHistory")?;
                let Some(index) = history.iter().position(|entry| {
                    entry
                        .get_str("scanRef")
                        .is_ok_and(|s| s == scan_ref.as_str())
                        && !entry.get_bool("final").unwrap_or(false)
                }) else {
                    return Ok(Write::NotMatched);
                };
                let entry = format!("scanRefHistory.{index}");
                let filter = doc! {
                    "_id": id_filter.clone(),
                    format!("{entry}.scanRef"): scan_ref.as_str(),
                    format!("{entry}.final"): { "$ne": true },
                };
                let update = doc! { "$set": {
                    format!("{entry}.lastStatus"): status.as_str(),
                    format!("{entry}.final"): is_final,
                } };
                let result = self
                    .exec()
                    .run(self.rows.update_one(filter, update))
                    .await?;
                Ok(matched(result.matched_count))
            })
            .await
    }
}

/// A full new row, field names as id-server's schema (plus ours). Optional fields that are
/// unknown are left out, as a fresh id-server document leaves them out.
pub(crate) fn encode_row(row: &IdenfyRow) -> Result<Document, StoreError> {
    let mut document = doc! {
        "_id": object_id(row.id.as_str(), "row id")?,
        "sigDigest": row.sig_digest.expose(),
        "idenfyAuthToken": row.auth_token.expose(),
        "idenfyScanRef": row.scan_ref.as_str(),
    };
    if let Some(status) = &row.verification_status {
        document.insert("idenfyVerificationStatus", status.as_str());
    }
    if let Some(reason) = &row.failure_reason {
        document.insert("verificationFailureReason", reason.as_str());
    }
    document.insert("status", row.status.as_str());
    document.insert("createdByFlow", row.flow.as_str());
    document.insert(
        "createdBySessionId",
        object_id(row.parent_id.as_str(), "parent id")?,
    );
    document.insert("createdAt", date(row.created_at));
    document.insert("recreationCount", count(row.recreation_count));
    document.insert("final", row.is_final);
    for (field, value) in [
        ("tokenMintedAt", row.token_minted_at),
        ("tokenExpiresAt", row.token_expires_at),
        ("lastPolledAt", row.last_polled_at),
        ("lastCheckedAt", row.last_checked_at),
        ("updatedAt", row.updated_at),
        ("lastMintUnknownAt", row.last_unknown_mint_at),
    ] {
        if let Some(value) = value {
            document.insert(field, date(value));
        }
    }
    document.insert("mintAttempts", count(row.mint_attempts));
    if row.unknown_mint_outcomes > 0 {
        document.insert("mintUnknownOutcomes", count(row.unknown_mint_outcomes));
    }
    let recreation = encode_recreation(&row.recreation);
    if !recreation.is_empty() {
        document.insert("recreation", recreation);
    }
    document.insert(
        "scanRefHistory",
        row.scan_ref_history
            .iter()
            .map(|entry| {
                Bson::Document(doc! {
                    "scanRef": entry.scan_ref.as_str(),
                    "mintedAt": opt_date(entry.minted_at),
                    "supersededAt": date(entry.superseded_at),
                    "lastStatus": entry.last_status.as_ref().map_or(Bson::Null, |s| Bson::String(s.as_str().to_owned())),
                    "final": entry.is_final,
                })
            })
            .collect::<Vec<_>>(),
    );
    document.insert(
        "orphanedMints",
        row.orphaned_mints
            .iter()
            .map(|orphan| {
                Bson::Document(doc! {
                    "scanRef": orphan.scan_ref.as_str(),
                    "mintedAt": date(orphan.minted_at),
                })
            })
            .collect::<Vec<_>>(),
    );
    Ok(document)
}

fn encode_recreation(recreation: &Recreation) -> Document {
    let mut document = Document::new();
    if let Some(claim) = &recreation.claim {
        document.insert("claimId", claim.claim_id.as_str());
        document.insert("claimedUntil", date(claim.claimed_until));
    }
    if let Some(next) = recreation.next_attempt_at {
        document.insert("nextAttemptAt", date(next));
    }
    if let Some(error) = &recreation.last_error {
        document.insert("lastError", error.as_str());
    }
    if recreation.consecutive_failures > 0 {
        document.insert(
            "consecutiveFailures",
            count(recreation.consecutive_failures),
        );
    }
    document
}

/// Reads a row written by id-server (no new fields, `__v`, extra fields, numbers as doubles)
/// or by us.
pub(crate) fn decode_row(document: &Document) -> Result<IdenfyRow, StoreError> {
    let described = Reader::describe_id(document);
    let r = Reader::new(document, &described);
    let id = RowId::parse(&r.id_hex("_id")?).map_err(|e| r.corrupt("_id", e))?;
    let status_raw = r.str("status")?;
    let status = RowStatus::parse(status_raw)
        .ok_or_else(|| r.corrupt("status", format!("is `{status_raw}`, not a row status")))?;
    let flow_raw = r.str("createdByFlow")?;
    let flow = Flow::parse(flow_raw)
        .ok_or_else(|| r.corrupt("createdByFlow", format!("is `{flow_raw}`, not a flow")))?;
    let parent_id = ParentId::parse(&r.id_hex("createdBySessionId")?)
        .map_err(|e| r.corrupt("createdBySessionId", e))?;
    // id-server always writes createdAt; should it be missing, the ObjectId knows when.
    let created_at = match r.opt_date("createdAt")? {
        Some(created_at) => created_at,
        None => match document.get("_id") {
            Some(Bson::ObjectId(oid)) => {
                chrono::DateTime::from_timestamp_millis(oid.timestamp().timestamp_millis())
                    .ok_or_else(|| r.corrupt("createdAt", "is missing"))?
            }
            _ => return Err(r.corrupt("createdAt", "is missing")),
        },
    };
    let recreation = match r.opt_doc("recreation")? {
        None => Recreation::default(),
        Some(nested) => decode_recreation(&r.nested(nested, "recreation"))?,
    };
    let scan_ref_history = r
        .docs("scanRefHistory")?
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let e = r.nested(entry, &format!("scanRefHistory.{index}"));
            Ok(SupersededScanRef {
                scan_ref: ScanRef::new(e.str("scanRef")?),
                minted_at: e.opt_date("mintedAt")?,
                superseded_at: e.date("supersededAt")?,
                last_status: e.opt_str("lastStatus")?.map(VerificationStatus::parse),
                is_final: e.flag("final")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let orphaned_mints = r
        .docs("orphanedMints")?
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let e = r.nested(entry, &format!("orphanedMints.{index}"));
            Ok(OrphanedMint {
                scan_ref: ScanRef::new(e.str("scanRef")?),
                minted_at: e.date("mintedAt")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(IdenfyRow {
        id,
        sig_digest: SigDigest::from_stored(r.str("sigDigest")?),
        auth_token: AuthToken::new(r.str("idenfyAuthToken")?),
        scan_ref: ScanRef::new(r.str("idenfyScanRef")?),
        verification_status: r
            .opt_str("idenfyVerificationStatus")?
            .map(VerificationStatus::parse),
        failure_reason: r.opt_str("verificationFailureReason")?.map(str::to_owned),
        status,
        flow,
        parent_id,
        created_at,
        recreation_count: r.count("recreationCount")?,
        is_final: r.flag("final")?,
        token_minted_at: r.opt_date("tokenMintedAt")?,
        token_expires_at: r.opt_date("tokenExpiresAt")?,
        last_polled_at: r.opt_date("lastPolledAt")?,
        last_checked_at: r.opt_date("lastCheckedAt")?,
        mint_attempts: r.count("mintAttempts")?,
        unknown_mint_outcomes: r.count("mintUnknownOutcomes")?,
        last_unknown_mint_at: r.opt_date("lastMintUnknownAt")?,
        recreation,
        scan_ref_history,
        orphaned_mints,
        updated_at: r.opt_date("updatedAt")?,
    })
}

fn decode_recreation(r: &Reader<'_>) -> Result<Recreation, StoreError> {
    let claim = match (r.opt_str("claimId")?, r.opt_date("claimedUntil")?) {
        (Some(claim_id), Some(claimed_until)) => Some(Claim {
            claim_id: Nonce::from_stored(claim_id),
            claimed_until,
        }),
        (None, None) => None,
        (Some(_), None) => return Err(r.corrupt("claimedUntil", "is missing beside claimId")),
        (None, Some(_)) => return Err(r.corrupt("claimId", "is missing beside claimedUntil")),
    };
    Ok(Recreation {
        claim,
        next_attempt_at: r.opt_date("nextAttemptAt")?,
        last_error: r.opt_str("lastError")?.map(str::to_owned),
        consecutive_failures: r.count("consecutiveFailures")?,
    })
}
