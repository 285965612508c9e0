//! Admission control: a bound on the work one replica takes on at once, so that overload is
//! refused at the door (503 JSON with `Retry-After`, before any store access) instead of
//! queueing in front of the store until every request times out.
//!
//! Two classes, each with its own budget, so neither can starve the other:
//! - **polls** (the user routes: status, `session-status/v2`, listing): many, cheap, and
//!   safe to retry;
//! - **priority** (iDenfy's webhooks and the internal creation routes): the webhook that
//!   tells us a token expired ends a herd, and a creation spends money. Polls that fill
//!   their budget never shed them.
//!
//! `/healthz`, `/readyz`, `/metrics` and `/openapi.json` are never admitted or shed.
//!
//! A permit is held by the request and by the work it hands to its own task, so work that
//! runs on after its caller left (a mint and its persist, a webhook write) still counts:
//! abandoned work cannot pile up beyond the budget.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Quiet, error::ApiError};

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
    Poll,
    Priority,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Priority => "priority",
        }
    }
}

/// The budgets of one replica.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    polls: Arc<Semaphore>,
    priority: Arc<Semaphore>,
    /// Requests shed since the last warning, and when that was.
    shed_since_warning: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// How often shedding is logged (with the count since the previous line).
const SHED_WARNING_EVERY: Duration = Duration::from_secs(10);

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            limits,
            polls: Arc::new(Semaphore::new(limits.polls)),
            priority: Arc::new(Semaphore::new(limits.priority)),
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
            polls_limit = self.limits.polls,
            priority_limit = self.limits.priority,
            "over the in-flight budget: refusing requests with 503 + Retry-After"
        );
    }

    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    fn semaphore(&self, class: Class) -> &Arc<Semaphore> {
        match class {
            Class::Poll => &self.polls,
            Class::Priority => &self.priority,
        }
    }

    /// A permit, or `None` at once when the class's budget is spent.
    pub fn try_admit(&self, class: Class) -> Option<Admitted> {
        let permit = Arc::clone(self.semaphore(class)).try_acquire_owned().ok()?;
        Some(Admitted(Arc::new(permit)))
    }

    /// Requests of `class` in flight now (their spawned work included).
    pub fn in_flight(&self, class: Class) -> usize {
        let limit = match class {
            Class::Poll => self.limits.polls,
            Class::Priority => self.limits.priority,
        };
        limit.saturating_sub(self.semaphore(class).available_permits())
    }
}

/// Proof of admission, in the request's extensions. Clones share the one permit, which is
/// returned when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Admitted(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

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
