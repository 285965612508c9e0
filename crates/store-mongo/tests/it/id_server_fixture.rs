//! Documents written by id-server (mongoose): inserted raw, loaded through our stores, written
//! through our conditional writes, and read back raw to prove that fields we do not model
//! survive and that ids stay ObjectIds and times BSON dates.

use chrono::{SubsecRound, TimeDelta, Utc};
use idenfy_core::{
    AuthToken, Claim, Environment, Flow, IdenfyRow, IntentStore, MintedToken, Nonce, ParentId,
    ParentStatus, ParentStore, Recreated, RecreationLimits, RowId, RowStatus, RowStore, ScanRef,
    StatusUpdate, StoreError, Timestamp, VerificationStatus, Write,
};
use mongodb::bson::{self, Bson, Document, doc, oid::ObjectId};
use store_mongo::MongoStores;

use crate::support::{finish, stores};

fn now() -> Timestamp {
    Utc::now().trunc_subsecs(3)
}

fn bson_date(at: Timestamp) -> bson::DateTime {
    bson::DateTime::from_millis(at.timestamp_millis())
}

/// An `idenfysessions` document exactly as id-server's mongoose model writes it: ObjectIds,
/// a BSON date, `__v`, no `recreationCount` (rows older than `60feb0d`), none of our
/// fields, and a field we have never heard of.
fn id_server_row(
    id: ObjectId,
    parent: ObjectId,
    scan_ref: &str,
    created_at: Timestamp,
) -> Document {
    doc! {
        "_id": id,
        "sigDigest": "0x5ig-digest-of-the-user",
        "idenfyAuthToken": "legacy-auth-token",
        "idenfyScanRef": scan_ref,
        "status": "in_progress",
        "createdByFlow": "gov-id",
        "createdBySessionId": parent,
        "createdAt": bson_date(created_at),
        "__v": 0_i32,
        "someLegacyField": { "nested": "keep me", "n": 7_i32 },
    }
}

/// A gov-id `sessions` document as id-server writes it, with provider fields we never touch.
fn id_server_gov_id_parent(id: ObjectId, row: ObjectId) -> Document {
    doc! {
        "_id": id,
        "sigDigest": "0x5ig-digest-of-the-user",
        "idvProvider": "idenfy",
        "status": "IN_PROGRESS",
        "idenfySessionId": row,
        "paymentCommitment": "0xfeedface",
        "chainId": 10_i32,
        "ipCountry": "LT",
        "frontendDomain": "app.holonym.id",
        "silkDiffWallet": Bson::Null,
        "__v": 0_i32,
    }
}

/// A clean-hands `amlcheckssessions` document as id-server writes it.
fn id_server_clean_hands_parent(id: ObjectId, row: ObjectId, at: Timestamp) -> Document {
    doc! {
        "_id": id,
        "sigDigest": "0x5ig-digest-of-the-user",
        "idvProvider": "idenfy",
        "status": "IN_PROGRESS",
        "idenfySessionId": row,
        "paymentCommitment": "0xc0ffee",
        "chainId": 8453_i32,
        "userDeclaration": {
            "statement": "I am not a sanctioned person",
            "confirmed": true,
            "statementGeneratedAt": bson_date(at),
        },
        "__v": 0_i32,
    }
}

async fn raw(stores: &MongoStores, collection: &str, id: ObjectId) -> Document {
    stores
        .database()
        .collection::<Document>(collection)
        .find_one(doc! { "_id": id })
        .await
        .expect("raw find")
        .expect("the document exists")
}

fn row_id(oid: ObjectId) -> RowId {
    RowId::parse(&oid.to_hex()).expect("an ObjectId is a row id")
}

fn parent_id(oid: ObjectId) -> ParentId {
    ParentId::parse(&oid.to_hex()).expect("an ObjectId is a parent id")
}

fn assert_type(document: &Document, field: &str, expected: bson::spec::ElementType) {
    let actual = document.get(field).map(Bson::element_type);
    assert_eq!(actual, Some(expected), "`{field}` in {document}");
}

