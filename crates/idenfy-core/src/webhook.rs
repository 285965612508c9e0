//! Webhooks (PRODUCT.md §5): strict signature check, monotonic transitions conditional on
//! the scanRef, superseded scanRefs acknowledged, DENIED propagation on every delivery.
//!
//! Nothing here logs the payload: only key names, the scanRef and the outcome (W15).

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tracing::{debug, info, warn};

use crate::{
    Clock, IdenfyApi, IntentStore, ParentStore, RecreateLock, RowStore, ScanRef, Sessions,
    StatusUpdate, StoreError, VerificationStatus,
};

/// Why a signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("Missing signature")]
    Missing,
    /// Not exactly 64 hex characters (W16: no lenient decoding).
    #[error("Invalid signature")]
    Malformed,
    #[error("Invalid signature")]
    Mismatch,
    /// No signing key configured (fails closed).
    #[error("Invalid signature")]
    NoKey,
}

/// Checks `Idenfy-Signature`: exactly 64 hex characters (either case) equal to
/// HMAC-SHA256(key, raw body), compared in constant time.
pub fn verify_signature(
    key: &[u8],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let header = header
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    if key.is_empty() {
        return Err(SignatureError::NoKey);
    }
    if header.len() != 64 || !header.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SignatureError::Malformed);
    }
    let provided = hex::decode(header).map_err(|_| SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| SignatureError::NoKey)?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&provided)
        .map_err(|_| SignatureError::Mismatch)
}

/// Lowercase hex HMAC-SHA256 of `body`: what iDenfy sends (used by tests and the sim's peers).
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The `Idenfy-Event-Type` header.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Legacy: every outcome.
    Identification,
    /// Seconds after the user finishes; `final: false` when a manual review follows.
    AutoFinished,
    /// After human review; always final.
    ManualFinished,
    Resubmitted,
    /// Both spellings (`CANCELLED` in the OpenAPI, `CANCELED` on the dashboard).
    Cancelled,
    Expired,
    /// About the ID document's validity, not the session.
    DocumentExpiration,
    /// Anything else, verbatim.
    Other(String),
}

impl EventType {
    pub fn parse(raw: &str) -> Self {
        match raw.trim() {
            "IDENTIFICATION" => Self::Identification,
            "IDENTIFICATION_AUTO_FINISHED" => Self::AutoFinished,
            "IDENTIFICATION_MANUAL_FINISHED" => Self::ManualFinished,
            "IDENTIFICATION_RESUBMITTED" => Self::Resubmitted,
            "IDENTIFICATION_CANCELLED" | "IDENTIFICATION_CANCELED" => Self::Cancelled,
            "IDENTIFICATION_EXPIRED" => Self::Expired,
            "DOCUMENT_EXPIRATION" => Self::DocumentExpiration,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The header value (`IDENTIFICATION_CANCELLED` for either cancel spelling).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Identification => "IDENTIFICATION",
            Self::AutoFinished => "IDENTIFICATION_AUTO_FINISHED",
            Self::ManualFinished => "IDENTIFICATION_MANUAL_FINISHED",
            Self::Resubmitted => "IDENTIFICATION_RESUBMITTED",
            Self::Cancelled => "IDENTIFICATION_CANCELLED",
            Self::Expired => "IDENTIFICATION_EXPIRED",
            Self::DocumentExpiration => "DOCUMENT_EXPIRATION",
            Self::Other(raw) => raw,
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A webhook delivery as received.
#[derive(Clone, Copy, Debug)]
pub struct WebhookRequest<'a> {
    pub signature: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// What a delivery did (all answered 200).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookOutcome {
    /// The row changed.
    Applied,
    /// Already known (redelivery, or a non-final after a final): no change.
    Duplicate,
    /// For a scanRef replaced by a recreation: its history entry was updated (W8).
    Superseded,
    /// Nothing to do (no status, or an event about something else).
    Ignored,
}

impl WebhookOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Superseded => "superseded",
            Self::Ignored => "ignored",
        }
    }
}

/// The 200 body: id-server's `{"received": true}` plus the outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookAck {
    pub received: bool,
    pub outcome: WebhookOutcome,
}

/// Why a delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// 401, before any database access.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// 400.
    #[error("Malformed body")]
    Malformed,
    /// 400.
    #[error("Missing scanRef")]
    MissingScanRef,
    /// 404: iDenfy retries, which is right for a row that is being created.
    #[error("Session not found")]
    UnknownScanRef,
    /// 5xx so iDenfy retries.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a delivery asks us to do to the row.
