//! The simulator's mutable world: sessions and their lifecycle, the clock offset, scripts, counters.
//!
//! Everything here is synchronous and runs under one mutex; the server layer turns the
//! [`WebhookJob`]s these methods return into asynchronous deliveries.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::fault::{Endpoint, Fault};
use crate::webhook::{self, EventType};

/// iDenfy's overall verification status, as far as the simulator produces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimStatus {
    /// Token minted and still valid; the user may start (or is in the flow).
    Active,
    /// Automatic checks done, a human review is pending (manual review on).
    Reviewing,
    /// Passed.
    Approved,
    /// Failed.
    Denied,
    /// Passed with fraud or mismatch flags.
    Suspected,
    /// The token or the in-UI session ran out before a result.
    Expired,
}

impl SimStatus {
    /// iDenfy's spelling (`"ACTIVE"`, `"APPROVED"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SimStatus::Active => "ACTIVE",
            SimStatus::Reviewing => "REVIEWING",
            SimStatus::Approved => "APPROVED",
            SimStatus::Denied => "DENIED",
            SimStatus::Suspected => "SUSPECTED",
            SimStatus::Expired => "EXPIRED",
        }
    }
}

/// What the person (or the reviewer) does with a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Document and face pass: `APPROVED`.
    #[serde(
        alias = "Approve",
        alias = "APPROVE",
        alias = "approved",
        alias = "APPROVED"
    )]
    Approve,
    /// Face mismatch: `DENIED`.
    #[serde(alias = "Deny", alias = "DENY", alias = "denied", alias = "DENIED")]
    Deny,
    /// Passes, but fraud tags are raised: `SUSPECTED`.
    #[serde(
        alias = "Suspect",
        alias = "SUSPECT",
        alias = "suspected",
        alias = "SUSPECTED"
    )]
    Suspect,
    /// The user leaves the flow: the session stays `ACTIVE` until `sessionLength` (counted
    /// from opening) runs out, then `EXPIRED`.
    #[serde(
        alias = "Abandon",
        alias = "ABANDON",
        alias = "abandoned",
        alias = "ABANDONED"
    )]
    Abandon,
}

/// Call and delivery counters, cleared by `reset`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Successful `POST /api/v2/token` calls per `clientId`.
    pub tokens_minted_by_client: BTreeMap<String, u64>,
    /// All `POST /api/v2/token` calls, failed and scripted ones included.
    pub token_calls: u64,
    /// `POST /api/v2/status` calls per requested `scanRef` (unknown ones included).
    pub status_calls_by_scan_ref: BTreeMap<String, u64>,
    /// All `POST /api/v2/status` calls.
    pub status_calls: u64,
    /// All `POST /api/v2/data` calls.
    pub data_calls: u64,
    /// Webhooks the receiver answered with 2xx.
    pub webhooks_delivered: u64,
    /// Webhooks given up on after `webhook_max_attempts` failed attempts.
    pub webhooks_failed: u64,
    /// Every webhook POST attempt, retries included.
    pub webhook_attempts: u64,
}

/// One finished webhook delivery (every attempt of it), for callers that need to know when
/// the receiver acknowledged a given event, not just how many were acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The verification the webhook was about.
    pub scan_ref: String,
    /// The webhook's `Idenfy-Event-Type`.
    pub event: EventType,
    /// The receiver the webhook went to (decided when the event happened).
    pub url: String,
    /// The receiver answered 2xx; false: given up after `webhook_max_attempts`.
    pub acknowledged: bool,
    /// POST attempts made, the first included.
    pub attempts: u32,
    /// When the last attempt ended (the monotonic clock, not the simulator's clock).
    pub finished: std::time::Instant,
}

/// A read-only view of one verification session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSnapshot {
    /// The verification's scanRef.
    pub scan_ref: String,
    /// The token that opens its hosted page.
    pub auth_token: String,
    /// The `clientId` of the token call.
    pub client_id: String,
    /// The `externalRef` of the token call, if any.
    pub external_ref: Option<String>,
    /// The current status.
    pub status: SimStatus,
    /// When the token was minted (the simulator's clock).
    pub created_at: DateTime<Utc>,
    /// When the user first opened the hosted page, if they did.
    pub opened_at: Option<DateTime<Utc>>,
    /// When the token (never opened) or the in-UI session (opened) runs out.
    pub expires_at: DateTime<Utc>,
    /// When the user finished the flow (before any manual review), if they did.
    pub finished_at: Option<DateTime<Utc>>,
    /// `expiryTime` in seconds: how long the token can be started.
    pub expiry_time: u64,
    /// `sessionLength` in seconds: how long the user has once the page is open.
    pub session_length: u64,
    /// The user left the flow without finishing.
    pub abandoned: bool,
    /// The automatic document check's result, once finished.
    pub auto_document: Option<String>,
    /// The automatic face check's result, once finished.
    pub auto_face: Option<String>,
    /// The manual document review's result, once reviewed.
    pub manual_document: Option<String>,
    /// The manual face review's result, once reviewed.
    pub manual_face: Option<String>,
    /// Fraud tags raised.
    pub fraud_tags: Vec<String>,
    /// Mismatch tags raised.
    pub mismatch_tags: Vec<String>,
    /// The per-token webhook receiver, if the token call named one.
    pub callback_url: Option<String>,
    /// The hosted page of this token.
    pub redirect_url: String,
}