#[tokio::test]
async fn id_server_documents_load() {
    let Some(stores) = stores(
        "store-mongo id_server_fixture::id_server_documents_load",
        Environment::Live,
    )
    .await
    else {
        return;
    };
    let t0 = now() - TimeDelta::hours(2);
    let (row_oid, parent_oid) = (ObjectId::new(), ObjectId::new());
    let rows = stores.database().collection::<Document>("idenfysessions");
    rows.insert_one(id_server_row(row_oid, parent_oid, "scan-legacy-1", t0))
        .await
        .expect("raw insert");
    // The same, after a webhook: a status, a reason, and `recreationCount` as mongoose may
    // store a JS number (a double).
    let decided_oid = ObjectId::new();
    let mut decided = id_server_row(decided_oid, parent_oid, "scan-legacy-2", t0);
    decided.insert("idenfyVerificationStatus", "DENIED");
    decided.insert("verificationFailureReason", "iDenfy: verification denied");
    decided.insert("status", "failed");
    decided.insert("recreationCount", 2.0_f64);
    rows.insert_one(decided).await.expect("raw insert");
    // `idenfyVerificationStatus: null`, as id-server writes on recreation.
    let nulled_oid = ObjectId::new();
    let mut nulled = id_server_row(nulled_oid, parent_oid, "scan-legacy-3", t0);
    nulled.insert("idenfyVerificationStatus", Bson::Null);
    nulled.insert("verificationFailureReason", Bson::Null);
    nulled.insert("recreationCount", 1_i32);
    rows.insert_one(nulled).await.expect("raw insert");

    let row = stores
        .rows()
        .get(&row_id(row_oid))
        .await
        .expect("get")
        .expect("the id-server row loads");
    let expected = IdenfyRow {
        id: row_id(row_oid),
        sig_digest: idenfy_core::SigDigest::from_stored("0x5ig-digest-of-the-user"),
        auth_token: AuthToken::new("legacy-auth-token"),
        scan_ref: ScanRef::new("scan-legacy-1"),
        verification_status: None,
        failure_reason: None,
        status: RowStatus::InProgress,
        flow: Flow::GovId,
        parent_id: parent_id(parent_oid),
        created_at: t0,
        recreation_count: 0,
        is_final: false,
        token_minted_at: None,
        token_expires_at: None,
        last_polled_at: None,
        last_checked_at: None,
        mint_attempts: 0,
        unknown_mint_outcomes: 0,
        last_unknown_mint_at: None,
        recreation: Default::default(),
        scan_ref_history: Vec::new(),
        orphaned_mints: Vec::new(),
        updated_at: None,
    };
    assert_eq!(row, expected);

    let decided = stores
        .rows()
        .get(&row_id(decided_oid))
        .await
        .expect("get")
        .expect("loads");
    assert_eq!(
        decided.verification_status,
        Some(VerificationStatus::Denied)
    );
    assert_eq!(decided.status, RowStatus::Failed);
    assert_eq!(decided.recreation_count, 2, "a double-typed count");
    let nulled = stores
        .rows()
        .get(&row_id(nulled_oid))
        .await
        .expect("get")
        .expect("loads");
    assert_eq!(nulled.verification_status, None, "null verification status");
    assert_eq!(nulled.failure_reason, None);
    assert_eq!(nulled.recreation_count, 1);

    let found = stores
        .rows()
        .find_by_scan_ref(&ScanRef::new("scan-legacy-1"))
        .await
        .expect("find");
    assert_eq!(found, Some(expected));

    let (gov_oid, clean_oid) = (ObjectId::new(), ObjectId::new());
    stores
        .database()
        .collection::<Document>("sessions")
        .insert_one(id_server_gov_id_parent(gov_oid, row_oid))
        .await
        .expect("raw insert");
    stores
        .database()
        .collection::<Document>("amlcheckssessions")
        .insert_one(id_server_clean_hands_parent(clean_oid, row_oid, t0))
        .await
        .expect("raw insert");
    let gov = stores
        .parents()
        .get(Flow::GovId, &parent_id(gov_oid))
        .await
        .expect("get")
        .expect("loads");
    assert_eq!(gov.status, ParentStatus::InProgress);
    assert_eq!(gov.idenfy_session_id, Some(row_id(row_oid)));
    assert_eq!(gov.created_at, None, "id-server parents have no createdAt");
    let clean = stores
        .parents()
        .find_any(&parent_id(clean_oid))
        .await
        .expect("find")
        .expect("loads");
    assert_eq!(clean.flow, Flow::CleanHands);
    assert_eq!(clean.idenfy_session_id, Some(row_id(row_oid)));

    finish(stores).await;
}

