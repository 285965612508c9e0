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

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The expected answer (e.g. a 200).
    Ok,
    /// Refused by the server to protect itself: a 503 carrying `Retry-After`.
    Shed,
    /// Anything else: another status, a wrong body, or no answer.
    Failed,
}

impl From<bool> for Answer {
    fn from(ok: bool) -> Answer {
        if ok { Answer::Ok } else { Answer::Failed }
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) requests: u64,
    /// Requests whose answer was not the expected one, shed answers included.
    pub(crate) failed: u64,
    /// Of `failed`: answers the server shed ([`Answer::Shed`]).
    pub(crate) shed: u64,
    /// Expected answers received while the load ran: an open loop's stragglers, answered
    /// after its schedule ended, are not in it.
    pub(crate) ok_in_time: u64,
    /// Open loop only: ticks skipped because too many requests were in flight.
    pub(crate) dropped: u64,
    pub(crate) elapsed: Duration,
    /// Every request's latency, whatever the answer.
    pub(crate) latency: Histogram<u64>,
    /// The latency of the expected answers only (the admitted requests).
    pub(crate) admitted: Histogram<u64>,
}

impl Summary {
    pub(crate) fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Expected answers per second of the run (see [`Summary::ok_in_time`]).
    pub(crate) fn goodput(&self) -> f64 {
        self.ok_in_time as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Failures other than shed answers (other statuses, no answer).
    pub(crate) fn other_failed(&self) -> u64 {
        self.failed - self.shed
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

    /// The `q` quantile of the admitted (expected) answers' latency, in milliseconds.
    pub(crate) fn admitted_quantile_ms(&self, q: f64) -> f64 {
        self.admitted.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Answers counted as they come, merged into a [`Summary`] at the end.
struct Tally {
    latency: Histogram<u64>,
    admitted: Histogram<u64>,
    requests: u64,
    failed: u64,
    shed: u64,
    ok_in_time: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: histogram(),
            admitted: histogram(),
            requests: 0,
            failed: 0,
            shed: 0,
            ok_in_time: 0,
        }
    }

    /// One answer; `in_time` when it came while the load still ran.
    fn count(&mut self, answer: Answer, latency: Duration, in_time: bool) {
        record(&mut self.latency, latency);
        self.requests += 1;
        match answer {
            Answer::Ok => {
                record(&mut self.admitted, latency);
                self.ok_in_time += u64::from(in_time);
            }
            Answer::Shed => {
                self.failed += 1;
                self.shed += 1;
            }
            Answer::Failed => self.failed += 1,
        }
    }

    fn merge(&mut self, other: &Tally) {
        let _ = self.latency.add(&other.latency);
        let _ = self.admitted.add(&other.admitted);
        self.requests += other.requests;
        self.failed += other.failed;
        self.shed += other.shed;
        self.ok_in_time += other.ok_in_time;
    }

    fn summary(self, dropped: u64, elapsed: Duration) -> Summary {
        Summary {
            requests: self.requests,
            failed: self.failed,
            shed: self.shed,
            ok_in_time: self.ok_in_time,
            dropped,
            elapsed,
            latency: self.latency,
            admitted: self.admitted,
        }
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
/// running index and returns how the request ended (a `bool`: whether the answer was the
/// expected one, or an [`Answer`]).
///
/// The workers run as futures of the calling task (the HTTP connections run on the
/// runtime's threads), so `request` may borrow.
pub(crate) async fn closed_loop<F, Fut, A>(
    concurrency: usize,
    duration: Duration,
    max_requests: u64,
    request: F,
) -> Summary
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = A>,
    A: Into<Answer>,
{
    let next = AtomicU64::new(0);
    let started = Instant::now();
    let deadline = started + duration;
    let worker = || async {
        let mut tally = Tally::new();
        while Instant::now() < deadline {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= max_requests {
                break;
            }
            let t = Instant::now();
            let answer = request(i).await.into();
            tally.count(answer, t.elapsed(), true);
        }
        tally
    };
    let results = futures::future::join_all((0..concurrency.max(1)).map(|_| worker())).await;
    let elapsed = started.elapsed();
    let mut total = Tally::new();
    for tally in &results {
        total.merge(tally);
    }
    total.summary(0, elapsed)
}

/// Starts `rate` requests per second (in batches every 10 ms) for `duration`, whatever the
/// answers' latency, with at most `max_in_flight` outstanding; a start that would exceed it
/// is dropped and counted. Waits for the stragglers at the end (at most 30 s); what did not
/// answer by then counts as failed. `request` is as for [`closed_loop`].
pub(crate) async fn open_loop<F, Fut, A>(
    rate: u32,
    duration: Duration,
    max_in_flight: usize,
    request: F,
) -> Summary
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = A>,
    A: Into<Answer>,
{
    use futures::StreamExt;
    const TICK: Duration = Duration::from_millis(10);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut tally = Tally::new();
    let started = Instant::now();
    let total = u64::from(rate) * u64::try_from(duration.as_millis()).unwrap_or(u64::MAX) / 1000;
    let (mut issued, mut dropped) = (0u64, 0u64);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let timed = |i: u64| {
        let fut = request(i);
        async move {
            let t = Instant::now();
            let answer: Answer = fut.await.into();
            (answer, t.elapsed())
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
            Some((answer, latency)) = in_flight.next(), if !in_flight.is_empty() => {
                tally.count(answer, latency, true);
            }
        }
    }
    let elapsed = started.elapsed();
    let drain_until = Instant::now() + Duration::from_secs(30);
    while !in_flight.is_empty() && Instant::now() < drain_until {
        match tokio::time::timeout_at(drain_until.into(), in_flight.next()).await {
            Ok(Some((answer, latency))) => tally.count(answer, latency, false),
            _ => break,
        }
    }
    // Whatever did not answer in time counts as failed (its latency is not recorded).
    let unanswered = in_flight.len() as u64;
    tally.requests += unanswered;
    tally.failed += unanswered;
    tally.summary(dropped, elapsed)
}
