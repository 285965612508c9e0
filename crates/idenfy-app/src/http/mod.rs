//! The router: routes of PRODUCT.md §6–§7 (user routes also under `/sandbox`) and the
//! middleware every request passes (request id, tracing, timeouts, panics, latency metric).

pub mod admission;
pub mod error;
pub mod identity;
pub mod routes;

use std::{any::Any, sync::Arc, time::Duration};

use axum::{
    Extension, Router,
    body::Body,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use idenfy_core::Environment;
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnRequest, TraceLayer},
};
use tracing::Level;

use crate::state::{AppState, Service};
use admission::{Admission, Class};
use error::ApiError;

/// Largest webhook body (id-server: 1 MB raw).
pub const WEBHOOK_BODY_LIMIT: usize = 1 << 20;

/// The routes that exist once per environment.
fn environment_routes<S: Service>(
    environment: Environment,
    webhook_timeout: Duration,
    admission: &Arc<Admission>,
) -> Router<Arc<AppState<S>>> {
    let polls = Router::new()
        .route(
            "/idenfy-sessions/{id}/status",
            get(routes::session_status::<S>),
        )
        .route("/session-status/v2", get(routes::status_v2::<S>))
        .route("/idenfy-sessions", get(routes::list::<S>))
        .route_layer(middleware::from_fn_with_state(
            (Arc::clone(admission), Class::Poll),
            admission::admit,
        ));
    Router::new()
        .merge(polls)
        .route(
            "/idenfy/webhook",
            post(routes::webhook::<S>)
                .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
                .layer(middleware::from_fn_with_state(
                    (Arc::clone(admission), Class::Priority),
                    admission::admit,
                ))
                .layer(middleware::from_fn_with_state(webhook_timeout, deadline)),
        )
        .layer(Extension(environment))
}

/// The whole service, ready for `axum::serve` or `tower::ServiceExt::oneshot`.
pub fn router<S: Service>(state: AppState<S>) -> Router {
    let timeouts = state.timeouts;
    let admission = Arc::clone(&state.admission);
    let state = Arc::new(state);
    let internal = Router::new()
        .route("/internal/sessions", post(routes::create::<S>))
        .route("/internal/sessions/{id}/idenfy", post(routes::ensure::<S>))
        .route_layer(middleware::from_fn_with_state(
            (Arc::clone(&admission), Class::Priority),
            admission::admit,
        ));
    Router::new()
        .merge(environment_routes::<S>(
            Environment::Live,
            timeouts.webhook,
            &admission,
        ))
        .nest(
            "/sandbox",
            environment_routes::<S>(Environment::Sandbox, timeouts.webhook, &admission),
        )
        .merge(internal)
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz::<S>))
        .route("/metrics", get(routes::metrics::<S>))
        .route("/openapi.json", get(routes::openapi))
        .method_not_allowed_fallback(routes::method_not_allowed)
        .fallback(routes::not_found)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(bound_request_id))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(span)
                        .on_request(DefaultOnRequest::new().level(Level::DEBUG))
                        .on_response(answered)
                        // The answer line has the status; the cause is logged where it
                        // happened. No second, stringly line per failure.
                        .on_failure(()),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(middleware::from_fn(crate::metrics::track))
                .layer(middleware::from_fn_with_state(timeouts.request, deadline))
                .layer(CatchPanicLayer::custom(panicked)),
        )
}

/// The request span: method, route template, path and request id. Never header values
/// other than the request id, never the query (no tokens, no identity).
fn span(request: &Request<Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        path = request.uri().path(),
        request_id,
    )
}

/// Longest `x-request-id` taken from a caller.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A caller's `x-request-id` is kept only when it is 1–128 visible ASCII characters;
/// anything else (huge, control characters, non-ASCII) is replaced by a new UUID, so ids in
/// logs and answers stay short and printable.
async fn bound_request_id(mut request: Request, next: Next) -> Response {
    let acceptable = |value: &axum::http::HeaderValue| {
        let bytes = value.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID_LEN
            && bytes.iter().all(u8::is_ascii_graphic)
    };
    let headers = request.headers_mut();
    let all = headers.get_all("x-request-id");
    let mut values = all.iter();
    let keep = match (values.next(), values.next()) {
        (None, _) => true,
        (Some(one), None) => acceptable(one),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        headers.remove("x-request-id");
    }
    next.run(request).await
}

/// Marks a response whose request is logged at DEBUG, not INFO: the probes and the scrape,
/// which would otherwise drown the log.
#[derive(Clone, Copy, Debug)]
pub struct Quiet;

/// The one line per request: status and latency in milliseconds (a number), at INFO, or
/// at DEBUG for [`Quiet`] responses.
fn answered(response: &Response, latency: Duration, _span: &tracing::Span) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if response.extensions().get::<Quiet>().is_some() {
        tracing::debug!(status, latency_ms, "answered");
    } else {
        tracing::info!(status, latency_ms, "answered");
    }
}

/// Answers 503 JSON when the handler takes longer than `limit`.
async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(limit_ms = limit.as_millis() as u64, "request timed out");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Request timed out").into_response()
        }
    }
}

/// A panicking handler becomes 500 JSON; the payload is not shown to the client.
fn panicked(_payload: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error").into_response()
}