#[tokio::test]
async fn writes_keep_unmodelled_fields_and_bson_types() {
    let Some(stores) = stores(
        "store-mongo id_server_fixture::writes_keep_unmodelled_fields_and_bson_types",
        Environment::Live,
    )
    .await
    else {
        return;
    };
    use bson::spec::ElementType::{Array, DateTime, Int32, Null, ObjectId as Oid, String as Str};
    let t0 = now() - TimeDelta::hours(2);
    let (row_oid, gov_oid, clean_oid) = (ObjectId::new(), ObjectId::new(), ObjectId::new());
    let database = stores.database();
    database
        .collection::<Document>("idenfysessions")
        .insert_one(id_server_row(row_oid, gov_oid, "scan-legacy-old", t0))
        .await
        .expect("raw insert");
    database
        .collection::<Document>("sessions")
        .insert_one(id_server_gov_id_parent(gov_oid, row_oid))
        .await
        .expect("raw insert");
    database
        .collection::<Document>("amlcheckssessions")
        .insert_one(id_server_clean_hands_parent(clean_oid, row_oid, t0))
        .await
        .expect("raw insert");
    let rows = stores.rows();
    let id = row_id(row_oid);
    let old = ScanRef::new("scan-legacy-old");
    let t1 = now();

    // Poll claim, a status, the EXPIRED marker, a recreation claim and its persist.
    assert_eq!(
        rows.claim_poll(&id, &old, t1, t1).await.expect("poll"),
        Write::Applied
    );
    let active = StatusUpdate {
        status: VerificationStatus::Active,
        is_final: false,
        row_status: None,
        failure_reason: None,
        checked_at: Some(t1),
    };
    let after = rows
        .apply_status(&id, &old, &active, t1)
        .await
        .expect("apply")
        .expect("matched");
    assert_eq!(after.verification_status, Some(VerificationStatus::Active));
    assert_eq!(
        rows.mark_expired(&id, &old, t1).await.expect("mark"),
        Write::Applied
    );
    let claim = Claim {
        claim_id: Nonce::random(),
        claimed_until: t1 + TimeDelta::seconds(60),
    };
    let limits = RecreationLimits {
        cap: 10,
        max_attempts: 30,
    };
    let w = rows
        .claim_recreation(&id, &old, limits, &claim, t1)
        .await
        .expect("claim");
    assert_eq!(w, Write::Applied);
    let token = MintedToken {
        auth_token: AuthToken::new("fresh-auth-token"),
        scan_ref: ScanRef::new("scan-fresh"),
        redirect_url: "https://ivs.idenfy.com/api/v2/redirect?authToken=fresh-auth-token".into(),
        expires_at: Some(t1 + TimeDelta::hours(1)),
        minted_at: t1,
    };
    let recreated = Recreated {
        token,
        old_minted_at: None,
        old_status: Some(VerificationStatus::Expired),
    };
    let w = rows
        .persist_recreation(&id, &old, &claim.claim_id, &recreated, t1)
        .await
        .expect("persist");
    assert_eq!(w, Write::Applied);

    let document = raw(&stores, "idenfysessions", row_oid).await;
    // Unmodelled fields survive, untouched.
    assert_eq!(document.get("__v"), Some(&Bson::Int32(0)), "{document}");
    assert_eq!(
        document
            .get_document("someLegacyField")
            .expect("someLegacyField kept"),
        &doc! { "nested": "keep me", "n": 7_i32 }
    );
    // Types are id-server's.
    assert_type(&document, "_id", Oid);
    assert_type(&document, "createdBySessionId", Oid);
    assert_eq!(
        document.get_object_id("createdBySessionId").expect("oid"),
        gov_oid
    );
    assert_type(&document, "createdAt", DateTime);
    assert_eq!(
        document.get_datetime("createdAt").expect("date"),
        &bson_date(t0),
        "createdAt not rewritten"
    );
    for field in ["tokenMintedAt", "tokenExpiresAt", "updatedAt"] {
        assert_type(&document, field, DateTime);
    }
    assert_type(&document, "idenfyVerificationStatus", Null);
    assert_type(&document, "verificationFailureReason", Null);
    assert_type(&document, "recreationCount", Int32);
    assert_eq!(document.get_i32("recreationCount").expect("count"), 1);
    assert_eq!(document.get_i32("mintAttempts").expect("attempts"), 1);
    assert_eq!(
        document.get_str("idenfyScanRef").expect("scanRef"),
        "scan-fresh"
    );
    assert_eq!(
        document.get_str("idenfyAuthToken").expect("token"),
        "fresh-auth-token"
    );
    assert_type(&document, "status", Str);
    assert!(
        !document.contains_key("lastPolledAt"),
        "cleared on recreation: {document}"
    );
    assert!(
        !document.contains_key("recreation"),
        "claim cleared: {document}"
    );
    assert_type(&document, "scanRefHistory", Array);
    let history = document.get_array("scanRefHistory").expect("history");
    let entry = history
        .first()
        .and_then(Bson::as_document)
        .expect("one history entry");
    assert_eq!(
        entry.get_str("scanRef").expect("scanRef"),
        "scan-legacy-old"
    );
    assert_type(entry, "supersededAt", DateTime);
    assert_eq!(entry.get_str("lastStatus").expect("lastStatus"), "EXPIRED");

    // A late webhook for the superseded scanRef updates its history entry only.
    let w = rows
        .update_superseded(&id, &old, &VerificationStatus::Denied, true)
        .await
        .expect("update superseded");
    assert_eq!(w, Write::Applied);
    let document = raw(&stores, "idenfysessions", row_oid).await;
    assert_eq!(document.get("__v"), Some(&Bson::Int32(0)));
    assert!(document.contains_key("someLegacyField"));

    // Parent writes touch status and reason only.
    let parents = stores.parents();
    let w = parents
        .fail(
            Flow::GovId,
            &parent_id(gov_oid),
            "iDenfy: verification denied",
        )
        .await
        .expect("fail");
    assert_eq!(w, Write::Applied);
    let gov = raw(&stores, "sessions", gov_oid).await;
    let mut expected = id_server_gov_id_parent(gov_oid, row_oid);
    expected.insert("status", "VERIFICATION_FAILED");
    expected.insert("verificationFailureReason", "iDenfy: verification denied");
    assert_eq!(
        sorted(gov),
        sorted(expected),
        "only status and reason changed"
    );

    assert_eq!(
        parents
            .fail_all_linked(&id, "iDenfy: verification denied")
            .await
            .expect("fail all"),
        1
    );
    let clean = raw(&stores, "amlcheckssessions", clean_oid).await;
    let mut expected = id_server_clean_hands_parent(clean_oid, row_oid, t0);
    expected.insert("status", "VERIFICATION_FAILED");
    expected.insert("verificationFailureReason", "iDenfy: verification denied");
    assert_eq!(
        sorted(clean),
        sorted(expected),
        "only status and reason changed"
    );

    finish(stores).await;
}

