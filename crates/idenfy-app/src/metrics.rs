//! The process's Prometheus recorder (installed once), its buckets, and the description of
//! every family the service exports beyond the HTTP edge's own (`idenfy_http::metrics`):
//! the resolver's, the store's and the iDenfy client's.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of every latency histogram (seconds).
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Store calls are often well under a millisecond.
const STORE_BUCKETS: &[f64] = &[
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The process's Prometheus handle. The first call installs the global recorder, describes
/// every family and registers the counters at 0 (so "alert if > 0" can tell absent from
/// zero); later calls (several routers in one test process) return the same handle. If
/// some other recorder was installed first, a detached recorder is returned and `/metrics`
/// shows only what it records (nothing), rather than panicking.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = || {
                PrometheusBuilder::new()
                    // Histograms everywhere: summaries cannot be aggregated across replicas.
                    .set_buckets(BUCKETS)?
                    .set_buckets_for_metric(
                        Matcher::Full(store_mongo::STORE_CALL_SECONDS.to_owned()),
                        STORE_BUCKETS,
                    )
            };
            match builder().and_then(PrometheusBuilder::install_recorder) {
                Ok(handle) => {
                    idenfy_http::metrics::describe();
                    describe();
                    register_at_zero();
                    handle
                }
                Err(error) => {
                    tracing::warn!(%error, "Prometheus recorder not installed; /metrics is empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// HELP text and units of every family.
fn describe() {
    describe_histogram!(
        store_mongo::STORE_CALL_SECONDS,
        Unit::Seconds,
        "Time of every MongoDB driver call (reads, writes, write mutexes)."
    );
    describe_counter!(
        store_mongo::STORE_CALLS,
        "MongoDB driver calls (reads, writes, write mutexes)."
    );
    describe_histogram!(
        "idenfy_api_request_duration_seconds",
        Unit::Seconds,
        "iDenfy API call latency by endpoint."
    );
    describe_counter!(
        "idenfy_api_requests_total",
        "iDenfy API calls by endpoint and outcome."
    );
    describe_counter!("idenfy_resolutions_total", "Status resolutions by outcome.");
    describe_counter!(
        "idenfy_status_polls_total",
        "iDenfy status calls made by the resolver, by outcome."
    );
    describe_counter!(
        "idenfy_mints_total",
        "Tokens minted (each may bill a credit), by cause."
    );
    describe_counter!(
        "idenfy_mint_failures_total",
        "Failed token calls by class (money needs an operator)."
    );
    describe_counter!(
        "idenfy_mint_unknown_outcomes_total",
        "Token calls whose outcome is unknown (each may have billed a token nobody saw)."
    );
    describe_counter!(
        "idenfy_recreate_lock_total",
        "Attempts to start a recovery, by outcome of the recreate lock."
    );
    describe_counter!(
        "idenfy_orphaned_mints_total",
        "Tokens minted whose claim was lost before they were persisted (should stay 0)."
    );
    describe_counter!(
        "idenfy_unpersisted_mints_total",
        "Paid tokens the store did not take within the claim (journaled, or lost without a journal)."
    );
    describe_counter!(
        "idenfy_store_write_retries_total",
        "Retries of a store write that records a paid token."
    );
    describe_counter!(
        "idenfy_gave_up_total",
        "Rows given up at the recreation cap."
    );
    describe_counter!("idenfy_webhooks_total", "Webhook deliveries by outcome.");
    describe_counter!(
        "idenfy_abandoned_polls_total",
        "Polls stopped because their request ended before they wrote anything."
    );
    describe_counter!(
        "idenfy_peer_poll_waits_total",
        "Pauses of a poll waiting for a peer's iDenfy status answer on the same row."
    );
    describe_gauge!(
        "idenfy_build_info",
        "Always 1; the labels say which build runs."
    );
}

/// Every counter the README documents, present at 0 from start-up.
fn register_at_zero() {
    for name in [
        "idenfy_orphaned_mints_total",
        "idenfy_unpersisted_mints_total",
        "idenfy_store_write_retries_total",
        "idenfy_gave_up_total",
        "idenfy_abandoned_polls_total",
        "idenfy_peer_poll_waits_total",
        store_mongo::STORE_CALLS,
    ] {
        metrics::counter!(name).increment(0);
    }
    for cause in ["creation", "recovery"] {
        metrics::counter!("idenfy_mints_total", "cause" => cause).increment(0);
        metrics::counter!("idenfy_mint_unknown_outcomes_total", "cause" => cause).increment(0);
    }
    for class in ["transient", "money", "permanent"] {
        metrics::counter!("idenfy_mint_failures_total", "class" => class).increment(0);
    }
    for outcome in ["won", "lost", "unavailable", "busy_here"] {
        metrics::counter!("idenfy_recreate_lock_total", "outcome" => outcome).increment(0);
    }
    metrics::gauge!(
        "idenfy_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "dev_mode" => if cfg!(feature = "dev") { "compiled_in" } else { "absent" },
    )
    .set(1.0);
}
