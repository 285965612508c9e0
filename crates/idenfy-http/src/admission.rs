//! Admission control: a bound on the work one replica takes on at once, so that overload is
//! refused at the door (503 JSON with `Retry-After`, before any store access) instead of
//! queueing in front of the store until every request times out.
//!
//! Two classes, each with its own budget, so neither can starve the other:
//! - **polls** (the user routes: status, `session-status/v2`, listing): many, cheap, and
//!   safe to retry;
//! - **priority** (iDenfy's webhooks and the internal creation routes): the webhook that
//!   tells us a token expired ends a herd, and a creation spends money. Polls that fill
//!   their budget never shed them, and when their own budget is spent they take a free
//!   place in the polls' budget: priority work is shed only when a poll would be too.
//!
//! `/healthz`, `/readyz`, `/metrics` and `/openapi.json` are never admitted or shed.
//!
//! A permit is held by the request and by the work it hands to its own task, so work that
//! runs on after its caller left (a mint and its persist, a webhook write) still counts:
//! abandoned work cannot pile up beyond the budget.
//!
//! The configured budget is a ceiling. The limit in force adapts to how long admitted
//! work takes (additive increase, multiplicative decrease): while work takes longer than
//! [`SLOW`] — the store answers in seconds, not milliseconds — the limit halves (at most
//! every [`CUT_EVERY`], never below a sixteenth of the ceiling), so that a store that cannot
//! keep up sees fewer requests at once and answers them in time instead of timing all of
//! them out; each quick completion adds back `1/limit`. A fast store never triggers it.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{Quiet, error::ApiError};

/// Requests in flight per replica and class before new ones are shed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Status polls and listings.
    pub polls: usize,
    /// Webhooks and internal creation calls.
    pub priority: usize,
}

impl AdmissionLimits {
    /// Derived from the store's connection pool. A cached poll holds a connection for
    /// well under a millisecond, so sixteen polls per connection queue for a few
    /// milliseconds at most: enough to ride out bursts (64 concurrent tabs on one replica
    /// are not shed), small enough that an admitted request never waits long. Priority
    /// work (webhooks arrive in bursts when many tokens expire together) gets eight per
    /// connection of its own.
    pub fn for_pool(pool_size: u32) -> Self {
        let pool = usize::try_from(pool_size).unwrap_or(usize::MAX).max(1);
        Self {
            polls: pool.saturating_mul(16),
            priority: pool.saturating_mul(8),
        }
    }
}

impl Default for AdmissionLimits {
    /// For the MongoDB driver's default pool of 10 connections.
    fn default() -> Self {
        Self::for_pool(10)
    }
}

/// The class of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The user routes: status polls and listings.
    Poll,
    /// iDenfy's webhooks and the internal creation routes.
    Priority,
}

impl Class {
    /// The class's name in logs and in the `class` label of [`SHED`]: `poll` or `priority`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Priority => "priority",
        }
    }
}

/// Admitted work slower than this is a sign that the store (or iDenfy) cannot keep up with
/// what is in flight: the limit in force is cut. A poll that waits for a peer's answer
/// waits at most a second, a cached one takes milliseconds.
pub const SLOW: Duration = Duration::from_secs(2);
/// At most one cut per this interval, so one burst of slow completions counts once.
pub const CUT_EVERY: Duration = Duration::from_millis(500);

/// One class's budget: the ceiling and the limit in force (see the module docs).
#[derive(Debug)]
struct Budget {
    ceiling: usize,
    floor: usize,
    /// The limit in force, in thousandths (increases come in fractions).
    limit_milli: AtomicUsize,
    in_flight: AtomicUsize,
    last_cut: Mutex<Option<Instant>>,
}

impl Budget {
    fn new(ceiling: usize) -> Arc<Self> {
        let ceiling = ceiling.max(1);
        Arc::new(Self {
            ceiling,
            floor: (ceiling / 16).max(1),
            limit_milli: AtomicUsize::new(ceiling.saturating_mul(1000)),
            in_flight: AtomicUsize::new(0),
            last_cut: Mutex::new(None),
        })
    }

