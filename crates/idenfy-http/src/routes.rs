//! The handlers: user routes (per environment), the webhook, internal creation routes and
//! the operational endpoints.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Extension, Json,
    extract::{
        FromRequestParts, Path, Query, State, rejection::PathRejection, rejection::QueryRejection,
    },
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use idenfy_core::{
    Backend, Environment, Flow, Interest, ListedSession, SessionView, Sessions, SigDigest,
    StatusV2,
    creation::{CreateRequest, Created},
    resolver::ResolveError,
    webhook::{WebhookAck, WebhookRequest},
};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::state::AppState;
use crate::{
    Quiet,
    admission::Admitted,
    error::{ApiError, ApiJson, ErrorBody, RawBody, WebhookFailure},
    identity::{Caller, check_service_token},
};

type AppStateRef<B> = State<Arc<AppState<B>>>;

/// The service of the route's environment, or 404 when the sandbox is not configured.
fn service<B: Backend>(
    state: &AppState<B>,
    environment: Environment,
) -> Result<&Arc<Sessions<B>>, ApiError> {
    state
        .environment(environment)
        .ok_or_else(|| ApiError::not_found("Sandbox environment is not configured"))
}

/// Runs `work` on its own task, so it finishes even when the request does not (the
/// deadline passed, the client went away): a recovery or a creation cut off between the
/// mint and its write would leave a paid token unused and the row blocked by its claim
/// until the claim expires, and any write cut off would leave half-done work behind. The
/// task holds the request's admission permit until it ends, so work that outlives its
/// caller still counts against the budget. A panic is passed on to the request, where the
/// panic layer answers 500.
async fn to_completion<T, F>(admitted: Admitted, work: F) -> Result<T, ApiError>
where
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Send + 'static,
{
    // The request's span goes along, so every line the work logs names its request.
    let work = async move {
        let _admitted = admitted;
        work.await
    }
    .instrument(tracing::Span::current());
    match tokio::spawn(work).await {
        Ok(result) => result,
        Err(join) => match join.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels the task.
            Err(_) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is shutting down",
            )),
        },
    }
}

/// Like [`to_completion`] for a resolution that is worth finishing only while its caller
/// waits: when the request is dropped before the resolution commits (its first write), the
/// resolution stops at its next await instead of queueing in front of the store for an
/// answer nobody reads. Once committed (a poll claim, a recovery), it runs to its end.
async fn while_wanted<T, F>(admitted: Admitted, interest: Interest, work: F) -> Result<T, ApiError>
where
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Send + 'static,
{
    /// Loses the interest when the request is dropped (and, harmlessly, when it ends).
    struct LoseOnDrop(Interest);
    impl Drop for LoseOnDrop {
        fn drop(&mut self) {
            self.0.lose();
        }
    }
    let _caller = LoseOnDrop(interest.clone());
    to_completion(admitted, async move {
        match interest.run(work).await {
            Some(result) => result,
            None => {
                metrics::counter!("idenfy_abandoned_polls_total").increment(1);
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The caller left before the answer",
                ))
            }
        }
    })
    .await
}