#[derive(Debug)]
enum Change {
    Expire,
    Status(StatusUpdate),
}

impl<R, P, I, L, A, C> Sessions<R, P, I, L, A, C>
where
    R: RowStore,
    P: ParentStore,
    I: IntentStore,
    L: RecreateLock,
    A: IdenfyApi,
    C: Clock,
{
    /// `POST /idenfy/webhook` (this environment's).
    pub async fn handle_webhook(
        &self,
        request: WebhookRequest<'_>,
    ) -> Result<WebhookAck, WebhookError> {
        verify_signature(
            self.settings.webhook_key.expose(),
            request.signature,
            request.body,
        )?;
        let payload: serde_json::Value = serde_json::from_slice(request.body).map_err(|_| {
            warn!(bytes = request.body.len(), "webhook body is not JSON");
            WebhookError::Malformed
        })?;
        let Some(fields) = payload.as_object() else {
            warn!("webhook body is not a JSON object");
            return Err(WebhookError::Malformed);
        };
        let Some(scan_ref) = fields
            .get("scanRef")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
        else {
            let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
            warn!(?keys, "webhook without scanRef");
            return Err(WebhookError::MissingScanRef);
        };
        let scan_ref = ScanRef::new(scan_ref);
        let event = request.event_type.map(EventType::parse);
        let overall = fields
            .get("status")
            .and_then(|s| s.get("overall"))
            .and_then(|o| o.as_str())
            .map(VerificationStatus::parse);
        let final_flag = fields
            .get("final")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);

        let ack = match self
            .apply_webhook(&scan_ref, event.as_ref(), overall, final_flag)
            .await
        {
            Ok(outcome) => outcome,
            Err(err) => {
                metrics::counter!("idenfy_webhooks_total", "outcome" => "error").increment(1);
                return Err(err);
            }
        };
        metrics::counter!("idenfy_webhooks_total", "outcome" => ack.as_str()).increment(1);
        info!(scan_ref = %scan_ref, event = ?event, outcome = ack.as_str(), "webhook processed");
        Ok(WebhookAck {
            received: true,
            outcome: ack,
        })
    }

    async fn apply_webhook(
        &self,
        scan_ref: &ScanRef,
        event: Option<&EventType>,
        overall: Option<VerificationStatus>,
        final_flag: bool,
    ) -> Result<WebhookOutcome, WebhookError> {
        let Some(change) = change_for(event, overall, final_flag) else {
            // Still check the scanRef so a typo'd URL does not look healthy.
            return if self.rows.find_by_scan_ref(scan_ref).await?.is_some()
                || self
                    .rows
                    .find_by_superseded_scan_ref(scan_ref)
                    .await?
                    .is_some()
            {
                Ok(WebhookOutcome::Ignored)
            } else {
                Err(WebhookError::UnknownScanRef)
            };
        };

        if let Some(row) = self.rows.find_by_scan_ref(scan_ref).await? {
            let now = self.clock.now();
            let (outcome, current) = match &change {
                Change::Expire => {
                    // Only the marker: recovery happens on the next poll.
                    if self
                        .rows
                        .mark_expired(&row.id, scan_ref, now)
                        .await?
                        .applied()
                    {
                        (WebhookOutcome::Applied, None)
                    } else {
                        (WebhookOutcome::Duplicate, None)
                    }
                }
                Change::Status(update) => match self
                    .rows
                    .apply_status(&row.id, scan_ref, update, now)
                    .await?
                {
                    Some(updated) => (WebhookOutcome::Applied, Some(updated)),
                    None => (WebhookOutcome::Duplicate, self.rows.get(&row.id).await?),
                },
            };
            // W7: propagation runs on every delivery, so a redelivery finishes what a
            // failed first attempt started.
            if let Some(current) = current.filter(|r| &r.scan_ref == scan_ref) {
                self.propagate_denial(&current).await?;
            }
            return Ok(outcome);
        }

        if let Some(row) = self.rows.find_by_superseded_scan_ref(scan_ref).await? {
            let (status, is_final) = match change {
                Change::Expire => (VerificationStatus::Expired, false),
                Change::Status(update) => (update.status, update.is_final),
            };
            let _ = self
                .rows
                .update_superseded(&row.id, scan_ref, &status, is_final)
                .await?;
            debug!(row = %row.id, scan_ref = %scan_ref, "webhook for a superseded scanRef; current session untouched");
            return Ok(WebhookOutcome::Superseded);
        }
        Err(WebhookError::UnknownScanRef)
    }
}

