//! iDenfy's server API: `POST /api/v2/token`, `/api/v2/status`, `/api/v2/data`, with Basic auth,
//! iDenfy's validation and error shape, and the scripted faults and latency in front of them.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use rand::Rng as _;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq as _;

use crate::fault::{Endpoint, Fault, TIMEOUT_HANG};
use crate::server::Inner;
use crate::state::{Session, SimStatus, redirect_url};
use crate::webhook::document_data;

pub(crate) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/api/v2/token", post(token))
        .route("/api/v2/status", post(status))
        .route("/api/v2/data", post(data))
}

/// An error answer in iDenfy's shape: `{"message": ..., "identifier": ...}`; authentication
/// and billing errors come without an identifier.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    identifier: Option<&'static str>,
    message: String,
}

impl ApiError {
    fn new(
        status: StatusCode,
        identifier: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            identifier,
            message: message.into(),
        }
    }

    fn missing(field: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Some("MISSING_VALUE"),
            format!("Missing parameter: {field}."),
        )
    }

    fn bad(field: &str, why: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Some("BAD_VALUE"),
            format!("Invalid value for {field}: {why}."),
        )
    }

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            None,
            "Invalid authorization credentials",
        )
    }

    fn not_found() -> Self {
        // The reference documents no identifier for an unknown scanRef; this one is ours.
        Self::new(
            StatusCode::NOT_FOUND,
            Some("NOT_FOUND"),
            "Identification with this scanRef was not found.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("message".into(), Value::String(self.message));
        if let Some(identifier) = self.identifier {
            body.insert("identifier".into(), Value::String(identifier.into()));
        }
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"api\""),
            );
        }
        response
    }
}

/// [`Fault::Timeout`]'s answer: nothing for 30 s, then 504.
async fn hang(inner: &Inner) -> Response {
    inner.sleep(TIMEOUT_HANG).await;
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        None,
        "The upstream server did not answer in time.",
    )
    .into_response()
}

/// Counts the call, applies configured latency and the next scripted fault. `Some` is the
/// answer that replaces the normal one. `lost_answer_mint` performs the token call's work
/// for [`Fault::AnswerLost`].
async fn before_call(
    inner: &Inner,
    endpoint: Endpoint,
    scan_ref: Option<&str>,
    lost_answer_mint: Option<&(dyn Fn() + Sync)>,
) -> Option<Response> {
    let (latency, fault) = {
        let mut state = inner.state();
        let counters = &mut state.counters;
        match endpoint {
            Endpoint::Token => counters.token_calls += 1,
            Endpoint::Status => {
                counters.status_calls += 1;
                if let Some(scan_ref) = scan_ref {
                    *counters
                        .status_calls_by_scan_ref
                        .entry(scan_ref.to_owned())
                        .or_default() += 1;
                }
            }
            Endpoint::Data => counters.data_calls += 1,
        }
        let latency = state.latency.get(&endpoint).copied();
        (latency, state.next_fault(endpoint))
    };
    if let Some(latency) = latency {
        inner.sleep(latency).await;
    }
    let fault = fault?;
    tracing::debug!(?endpoint, ?fault, "scripted fault");
    if let Some((status, identifier, message)) = fault.error_answer() {
        return Some(ApiError::new(status, identifier, message).into_response());
    }
    match fault {
        Fault::Latency(d) => {
            inner.sleep(d).await;
            None
        }
        Fault::AnswerLost if endpoint == Endpoint::Token => {
            // The token call goes through (and is billed) before the answer is lost.
            let _ = lost_answer_mint.map(|mint| mint());
            Some(hang(inner).await)
        }
        Fault::Timeout | Fault::AnswerLost => Some(hang(inner).await),
        Fault::BadPayload => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"message\": \"Token created succ<html>\u{fffd}",
            )
                .into_response(),
        ),
        _ => None,
    }
}

fn check_auth(inner: &Inner, headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::unauthorized)?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(ApiError::unauthorized)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::unauthorized());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| ApiError::unauthorized())?;
    let expected = format!("{}:{}", inner.cfg.api_key, inner.cfg.api_secret);
    if bool::from(decoded.as_slice().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("ENCODING_ERROR"),
            "Request body is not valid UTF-8.",
        )
    })?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("JSON_ERROR"),
            "Request body must be a JSON object.",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("JSON_ERROR"),
            format!("Request body is not valid JSON: {e}."),
        )),
    }
}