/// `GET /idenfy-sessions/{id}/status`.
#[utoipa::path(
    get,
    path = "/idenfy-sessions/{id}/status",
    operation_id = "getSessionStatus",
    tag = "user",
    summary = "Status of one iDenfy session",
    description = "The caller's iDenfy session, with a fresh token when the old one expired \
        (recovery runs behind this call; `EXPIRED` is shown only when recovery gave up).",
    params(
        ("X-Holo-User-Id" = String, Header, description = "The caller's sigDigest: one value, not blank, no comma"),
        ("id" = String, Path, description = "The iDenfy session id (`idenfySessionId`)"),
    ),
    responses(
        (status = 200, description = "The view; a pending view carries `retryAfterMs` and no token", body = SessionView),
        (status = 401, description = "`Missing or invalid X-Holo-User-Id header`", body = ErrorBody),
        (status = 404, description = "`iDenfy session not found`: unknown, malformed or another user's id", body = ErrorBody),
        (status = 500, description = "`Internal server error`: a handler panicked", body = ErrorBody),
        (status = 503, description = "Shed by admission control (`The service is busy; retry shortly`, with `Retry-After: 1`), \
            storage unavailable (`Service temporarily unavailable`) or timed out (`Request timed out`)",
            body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait; sent when the request was shed"))),
    )
)]
pub async fn session_status<B: Backend>(
    State(state): AppStateRef<B>,
    Extension(environment): Extension<Environment>,
    Extension(admitted): Extension<Admitted>,
    Caller(caller): Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<SessionView>, ApiError> {
    let svc = Arc::clone(service(&state, environment)?);
    let Ok(Path(id)) = id else {
        return Err(ResolveError::NotFound.into());
    };
    let interest = Interest::new();
    let resolution = while_wanted(admitted, interest.clone(), async move {
        Ok(svc.resolve_with(&id, &caller, &interest).await?)
    })
    .await?;
    Ok(Json(resolution.view))
}

/// `GET /session-status/v2?sid=`.
#[utoipa::path(
    get,
    path = "/session-status/v2",
    operation_id = "getSessionStatusV2",
    tag = "user",
    summary = "Status by parent session id",
    description = "id-server's shape: `{\"idenfy\": {...}}`, where `status` is the iDenfy verification status.",
    params(
        ("X-Holo-User-Id" = String, Header, description = "The caller's sigDigest: one value, not blank, no comma"),
        ("sid" = String, Query, description = "The parent session id (`sessionId`)"),
    ),
    responses(
        (status = 200, description = "The status", body = StatusV2),
        (status = 400, description = "`Missing sid`", body = ErrorBody),
        (status = 401, description = "`Missing or invalid X-Holo-User-Id header`", body = ErrorBody),
        (status = 404, description = "`Session not found`", body = ErrorBody),
        (status = 500, description = "`Internal server error`: a handler panicked", body = ErrorBody),
        (status = 503, description = "Shed by admission control (`The service is busy; retry shortly`, with `Retry-After: 1`), \
            storage unavailable (`Service temporarily unavailable`) or timed out (`Request timed out`)",
            body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait; sent when the request was shed"))),
    )
)]
pub async fn status_v2<B: Backend>(
    State(state): AppStateRef<B>,
    Extension(environment): Extension<Environment>,
    Extension(admitted): Extension<Admitted>,
    Caller(caller): Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<StatusV2>, ApiError> {
    let svc = Arc::clone(service(&state, environment)?);
    let sid = query
        .ok()
        .and_then(|Query(mut q)| q.remove("sid"))
        .filter(|sid| !sid.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("Missing sid"))?;
    let interest = Interest::new();
    while_wanted(admitted, interest.clone(), async move {
        match svc.status_v2_with(&sid, &caller, &interest).await {
            Ok(status) => Ok(Json(status)),
            Err(ResolveError::NotFound) => Err(ApiError::not_found("Session not found")),
            Err(other) => Err(other.into()),
        }
    })
    .await
}

/// The body of `GET /idenfy-sessions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    /// Newest first: the last 5 days, at most 10, without tokens.
    pub sessions: Vec<ListedSession>,
}

/// `GET /idenfy-sessions`.
#[utoipa::path(
    get,
    path = "/idenfy-sessions",
    operation_id = "listSessions",
    tag = "user",
    summary = "The caller's recent sessions",
    description = "The caller's sessions of the last 5 days, newest first, at most 10, without tokens.",
    params(
        ("X-Holo-User-Id" = String, Header, description = "The caller's sigDigest: one value, not blank, no comma"),
    ),
    responses(
        (status = 200, description = "The sessions", body = SessionList),
        (status = 401, description = "`Missing or invalid X-Holo-User-Id header`", body = ErrorBody),
        (status = 500, description = "`Internal server error`: a handler panicked", body = ErrorBody),
        (status = 503, description = "Shed by admission control (`The service is busy; retry shortly`, with `Retry-After: 1`), \
            storage unavailable (`Service temporarily unavailable`) or timed out (`Request timed out`)",
            body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait; sent when the request was shed"))),
    )
)]
pub async fn list<B: Backend>(
    State(state): AppStateRef<B>,
    Extension(environment): Extension<Environment>,
    Caller(caller): Caller,
) -> Result<Response, ApiError> {
    let svc = service(&state, environment)?;
    let sessions = svc
        .list(&caller)
        .await
        .map_err(|e| ApiError::store("listing sessions", &e))?;
    Ok(Json(SessionList { sessions }).into_response())
}