/// Field order is not part of the contract; compare documents as sorted maps.
fn sorted(document: Document) -> Vec<(String, Bson)> {
    let mut fields: Vec<_> = document.into_iter().collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields
}

#[tokio::test]
async fn give_up_and_link_keep_unmodelled_fields() {
    let Some(stores) = stores(
        "store-mongo id_server_fixture::give_up_and_link_keep_unmodelled_fields",
        Environment::Live,
    )
    .await
    else {
        return;
    };
    let t0 = now() - TimeDelta::hours(1);
    let (row_oid, parent_oid) = (ObjectId::new(), ObjectId::new());
    let mut row = id_server_row(row_oid, parent_oid, "scan-give-up", t0);
    // Cap reached long ago, as id-server may have counted it.
    row.insert("recreationCount", 10_i32);
    row.insert("idenfyVerificationStatus", "EXPIRED");
    stores
        .database()
        .collection::<Document>("idenfysessions")
        .insert_one(row)
        .await
        .expect("raw insert");
    let mut parent = id_server_gov_id_parent(parent_oid, row_oid);
    parent.remove("idenfySessionId");
    stores
        .database()
        .collection::<Document>("sessions")
        .insert_one(parent)
        .await
        .expect("raw insert");

    let id = row_id(row_oid);
    let scan_ref = ScanRef::new("scan-give-up");
    let claim = Claim {
        claim_id: Nonce::random(),
        claimed_until: now() + TimeDelta::seconds(60),
    };
    let limits = RecreationLimits {
        cap: 10,
        max_attempts: 30,
    };
    let w = stores
        .rows()
        .claim_recreation(&id, &scan_ref, limits, &claim, now())
        .await
        .expect("claim");
    assert_eq!(w, Write::NotMatched, "cap reached");
    let reason = idenfy_core::reasons::RECREATION_LIMIT;
    assert_eq!(
        stores
            .rows()
            .give_up(&id, &scan_ref, reason, now())
            .await
            .expect("give up"),
        Write::Applied
    );
    let document = raw(&stores, "idenfysessions", row_oid).await;
    assert_eq!(document.get_str("status").expect("status"), "failed");
    assert_eq!(
        document
            .get_str("verificationFailureReason")
            .expect("reason"),
        reason
    );
    assert_eq!(document.get("__v"), Some(&Bson::Int32(0)));
    assert!(document.contains_key("someLegacyField"));

    let w = stores
        .parents()
        .link_row(Flow::GovId, &parent_id(parent_oid), &id)
        .await
        .expect("link");
    assert_eq!(w, Write::Applied);
    let parent = raw(&stores, "sessions", parent_oid).await;
    assert_eq!(
        parent
            .get_object_id("idenfySessionId")
            .expect("an ObjectId link"),
        row_oid
    );
    assert_eq!(
        parent.get_str("paymentCommitment").expect("kept"),
        "0xfeedface"
    );
    assert_eq!(parent.get_i32("chainId").expect("kept"), 10);

    finish(stores).await;
}

