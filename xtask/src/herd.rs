//! The herd both `bench` and `chaos` run: every row's token expired at once at the
//! simulator (which tells the apps by webhook) while several pollers per row, spread over
//! the replicas, poll until they hold the new token. What they saw is a [`HerdOutcome`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::load;
use crate::stack::{Created, Stack};

/// How long a herd poller waits between polls while it has no new token, like a browser
/// tab; a pending view's `retryAfterMs` (bounded to 100 ms..2 s) replaces it.
pub(crate) const HERD_POLL_PAUSE: Duration = Duration::from_millis(1000);
/// Requests in flight at once across all herd pollers (the client side's connection budget).
pub(crate) const HERD_IN_FLIGHT: usize = 256;

/// Where the sim's expiry webhooks go during a herd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HerdWebhooks {
    /// Wherever the sim's webhook URL points (app 0, as [`Stack::start`] sets it).
    AsConfigured,
    /// Row `i`'s webhook to `apps[i % apps.len()]`, like a load balancer in front of the
    /// replicas; app 0 again afterwards. (The sim picks the receiver when the event
    /// happens, so switching the URL before each expiry routes that row's webhook.)
    RoundRobin,
}

/// How a herd runs.
#[derive(Clone, Debug)]
pub(crate) struct HerdPlan<'a> {
    pub(crate) pollers_per_row: usize,
    /// The pollers stop here even without the new token.
    pub(crate) deadline: Duration,
    /// Poller `j` of a row polls `apps[j % apps.len()]`.
    pub(crate) apps: &'a [usize],
    /// A poller's pause while it has no new token, like a browser tab; a pending view's
    /// `retryAfterMs` or a shed answer's `Retry-After` (bounded to 100 ms..2 s) replaces it.
    pub(crate) pause: Duration,
    pub(crate) webhooks: HerdWebhooks,
}

/// What one herd produced.
#[derive(Debug, Clone)]
pub(crate) struct HerdOutcome {
    pub(crate) rows: usize,
    pub(crate) pollers: usize,
    /// Rows whose token the sim expired (and sent `IDENTIFICATION_EXPIRED` for).
    pub(crate) expired_rows: usize,
    /// Successful recovery mints per row (from the sim's counters).
    pub(crate) mints: Vec<u64>,
    pub(crate) expired_views: u64,
    /// 5xx answers and requests that got no answer.
    pub(crate) errors: u64,
    /// Of `errors`: shed answers (503 with `Retry-After`).
    pub(crate) shed: u64,
    pub(crate) polls: u64,
    /// Per converged poller: time from expiry to holding the new token.
    pub(crate) times: Vec<Duration>,
    /// Per row, in the order of `rows`: what [`HerdOutcome::old_token_views`] judges.
    pub(crate) seen: Vec<RowPolls>,
}

/// What the pollers of one row saw, for [`HerdOutcome::old_token_views`].
#[derive(Debug, Clone, Default)]
pub(crate) struct RowPolls {
    pub(crate) scan_ref: String,
    /// When each poll that was answered in progress with the row's old token was sent.
    pub(crate) old_token_sent: Vec<Instant>,
    /// When the first answer for the row arrived that was a pending view or carried the
    /// new token (any poller, any app).
    pub(crate) moved_on: Option<Instant>,
}