/// `POST /idenfy/webhook`. The body is never logged.
#[utoipa::path(
    post,
    path = "/idenfy/webhook",
    operation_id = "receiveWebhook",
    tag = "webhooks",
    summary = "iDenfy's webhook",
    description = "iDenfy's verification callback: the raw body (at most 1 MiB) signed with HMAC-SHA256 \
        in `Idenfy-Signature`, checked before any database access. The body is never logged.",
    params(
        ("Idenfy-Signature" = String, Header, description = "Lowercase or uppercase hex HMAC-SHA256 of the raw body",
            pattern = "^[0-9a-fA-F]{64}$"),
        ("Idenfy-Event-Type" = Option<String>, Header, description = "iDenfy's event type"),
    ),
    request_body(content = Object, content_type = "application/json", description = "iDenfy's payload, as sent"),
    responses(
        (status = 200, description = "Received: applied, duplicate, superseded or ignored", body = WebhookAck),
        (status = 400, description = "`Malformed body`, `Missing scanRef` or `Could not read the request body`", body = ErrorBody),
        (status = 401, description = "`Missing signature` or `Invalid signature`", body = ErrorBody),
        (status = 404, description = "`Session not found`: unknown scanRef", body = ErrorBody),
        (status = 413, description = "`Payload too large`: over 1 MiB", body = ErrorBody),
        (status = 500, description = "Our store failed (`{\"received\": false, \"error\": \"Processing error\"}`, \
            so that iDenfy retries), or a handler panicked (`Internal server error`)", body = WebhookFailure),
        (status = 503, description = "Shed by admission control (`The service is busy; retry shortly`, with `Retry-After: 1`) \
            or timed out (`Request timed out`, after 8 s: iDenfy waits 10 s)",
            body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait; sent when the request was shed"))),
    )
)]
pub async fn webhook<B: Backend>(
    State(state): AppStateRef<B>,
    Extension(environment): Extension<Environment>,
    Extension(admitted): Extension<Admitted>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<WebhookAck>, ApiError> {
    let svc = Arc::clone(service(&state, environment)?);
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (signature, event_type) = (text("idenfy-signature"), text("idenfy-event-type"));
    to_completion(admitted, async move {
        let request = WebhookRequest {
            signature: signature.as_deref(),
            event_type: event_type.as_deref(),
            body: &body,
        };
        Ok(Json(svc.handle_webhook(request).await?))
    })
    .await
}

/// Proof that the caller holds the internal service token; extracted before the body.
#[derive(Debug)]
pub struct ServiceAuth;

impl<B: Backend> FromRequestParts<Arc<AppState<B>>> for ServiceAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState<B>>,
    ) -> Result<Self, Self::Rejection> {
        check_service_token(&parts.headers, state.internal_token.as_ref()).map(|()| ServiceAuth)
    }
}

/// Body of `POST /internal/sessions`. Loose types, so that every problem gets our own
/// message instead of serde's (which quotes values); the schema shows what is accepted.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(description = "Body of `POST /internal/sessions`.")]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    /// The owner's identity (sigDigest): not blank, no comma.
    #[schema(value_type = String, required = true, pattern = "^[^,]*[^\\s,][^,]*$")]
    sig_digest: Option<String>,
    #[schema(value_type = Flow, required = true)]
    flow: Option<String>,
}

fn parse_sig_digest(raw: Option<&str>) -> Result<SigDigest, ApiError> {
    let raw = raw
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("sigDigest is required"))?;
    SigDigest::parse(raw)
        .ok_or_else(|| ApiError::bad_request("sigDigest must not be blank or contain a comma"))
}

fn created(created: Created) -> Response {
    let status = if created.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (status, Json(created)).into_response()
}