/// Optional string field: absent and `null` are `None`; the length is counted in characters.
fn opt_str(
    body: &Map<String, Value>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let len = s.chars().count();
            if len < min || len > max {
                Err(ApiError::bad(
                    field,
                    &format!("length must be between {min} and {max}"),
                ))
            } else {
                Ok(Some(s.clone()))
            }
        }
        Some(_) => Err(ApiError::bad(field, "must be a string")),
    }
}

fn opt_u64(
    body: &Map<String, Value>,
    field: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(ApiError::bad(
                field,
                &format!("must be an integer between {min} and {max}"),
            )),
        },
        Some(_) => Err(ApiError::bad(field, "must be an integer")),
    }
}

fn opt_bool(body: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::bad(field, "must be a boolean")),
    }
}

fn opt_url(body: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    let url = opt_str(body, field, 5, 2048)?;
    match url {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
            Err(ApiError::bad(field, "must be an http(s) URL"))
        }
        other => Ok(other),
    }
}

fn random_token() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
}

async fn token(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let mint_anyway = || {
        let _ = mint(&inner, &headers, &body);
    };
    if let Some(answer) = before_call(&inner, Endpoint::Token, None, Some(&mint_anyway)).await {
        return answer;
    }
    match mint(&inner, &headers, &body) {
        Ok(created) => (StatusCode::CREATED, axum::Json(created)).into_response(),
        Err(error) => error.into_response(),
    }
}

fn mint(inner: &Inner, headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    check_auth(inner, headers)?;
    let body = parse_object(body)?;
    // `personScanRef` is the older name of `clientId`, still accepted.
    let client_field = if body.contains_key("clientId") {
        "clientId"
    } else {
        "personScanRef"
    };
    let client_id =
        opt_str(&body, client_field, 1, 100)?.ok_or_else(|| ApiError::missing("clientId"))?;
    if !client_id.is_ascii() {
        return Err(ApiError::bad("clientId", "must be ASCII"));
    }
    let expiry_time =
        opt_u64(&body, "expiryTime", 0, 2_592_000)?.unwrap_or(inner.cfg.default_expiry_time_secs);
    let session_length =
        opt_u64(&body, "sessionLength", 60, 3600)?.unwrap_or(inner.cfg.default_session_length_secs);
    let token_type = opt_str(&body, "tokenType", 1, 40)?.unwrap_or_else(|| "IDENTIFICATION".into());
    const TOKEN_TYPES: [&str; 5] = [
        "IDENTIFICATION",
        "DOCUMENT",
        "VIDEO_CALL",
        "VIDEO_CALL_PHOTOS",
        "VIDEO_CALL_IDENTIFICATION",
    ];
    if !TOKEN_TYPES.contains(&token_type.as_str()) {
        return Err(ApiError::bad("tokenType", "unknown token type"));
    }
    let external_ref = opt_str(&body, "externalRef", 0, 40)?;
    let locale = opt_str(&body, "locale", 2, 7)?.unwrap_or_else(|| "en".into());
    let first_name = opt_str(&body, "firstName", 1, 100)?.map(|s| s.to_uppercase());
    let last_name = opt_str(&body, "lastName", 1, 100)?.map(|s| s.to_uppercase());
    let callback_url = opt_url(&body, "callbackUrl")?;
    let base = &inner.base_url;
    let success_url =
        opt_url(&body, "successUrl")?.unwrap_or_else(|| format!("{base}/result?status=success"));
    let error_url =
        opt_url(&body, "errorUrl")?.unwrap_or_else(|| format!("{base}/result?status=fail"));
    let unverified_url = opt_url(&body, "unverifiedUrl")?
        .unwrap_or_else(|| format!("{base}/result?status=unverified"));
    let show_instructions = opt_bool(&body, "showInstructions")?.unwrap_or(true);
    let generate_digit_string = opt_bool(&body, "generateDigitString")?.unwrap_or(false);
    let digit_string = generate_digit_string
        .then(|| format!("{:08}", rand::rng().random_range(0..100_000_000_u32)));
    // Echoed as sent: the simulator does not use them.
    let echo = |field: &str| body.get(field).cloned().unwrap_or(Value::Null);

    let session = {
        let mut state = inner.state();
        let session = Session {
            scan_ref: uuid::Uuid::new_v4().to_string(),
            auth_token: random_token(),
            client_id: client_id.clone(),
            external_ref: external_ref.clone(),
            created_at: state.now(),
            opened_at: None,
            finished_at: None,
            expiry_time_secs: expiry_time,
            session_length_secs: session_length,
            status: SimStatus::Active,
            abandoned: false,
            pending: None,
            auto_document: None,
            auto_face: None,
            manual_document: None,
            manual_face: None,
            fraud_tags: Vec::new(),
            mismatch_tags: Vec::new(),
            callback_url: callback_url.clone(),
            success_url: success_url.clone(),
            error_url: error_url.clone(),
            unverified_url: unverified_url.clone(),
        };
        state
            .scan_ref_by_token
            .insert(session.auth_token.clone(), session.scan_ref.clone());
        state
            .sessions
            .insert(session.scan_ref.clone(), session.clone());
        *state
            .counters
            .tokens_minted_by_client
            .entry(client_id.clone())
            .or_default() += 1;
        session
    };
    tracing::debug!(scan_ref = %session.scan_ref, %client_id, "token minted");
    Ok(json!({
        "message": "Token created successfully",
        "authToken": session.auth_token,
        "scanRef": session.scan_ref,
        "clientId": client_id,
        "firstName": first_name,
        "lastName": last_name,
        "successUrl": success_url,
        "errorUrl": error_url,
        "unverifiedUrl": unverified_url,
        "callbackUrl": callback_url,
        "locale": locale,
        "country": echo("country"),
        "expiryTime": expiry_time,
        "sessionLength": session_length,
        "documents": body.get("documents").cloned().unwrap_or_else(|| json!([])),
        "tokenType": token_type,
        "showInstructions": show_instructions,
        "generateDigitString": generate_digit_string,
        "digitString": digit_string,
        "externalRef": external_ref,
        "dateOfBirth": echo("dateOfBirth"),
        "dateOfExpiry": echo("dateOfExpiry"),
        "dateOfIssue": echo("dateOfIssue"),
        "nationality": echo("nationality"),
        "sex": echo("sex"),
        "personalNumber": echo("personalNumber"),
        "documentNumber": echo("documentNumber"),
        "address": echo("address"),
        "questionnaire": echo("questionnaire"),
        "theme": echo("theme"),
        "redirectUrl": redirect_url(base, &session.auth_token),
    }))
}