impl HerdOutcome {
    pub(crate) fn mints_per_row(&self) -> f64 {
        self.mints.iter().sum::<u64>() as f64 / self.rows.max(1) as f64
    }
    pub(crate) fn rows_not_minted_once(&self) -> usize {
        self.mints.iter().filter(|&&m| m != 1).count()
    }
    pub(crate) fn max_mints(&self) -> u64 {
        self.mints.iter().copied().max().unwrap_or(0)
    }
    pub(crate) fn converged(&self) -> usize {
        self.times.len()
    }
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        load::durations(&self.times).value_at_quantile(q) as f64 / 1000.0
    }

    /// Polls answered in progress with the row's old token, whenever they were sent.
    pub(crate) fn old_token_polls(&self) -> u64 {
        self.seen
            .iter()
            .map(|r| r.old_token_sent.len() as u64)
            .sum()
    }

    /// Old-token views: polls answered in progress with the row's OLD auth token although
    /// the apps had demonstrably learned that it expired. A poll counts when it was *sent*
    /// after the earlier of
    /// - the moment the sim saw its `IDENTIFICATION_EXPIRED` webhook for the row
    ///   acknowledged with a 2xx (`acknowledged`, by scanRef), and
    /// - the *arrival* of an answer for the same row (from any poller and any app) that was
    ///   a pending view or carried the new token.
    ///
    /// A poll sent before both is an app that could not know yet, which is allowed.
    pub(crate) fn old_token_views(&self, acknowledged: &HashMap<String, Instant>) -> u64 {
        self.seen
            .iter()
            .map(|row| {
                let acked = acknowledged.get(&row.scan_ref).copied();
                let learned = acked.into_iter().chain(row.moved_on).min();
                learned.map_or(0, |learned| {
                    row.old_token_sent.iter().filter(|&&t| t > learned).count() as u64
                })
            })
            .sum()
    }
}

/// What one poller of a herd saw.
#[derive(Debug, Default)]
struct PollerSaw {
    converged: Option<Duration>,
    expired: u64,
    errors: u64,
    shed: u64,
    polls: u64,
    old_token_sent: Vec<Instant>,
    moved_on: Option<Instant>,
}

/// [`herd_with`] with the pollers pausing [`HERD_POLL_PAUSE`] and the webhooks where the
/// sim's URL points.
pub(crate) async fn herd(
    stack: &Stack,
    rows: &[Created],
    pollers_per_row: usize,
    deadline: Duration,
    apps: &[usize],
    during: impl Future<Output = ()>,
) -> HerdOutcome {
    let plan = HerdPlan {
        pollers_per_row,
        deadline,
        apps,
        pause: HERD_POLL_PAUSE,
        webhooks: HerdWebhooks::AsConfigured,
    };
    herd_with(stack, rows, &plan, during).await
}