/// `POST /internal/sessions`.
#[utoipa::path(
    post,
    path = "/internal/sessions",
    operation_id = "createSession",
    tag = "internal",
    summary = "Create a session",
    description = "Creates an IN_PROGRESS parent session and its iDenfy session (or links an APPROVED one of \
        the last days). With `Idempotency-Key`, a retry returns the first result and never mints twice.",
    security(("serviceToken" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 200 visible ASCII characters",
            pattern = "^[\\x21-\\x7E]{1,200}$"),
    ),
    request_body(content = CreateBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Replayed: the result of an earlier request with this Idempotency-Key", body = Created),
        (status = 201, description = "Created", body = Created),
        (status = 400, description = "Invalid body (`sigDigest is required`, `flow is required`, `Invalid JSON body: ...`, ...) \
            or invalid Idempotency-Key", body = ErrorBody),
        (status = 401, description = "`Missing or invalid service token`", body = ErrorBody),
        (status = 409, description = "A request with this Idempotency-Key is in progress: retry after `Retry-After`",
            body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 413, description = "`Payload too large`", body = ErrorBody),
        (status = 415, description = "`Content-Type must be application/json`", body = ErrorBody),
        (status = 422, description = "Idempotency-Key was already used for a different request", body = ErrorBody),
        (status = 500, description = "`Internal server error`: a handler panicked", body = ErrorBody),
        (status = 502, description = "iDenfy refused the request, or too many token calls for this Idempotency-Key got no answer", body = ErrorBody),
        (status = 503, description = "Shed by admission control (`Retry-After: 1`), iDenfy temporarily unavailable \
            (`Retry-After: 2`), backing off after a token call with no answer (`Retry-After`), storage unavailable \
            or timed out",
            body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait; absent on storage failures and timeouts"))),
    )
)]
pub async fn create<B: Backend>(
    State(state): AppStateRef<B>,
    Extension(admitted): Extension<Admitted>,
    _auth: ServiceAuth,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let sig_digest = parse_sig_digest(body.sig_digest.as_deref())?;
    let flow = match body.flow.as_deref() {
        None | Some("") => return Err(ApiError::bad_request("flow is required")),
        Some(raw) => Flow::parse(raw)
            .ok_or_else(|| ApiError::bad_request("flow must be one of: gov-id, clean-hands"))?,
    };
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::from(idenfy_core::creation::CreateError::InvalidKey))?
                .to_owned(),
        ),
    };
    let request = CreateRequest {
        sig_digest,
        flow,
        idempotency_key,
    };
    let live = Arc::clone(&state.live);
    to_completion(admitted, async move {
        Ok(created(live.create_session(request).await?))
    })
    .await
}

/// Body of `POST /internal/sessions/{id}/idenfy` (optional).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnsureBody {
    /// The owner's identity, for a parent that has none: not blank, no comma.
    #[schema(pattern = "^[^,]*[^\\s,][^,]*$")]
    sig_digest: Option<String>,
}

/// `POST /internal/sessions/{id}/idenfy`: body optional, `{"sigDigest": "..."}`.
#[utoipa::path(
    post,
    path = "/internal/sessions/{id}/idenfy",
    operation_id = "ensureIdenfySession",
    tag = "internal",
    summary = "Get or create the iDenfy session of a parent",
    description = "The iDenfy session of a parent created elsewhere, minted at most once however often \
        (and concurrently) this is called.",
    security(("serviceToken" = [])),
    params(
        ("id" = String, Path, description = "The parent session id"),
    ),
    request_body(content = EnsureBody, content_type = "application/json",
        description = "Optional; its Content-Type is not checked"),
    responses(
        (status = 200, description = "Already linked", body = Created),
        (status = 201, description = "Created", body = Created),
        (status = 400, description = "Invalid body, or the parent has no owner and none was given \
            (`Session has no owner: pass sigDigest`)", body = ErrorBody),
        (status = 401, description = "`Missing or invalid service token`", body = ErrorBody),
        (status = 404, description = "`Session not found`: unknown or malformed id, or another owner's", body = ErrorBody),
        (status = 409, description = "`Session is not in progress`, or another call for this parent is in progress \
            (then with `Retry-After`)",
            body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait; sent when another call is in progress"))),
        (status = 413, description = "`Payload too large`", body = ErrorBody),
        (status = 500, description = "`Internal server error`: a handler panicked", body = ErrorBody),
        (status = 502, description = "iDenfy refused the request, or too many token calls got no answer", body = ErrorBody),
        (status = 503, description = "Shed by admission control (`Retry-After: 1`), iDenfy temporarily unavailable \
            (`Retry-After: 2`), backing off after a token call with no answer (`Retry-After`), storage unavailable \
            or timed out",
            body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait; absent on storage failures and timeouts"))),
    )
)]
pub async fn ensure<B: Backend>(
    State(state): AppStateRef<B>,
    Extension(admitted): Extension<Admitted>,
    _auth: ServiceAuth,
    id: Result<Path<String>, PathRejection>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let Ok(Path(id)) = id else {
        return Err(ApiError::not_found("Session not found"));
    };
    let owner = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let parsed: EnsureBody = serde_json::from_slice(&body).map_err(|_| {
            ApiError::bad_request("Invalid JSON body: expected {\"sigDigest\": string}")
        })?;
        match parsed.sig_digest {
            None => None,
            Some(raw) => Some(parse_sig_digest(Some(&raw))?),
        }
    };
    let live = Arc::clone(&state.live);
    to_completion(admitted, async move {
        Ok(created(live.ensure_idenfy_session(&id, owner).await?))
    })
    .await
}

