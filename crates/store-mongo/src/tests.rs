//! Unit tests of the BSON mapping (no server needed): id-server's document shapes decode,
//! ours round-trip, malformed ones are `Corrupt`, driver errors map to the right variant.

use chrono::{SubsecRound, TimeDelta, Utc};
use idenfy_core::{
    AuthToken, Flow, IdenfyRow, MintedToken, ParentId, RowId, RowStatus, ScanRef, SigDigest,
    StoreError, VerificationStatus,
};
use mongodb::bson::{self, Bson, doc, oid::ObjectId};

use crate::{
    Error,
    rows::{decode_row, encode_row},
};

fn row() -> IdenfyRow {
    let now = Utc::now().trunc_subsecs(3);
    let token = MintedToken {
        auth_token: AuthToken::new("token"),
        scan_ref: ScanRef::new("scan"),
        redirect_url: "https://example.invalid".into(),
        expires_at: Some(now + TimeDelta::hours(1)),
        minted_at: now,
    };
    IdenfyRow::new(
        RowId::generate(now),
        SigDigest::from_stored("sig"),
        Flow::CleanHands,
        ParentId::generate(now),
        &token,
        now,
    )
}

#[test]
fn our_rows_round_trip_with_object_ids_and_dates() {
    let row = row();
    let document = encode_row(&row).expect("encode");
    assert!(matches!(document.get("_id"), Some(Bson::ObjectId(_))));
    assert!(matches!(
        document.get("createdBySessionId"),
        Some(Bson::ObjectId(_))
    ));
    assert!(matches!(document.get("createdAt"), Some(Bson::DateTime(_))));
    assert!(matches!(
        document.get("tokenExpiresAt"),
        Some(Bson::DateTime(_))
    ));
    assert_eq!(document.get("recreationCount"), Some(&Bson::Int32(0)));
    assert!(
        !document.contains_key("idenfyVerificationStatus"),
        "absent, as id-server creates it"
    );
    assert_eq!(decode_row(&document).expect("decode"), row);
}

#[test]
fn an_id_server_row_decodes_with_defaults() {
    let (id, parent) = (ObjectId::new(), ObjectId::new());
    let document = doc! {
        "_id": id,
        "sigDigest": "sig",
        "idenfyAuthToken": "t",
        "idenfyScanRef": "s",
        "idenfyVerificationStatus": Bson::Null,
        "status": "in_progress",
        "createdByFlow": "gov-id",
        "createdBySessionId": parent,
        "__v": 0_i32,
        "recreationCount": 3.0_f64,
        "unknownField": [1_i32, 2_i32],
    };
    let row = decode_row(&document).expect("decode");
    assert_eq!(row.id.as_str(), id.to_hex());
    assert_eq!(row.parent_id.as_str(), parent.to_hex());
    assert_eq!(row.verification_status, None);
    assert_eq!(row.status, RowStatus::InProgress);
    assert_eq!(row.recreation_count, 3);
    assert_eq!(row.mint_attempts, 0);
    assert!(!row.is_final);
    // No createdAt: the ObjectId's timestamp stands in.
    assert_eq!(
        row.created_at.timestamp(),
        id.timestamp().timestamp_millis() / 1000
    );
}

#[test]
fn unknown_statuses_are_kept_and_bad_shapes_are_corrupt() {
    let mut document = encode_row(&row()).expect("encode");
    document.insert("idenfyVerificationStatus", "SOMETHING_NEW");
    let decoded = decode_row(&document).expect("decode");
    assert_eq!(
        decoded.verification_status,
        Some(VerificationStatus::Unknown("SOMETHING_NEW".into()))
    );

    for (field, value) in [
        ("status", Bson::String("paused".into())),
        ("idenfyScanRef", Bson::Int64(5)),
        ("mintAttempts", Bson::Int64(i64::from(u32::MAX) + 1)),
        ("tokenMintedAt", Bson::String("yesterday".into())),
        ("orphanedMints", bson::bson!([{ "scanRef": "s" }])),
    ] {
        let mut bad = document.clone();
        bad.insert(field, value);
        match decode_row(&bad) {
            Err(StoreError::Corrupt { reason, .. }) => assert!(reason.contains(field), "{reason}"),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn timeouts_are_unavailable_and_encode_errors_are_backend() {
    let timeout = StoreError::from(Error::Timeout(std::time::Duration::from_secs(1)));
    assert!(matches!(timeout, StoreError::Unavailable(_)));
    let encode = StoreError::from(Error::Encode {
        what: "row id",
        reason: "bad".into(),
    });
    assert!(matches!(encode, StoreError::Backend(_)));
}
