//! Webhooks (`docs/webhooks.md`): strict signature check, monotonic transitions conditional on
//! the scanRef, superseded scanRefs acknowledged, DENIED propagation on every delivery, and
//! an identical redelivery answered `duplicate` without a write.
//!
//! Of the body only `scanRef`, `status.overall` and `final` are parsed; every other field is
//! skipped unparsed, so a number we never use (however large) cannot refuse a delivery.
//!
//! Nothing here logs the payload: only key names, the scanRef and the outcome.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{IgnoredAny, MapAccess, SeqAccess, Visitor},
};
use sha2::Sha256;
use tracing::{debug, info, warn};

use crate::{
    Backend, Clock, IdenfyRow, RowStore, ScanRef, Sessions, StatusUpdate, StoreError,
    VerificationStatus,
};

/// Why a signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Idenfy-Signature` header, or an empty one.
    #[error("Missing signature")]
    Missing,
    /// Not exactly 64 hex characters (no lenient decoding: trailing junk is refused).
    #[error("Invalid signature")]
    Malformed,
    /// Well-formed, but not the HMAC of the body under the configured key.
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
    /// The user was asked to submit again.
    Resubmitted,
    /// Both spellings (`CANCELLED` in the OpenAPI, `CANCELED` on the dashboard).
    Cancelled,
    /// The token expired before the user finished.
    Expired,
    /// About the ID document's validity, not the session.
    DocumentExpiration,
    /// Anything else, verbatim.
    Other(String),
}

impl EventType {
    /// The event named by a header value (surrounding whitespace ignored); [`Self::Other`]
    /// for values not listed here.
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
    /// The `Idenfy-Signature` header, if present.
    pub signature: Option<&'a str>,
    /// The `Idenfy-Event-Type` header, if present.
    pub event_type: Option<&'a str>,
    /// The raw body, exactly as received (the signature covers these bytes).
    pub body: &'a [u8],
}

/// What a delivery did (all answered 200).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WebhookOutcome {
    /// The row changed.
    Applied,
    /// Already known (an identical redelivery, or a non-final after a final): nothing was
    /// written to the row.
    Duplicate,
    /// For a scanRef replaced by a recreation: its history entry was updated.
    Superseded,
    /// Nothing to do (no status, or an event about something else).
    Ignored,
}

