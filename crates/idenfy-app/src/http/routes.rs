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
    Environment, Flow, Interest, SessionView, SigDigest, StatusV2,
    creation::{CreateRequest, Created},
    resolver::ResolveError,
    webhook::{WebhookAck, WebhookRequest},
};
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;

use super::{
    Quiet,
    admission::Admitted,
    error::{ApiError, ApiJson, RawBody},
    identity::{Caller, check_service_token},
};
use crate::state::{AppState, Service};

type AppStateRef<S> = State<Arc<AppState<S>>>;

/// The service of the route's environment, or 404 when the sandbox is not configured.
fn service<S>(state: &AppState<S>, environment: Environment) -> Result<&Arc<S>, ApiError> {
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
pub async fn session_status<S: Service>(
    State(state): AppStateRef<S>,
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
        Ok(svc.sessions().resolve_with(&id, &caller, &interest).await?)
    })
    .await?;
    Ok(Json(resolution.view))
}

/// `GET /session-status/v2?sid=`.
pub async fn status_v2<S: Service>(
    State(state): AppStateRef<S>,
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
        match svc
            .sessions()
            .status_v2_with(&sid, &caller, &interest)
            .await
        {
            Ok(status) => Ok(Json(status)),
            Err(ResolveError::NotFound) => Err(ApiError::not_found("Session not found")),
            Err(other) => Err(other.into()),
        }
    })
    .await
}

/// `GET /idenfy-sessions`.
pub async fn list<S: Service>(
    State(state): AppStateRef<S>,
    Extension(environment): Extension<Environment>,
    Caller(caller): Caller,
) -> Result<Response, ApiError> {
    let svc = service(&state, environment)?;
    let sessions = svc
        .sessions()
        .list(&caller)
        .await
        .map_err(|e| ApiError::store("listing sessions", &e))?;
    Ok(Json(json!({ "sessions": sessions })).into_response())
}

/// `POST /idenfy/webhook`. The body is never logged.
pub async fn webhook<S: Service>(
    State(state): AppStateRef<S>,
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
        Ok(Json(svc.sessions().handle_webhook(request).await?))
    })
    .await
}

/// Proof that the caller holds the internal service token; extracted before the body.
#[derive(Debug)]
pub struct ServiceAuth;

impl<S: Send + Sync + 'static> FromRequestParts<Arc<AppState<S>>> for ServiceAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState<S>>,
    ) -> Result<Self, Self::Rejection> {
        check_service_token(&parts.headers, state.internal_token.as_ref()).map(|()| ServiceAuth)
    }
}

/// Body of `POST /internal/sessions`. Loose types, so that every problem gets our own
/// message instead of serde's (which quotes values).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    sig_digest: Option<String>,
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
pub async fn create<S: Service>(
    State(state): AppStateRef<S>,
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
        Ok(created(live.sessions().create_session(request).await?))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnsureBody {
    sig_digest: Option<String>,
}

/// `POST /internal/sessions/{id}/idenfy`: body optional, `{"sigDigest": "..."}`.
pub async fn ensure<S: Service>(
    State(state): AppStateRef<S>,
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
        Ok(created(
            live.sessions().ensure_idenfy_session(&id, owner).await?,
        ))
    })
    .await
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> impl IntoResponse {
    (Extension(Quiet), Json(json!({ "status": "ok" })))
}

/// `GET /readyz`: MongoDB must answer; Valkey down only degrades (the lock is an
/// optimisation, the MongoDB claim is the guard).
pub async fn readyz<S: Service>(State(state): AppStateRef<S>) -> Response {
    let health = state.health.check().await;
    let valkey = if health.valkey { "up" } else { "degraded" };
    let mut response = if health.mongodb {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "mongodb": "up", "valkey": valkey })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "mongodb": "down", "valkey": valkey })),
        )
            .into_response()
    };
    response.extensions_mut().insert(Quiet);
    response
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics<S: Service>(State(state): AppStateRef<S>) -> Response {
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
