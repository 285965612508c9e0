//! What callers see: the status view (`docs/resolver.md#views`), compatible with
//! id-server's JSON plus additive fields.

use serde::Serialize;

use crate::{
    AuthToken, Flow, IdenfyRow, ParentId, RowId, RowStatus, ScanRef, Settings, Timestamp,
    VerificationStatus, reasons,
};

/// `GET /idenfy-sessions/{id}/status`. `EXPIRED` appears only when recovery gave up; a
/// stale token is never included; a pending view carries `retryAfterMs`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// The row lifecycle; `in_progress` while pending.
    pub status: RowStatus,
    /// iDenfy's overall status; null before the first status, after a recovery and while
    /// pending.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub idenfy_verification_status: Option<VerificationStatus>,
    /// The token that opens the hosted UI; null while pending and after giving up.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub idenfy_auth_token: Option<AuthToken>,
    /// The current iDenfy verification; null while pending and after giving up.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub idenfy_scan_ref: Option<ScanRef>,
    /// Why the session failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The hosted-UI link for the token; null when the token is.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub redirect_url: Option<String>,
    /// Replacement tokens minted so far for this session.
    pub recreation_count: u32,
    /// Present only on a pending view: ask again after this many milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub retry_after_ms: Option<u64>,
    /// When iDenfy last answered a status call for the current verification, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_checked_at: Option<Timestamp>,
}

impl SessionView {
    /// The row as it stands: in progress (with its token) or decided.
    pub fn current(row: &IdenfyRow, settings: &Settings) -> Self {
        Self {
            status: row.status,
            idenfy_verification_status: row.verification_status.clone(),
            idenfy_auth_token: Some(row.auth_token.clone()),
            idenfy_scan_ref: Some(row.scan_ref.clone()),
            failure_reason: row.failure_reason.clone(),
            redirect_url: Some(format!(
                "{}/api/v2/redirect?authToken={}",
                settings.redirect_base,
                row.auth_token.expose()
            )),
            recreation_count: row.recreation_count,
            retry_after_ms: None,
            last_checked_at: row.last_checked_at,
        }
    }

    /// Recovery under way elsewhere, backing off, or a transient failure: keep polling.
    pub fn pending(row: &IdenfyRow, retry_after: std::time::Duration) -> Self {
        Self {
            status: RowStatus::InProgress,
            idenfy_verification_status: None,
            idenfy_auth_token: None,
            idenfy_scan_ref: None,
            failure_reason: None,
            redirect_url: None,
            recreation_count: row.recreation_count,
            retry_after_ms: Some(
                u64::try_from(retry_after.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            ),
            last_checked_at: None,
        }
    }

    /// Nothing left to resume: the only view that says EXPIRED.
    pub fn gave_up(row: &IdenfyRow) -> Self {
        Self {
            status: RowStatus::Failed,
            idenfy_verification_status: Some(VerificationStatus::Expired),
            idenfy_auth_token: None,
            idenfy_scan_ref: None,
            failure_reason: Some(
                row.failure_reason
                    .clone()
                    .unwrap_or_else(|| reasons::EXPIRED.to_owned()),
            ),
            redirect_url: None,
            recreation_count: row.recreation_count,
            retry_after_ms: None,
            last_checked_at: None,
        }
    }
}

/// `GET /session-status/v2?sid=` → `{"idenfy": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusV2 {
    /// The parent's iDenfy session.
    pub idenfy: StatusV2Body,
}

/// The `idenfy` object of [`StatusV2`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StatusV2Body {
    /// The parent session's id, as asked.
    pub sid: ParentId,
    /// The iDenfy verification status (not the row lifecycle), as id-server returns it.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub status: Option<VerificationStatus>,
    /// The current iDenfy verification; null when there is no usable token.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub scan_ref: Option<ScanRef>,
    /// The token that opens the hosted UI; null when there is no usable token.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub auth_token: Option<AuthToken>,
    /// Why the session failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Present only while a recovery is pending: ask again after this many milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub retry_after_ms: Option<u64>,
}

impl StatusV2 {
    /// The answer for parent `sid` from the view of its row (`None`: the parent has no row).
    pub fn from_view(sid: ParentId, view: Option<&SessionView>) -> Self {
        Self {
            idenfy: StatusV2Body {
                sid,
                status: view.and_then(|v| v.idenfy_verification_status.clone()),
                scan_ref: view.and_then(|v| v.idenfy_scan_ref.clone()),
                auth_token: view.and_then(|v| v.idenfy_auth_token.clone()),
                failure_reason: view.and_then(|v| v.failure_reason.clone()),
                retry_after_ms: view.and_then(|v| v.retry_after_ms),
            },
        }
    }
}

/// One entry of `GET /idenfy-sessions`: a projection without tokens.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ListedSession {
    /// The iDenfy session's id.
    #[serde(rename = "_id")]
    pub id: RowId,
    /// The row lifecycle.
    pub status: RowStatus,
    /// iDenfy's overall status as stored; null before the first status.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub idenfy_verification_status: Option<VerificationStatus>,
    /// The current iDenfy verification.
    pub idenfy_scan_ref: ScanRef,
    /// Why the session failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_failure_reason: Option<String>,
    /// The flow of the parent session.
    pub created_by_flow: Flow,
    /// The parent session's id.
    pub created_by_session_id: ParentId,
    /// When the session was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// Replacement tokens minted so far for this session.
    pub recreation_count: u32,
}

impl From<&IdenfyRow> for ListedSession {
    fn from(row: &IdenfyRow) -> Self {
        Self {
            id: row.id.clone(),
            status: row.status,
            idenfy_verification_status: row.verification_status.clone(),
            idenfy_scan_ref: row.scan_ref.clone(),
            verification_failure_reason: row.failure_reason.clone(),
            created_by_flow: row.flow,
            created_by_session_id: row.parent_id.clone(),
            created_at: row.created_at,
            recreation_count: row.recreation_count,
        }
    }
}