    fn limit(&self) -> usize {
        (self.limit_milli.load(Ordering::Relaxed) / 1000).clamp(self.floor, self.ceiling)
    }

    fn try_enter(self: &Arc<Self>) -> Option<Permit> {
        let limit = self.limit();
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(Permit {
            budget: Arc::clone(self),
            started: Instant::now(),
        })
    }

    fn leave(&self, took: Duration) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if took >= SLOW {
            let mut last = self.last_cut.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < CUT_EVERY) {
                return;
            }
            *last = Some(Instant::now());
            let floor = self.floor.saturating_mul(1000);
            let _ = self
                .limit_milli
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |milli| {
                    Some((milli / 2).max(floor))
                });
        } else {
            let ceiling = self.ceiling.saturating_mul(1000);
            let _ = self
                .limit_milli
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |milli| {
                    let limit = (milli / 1000).max(1);
                    Some(milli.saturating_add(1000 / limit).min(ceiling))
                });
        }
    }
}

/// A place in a budget; returned (and its time counted) when dropped.
#[derive(Debug)]
struct Permit {
    budget: Arc<Budget>,
    started: Instant,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.budget.leave(self.started.elapsed());
    }
}

/// The budgets of one replica.
#[derive(Debug)]
pub struct Admission {
    polls: Arc<Budget>,
    priority: Arc<Budget>,
    /// Requests shed since the last warning, and when that was.
    shed_since_warning: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// How often shedding is logged (with the count since the previous line).
const SHED_WARNING_EVERY: Duration = Duration::from_secs(10);

impl Admission {
    /// Budgets whose ceilings are `limits` (a ceiling of 0 counts as 1), with nothing in
    /// flight and each limit in force at its ceiling.
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            polls: Budget::new(limits.polls),
            priority: Budget::new(limits.priority),
            shed_since_warning: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        }
    }

    /// Counts a shed request; warns at most once per [`SHED_WARNING_EVERY`].
    fn note_shed(&self, class: Class) {
        self.shed_since_warning.fetch_add(1, Ordering::Relaxed);
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < SHED_WARNING_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let shed = self.shed_since_warning.swap(0, Ordering::Relaxed);
        tracing::warn!(
            class = class.as_str(),
            shed,
            limit = self.budget(class).limit(),
            ceiling = self.budget(class).ceiling,
            "over the in-flight budget: refusing requests with 503 + Retry-After"
        );
    }

    fn budget(&self, class: Class) -> &Arc<Budget> {
        match class {
            Class::Poll => &self.polls,
            Class::Priority => &self.priority,
        }
    }

    /// A permit, or `None` at once when the class's budget is spent. Priority work whose
    /// budget is spent borrows a place of the polls' budget when one is free, so it is
    /// never refused while a poll would be admitted.
    pub fn try_admit(&self, class: Class) -> Option<Admitted> {
        let permit = match class {
            Class::Poll => self.polls.try_enter()?,
            Class::Priority => self
                .priority
                .try_enter()
                .or_else(|| self.polls.try_enter())?,
        };
        Some(Admitted(Arc::new(permit)))
    }

    /// Requests of `class` in flight now (their spawned work included).
    pub fn in_flight(&self, class: Class) -> usize {
        self.budget(class).in_flight.load(Ordering::Acquire)
    }

    /// The limit in force for `class` (at most its configured ceiling).
    pub fn limit(&self, class: Class) -> usize {
        self.budget(class).limit()
    }
}

/// Proof of admission, in the request's extensions. Clones share the one permit, which is
/// returned when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Admitted(#[allow(dead_code)] Arc<Permit>);

/// Middleware of the admitted routes: a permit, or 503 at once.
pub async fn admit(
    State((admission, class)): State<(Arc<Admission>, Class)>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(admitted) = admission.try_admit(class) else {
        metrics::counter!(SHED, "class" => class.as_str()).increment(1);
        admission.note_shed(class);
        // A line per refused request would cost the CPU shedding is meant to save: the
        // answer line goes to DEBUG, and `note_shed` warns once per interval instead.
        let mut response = ApiError::overloaded().into_response();
        response.extensions_mut().insert(Quiet);
        return response;
    };
    request.extensions_mut().insert(admitted);
    next.run(request).await
}

