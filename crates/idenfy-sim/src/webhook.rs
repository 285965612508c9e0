//! Webhooks: iDenfy's result-callback body, the `Idenfy-Signature` HMAC, and delivery with retries.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::watch;

use crate::state::{Session, SimStatus};

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex HMAC-SHA256 of `body` under `key`: the `Idenfy-Signature` header value.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    hex::encode(mac(key, body).finalize().into_bytes())
}

/// Checks an `Idenfy-Signature` header value against `body` in constant time.
pub fn verify(key: &[u8], body: &[u8], signature_hex: &str) -> bool {
    match hex::decode(signature_hex.trim()) {
        Ok(expected) => mac(key, body).verify_slice(&expected).is_ok(),
        Err(_) => false,
    }
}

fn mac(key: &[u8], body: &[u8]) -> HmacSha256 {
    // HMAC hashes or pads keys of any length, so `new_from_slice` never fails for it.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac
}

/// The `Idenfy-Event-Type` header values the simulator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// `IDENTIFICATION_AUTO_FINISHED`: automatic result (`final` false if a review follows).
    #[serde(rename = "IDENTIFICATION_AUTO_FINISHED")]
    AutoFinished,
    /// `IDENTIFICATION_MANUAL_FINISHED`: the human review result, always `final: true`.
    #[serde(rename = "IDENTIFICATION_MANUAL_FINISHED")]
    ManualFinished,
    /// `IDENTIFICATION_EXPIRED`: token or session ran out before a result.
    #[serde(rename = "IDENTIFICATION_EXPIRED")]
    Expired,
}

impl EventType {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::AutoFinished => "IDENTIFICATION_AUTO_FINISHED",
            EventType::ManualFinished => "IDENTIFICATION_MANUAL_FINISHED",
            EventType::Expired => "IDENTIFICATION_EXPIRED",
        }
    }
}

/// The `IdentificationWebhook` body for `session` with `overall` and `final` as given.
pub(crate) fn result_body(
    session: &Session,
    overall: SimStatus,
    is_final: bool,
    base_url: &str,
) -> Vec<u8> {
    let decided = overall != SimStatus::Expired;
    let start = session.opened_at.unwrap_or(session.created_at).timestamp();
    let finish = session
        .finished_at
        .unwrap_or(session.created_at)
        .timestamp();
    let file_urls = if decided {
        let url = |kind: &str| format!("{base_url}/files/{}/{kind}.png", session.scan_ref);
        json!({ "FRONT": url("FRONT"), "BACK": url("BACK"), "FACE": url("FACE") })
    } else {
        json!({})
    };
    let body = json!({
        "final": is_final,
        "platform": "PC",
        "status": {
            "overall": overall.as_str(),
            "suspicionReasons": session.fraud_tags,
            "fraudTags": session.fraud_tags,
            "mismatchTags": session.mismatch_tags,
            "autoFace": session.auto_face,
            "manualFace": session.manual_face,
            "autoDocument": session.auto_document,
            "manualDocument": session.manual_document,
            "additionalSteps": null,
        },
        "data": document_data(&session.client_id, decided),
        "fileUrls": file_urls,
        "AML": null,
        "LID": null,
        "scanRef": session.scan_ref,
        "externalRef": session.external_ref,
        "clientId": session.client_id,
        "companyId": "00000000-0000-4000-8000-000000000001",
        "beneficiaryId": "00000000-0000-4000-8000-000000000002",
        "startTime": start,
        "finishTime": finish,
        "clientIp": "127.0.0.1",
        "clientIpCountry": "LT",
        "clientLocation": "Vilnius, Lithuania",
    });
    // Serialising a `Value` cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Flat document fields as `/api/v2/data` and the webhook's `data` carry them: plausible fake
/// values derived from the `clientId` once a document was read, `null` before that.
pub(crate) fn document_data(client_id: &str, read: bool) -> Value {
    // (first name, surname) pairs, so that names and `docSex` agree.
    const PEOPLE: [(&str, &str, bool); 6] = [
        ("JONAS", "KAZLAUSKAS", false),
        ("ANNA", "PETRAITE", true),
        ("MARTA", "JANKAUSKAITE", true),
        ("LUKAS", "STANKEVICIUS", false),
        ("EMA", "VASILIAUSKAITE", true),
        ("TOMAS", "ZUKAUSKAS", false),
    ];
    if !read {
        return json!({
            "docFirstName": null, "docLastName": null, "docNumber": null,
            "docPersonalCode": null, "docExpiry": null, "docDob": null,
            "docDateOfIssue": null, "docType": null, "docSex": null, "docNationality": null,
            "docIssuingCountry": null, "birthPlace": null, "authority": null, "address": null,
            "driverLicenseCategory": null, "manuallyDataChanged": false, "fullName": null,
            "selectedCountry": null, "orgFirstName": null, "orgLastName": null,
            "orgNationality": null, "orgBirthPlace": null, "orgAuthority": null,
            "orgAddress": null, "ageEstimate": null, "clientIpProxyRiskLevel": null,
            "duplicateFaces": [], "duplicateDocFaces": [],
        });
    }
    // FNV-1a: a stable, dependency-free way to give each clientId its own person.
    let hash = client_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let (first, last, female) = PEOPLE[usize::try_from(hash % 6).unwrap_or(0)];
    let year = 1960 + hash % 45;
    let month = 1 + (hash >> 16) % 12;
    let day = 1 + (hash >> 24) % 28;
    let number = format!("{:08}", (hash >> 32) % 100_000_000);
    json!({
        "docFirstName": first,
        "docLastName": last,
        "docNumber": number,
        "docPersonalCode": format!("{}{:02}{:02}{:02}{:04}", if female { 4 } else { 3 }, year % 100, month, day, hash % 10_000),
        "docExpiry": "2031-06-30",
        "docDob": format!("{year}-{month:02}-{day:02}"),
        "docDateOfIssue": "2021-07-01",
        "docType": "ID_CARD",
        "docSex": if female { "FEMALE" } else { "MALE" },
        "docNationality": "LT",
        "docIssuingCountry": "LT",
        "birthPlace": "VILNIUS",
        "authority": "LIETUVOS RESPUBLIKOS POLICIJA",
        "address": "GEDIMINO PR. 1, VILNIUS",
        "driverLicenseCategory": null,
        "manuallyDataChanged": false,
        "fullName": format!("{first} {last}"),
        "selectedCountry": "LT",
        "orgFirstName": first,
        "orgLastName": last,
        "orgNationality": "LIETUVOS",
        "orgBirthPlace": "VILNIUS",
        "orgAuthority": null,
        "orgAddress": null,
        "ageEstimate": "OVER_25",
        "clientIpProxyRiskLevel": "LOW",
        "duplicateFaces": [],
        "duplicateDocFaces": [],
    })
}

/// How one delivery is attempted.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryPolicy {
    pub signing_key: String,
    pub max_attempts: u32,
    pub initial_backoff: Duration,
}