/// Expires every row's token at once (the sim notifies the apps by webhook) while
/// `plan.pollers_per_row` pollers per row, spread over `plan.apps`, poll until they hold
/// the new token or `plan.deadline` passes. `during` runs alongside (a fault to inject).
pub(crate) async fn herd_with(
    stack: &Stack,
    rows: &[Created],
    plan: &HerdPlan<'_>,
    during: impl Future<Output = ()>,
) -> HerdOutcome {
    let before = stack.mints_by_parent();
    let slots = tokio::sync::Semaphore::new(HERD_IN_FLIGHT);
    let t0 = Instant::now();
    let mut expired_rows = 0;
    for (i, row) in rows.iter().enumerate() {
        if plan.webhooks == HerdWebhooks::RoundRobin {
            let app = plan.apps[i % plan.apps.len()];
            stack.sim.set_webhook_url(Some(stack.webhook_url(app)));
        }
        if stack.sim.expire_token(&row.scan_ref) {
            expired_rows += 1;
        } else {
            eprintln!("warning: the sim could not expire {}", row.scan_ref);
        }
    }
    if plan.webhooks == HerdWebhooks::RoundRobin {
        stack.sim.set_webhook_url(Some(stack.webhook_url(0)));
    }
    let pollers = futures::stream::iter(
        rows.iter()
            .enumerate()
            .flat_map(|(r, row)| (0..plan.pollers_per_row).map(move |j| (r, row, j))),
    )
    .map(|(r, row, j)| {
        let app = plan.apps[j % plan.apps.len()];
        let slots = &slots;
        async move {
            let mut saw = PollerSaw::default();
            // Bounded by time and by count.
            for _ in 0..5000 {
                if t0.elapsed() > plan.deadline {
                    break;
                }
                let (polled, sent) = {
                    let _permit = slots.acquire().await;
                    let sent = Instant::now();
                    (stack.poll(app, row).await, sent)
                };
                saw.polls += 1;
                saw.expired += u64::from(polled.is_expired());
                saw.errors += u64::from(polled.is_5xx());
                saw.shed += u64::from(polled.shed);
                let fresh = polled.http == 200
                    && polled.token.is_some()
                    && polled
                        .scan_ref
                        .as_deref()
                        .is_some_and(|s| s != row.scan_ref);
                let pending =
                    polled.http == 200 && polled.token.is_none() && polled.retry_after_ms.is_some();
                if fresh || pending {
                    saw.moved_on.get_or_insert_with(Instant::now);
                }
                if polled.http == 200
                    && polled.status.as_deref() == Some("in_progress")
                    && polled.token.as_deref() == Some(row.auth_token.as_str())
                {
                    saw.old_token_sent.push(sent);
                }
                if fresh {
                    saw.converged = Some(t0.elapsed());
                    break;
                }
                let pause = polled
                    .retry_after_ms
                    .map_or(plan.pause, |ms| Duration::from_millis(ms.clamp(100, 2000)));
                tokio::time::sleep(pause).await;
            }
            (r, saw)
        }
    })
    .buffer_unordered(usize::MAX)
    .collect::<Vec<_>>();
    let (results, ()) = tokio::join!(pollers, during);
    // Let in-flight mints settle before counting them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = stack.mints_by_parent();
    let mints = rows
        .iter()
        .map(|row| {
            after.get(&row.parent_id).copied().unwrap_or(0)
                - before.get(&row.parent_id).copied().unwrap_or(0)
        })
        .collect();
    let mut outcome = HerdOutcome {
        rows: rows.len(),
        pollers: rows.len() * plan.pollers_per_row,
        expired_rows,
        mints,
        expired_views: 0,
        errors: 0,
        shed: 0,
        polls: 0,
        times: Vec::new(),
        seen: rows
            .iter()
            .map(|row| RowPolls {
                scan_ref: row.scan_ref.clone(),
                ..RowPolls::default()
            })
            .collect(),
    };
    for (r, saw) in results {
        outcome.times.extend(saw.converged);
        outcome.expired_views += saw.expired;
        outcome.errors += saw.errors;
        outcome.shed += saw.shed;
        outcome.polls += saw.polls;
        let seen = &mut outcome.seen[r];
        seen.old_token_sent.extend(saw.old_token_sent);
        seen.moved_on = seen.moved_on.into_iter().chain(saw.moved_on).min();
    }
    outcome
}

/// Old-token views count only polls sent once the apps could know better.
#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use super::{HerdOutcome, RowPolls};

    #[test]
    fn old_token_views_start_at_the_acknowledged_webhook_or_the_first_answer_moved_on() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let row = |scan_ref: &str, sent: &[u64], moved_on: Option<u64>| RowPolls {
            scan_ref: scan_ref.to_owned(),
            old_token_sent: sent.iter().map(|&n| ms(n)).collect(),
            moved_on: moved_on.map(ms),
        };
        let outcome = HerdOutcome {
            rows: 4,
            pollers: 4,
            expired_rows: 4,
            mints: vec![1; 4],
            expired_views: 0,
            errors: 0,
            shed: 0,
            polls: 0,
            times: Vec::new(),
            seen: vec![
                // Webhook acknowledged at 10: the polls sent at 20 and 30 count.
                row("a", &[5, 20, 30], None),
                // A pending view arrived at 15, before the acknowledgement at 40.
                row("b", &[5, 20], Some(15)),
                // Nothing learned: an old token is no fault.
                row("c", &[5, 50], None),
                // Learned at 100, no poll after it.
                row("d", &[5, 50], Some(100)),
            ],
        };
        let acknowledged: HashMap<String, Instant> =
            [("a".to_owned(), ms(10)), ("b".to_owned(), ms(40))].into();
        assert_eq!(outcome.old_token_polls(), 9);
        assert_eq!(outcome.old_token_views(&acknowledged), 3);
    }
}
