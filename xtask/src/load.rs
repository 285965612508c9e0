//! A small async load generator: closed loop (fixed concurrency) or open loop (fixed rate),
//! recording every request's latency in an HDR histogram.
//!
//! Both loops are bounded twice: by wall time and by a request count.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, from 1 µs to 2 min, 3 significant figures.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3)
        .unwrap_or_else(|_| unreachable!("the bounds are valid"))
}

/// What one run measured.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) requests: u64,
    /// Requests whose check failed (e.g. not a 200).
    pub(crate) failed: u64,
    /// Open loop only: ticks skipped because too many requests were in flight.
    pub(crate) dropped: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latency: Histogram<u64>,
}

impl Summary {
    pub(crate) fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) in milliseconds.
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    pub(crate) fn p50_ms(&self) -> f64 {
        self.quantile_ms(0.50)
    }

    pub(crate) fn p99_ms(&self) -> f64 {
        self.quantile_ms(0.99)
    }
}

/// Records one latency (saturating at the histogram's top).
pub(crate) fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

/// A histogram of durations, for figures that are not request latencies.
pub(crate) fn durations(values: &[Duration]) -> Histogram<u64> {
    let mut h = histogram();
    for value in values {
        record(&mut h, *value);
    }
    h
}

/// `concurrency` workers, each sending its next request as soon as the previous one
/// answered, until `duration` passes or `max_requests` were sent. `request(i)` gets a
/// running index and returns whether the answer was the expected one.
///
/// The workers run as futures of the calling task (the HTTP connections run on the
/// runtime's threads), so `request` may borrow.
pub(crate) async fn closed_loop<F, Fut>(
    concurrency: usize,
    duration: Duration,
    max_requests: u64,
    request: F,
) -> Summary
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = bool>,
{
    let next = AtomicU64::new(0);
    let started = Instant::now();
    let deadline = started + duration;
    let worker = || async {
        let mut h = histogram();
        let (mut sent, mut failed) = (0u64, 0u64);
        while Instant::now() < deadline {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= max_requests {
                break;
            }
            let t = Instant::now();
            let ok = request(i).await;
            record(&mut h, t.elapsed());
            sent += 1;
            failed += u64::from(!ok);
        }
        (h, sent, failed)
    };
    let results = futures::future::join_all((0..concurrency.max(1)).map(|_| worker())).await;
    let mut summary = Summary {
        requests: 0,
        failed: 0,
        dropped: 0,
        elapsed: started.elapsed(),
        latency: histogram(),
    };
    for (h, sent, failed) in results {
        let _ = summary.latency.add(&h);
        summary.requests += sent;
        summary.failed += failed;
    }
    summary
}

/// Starts `rate` requests per second (in batches every 10 ms) for `duration`, whatever the
/// answers' latency, with at most `max_in_flight` outstanding; a start that would exceed it
/// is dropped and counted. Waits for the stragglers at the end (at most 30 s).
pub(crate) async fn open_loop<F, Fut>(
    rate: u32,
    duration: Duration,
    max_in_flight: usize,
    request: F,
) -> Summary
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = bool>,
{
    use futures::StreamExt;
    const TICK: Duration = Duration::from_millis(10);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut h = histogram();
    let (mut done, mut failed) = (0u64, 0u64);
    let started = Instant::now();
    let total = u64::from(rate) * u64::try_from(duration.as_millis()).unwrap_or(u64::MAX) / 1000;
    let (mut issued, mut dropped) = (0u64, 0u64);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let timed = |i: u64| {
        let fut = request(i);
        async move {
            let t = Instant::now();
            let ok = fut.await;
            (ok, t.elapsed())
        }
    };
    while issued + dropped < total && started.elapsed() < duration + Duration::from_secs(5) {
        tokio::select! {
            _ = ticker.tick() => {
                // Catch up to where the schedule says we should be.
                let due = ((f64::from(rate) * started.elapsed().as_secs_f64()) as u64).min(total);
                while issued + dropped < due {
                    if in_flight.len() >= max_in_flight.max(1) {
                        dropped += 1;
                        continue;
                    }
                    in_flight.push(timed(issued));
                    issued += 1;
                }
            }
            Some((ok, latency)) = in_flight.next(), if !in_flight.is_empty() => {
                record(&mut h, latency);
                done += 1;
                failed += u64::from(!ok);
            }
        }
    }
    let elapsed = started.elapsed();
    let drain_until = Instant::now() + Duration::from_secs(30);
    while !in_flight.is_empty() && Instant::now() < drain_until {
        match tokio::time::timeout_at(drain_until.into(), in_flight.next()).await {
            Ok(Some((ok, latency))) => {
                record(&mut h, latency);
                done += 1;
                failed += u64::from(!ok);
            }
            _ => break,
        }
    }
    // Whatever did not answer in time counts as failed.
    failed += in_flight.len() as u64;
    done += in_flight.len() as u64;
    Summary {
        requests: done,
        failed,
        dropped,
        elapsed,
        latency: h,
    }
}
