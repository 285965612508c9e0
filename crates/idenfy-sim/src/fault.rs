//! Scriptable faults (error answers, hangs, latency, garbage) and the endpoints they apply to.

use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

/// One scripted answer for the next call of an endpoint. Scripts are queues: each call takes
/// the next fault in order, and calls after the queue runs dry are answered normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 500 `INTERNAL_ERROR`.
    ServerError,
    /// 402 "Action not allowed due to lack of funds or exceeded limit." (no identifier).
    PaymentRequired,
    /// 400 `PERMISSIONS_ERROR` "Partner reached token limit." (credits exhausted).
    TokenLimit,
    /// 429 `TOO_MANY_REQUESTS`.
    TooManyRequests,
    /// 401 "Invalid authorization credentials" (no identifier), whatever credentials were sent.
    Unauthorized,
    /// 409 "Client ID already exists".
    Conflict,
    /// Hang for 30 s, then 504, so that client timeouts trip. Shutdown cuts the hang short.
    Timeout,
    /// Token calls only: mint (and bill) the token, then hang like [`Fault::Timeout`], so
    /// the answer never reaches the client (an outcome it cannot know). Elsewhere, a timeout.
    AnswerLost,
    /// Wait this long, then answer normally.
    Latency(Duration),
    /// 200 with a body that is not valid JSON.
    BadPayload,
}

/// How long [`Fault::Timeout`] hangs before answering 504.
pub const TIMEOUT_HANG: Duration = Duration::from_secs(30);

/// The iDenfy endpoints whose behaviour can be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `POST /api/v2/token`
    Token,
    /// `POST /api/v2/status`
    Status,
    /// `POST /api/v2/data` (latency only; it cannot be scripted)
    Data,
}

/// JSON form of a fault on the admin API: `"server_error"`, `"payment_required"`,
/// `"token_limit"`, `"too_many_requests"`, `"unauthorized"`, `"conflict"`, `"timeout"`,
/// `"answer_lost"`, `"bad_payload"`, or `{"latency_ms": 250}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum FaultSpec {
    Kind(FaultKind),
    Latency { latency_ms: u64 },
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FaultKind {
    #[serde(alias = "ServerError", alias = "500")]
    ServerError,
    #[serde(alias = "PaymentRequired", alias = "402")]
    PaymentRequired,
    #[serde(alias = "TokenLimit")]
    TokenLimit,
    #[serde(alias = "TooManyRequests", alias = "429")]
    TooManyRequests,
    #[serde(alias = "Unauthorized", alias = "401")]
    Unauthorized,
    #[serde(alias = "Conflict", alias = "409")]
    Conflict,
    #[serde(alias = "Timeout")]
    Timeout,
    #[serde(alias = "AnswerLost", alias = "mint_then_hang")]
    AnswerLost,
    #[serde(alias = "BadPayload")]
    BadPayload,
}

impl From<FaultSpec> for Fault {
    fn from(spec: FaultSpec) -> Self {
        match spec {
            FaultSpec::Latency { latency_ms } => Fault::Latency(Duration::from_millis(latency_ms)),
            FaultSpec::Kind(kind) => match kind {
                FaultKind::ServerError => Fault::ServerError,
                FaultKind::PaymentRequired => Fault::PaymentRequired,
                FaultKind::TokenLimit => Fault::TokenLimit,
                FaultKind::TooManyRequests => Fault::TooManyRequests,
                FaultKind::Unauthorized => Fault::Unauthorized,
                FaultKind::Conflict => Fault::Conflict,
                FaultKind::Timeout => Fault::Timeout,
                FaultKind::AnswerLost => Fault::AnswerLost,
                FaultKind::BadPayload => Fault::BadPayload,
            },
        }
    }
}

impl Fault {
    /// The error answer this fault stands for, or `None` for faults that only delay
    /// ([`Fault::Latency`]) or are not plain errors ([`Fault::Timeout`], [`Fault::BadPayload`]).
    pub(crate) fn error_answer(&self) -> Option<(StatusCode, Option<&'static str>, &'static str)> {
        let answer = match self {
            Fault::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("INTERNAL_ERROR"),
                "Internal server error. Please try again later.",
            ),
            Fault::PaymentRequired => (
                StatusCode::PAYMENT_REQUIRED,
                None,
                "Action not allowed due to lack of funds or exceeded limit.",
            ),
            Fault::TokenLimit => (
                StatusCode::BAD_REQUEST,
                Some("PERMISSIONS_ERROR"),
                "Partner reached token limit.",
            ),
            Fault::TooManyRequests => (
                StatusCode::TOO_MANY_REQUESTS,
                Some("TOO_MANY_REQUESTS"),
                "Request was throttled.",
            ),
            Fault::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                None,
                "Invalid authorization credentials",
            ),
            // The reference documents the message but no identifier for this answer.
            Fault::Conflict => (StatusCode::CONFLICT, None, "Client ID already exists"),
            Fault::Timeout | Fault::AnswerLost | Fault::Latency(_) | Fault::BadPayload => {
                return None;
            }
        };
        Some(answer)
    }
}