/// Maps a delivery onto a change of the row, honouring `final` (W22) and the event type.
fn change_for(
    event: Option<&EventType>,
    overall: Option<VerificationStatus>,
    final_flag: bool,
) -> Option<Change> {
    if matches!(event, Some(EventType::DocumentExpiration)) {
        return None;
    }
    let expiry_event = matches!(event, Some(EventType::Expired | EventType::Cancelled));
    match overall {
        // A delayed expiry notification may still carry a real decision.
        Some(status) if status.is_decision() => {
            // A manual result is always the last word.
            let is_final = final_flag || matches!(event, Some(EventType::ManualFinished));
            Some(Change::Status(StatusUpdate {
                row_status: if is_final {
                    status.decided_row_status()
                } else {
                    None
                },
                failure_reason: if is_final {
                    status.failure_reason().map(str::to_owned)
                } else {
                    None
                },
                is_final,
                checked_at: None,
                status,
            }))
        }
        Some(status) if status.is_expiry() => Some(Change::Expire),
        _ if expiry_event => Some(Change::Expire),
        Some(status) => Some(Change::Status(StatusUpdate {
            status,
            is_final: false,
            row_status: None,
            failure_reason: None,
            checked_at: None,
        })),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"signing-key";
    const BODY: &[u8] = br#"{"scanRef":"abc","status":{"overall":"APPROVED"},"final":true}"#;

    #[test]
    fn correct_signature_verifies() {
        assert_eq!(verify_signature(KEY, Some(&sign(KEY, BODY)), BODY), Ok(()));
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        assert_eq!(
            verify_signature(KEY, Some(&sign(KEY, BODY).to_uppercase()), BODY),
            Ok(())
        );
    }

    #[test]
    fn tampered_body_fails() {
        let tampered = br#"{"scanRef":"abc","status":{"overall":"DENIED"},"final":true}"#;
        assert_eq!(
            verify_signature(KEY, Some(&sign(KEY, BODY)), tampered),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn empty_or_missing_signature_fails() {
        assert_eq!(
            verify_signature(KEY, Some(""), BODY),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(KEY, None, BODY),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn empty_key_fails_closed() {
        assert_eq!(
            verify_signature(b"", Some(&sign(b"", BODY)), BODY),
            Err(SignatureError::NoKey)
        );
    }

    #[test]
    fn non_hex_signature_fails() {
        assert_eq!(
            verify_signature(KEY, Some("not-hex-####"), BODY),
            Err(SignatureError::Malformed)
        );
    }

    /// W16: Node's lenient decoder accepted a valid digest followed by junk.
    #[test]
    fn valid_digest_with_trailing_junk_is_rejected() {
        let sig = format!("{}zz", sign(KEY, BODY));
        assert_eq!(
            verify_signature(KEY, Some(&sig), BODY),
            Err(SignatureError::Malformed)
        );
        let sig = format!("{}00", sign(KEY, BODY));
        assert_eq!(
            verify_signature(KEY, Some(&sig), BODY),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn truncated_digest_is_rejected() {
        let sig = sign(KEY, BODY);
        assert_eq!(
            verify_signature(KEY, Some(&sig[..62]), BODY),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn byte_bodies_verify_like_text() {
        let body: Vec<u8> = BODY.to_vec();
        assert_eq!(
            verify_signature(KEY, Some(&sign(KEY, &body)), &body),
            Ok(())
        );
    }

    #[test]
    fn manual_finished_is_final_even_without_the_flag() {
        let change = change_for(
            Some(&EventType::ManualFinished),
            Some(VerificationStatus::Denied),
            false,
        );
        assert!(matches!(
            change,
            Some(Change::Status(StatusUpdate { is_final: true, .. }))
        ));
    }

    #[test]
    fn non_final_decision_does_not_decide_the_row() {
        let change = change_for(
            Some(&EventType::AutoFinished),
            Some(VerificationStatus::Denied),
            false,
        );
        let Some(Change::Status(update)) = change else {
            panic!("expected a status change")
        };
        assert!(!update.is_final);
        assert_eq!(update.row_status, None);
        assert_eq!(update.failure_reason, None);
    }

    #[test]
    fn expiry_event_with_a_decision_keeps_the_decision() {
        let change = change_for(
            Some(&EventType::Expired),
            Some(VerificationStatus::Approved),
            true,
        );
        assert!(matches!(
            change,
            Some(Change::Status(StatusUpdate {
                status: VerificationStatus::Approved,
                is_final: true,
                ..
            }))
        ));
        let change = change_for(Some(&EventType::Expired), None, false);
        assert!(matches!(change, Some(Change::Expire)));
    }
}
