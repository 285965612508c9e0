//! The Prometheus recorder (installed once per process) and the request latency histogram.

use std::{sync::OnceLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Name of the request latency histogram.
pub const HTTP_DURATION: &str = "http_request_duration_seconds";

const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Store calls are often well under a millisecond.
const STORE_BUCKETS: &[f64] = &[
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The process's Prometheus handle. The first call installs the global recorder; later
/// calls (several routers in one test process) return the same handle. If some other
/// recorder was installed first, a detached recorder is returned and `/metrics` shows only
/// what it records (nothing), rather than panicking.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = || {
                PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), BUCKETS)?
                    .set_buckets_for_metric(
                        Matcher::Full(store_mongo::STORE_CALL_SECONDS.to_owned()),
                        STORE_BUCKETS,
                    )
            };
            match builder().and_then(PrometheusBuilder::install_recorder) {
                Ok(handle) => handle,
                Err(error) => {
                    tracing::warn!(%error, "Prometheus recorder not installed; /metrics is empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// Middleware: `http_request_duration_seconds{route,method,status}`, labelled with the
/// matched route template (never the raw URI: ids would explode the cardinality).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(
        HTTP_DURATION,
        "route" => route,
        "method" => method,
        "status" => response.status().as_u16().to_string(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}