impl WebhookOutcome {
    /// Snake-case name, as in the answer body, logs and metric labels.
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookAck {
    /// Always `true`, as id-server answers.
    pub received: bool,
    /// What the delivery did.
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

impl<B: Backend> Sessions<B> {
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
        let delivery = Delivery::parse(request.body).map_err(|error| {
            if error.is_data() {
                warn!("webhook body is not a JSON object");
            } else {
                warn!(bytes = request.body.len(), "webhook body is not JSON");
            }
            WebhookError::Malformed
        })?;
        let Some(scan_ref) = delivery.scan_ref.filter(|s| !s.is_empty()) else {
            let mut keys = delivery.keys;
            keys.sort_unstable();
            keys.dedup();
            warn!(?keys, "webhook without scanRef");
            return Err(WebhookError::MissingScanRef);
        };
        let scan_ref = ScanRef::new(scan_ref);
        let event = request.event_type.map(EventType::parse);
        let overall = delivery.overall.as_deref().map(VerificationStatus::parse);
        let final_flag = delivery.final_flag;

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
            return if self.rows().find_by_scan_ref(scan_ref).await?.is_some()
                || self
                    .rows()
                    .find_by_superseded_scan_ref(scan_ref)
                    .await?
                    .is_some()
            {
                Ok(WebhookOutcome::Ignored)
            } else {
                Err(WebhookError::UnknownScanRef)
            };
        };

        if let Some(row) = self.rows().find_by_scan_ref(scan_ref).await? {
            if already_stored(&row, &change) {
                // An identical redelivery (or anything after a final decision, which the
                // store refuses anyway): no write. The row just read is current enough —
                // a concurrent writer is simply ordered after this no-op.
                self.propagate_denial(&row).await?;
                return Ok(WebhookOutcome::Duplicate);
            }
            let now = self.clock().now();
            let (outcome, current) = match &change {
                Change::Expire => {
                    // Only the marker: recovery happens on the next poll.
                    if self
                        .rows()
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
                    .rows()
                    .apply_status(&row.id, scan_ref, update, now)
                    .await?
                {
                    Some(updated) => (WebhookOutcome::Applied, Some(updated)),
                    None => (WebhookOutcome::Duplicate, self.rows().get(&row.id).await?),
                },
            };
            // Propagation runs on every delivery, so a redelivery finishes what a
            // failed first attempt started.
            if let Some(current) = current.filter(|r| &r.scan_ref == scan_ref) {
                self.propagate_denial(&current).await?;
            }
            return Ok(outcome);
        }

        if let Some(row) = self.rows().find_by_superseded_scan_ref(scan_ref).await? {
            let (status, is_final) = match change {
                Change::Expire => (VerificationStatus::Expired, false),
                Change::Status(update) => (update.status, update.is_final),
            };
            let _ = self
                .rows()
                .update_superseded(&row.id, scan_ref, &status, is_final)
                .await?;
            debug!(row = %row.id, scan_ref = %scan_ref, "webhook for a superseded scanRef; current session untouched");
            return Ok(WebhookOutcome::Superseded);
        }
        Err(WebhookError::UnknownScanRef)
    }
}

/// The row already holds what `change` would write, so writing it would only move
/// `updatedAt`; or the row is final, and the store never writes a final row again.
fn already_stored(row: &IdenfyRow, change: &Change) -> bool {
    if row.is_final {
        return true;
    }
    match change {
        Change::Expire => row.is_expired(),
        Change::Status(update) => {
            row.verification_status.as_ref() == Some(&update.status)
                && update.is_final == row.is_final
                && update.row_status.is_none_or(|status| status == row.status)
                && update
                    .failure_reason
                    .as_ref()
                    .is_none_or(|reason| row.failure_reason.as_ref() == Some(reason))
                && update
                    .checked_at
                    .is_none_or(|at| row.last_checked_at == Some(at))
        }
    }
}

/// The fields of a webhook body this service acts on; every other field is skipped with
/// [`IgnoredAny`], which checks JSON syntax but converts nothing. iDenfy's payloads carry
/// many numbers we never use (scores, timestamps, document data), and parsing them — into a
/// `serde_json::Value`, say — would refuse a whole signed delivery, on every retry, for a
/// number like `1e999999` that does not fit an `f64`. The three fields used keep the
/// meaning they had: a value of another JSON type reads as absent (a `scanRef` that is not
/// a string is a missing scanRef); a number there is still parsed, so an absurd one there
/// makes the body malformed. A repeated key counts once, the last occurrence winning.
#[derive(Debug, Default)]
struct Delivery {
    scan_ref: Option<String>,
    /// `status.overall`.
    overall: Option<String>,
    /// `final`: `true` only when it is the JSON `true`.
    final_flag: bool,
    /// The top-level key names, for the log line of a delivery without a scanRef.
    keys: Vec<String>,
}

impl Delivery {
    /// Parses a raw body; a body that is JSON but not an object is a data error.
    fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

impl<'de> Deserialize<'de> for Delivery {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;

        impl<'de> Visitor<'de> for Fields {
            type Value = Delivery;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Delivery, M::Error> {
                let mut delivery = Delivery::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "scanRef" => delivery.scan_ref = map.next_value::<Loose>()?.string(),
                        "status" => delivery.overall = map.next_value::<StatusField>()?.overall,
                        "final" => {
                            delivery.final_flag = map.next_value::<Loose>()?.bool() == Some(true);
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    delivery.keys.push(key);
                }
                Ok(delivery)
            }
        }

        deserializer.deserialize_map(Fields)
    }
}

/// The `status` field: `overall` when it is an object holding a string there, else nothing.
#[derive(Debug, Default)]
struct StatusField {
    overall: Option<String>,
}

impl<'de> Deserialize<'de> for StatusField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Status;

        impl<'de> Visitor<'de> for Status {
            type Value = StatusField;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<StatusField, M::Error> {
                let mut status = StatusField::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "overall" {
                        status.overall = map.next_value::<Loose>()?.string();
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(status)
            }

            fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<StatusField, S::Error> {
                Loose::skip_seq(seq).map(|_| StatusField::default())
            }

            fn visit_bool<E>(self, _: bool) -> Result<StatusField, E> {
                Ok(StatusField::default())
            }

            fn visit_i64<E>(self, _: i64) -> Result<StatusField, E> {
                Ok(StatusField::default())
            }

            fn visit_u64<E>(self, _: u64) -> Result<StatusField, E> {
                Ok(StatusField::default())
            }

            fn visit_f64<E>(self, _: f64) -> Result<StatusField, E> {
                Ok(StatusField::default())
            }

            fn visit_str<E>(self, _: &str) -> Result<StatusField, E> {
                Ok(StatusField::default())
            }

            fn visit_unit<E>(self) -> Result<StatusField, E> {
                Ok(StatusField::default())
            }
        }

        deserializer.deserialize_any(Status)
    }
}