#[tokio::test]
async fn string_typed_ids_are_tolerated() {
    let Some(stores) = stores(
        "store-mongo id_server_fixture::string_typed_ids_are_tolerated",
        Environment::Live,
    )
    .await
    else {
        return;
    };
    let t0 = now();
    let (row_oid, parent_oid) = (ObjectId::new(), ObjectId::new());
    let mut row = id_server_row(row_oid, parent_oid, "scan-string-ids", t0);
    row.insert("_id", row_oid.to_hex());
    row.insert("createdBySessionId", parent_oid.to_hex());
    stores
        .database()
        .collection::<Document>("idenfysessions")
        .insert_one(row)
        .await
        .expect("raw insert");
    let mut parent = id_server_gov_id_parent(parent_oid, row_oid);
    parent.insert("_id", parent_oid.to_hex());
    parent.insert("idenfySessionId", row_oid.to_hex());
    stores
        .database()
        .collection::<Document>("sessions")
        .insert_one(parent)
        .await
        .expect("raw insert");

    let id = row_id(row_oid);
    let row = stores
        .rows()
        .get(&id)
        .await
        .expect("get")
        .expect("a string _id loads");
    assert_eq!(row.parent_id, parent_id(parent_oid));
    let w = stores
        .rows()
        .claim_poll(&id, &row.scan_ref, t0, t0)
        .await
        .expect("poll");
    assert_eq!(w, Write::Applied, "conditional writes find string ids too");
    let parent = stores
        .parents()
        .get(Flow::GovId, &parent_id(parent_oid))
        .await
        .expect("get")
        .expect("loads");
    assert_eq!(parent.idenfy_session_id, Some(id.clone()));
    assert_eq!(
        stores
            .parents()
            .link_row(Flow::GovId, &parent_id(parent_oid), &id)
            .await
            .expect("link"),
        Write::Applied,
        "a string link to the same row counts as already linked"
    );
    assert_eq!(
        stores
            .parents()
            .fail_all_linked(&id, "iDenfy: verification denied")
            .await
            .expect("fail all"),
        1
    );

    finish(stores).await;
}