/// One verification (one token, one scanRef).
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub scan_ref: String,
    pub auth_token: String,
    pub client_id: String,
    pub external_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    pub opened_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub expiry_time_secs: u64,
    pub session_length_secs: u64,
    pub status: SimStatus,
    pub abandoned: bool,
    /// The decision awaiting manual review, while `status` is `REVIEWING`.
    pub pending: Option<SimStatus>,
    pub auto_document: Option<&'static str>,
    pub auto_face: Option<&'static str>,
    pub manual_document: Option<&'static str>,
    pub manual_face: Option<&'static str>,
    pub fraud_tags: Vec<&'static str>,
    pub mismatch_tags: Vec<&'static str>,
    pub callback_url: Option<String>,
    pub success_url: String,
    pub error_url: String,
    pub unverified_url: String,
}

impl Session {
    /// The instant the session becomes `EXPIRED` if nothing is decided: `expiryTime` counts
    /// from minting until the user opens the link, then `sessionLength` counts from opening.
    pub fn deadline(&self) -> DateTime<Utc> {
        match self.opened_at {
            Some(opened) => opened + secs(self.session_length_secs),
            None => self.created_at + secs(self.expiry_time_secs),
        }
    }

    pub fn snapshot(&self, base_url: &str) -> SessionSnapshot {
        let owned = |v: Option<&'static str>| v.map(str::to_owned);
        SessionSnapshot {
            scan_ref: self.scan_ref.clone(),
            auth_token: self.auth_token.clone(),
            client_id: self.client_id.clone(),
            external_ref: self.external_ref.clone(),
            status: self.status,
            created_at: self.created_at,
            opened_at: self.opened_at,
            expires_at: self.deadline(),
            finished_at: self.finished_at,
            expiry_time: self.expiry_time_secs,
            session_length: self.session_length_secs,
            abandoned: self.abandoned,
            auto_document: owned(self.auto_document),
            auto_face: owned(self.auto_face),
            manual_document: owned(self.manual_document),
            manual_face: owned(self.manual_face),
            fraud_tags: self.fraud_tags.iter().map(|t| (*t).to_owned()).collect(),
            mismatch_tags: self.mismatch_tags.iter().map(|t| (*t).to_owned()).collect(),
            callback_url: self.callback_url.clone(),
            redirect_url: redirect_url(base_url, &self.auth_token),
        }
    }
}

pub(crate) fn redirect_url(base_url: &str, auth_token: &str) -> String {
    format!("{base_url}/api/v2/redirect?authToken={auth_token}")
}

