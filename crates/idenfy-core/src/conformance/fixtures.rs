//! Fresh, unique test data.

use chrono::{SubsecRound, TimeDelta};

use crate::{
    AuthToken, Claim, CreationIntent, Flow, IdenfyRow, IntentState, MintedToken, Nonce, Parent,
    ParentId, ParentStatus, RowId, ScanRef, SigDigest, Timestamp,
};

/// The wall clock, truncated to milliseconds (what a store keeps).
pub fn now() -> Timestamp {
    chrono::Utc::now().trunc_subsecs(3)
}

/// A scanRef no other call returns.
pub fn scan_ref() -> ScanRef {
    ScanRef::new(format!("conformance-{}", Nonce::random().as_str()))
}

/// A sigDigest no other call returns.
pub fn sig_digest() -> SigDigest {
    SigDigest::from_stored(format!("conformance-sig-{}", Nonce::random().as_str()))
}

/// A token minted at `at`, valid for an hour.
pub fn token(at: Timestamp) -> MintedToken {
    let auth = format!("conformance-auth-{}", Nonce::random().as_str());
    MintedToken {
        redirect_url: format!("https://ivs.idenfy.com/api/v2/redirect?authToken={auth}"),
        auth_token: AuthToken::new(auth),
        scan_ref: scan_ref(),
        expires_at: Some(at + TimeDelta::hours(1)),
        minted_at: at,
    }
}

/// A new gov-id row of a fresh sigDigest, created at `at`.
pub fn row(at: Timestamp) -> IdenfyRow {
    IdenfyRow::new(
        RowId::generate(at),
        sig_digest(),
        Flow::GovId,
        ParentId::generate(at),
        &token(at),
        at,
    )
}

/// An IN_PROGRESS parent of `flow`, not linked yet.
pub fn parent(flow: Flow, at: Timestamp) -> Parent {
    Parent {
        id: ParentId::generate(at),
        flow,
        sig_digest: Some(sig_digest()),
        status: ParentStatus::InProgress,
        idenfy_session_id: None,
        failure_reason: None,
        created_at: Some(at),
    }
}

/// A pending intent claimed for a minute.
pub fn intent(at: Timestamp) -> CreationIntent {
    CreationIntent {
        key: format!("conformance:{}", Nonce::random().as_str()),
        sig_digest: sig_digest(),
        flow: Flow::GovId,
        parent_id: ParentId::generate(at),
        row_id: RowId::generate(at),
        state: IntentState::Pending,
        claimed_until: at + TimeDelta::seconds(60),
        claim_id: Nonce::random(),
        minted: None,
        created_at: at,
        unknown_mint_outcomes: 0,
        last_unknown_mint_at: None,
    }
}

/// A claim held until `until`.
pub fn claim(until: Timestamp) -> Claim {
    Claim {
        claim_id: Nonce::random(),
        claimed_until: until,
    }
}