/// The body of `GET /healthz`: `{"status": "ok"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    pub status: Alive,
}

/// The status of a live process.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Alive {
    /// The process answers.
    Ok,
}

/// `GET /healthz`: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "getLiveness",
    tag = "operations",
    summary = "Liveness",
    description = "The process answers. Never shed by admission control.",
    responses((status = 200, description = "Alive", body = Liveness))
)]
pub async fn healthz() -> impl IntoResponse {
    (Extension(Quiet), Json(Liveness { status: Alive::Ok }))
}

/// The body of `GET /readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` (status 200) when MongoDB answers, `not_ready` (status 503) otherwise.
    pub status: ReadinessStatus,
    /// Whether MongoDB answered.
    pub mongodb: MongoDbState,
    /// Valkey down only degrades: the lock is an optimisation.
    pub valkey: ValkeyState,
}

/// Whether the service is ready for traffic.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadinessStatus {
    /// MongoDB answers.
    Ready,
    /// MongoDB does not answer.
    NotReady,
}

/// Whether MongoDB answered the readiness check.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MongoDbState {
    /// MongoDB answered.
    Up,
    /// MongoDB did not answer.
    Down,
}

/// Whether Valkey answered the readiness check.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValkeyState {
    /// Valkey answered.
    Up,
    /// Valkey did not answer: the service works on without the recreate lock.
    Degraded,
}

/// `GET /readyz`: MongoDB must answer; Valkey down only degrades (the lock is an
/// optimisation, the MongoDB claim is the guard).
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "getReadiness",
    tag = "operations",
    summary = "Readiness",
    description = "MongoDB must answer; Valkey down is reported as degraded but still ready. \
        Never shed by admission control.",
    responses(
        (status = 200, description = "Ready (`valkey` may be `degraded`)", body = Readiness),
        (status = 503, description = "Not ready: MongoDB does not answer", body = Readiness),
    )
)]
pub async fn readyz<B: Backend>(State(state): AppStateRef<B>) -> Response {
    let health = state.health.check().await;
    let valkey = if health.valkey {
        ValkeyState::Up
    } else {
        ValkeyState::Degraded
    };
    let (status, body) = if health.mongodb {
        (
            StatusCode::OK,
            Readiness {
                status: ReadinessStatus::Ready,
                mongodb: MongoDbState::Up,
                valkey,
            },
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Readiness {
                status: ReadinessStatus::NotReady,
                mongodb: MongoDbState::Down,
                valkey,
            },
        )
    };
    let mut response = (status, Json(body)).into_response();
    response.extensions_mut().insert(Quiet);
    response
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "getMetrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "The Prometheus text exposition format (version 0.0.4). Never shed by admission control.",
    responses((status = 200, description = "The metrics", body = String, content_type = "text/plain"))
)]
pub async fn metrics<B: Backend>(State(state): AppStateRef<B>) -> Response {
    crate::metrics::collect_process();
    (
        Extension(Quiet),
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "getOpenApiDocument",
    tag = "operations",
    summary = "This document",
    description = "The OpenAPI 3.1 description of this service.",
    responses((status = 200, description = "The document", body = Object, content_type = "application/json"))
)]
pub async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

/// Any unknown path.
pub async fn not_found() -> ApiError {
    ApiError::not_found("Not found")
}

/// A known path with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
}