pub(crate) fn secs(s: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

/// A webhook to send: built when the event happened, delivered later.
#[derive(Debug, Clone)]
pub(crate) struct WebhookJob {
    pub scan_ref: String,
    pub event: EventType,
    pub body: Vec<u8>,
    /// The session's `callbackUrl`, which wins over the global webhook URL.
    pub callback_url: Option<String>,
}

/// What a decision set in motion.
#[derive(Debug)]
pub(crate) enum DecisionPlan {
    /// The result is final: one AUTO webhook with `final: true`.
    Final(WebhookJob),
    /// Status is `REVIEWING`: AUTO webhook (`final: false`) now, the manual step later.
    Review(WebhookJob),
    /// The user left; expiry will follow.
    Abandoned,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub sessions: HashMap<String, Session>,
    pub scan_ref_by_token: HashMap<String, String>,
    pub counters: Counters,
    pub token_script: VecDeque<Fault>,
    pub status_script: VecDeque<Fault>,
    pub latency: BTreeMap<Endpoint, Duration>,
    pub clock_offset: TimeDelta,
    /// Bumped by `reset`, so deliveries started before it stop counting.
    pub epoch: u64,
    pub webhook_url: Option<String>,
    /// Finished deliveries in the order they finished (cancelled ones are left out).
    pub deliveries: Vec<DeliveryRecord>,
}

impl State {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    pub fn reset(&mut self, webhook_url: Option<String>) {
        let epoch = self.epoch.wrapping_add(1);
        *self = State {
            epoch,
            webhook_url,
            ..State::default()
        };
    }

    pub fn next_fault(&mut self, endpoint: Endpoint) -> Option<Fault> {
        match endpoint {
            Endpoint::Token => self.token_script.pop_front(),
            Endpoint::Status => self.status_script.pop_front(),
            Endpoint::Data => None,
        }
    }

    /// Moves an `ACTIVE` session past its deadline to `EXPIRED`; returns the EXPIRED webhook.
    pub fn refresh(&mut self, scan_ref: &str, base_url: &str) -> Option<WebhookJob> {
        let now = self.now();
        let session = self.sessions.get_mut(scan_ref)?;
        if session.status == SimStatus::Active && now >= session.deadline() {
            Some(expire(session, now, base_url))
        } else {
            None
        }
    }

    /// [`State::refresh`] for every session, e.g. after the clock moved.
    pub fn sweep(&mut self, base_url: &str) -> Vec<WebhookJob> {
        let now = self.now();
        let mut jobs: Vec<WebhookJob> = self
            .sessions
            .values_mut()
            .filter(|s| s.status == SimStatus::Active && now >= s.deadline())
            .map(|s| expire(s, now, base_url))
            .collect();
        jobs.sort_by(|a, b| a.scan_ref.cmp(&b.scan_ref));
        jobs
    }

    /// Expires an `ACTIVE` session now, whatever its deadline.
    pub fn expire_now(&mut self, scan_ref: &str, base_url: &str) -> Option<WebhookJob> {
        let now = self.now();
        let session = self.sessions.get_mut(scan_ref)?;
        (session.status == SimStatus::Active).then(|| expire(session, now, base_url))
    }

    /// Marks the token opened (first opening starts `sessionLength`). False when the token is
    /// unknown or no longer `ACTIVE`.
    pub fn open(&mut self, auth_token: &str) -> bool {
        let now = self.now();
        let Some(scan_ref) = self.scan_ref_by_token.get(auth_token) else {
            return false;
        };
        let Some(session) = self.sessions.get_mut(scan_ref) else {
            return false;
        };
        if session.status != SimStatus::Active {
            return false;
        }
        session.opened_at.get_or_insert(now);
        true
    }

    /// Applies a decision to an `ACTIVE` session. `None` when unknown or not `ACTIVE`.
    pub fn decide(
        &mut self,
        scan_ref: &str,
        outcome: Outcome,
        manual_review: bool,
        base_url: &str,
    ) -> Option<DecisionPlan> {
        let now = self.now();
        let session = self.sessions.get_mut(scan_ref)?;
        if session.status != SimStatus::Active {
            return None;
        }
        // Finishing the flow implies the user opened the link.
        session.opened_at.get_or_insert(now);
        let (status, document, face, fraud_tags): (_, _, _, &[&'static str]) = match outcome {
            Outcome::Approve => (SimStatus::Approved, "DOC_VALIDATED", "FACE_MATCH", &[]),
            Outcome::Deny => (SimStatus::Denied, "DOC_VALIDATED", "FACE_MISMATCH", &[]),
            Outcome::Suspect => (
                SimStatus::Suspected,
                "DOC_VALIDATED",
                "FACE_MATCH",
                &["DOC_MOBILE_PHOTO"],
            ),
            Outcome::Abandon => {
                session.abandoned = true;
                return Some(DecisionPlan::Abandoned);
            }
        };
        session.auto_document = Some(document);
        session.auto_face = Some(face);
        session.fraud_tags = fraud_tags.to_vec();
        session.finished_at = Some(now);
        if manual_review {
            session.status = SimStatus::Reviewing;
            session.pending = Some(status);
            // The AUTO webhook carries the automatic result as `overall`, not REVIEWING.
            let body = webhook::result_body(session, status, false, base_url);
            Some(DecisionPlan::Review(job(
                session,
                EventType::AutoFinished,
                body,
            )))
        } else {
            session.status = status;
            let body = webhook::result_body(session, status, true, base_url);
            Some(DecisionPlan::Final(job(
                session,
                EventType::AutoFinished,
                body,
            )))
        }
    }

    /// The human reviewer confirms the automatic result: final status and the MANUAL webhook.
    pub fn finish_review(&mut self, scan_ref: &str, base_url: &str) -> Option<WebhookJob> {
        let session = self.sessions.get_mut(scan_ref)?;
        if session.status != SimStatus::Reviewing {
            return None;
        }
        let status = session.pending.take()?;
        session.status = status;
        session.manual_document = session.auto_document;
        session.manual_face = session.auto_face;
        let body = webhook::result_body(session, status, true, base_url);
        Some(job(session, EventType::ManualFinished, body))
    }
}

fn expire(session: &mut Session, now: DateTime<Utc>, base_url: &str) -> WebhookJob {
    session.status = SimStatus::Expired;
    session.finished_at = Some(now);
    let body = webhook::result_body(session, SimStatus::Expired, true, base_url);
    job(session, EventType::Expired, body)
}

fn job(session: &Session, event: EventType, body: Vec<u8>) -> WebhookJob {
    WebhookJob {
        scan_ref: session.scan_ref.clone(),
        event,
        body,
        callback_url: session.callback_url.clone(),
    }
}
