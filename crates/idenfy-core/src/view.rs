//! What callers see: the status view (PRODUCT.md §4 table, §7 shapes), compatible with
//! id-server's JSON plus additive fields.

use serde::Serialize;

use crate::{
    AuthToken, Flow, IdenfyRow, ParentId, RowId, RowStatus, ScanRef, Settings, Timestamp,
    VerificationStatus, reasons,
};

/// `GET /idenfy-sessions/{id}/status`. `EXPIRED` appears only when recovery gave up; a
/// stale token is never included; a pending view carries `retryAfterMs`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub status: RowStatus,
    pub idenfy_verification_status: Option<VerificationStatus>,
    pub idenfy_auth_token: Option<AuthToken>,
    pub idenfy_scan_ref: Option<ScanRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub redirect_url: Option<String>,
    pub recreation_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
pub struct StatusV2 {
    pub idenfy: StatusV2Body,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusV2Body {
    pub sid: ParentId,
    /// The iDenfy verification status (not the row lifecycle), as id-server returns it.
    pub status: Option<VerificationStatus>,
    pub scan_ref: Option<ScanRef>,
    pub auth_token: Option<AuthToken>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl StatusV2 {
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

/// One entry of `GET /idenfy-sessions`: a projection without tokens (W13).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedSession {
    #[serde(rename = "_id")]
    pub id: RowId,
    pub status: RowStatus,
    pub idenfy_verification_status: Option<VerificationStatus>,
    pub idenfy_scan_ref: ScanRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_failure_reason: Option<String>,
    pub created_by_flow: Flow,
    pub created_by_session_id: ParentId,
    pub created_at: Timestamp,
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