#[tokio::test]
async fn malformed_documents_are_corrupt_not_panics() {
    let Some(stores) = stores(
        "store-mongo id_server_fixture::malformed_documents_are_corrupt_not_panics",
        Environment::Live,
    )
    .await
    else {
        return;
    };
    let t0 = now();
    let rows = stores.database().collection::<Document>("idenfysessions");
    let mut cases = Vec::new();
    for (field, value) in [
        ("status", Bson::Int32(42)),
        ("status", Bson::String("half-done".into())),
        ("createdByFlow", Bson::String("passport".into())),
        (
            "createdBySessionId",
            Bson::String("not-an-object-id".into()),
        ),
        ("createdAt", Bson::Boolean(true)),
        ("recreationCount", Bson::Int32(-1)),
        ("recreationCount", Bson::Double(1.5)),
        ("final", Bson::String("yes".into())),
        ("scanRefHistory", Bson::String("not an array".into())),
        ("recreation", doc! { "claimId": "c" }.into()),
    ] {
        let oid = ObjectId::new();
        let mut document = id_server_row(oid, ObjectId::new(), &format!("scan-bad-{oid}"), t0);
        document.insert(field, value.clone());
        rows.insert_one(document).await.expect("raw insert");
        cases.push((oid, field, value));
    }
    let oid = ObjectId::new();
    let mut missing = id_server_row(oid, ObjectId::new(), "scan-bad-missing", t0);
    missing.remove("idenfyAuthToken");
    rows.insert_one(missing).await.expect("raw insert");
    cases.push((oid, "idenfyAuthToken", Bson::Null));

    for (oid, field, value) in cases {
        let result = stores.rows().get(&row_id(oid)).await;
        match result {
            Err(StoreError::Corrupt { id, reason }) => {
                assert_eq!(id, oid.to_hex());
                assert!(reason.contains(field), "{field} = {value}: {reason}");
            }
            other => panic!("{field} = {value}: expected Corrupt, got {other:?}"),
        }
    }

    let parents = stores.database().collection::<Document>("sessions");
    let oid = ObjectId::new();
    parents
        .insert_one(doc! { "_id": oid, "idvProvider": "idenfy" })
        .await
        .expect("raw insert");
    let result = stores.parents().get(Flow::GovId, &parent_id(oid)).await;
    assert!(
        matches!(result, Err(StoreError::Corrupt { .. })),
        "a parent without status: {result:?}"
    );

    let intents = stores
        .database()
        .collection::<Document>("idenfycreationintents");
    intents
        .insert_one(doc! { "_id": "scope:key", "state": "weird" })
        .await
        .expect("raw insert");
    let result = stores.intents().get("scope:key").await;
    assert!(
        matches!(result, Err(StoreError::Corrupt { .. })),
        "{result:?}"
    );

    finish(stores).await;
}

