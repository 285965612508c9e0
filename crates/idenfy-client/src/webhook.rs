//! iDenfy webhook payload (`IdentificationWebhook`) and `Idenfy-Event-Type` values, for
//! consumers and tests. Unknown fields are tolerated and kept in `extra`.

use std::fmt;

use idenfy_core::{ScanRef, VerificationStatus};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The body of an identification webhook. Only `scanRef` is required; everything else is
/// optional because iDenfy's payloads changed over the years (e.g. `final` is absent from
/// the 2021 shape). `Debug` shows no personal data.
///
/// It keeps every field, so it parses every value: a number no `f64` holds (`1e999999`), or
/// a `startTime` that is not an integer, fails the whole parse. The service does not read
/// webhooks with it: `idenfy_core::webhook` parses only the fields it acts on and skips the
/// rest unparsed.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// No further webhook will follow for this verification.
    #[serde(rename = "final", default)]
    pub final_: bool,
    /// The verification the webhook is about.
    pub scan_ref: ScanRef,
    /// The `clientId` the token was minted for (the parent session's id).
    #[serde(default)]
    pub client_id: Option<String>,
    /// The `externalRef` given at minting, if any.
    #[serde(default)]
    pub external_ref: Option<String>,
    /// `PC`, `MOBILE`, `TABLET`, `MOBILE_APP`, `MOBILE_SDK`, `OTHER`.
    #[serde(default)]
    pub platform: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub start_time: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub finish_time: Option<i64>,
    /// The verification results (`null` reads as empty).
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: WebhookStatus,
    /// Document and person data (personal data: never log it).
    #[serde(default)]
    pub data: Option<Value>,
    /// Pre-signed photo/video URLs.
    #[serde(default)]
    pub file_urls: Option<Value>,
    /// The user's IP address (personal data).
    #[serde(default)]
    pub client_ip: Option<String>,
    /// The country of `clientIp`.
    #[serde(default)]
    pub client_ip_country: Option<String>,
    /// `DOCUMENT_EXPIRATION` only: `DOCUMENT_EXPIRES_WITHIN_30_DAYS`, ..., `DOCUMENT_EXPIRED`.
    #[serde(default)]
    pub expiration_threshold: Option<String>,
    /// Every other field, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl WebhookPayload {
    /// Parses a raw webhook body.
    pub fn from_slice(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// `status.overall` as a typed status (unknown strings kept verbatim).
    pub fn overall(&self) -> Option<VerificationStatus> {
        self.status
            .overall
            .as_deref()
            .map(VerificationStatus::parse)
    }
}

impl fmt::Debug for WebhookPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookPayload")
            .field("final", &self.final_)
            .field("scan_ref", &self.scan_ref)
            .field("platform", &self.platform)
            .field("start_time", &self.start_time)
            .field("finish_time", &self.finish_time)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// The `status` object of a webhook.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookStatus {
    /// `APPROVED`, `DENIED`, `SUSPECTED`, `EXPIRED`, ...
    #[serde(default)]
    pub overall: Option<String>,
    /// The automatic document check's result.
    #[serde(default)]
    pub auto_document: Option<String>,
    /// The automatic face check's result.
    #[serde(default)]
    pub auto_face: Option<String>,
    /// The manual document review's result.
    #[serde(default)]
    pub manual_document: Option<String>,
    /// The manual face review's result.
    #[serde(default)]
    pub manual_face: Option<String>,
    /// Fraud indicators iDenfy raised (`null` reads as empty).
    #[serde(default, deserialize_with = "null_as_default")]
    pub fraud_tags: Vec<String>,
    /// Data that did not match between document and input (`null` reads as empty).
    #[serde(default, deserialize_with = "null_as_default")]
    pub mismatch_tags: Vec<String>,
    /// The 2021 name of `fraudTags`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub suspicion_reasons: Vec<String>,
    /// Results of additional verification steps, verbatim.
    #[serde(default)]
    pub additional_steps: Option<Value>,
}

impl WebhookStatus {
    /// `fraudTags` and the legacy `suspicionReasons`, together.
    pub fn all_fraud_tags(&self) -> impl Iterator<Item = &str> {
        self.fraud_tags
            .iter()
            .chain(&self.suspicion_reasons)
            .map(String::as_str)
    }
}

/// `null` reads as the default (iDenfy sends `null` for empty lists and objects).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The `Idenfy-Event-Type` header: the one the webhook processor uses.
pub use idenfy_core::webhook::EventType;
