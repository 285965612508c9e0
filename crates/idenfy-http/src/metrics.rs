//! The metrics of the HTTP edge: the request latency histogram (the [`track`] middleware),
//! the admission sheds, and the process metrics sampled at each scrape of `/metrics`.
//!
//! The crate records through the [`metrics`] facade and never installs a recorder: the
//! binary installs one (idenfy-app's `metrics::handle`, a Prometheus recorder) and gives
//! its handle to [`AppState`](crate::AppState), which renders it at `/metrics`. Call
//! [`describe`] once after installing it.

use std::{sync::OnceLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    http::Method,
    middleware::Next,
    response::Response,
};
use metrics::{Unit, describe_counter, describe_histogram};

/// Name of the request latency histogram.
pub const HTTP_DURATION: &str = "http_request_duration_seconds";

/// HELP text and units of the families this crate records, the process metrics included;
/// registers the shed counters at 0 (so "alert if > 0" can tell absent from zero).
pub fn describe() {
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency by route template, method and status."
    );
    describe_counter!(
        crate::admission::SHED,
        "Requests refused by admission control (503 + Retry-After), by class."
    );
    for class in ["poll", "priority"] {
        metrics::counter!(crate::admission::SHED, "class" => class).increment(0);
    }
    process().describe();
}

/// The process metrics (`process_cpu_seconds_total`, resident memory, open file
/// descriptors and their limit, threads, start time), sampled at each scrape.
fn process() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Samples the process metrics; called right before each render of `/metrics`.
pub fn collect_process() {
    process().collect();
}

/// The `method` label: the methods the API knows, anything else `other`, so made-up
/// methods cannot grow `/metrics` without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Middleware: `http_request_duration_seconds{route,method,status}`, labelled with the
/// matched route template (never the raw URI: ids would explode the cardinality).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = method_label(request.method());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        let made_up = Method::from_bytes(b"BREW").expect("a method token");
        assert_eq!(method_label(&made_up), "other");
        assert_eq!(method_label(&Method::GET), "GET");
    }
}