/// The `scanRef` of a `{"scanRef": ...}` body, if there is one (for counting before validation).
fn peek_scan_ref(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.get("scanRef")?.as_str().map(str::to_owned)
}

fn scan_ref_of(body: &[u8]) -> Result<String, ApiError> {
    let body = parse_object(body)?;
    opt_str(&body, "scanRef", 1, 100)?.ok_or_else(|| ApiError::missing("scanRef"))
}

async fn status(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let peeked = peek_scan_ref(&body);
    if let Some(answer) = before_call(&inner, Endpoint::Status, peeked.as_deref(), None).await {
        return answer;
    }
    let result = check_auth(&inner, &headers)
        .and_then(|()| scan_ref_of(&body))
        .and_then(|scan_ref| {
            let snapshot = inner.session(&scan_ref).ok_or_else(ApiError::not_found)?;
            Ok(json!({
                "status": snapshot.status,
                "scanRef": snapshot.scan_ref,
                "clientId": snapshot.client_id,
                "autoDocument": snapshot.auto_document,
                "autoFace": snapshot.auto_face,
                "manualDocument": snapshot.manual_document,
                "manualFace": snapshot.manual_face,
                "fraudTags": snapshot.fraud_tags,
                "mismatchTags": snapshot.mismatch_tags,
            }))
        });
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn data(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(answer) = before_call(&inner, Endpoint::Data, None, None).await {
        return answer;
    }
    let result = check_auth(&inner, &headers)
        .and_then(|()| scan_ref_of(&body))
        .and_then(|scan_ref| {
            let snapshot = inner.session(&scan_ref).ok_or_else(ApiError::not_found)?;
            // A document was read once the automatic checks ran.
            let read = snapshot.auto_document.is_some();
            let mut data = document_data(&snapshot.client_id, read);
            if let Value::Object(map) = &mut data {
                map.insert("scanRef".into(), Value::String(snapshot.scan_ref));
                map.insert("clientId".into(), Value::String(snapshot.client_id));
            }
            Ok(data)
        });
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => error.into_response(),
    }
}