/// A row id-server's own EXPIRED webhook wrote (`status: failed`, its reason, no
/// `recreationCount`) is recovered like any expired row while its parent is IN_PROGRESS: one
/// new token, `in_progress` again, count 1, the parent untouched. With the parent finished it
/// stays a dead end (EXPIRED, nothing minted).
#[tokio::test]
async fn rows_id_server_expired_are_recovered_unless_the_parent_is_finished() {
    use idenfy_core::{
        Ports, Sessions, Settings, SigDigest, WebhookKey,
        memory::MemoryLock,
        testing::{ManualClock, ScriptedIdenfy},
    };
    let Some(stores) = stores(
        "store-mongo id_server_fixture::rows_id_server_expired_are_recovered",
        Environment::Live,
    )
    .await
    else {
        return;
    };
    let t0 = now() - TimeDelta::hours(2);
    let clock = ManualClock::new(now());
    let idenfy = ScriptedIdenfy::new().with_clock(clock.clone());
    let sessions = Sessions::builder(
        Ports {
            rows: stores.rows().clone(),
            parents: stores.parents().clone(),
            intents: stores.intents().clone(),
            lock: MemoryLock::new(clock.clone()),
            idenfy: idenfy.clone(),
            clock,
        },
        Settings::new(
            Environment::Live,
            "https://ivs.example",
            WebhookKey::new(b"k".as_slice()),
        ),
    )
    .build();
    let caller = SigDigest::from_stored("0x5ig-digest-of-the-user");
    let rows = stores.database().collection::<Document>("idenfysessions");
    let parents = stores.database().collection::<Document>("sessions");
    let expired_by_id_server = |row: ObjectId, parent: ObjectId, scan_ref: &str| {
        let mut document = id_server_row(row, parent, scan_ref, t0);
        document.insert("status", "failed");
        document.insert("idenfyVerificationStatus", "EXPIRED");
        document.insert("verificationFailureReason", "iDenfy: verification expired");
        document
    };

    let (row_oid, parent_oid) = (ObjectId::new(), ObjectId::new());
    rows.insert_one(expired_by_id_server(
        row_oid,
        parent_oid,
        "scan-expired-by-id-server",
    ))
    .await
    .expect("raw insert");
    parents
        .insert_one(id_server_gov_id_parent(parent_oid, row_oid))
        .await
        .expect("raw insert");
    let resolution = sessions
        .resolve(&row_oid.to_hex(), &caller)
        .await
        .expect("resolve");
    let view = &resolution.view;
    assert_eq!(
        view.idenfy_verification_status, None,
        "a fresh token: {view:?}"
    );
    let new_scan_ref = view.idenfy_scan_ref.as_ref().map(ScanRef::as_str);
    assert!(
        new_scan_ref.is_some_and(|scan_ref| scan_ref != "scan-expired-by-id-server"),
        "{view:?}"
    );
    assert_eq!(view.recreation_count, 1);
    assert_eq!(idenfy.mints_for(&parent_id(parent_oid)), 1);
    let stored = raw(&stores, "idenfysessions", row_oid).await;
    assert_eq!(stored.get_str("status").ok(), Some("in_progress"));
    assert_eq!(
        stored.get("someLegacyField").map(Bson::element_type),
        Some(bson::spec::ElementType::EmbeddedDocument)
    );
    let parent = raw(&stores, "sessions", parent_oid).await;
    assert_eq!(parent.get_str("status").ok(), Some("IN_PROGRESS"));

    // The parent finished (refunded, or verified elsewhere): nothing to resume.
    let (row_oid, parent_oid) = (ObjectId::new(), ObjectId::new());
    rows.insert_one(expired_by_id_server(
        row_oid,
        parent_oid,
        "scan-expired-finished",
    ))
    .await
    .expect("raw insert");
    let mut finished = id_server_gov_id_parent(parent_oid, row_oid);
    finished.insert("status", "VERIFICATION_FAILED");
    parents.insert_one(finished).await.expect("raw insert");
    let resolution = sessions
        .resolve(&row_oid.to_hex(), &caller)
        .await
        .expect("resolve");
    assert_eq!(
        resolution.view.idenfy_verification_status,
        Some(VerificationStatus::Expired)
    );
    assert_eq!(idenfy.mints_for(&parent_id(parent_oid)), 0);
    finish(stores).await;
}