/// Result of one delivery (all its attempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    Ok { attempts: u32 },
    GaveUp { attempts: u32 },
    Cancelled { attempts: u32 },
}

/// POSTs `body` to `url` until a 2xx, `max_attempts`, or shutdown; back-off doubles per retry.
pub(crate) async fn deliver(
    client: &reqwest::Client,
    url: &str,
    event: EventType,
    body: &[u8],
    policy: &DeliveryPolicy,
    shutdown: &mut watch::Receiver<bool>,
) -> Delivered {
    let signature = sign(policy.signing_key.as_bytes(), body);
    let mut backoff = policy.initial_backoff;
    let max_attempts = policy.max_attempts.max(1);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let request = client
            .post(url)
            .header("Content-Type", "application/json")
            .header("Idenfy-Signature", &signature)
            .header("Idenfy-Event-Type", event.as_str())
            .body(body.to_vec())
            .send();
        let outcome = tokio::select! {
            r = request => r,
            _ = shutdown.wait_for(|stop| *stop) => return Delivered::Cancelled { attempts },
        };
        match outcome {
            Ok(response) if response.status().is_success() => return Delivered::Ok { attempts },
            Ok(response) => {
                tracing::debug!(%url, status = %response.status(), attempts, "webhook refused");
            }
            Err(error) => tracing::debug!(%url, %error, attempts, "webhook not delivered"),
        }
        if attempts >= max_attempts {
            tracing::warn!(%url, attempts, event = event.as_str(), "webhook given up");
            return Delivered::GaveUp { attempts };
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|stop| *stop) => return Delivered::Cancelled { attempts },
        }
        backoff = backoff.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_matches_rfc_4231_test_case_2() {
        let signature = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            signature,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify(b"Jefe", b"what do ya want for nothing?", &signature));
        assert!(!verify(
            b"Jefe",
            b"what do ya want for something?",
            &signature
        ));
        assert!(!verify(b"Jefe", b"x", "not hex"));
    }
}
