//! The HTTP edge's one error type and the extractors whose rejections are JSON too.
//!
//! Every error leaves as `{"error": "..."}` with a fitting status; unexpected errors log
//! their whole source chain and show the client a plain message (never a stack or secret).

use std::error::Error as StdError;
use std::time::Duration;

use axum::{
    Json,
    body::Bytes,
    extract::{FromRequest, Request, rejection::BytesRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use idenfy_core::{
    ErrorClass, StoreError, creation::CreateError, resolver::ResolveError, webhook::WebhookError,
};
use serde::{Serialize, de::DeserializeOwned};

/// Message of every 503 caused by our own storage.
pub const UNAVAILABLE: &str = "Service temporarily unavailable";

/// The body of every error answer but one: exactly `{"error": "..."}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
// No other field, ever: documented as `additionalProperties: false` (serialising ignores it).
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong, for people; never a stack trace or a secret.
    pub error: String,
}

/// The webhook's answer when our store failed (id-server's shape), so that iDenfy retries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookProcessingError {
    /// Always `false`.
    pub received: bool,
    /// Always `Processing error`.
    pub error: String,
}

/// A 500 of the webhook: the processing error, or a handler panic's plain error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum WebhookFailure {
    /// Our store failed: `{"received": false, "error": "Processing error"}`.
    Processing(WebhookProcessingError),
    /// A handler panicked: `{"error": "Internal server error"}`.
    Internal(ErrorBody),
}

/// An error answer: status, a client-safe message, and optionally `Retry-After` or a
/// body other than `{"error": message}` (the webhook's store failure).
#[derive(Debug)]
pub struct ApiError {
    /// The status of the answer.
    pub status: StatusCode,
    /// The client-safe message, sent as `{"error": message}` unless `body` is set.
    pub message: String,
    /// Sent as `Retry-After`, in whole seconds rounded up (at least 1).
    pub retry_after: Option<Duration>,
    /// A body sent instead of `{"error": message}`.
    pub body: Option<serde_json::Value>,
}

impl ApiError {
    /// `status` with `{"error": message}`, without `Retry-After`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            body: None,
        }
    }

    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 401 with `message`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// Our store failed: logs the whole chain at error level, tells the client little.
    pub fn store(context: &'static str, error: &StoreError) -> Self {
        tracing::error!(error = %chain(error), "{context}: store error");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
    }

    /// Admission control refused the request: nothing was done; retry in a second.
    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is busy; retry shortly",
        )
        .with_retry_after(Duration::from_secs(1))
    }

    fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => (self.status, Json(body)).into_response(),
            None => (
                self.status,
                Json(ErrorBody {
                    error: self.message,
                }),
            )
                .into_response(),
        };
        if let Some(after) = self.retry_after {
            // Whole seconds, rounded up: `Retry-After: 0` would invite a hot loop.
            let secs = after.as_millis().div_ceil(1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// `error: source: source ...` — the whole chain on one line, for logs only.
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<ResolveError> for ApiError {
    fn from(error: ResolveError) -> Self {
        match error {
            ResolveError::NotFound => Self::not_found("iDenfy session not found"),
            ResolveError::Store(error) => Self::store("resolving a session", &error),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::Signature(e) => Self::unauthorized(e.to_string()),
            WebhookError::Malformed => Self::bad_request("Malformed body"),
            WebhookError::MissingScanRef => Self::bad_request("Missing scanRef"),
            WebhookError::UnknownScanRef => Self::not_found("Session not found"),
            WebhookError::Store(error) => {
                tracing::error!(error = %chain(&error), "webhook: store error");
                // 5xx so that iDenfy retries; id-server's body shape.
                let body = WebhookProcessingError {
                    received: false,
                    error: "Processing error".to_owned(),
                };
                Self {
                    // Serialising two plain fields cannot fail; if it did, the answer
                    // would still be a 500 `{"error": "Processing error"}`.
                    body: serde_json::to_value(body).ok(),
                    ..Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Processing error")
                }
            }
        }
    }
}

impl From<CreateError> for ApiError {
    fn from(error: CreateError) -> Self {
        match error {
            CreateError::InvalidKey => Self::bad_request(error.to_string()),
            CreateError::KeyMismatch => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
            }
            CreateError::InProgress { retry_after_ms } => Self::new(
                StatusCode::CONFLICT,
                "A request with this Idempotency-Key is in progress",
            )
            .with_retry_after(Duration::from_millis(retry_after_ms)),
            CreateError::BackingOff { retry_after_ms } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "iDenfy did not answer an earlier token call for this Idempotency-Key; retry later",
            )
            .with_retry_after(Duration::from_millis(retry_after_ms)),
            CreateError::UnknownOutcomes { count } => {
                tracing::error!(
                    count,
                    "creating a session: too many token calls without an answer; operator action needed"
                );
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "iDenfy did not answer token calls for this Idempotency-Key; giving up",
                )
            }
            CreateError::ParentNotFound => Self::not_found("Session not found"),
            CreateError::ParentNotInProgress => {
                Self::new(StatusCode::CONFLICT, "Session is not in progress")
            }
            CreateError::ParentWithoutOwner => {
                Self::bad_request("Session has no owner: pass sigDigest")
            }
            // Logged once, by the creation, at the level its class deserves.
            CreateError::Idenfy(error) => match error.class() {
                ErrorClass::Transient => Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "iDenfy is temporarily unavailable",
                )
                .with_retry_after(Duration::from_secs(2)),
                ErrorClass::Money | ErrorClass::Permanent => {
                    Self::new(StatusCode::BAD_GATEWAY, "iDenfy refused the request")
                }
            },
            CreateError::Store(error) => Self::store("creating a session", &error),
        }
    }
}

/// A JSON body whose rejections are JSON errors (axum's are plain text).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|media| {
                let media = media.trim();
                media.eq_ignore_ascii_case("application/json")
                    || (media.len() > 5 && media[media.len() - 5..].eq_ignore_ascii_case("+json"))
            });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            ));
        }
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("Request body is required"));
        }
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {}", json_problem(&e))))
    }
}

/// Describes a serde_json error without echoing the input (it may carry secrets: serde's
/// own messages quote offending values).
fn json_problem(error: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match error.classify() {
        Category::Data => "wrong shape",
        Category::Syntax | Category::Eof | Category::Io => "not valid JSON",
    }
}

/// The raw request body, with a too-large body answered 413 JSON.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(rejection) => Err(body_rejection(&rejection)),
        }
    }
}

fn body_rejection(rejection: &BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large")
    } else {
        ApiError::bad_request("Could not read the request body")
    }
}