/// A JSON value whose type decides whether a used field is present: strings and booleans
/// are kept, anything else (numbers, `null`, arrays, objects) reads as absent.
#[derive(Debug)]
enum Loose {
    String(String),
    Bool(bool),
    Other,
}

impl Loose {
    fn string(self) -> Option<String> {
        match self {
            Self::String(s) => Some(s),
            Self::Bool(_) | Self::Other => None,
        }
    }

    fn bool(self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(b),
            Self::String(_) | Self::Other => None,
        }
    }

    fn skip_seq<'de, S: SeqAccess<'de>>(mut seq: S) -> Result<(), S::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Value;

        impl<'de> Visitor<'de> for Value {
            type Value = Loose;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_str<E>(self, s: &str) -> Result<Loose, E> {
                Ok(Loose::String(s.to_owned()))
            }

            fn visit_string<E>(self, s: String) -> Result<Loose, E> {
                Ok(Loose::String(s))
            }

            fn visit_bool<E>(self, b: bool) -> Result<Loose, E> {
                Ok(Loose::Bool(b))
            }

            fn visit_i64<E>(self, _: i64) -> Result<Loose, E> {
                Ok(Loose::Other)
            }

            fn visit_u64<E>(self, _: u64) -> Result<Loose, E> {
                Ok(Loose::Other)
            }

            fn visit_f64<E>(self, _: f64) -> Result<Loose, E> {
                Ok(Loose::Other)
            }

            fn visit_unit<E>(self) -> Result<Loose, E> {
                Ok(Loose::Other)
            }

            fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Loose, S::Error> {
                Loose::skip_seq(seq).map(|()| Loose::Other)
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Loose, M::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
        }

        deserializer.deserialize_any(Value)
    }
}

/// Maps a delivery onto a change of the row, honouring `final` and the event type
/// (`docs/webhooks.md#classifying-a-delivery`).
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

    /// id-server (Node's lenient hex decoding) accepted a valid digest followed by junk.
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
    fn numbers_in_unused_fields_are_skipped_unparsed() {
        // Each of these refuses to parse into a `serde_json::Value` or an `i64`.
        let body = br#"{"scanRef":"abc","final":true,"status":{"overall":"APPROVED",
            "autoFace":1e999999,"fraudTags":[-1e999999]},"startTime":1.7e9,
            "finishTime":123456789012345678901234567890,"data":{"score":1e999999,
            "nested":[{"x":0.5e-999999}]}}"#;
        assert!(serde_json::from_slice::<serde_json::Value>(body).is_err());
        let delivery = Delivery::parse(body).expect("parses");
        assert_eq!(delivery.scan_ref.as_deref(), Some("abc"));
        assert_eq!(delivery.overall.as_deref(), Some("APPROVED"));
        assert!(delivery.final_flag);
    }

    #[test]
    fn used_fields_of_another_type_read_as_absent() {
        let delivery = Delivery::parse(br#"{"scanRef":7,"status":"APPROVED","final":"true"}"#)
            .expect("parses");
        assert_eq!(delivery.scan_ref, None);
        assert_eq!(delivery.overall, None);
        assert!(!delivery.final_flag);
        let delivery = Delivery::parse(
            br#"{"scanRef":{"a":1},"status":{"overall":["APPROVED"]},"final":null}"#,
        )
        .expect("parses");
        assert_eq!(delivery.scan_ref, None);
        assert_eq!(delivery.overall, None);
        let delivery =
            Delivery::parse(br#"{"status":[1,{"overall":"APPROVED"}]}"#).expect("parses");
        assert_eq!(delivery.overall, None);
    }

    #[test]
    fn a_repeated_key_counts_once_the_last_one_winning() {
        let delivery = Delivery::parse(
            br#"{"scanRef":"a","final":true,"status":{"overall":"DENIED"},"scanRef":"b",
                "final":false,"status":{"autoFace":"FACE_MATCH"}}"#,
        )
        .expect("parses");
        assert_eq!(delivery.scan_ref.as_deref(), Some("b"));
        assert_eq!(delivery.overall, None);
        assert!(!delivery.final_flag);
    }

    #[test]
    fn bodies_that_are_not_a_json_object_are_refused() {
        for body in [
            &b"{not json"[..],
            b"",
            b"[]",
            b"\"abc\"",
            b"null",
            b"{} {}",
            b"{\"a\":01}",
        ] {
            assert!(
                Delivery::parse(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(Delivery::parse(b"[]").expect_err("not an object").is_data());
        assert!(
            Delivery::parse(b"{not json")
                .expect_err("not JSON")
                .is_syntax()
        );
        // A used field is still parsed: an absurd number there is refused.
        assert!(Delivery::parse(br#"{"scanRef":"a","final":1e999999}"#).is_err());
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
