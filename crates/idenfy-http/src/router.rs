//! The router: the routes of the HTTP API in the workspace README (user routes also under
//! `/sandbox`) and the middleware every request passes (request id, tracing, timeouts,
//! panics, latency metric).

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

use idenfy_core::Backend;

use crate::{
    admission::{self, Admission, Class},
    error::ApiError,
    routes,
    state::AppState,
};

/// Largest webhook body (id-server: 1 MB raw).
pub const WEBHOOK_BODY_LIMIT: usize = 1 << 20;

/// Largest body of the other routes: axum's default limit for its extractors.
const DEFAULT_BODY_LIMIT: usize = 2 << 20;

/// A body whose `Content-Length` already exceeds `limit` is refused with 413 at once,
/// before a byte of it is read (the extractors' own limit only trips once that many bytes
/// have arrived, so a client that declares a huge body and sends none would otherwise hold
/// the request until its deadline).
async fn refuse_declared_oversize(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large").into_response();
    }
    next.run(request).await
}

/// The routes that exist once per environment.
fn environment_routes<B: Backend>(
    environment: Environment,
    webhook_timeout: Duration,
    admission: &Arc<Admission>,
) -> Router<Arc<AppState<B>>> {
    let polls = Router::new()
        .route(
            "/idenfy-sessions/{id}/status",
            get(routes::session_status::<B>),
        )
        .route("/session-status/v2", get(routes::status_v2::<B>))
        .route("/idenfy-sessions", get(routes::list::<B>))
        .route_layer(middleware::from_fn_with_state(
            (Arc::clone(admission), Class::Poll),
            admission::admit,
        ));
    Router::new()
        .merge(polls)
        .route(
            "/idenfy/webhook",
            post(routes::webhook::<B>)
                .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
                .layer(middleware::from_fn_with_state(
                    WEBHOOK_BODY_LIMIT,
                    refuse_declared_oversize,
                ))
                .layer(middleware::from_fn_with_state(
                    (Arc::clone(admission), Class::Priority),
                    admission::admit,
                ))
                .layer(middleware::from_fn_with_state(webhook_timeout, deadline)),
        )
        .layer(Extension(environment))
}

/// The whole service, ready for `axum::serve` or `tower::ServiceExt::oneshot`.
pub fn router<B: Backend>(state: AppState<B>) -> Router {
    build(state, Router::new())
}

/// [`router`] plus `GET /docs`, a page that browses `/openapi.json` (with a UI its browser
/// loads from a CDN): for development (`idenfy-app dev` mounts it, `serve` never does).
pub fn dev_router<B: Backend>(state: AppState<B>) -> Router {
    build(
        state,
        Router::new().route("/docs", get(crate::openapi::docs_page)),
    )
}

/// The service with `extra` routes, which pass the same middleware as the others.
fn build<B: Backend>(state: AppState<B>, extra: Router<Arc<AppState<B>>>) -> Router {
    let timeouts = state.timeouts;
    let admission = Arc::clone(&state.admission);
    let state = Arc::new(state);
    let internal = Router::new()
        .route("/internal/sessions", post(routes::create::<B>))
        .route("/internal/sessions/{id}/idenfy", post(routes::ensure::<B>))
        .route_layer(middleware::from_fn_with_state(
            (Arc::clone(&admission), Class::Priority),
            admission::admit,
        ));
    Router::new()
        .merge(environment_routes::<B>(
            Environment::Live,
            timeouts.webhook,
            &admission,
        ))
        .nest(
            "/sandbox",
            environment_routes::<B>(Environment::Sandbox, timeouts.webhook, &admission),
        )
        .merge(internal)
        .merge(extra)
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz::<B>))
        .route("/metrics", get(routes::metrics::<B>))
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
                .layer(middleware::from_fn_with_state(
                    DEFAULT_BODY_LIMIT,
                    refuse_declared_oversize,
                ))
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

/// The browser-facing routes, as matched (each also under `/sandbox`): the only ones CORS
/// applies to. Never the webhooks (called by iDenfy's servers) nor `/internal/...` (called
/// by services with the service token): no browser page has any business calling those.
const CORS_ROUTES: [&str; 3] = [
    "/idenfy-sessions/{id}/status",
    "/session-status/v2",
    "/idenfy-sessions",
];

/// How long a browser may reuse a preflight answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// `router` with CORS on the user routes for exactly `allowed_origins` (as browsers send
/// them in `Origin`: `scheme://host[:port]`). No origins: `router` unchanged, so no response
/// carries a CORS header. Allowed: `GET`, the headers those routes read (`X-Holo-User-Id`,
/// `Authorization` for a gateway in front, `Content-Type`, `X-Request-Id`); exposed:
/// `Retry-After` and `x-request-id`. No credentials (cookies): the routes use none.
///
/// The layer goes outside all the others, so what they answer (a timeout's 503, a panic's
/// 500, a shed poll's 503 with `Retry-After`) reaches the page too; a preflight is answered
/// here, before admission control and the handlers.
pub fn with_cors(router: Router, allowed_origins: &[String]) -> Router {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    let origins: Vec<HeaderValue> = allowed_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    if origins.is_empty() {
        return router;
    }
    let request_id = HeaderName::from_static("x-request-id");
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::AllowOrigin::list(origins))
        .allow_methods([Method::GET])
        .allow_headers([
            HeaderName::from_static(crate::identity::IDENTITY_HEADER),
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            request_id.clone(),
        ])
        .expose_headers([header::RETRY_AFTER, request_id])
        .max_age(CORS_MAX_AGE);
    router.layer(middleware::from_fn_with_state(cors, cors_for_user_routes))
}

/// Runs `cors` around the user routes; everything else passes untouched.
async fn cors_for_user_routes(
    State(cors): State<tower_http::cors::CorsLayer>,
    request: Request,
    next: Next,
) -> Response {
    let user_route = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|matched| {
            let route = matched.as_str();
            CORS_ROUTES.contains(&route.strip_prefix("/sandbox").unwrap_or(route))
        });
    if !user_route {
        return next.run(request).await;
    }
    match tower::ServiceExt::oneshot(tower::Layer::layer(&cors, next), request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