/// Counter of requests refused by admission control, by class.
pub const SHED: &str = "idenfy_shed_total";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_has_its_own_budget_and_permits_come_back() {
        let admission = Admission::new(AdmissionLimits {
            polls: 2,
            priority: 1,
        });
        let first = admission.try_admit(Class::Poll).expect("room");
        let second = admission.try_admit(Class::Poll).expect("room");
        assert!(admission.try_admit(Class::Poll).is_none(), "polls are full");
        let webhook = admission
            .try_admit(Class::Priority)
            .expect("full polls never shed priority work");
        assert_eq!(admission.in_flight(Class::Poll), 2);
        // The work a request hands to its own task holds a clone.
        let spawned = first.clone();
        drop(first);
        assert!(admission.try_admit(Class::Poll).is_none(), "still held");
        drop(spawned);
        assert!(admission.try_admit(Class::Poll).is_some(), "returned");
        drop((second, webhook));
        assert_eq!(admission.in_flight(Class::Poll), 0);
        assert_eq!(admission.in_flight(Class::Priority), 0);
    }

    #[test]
    fn priority_work_borrows_a_free_poll_place_and_is_shed_only_when_polls_would_be() {
        let admission = Admission::new(AdmissionLimits {
            polls: 2,
            priority: 1,
        });
        let own = admission.try_admit(Class::Priority).expect("its own place");
        let borrowed = admission
            .try_admit(Class::Priority)
            .expect("a free poll place is lent");
        assert_eq!(admission.in_flight(Class::Priority), 1);
        assert_eq!(
            admission.in_flight(Class::Poll),
            1,
            "held in the polls' budget"
        );
        let poll = admission
            .try_admit(Class::Poll)
            .expect("one poll place left");
        assert!(
            admission.try_admit(Class::Priority).is_none(),
            "shed only now that a poll would be shed too"
        );
        assert!(admission.try_admit(Class::Poll).is_none());
        drop(borrowed);
        assert_eq!(
            admission.in_flight(Class::Poll),
            1,
            "the lent place came back"
        );
        drop((own, poll));
        assert_eq!(admission.in_flight(Class::Poll), 0);
        assert_eq!(admission.in_flight(Class::Priority), 0);
    }

    #[test]
    fn slow_work_halves_the_limit_and_quick_work_brings_it_back() {
        let budget = Budget::new(160);
        assert_eq!(budget.limit(), 160);
        budget.in_flight.fetch_add(1, Ordering::AcqRel);
        budget.leave(SLOW);
        assert_eq!(budget.limit(), 80, "halved");
        budget.in_flight.fetch_add(1, Ordering::AcqRel);
        budget.leave(SLOW);
        assert_eq!(budget.limit(), 80, "one cut per interval");
        *budget.last_cut.lock().expect("lock") = None;
        for _ in 0..10 {
            budget.in_flight.fetch_add(1, Ordering::AcqRel);
            budget.leave(SLOW);
            *budget.last_cut.lock().expect("lock") = None;
        }
        assert_eq!(budget.limit(), 10, "never below a sixteenth of the ceiling");
        for _ in 0..20_000 {
            budget.in_flight.fetch_add(1, Ordering::AcqRel);
            budget.leave(Duration::from_millis(1));
        }
        assert_eq!(budget.limit(), 160, "back at the ceiling, never above");
        assert_eq!(budget.in_flight.load(Ordering::Acquire), 0);
    }

    #[test]
    fn limits_follow_the_pool() {
        assert_eq!(
            AdmissionLimits::for_pool(10),
            AdmissionLimits {
                polls: 160,
                priority: 80
            }
        );
        assert_eq!(AdmissionLimits::for_pool(0).polls, 16, "never zero");
    }
}
