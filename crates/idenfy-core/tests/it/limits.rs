//! Settings at the far end of their range: times computed from a duration too long to add
//! to a date saturate instead of panicking, so a poll still answers.

use std::{sync::Arc, time::Duration};

use idenfy_core::{RowStatus, Sessions, resolver::Outcome};

use crate::support::{Harness, Seed, owner};

#[tokio::test]
async fn durations_too_long_to_add_to_a_date_do_not_panic_a_poll() {
    let h = Harness::new();
    let mut settings = h.sessions.settings().clone();
    settings.poll_interval = Duration::MAX;
    settings.claim_ttl = Duration::MAX;
    settings.persist_retry = Duration::MAX;
    settings.unknown_outcome_backoff = Duration::MAX;
    settings.reuse_window = Duration::MAX;
    let sessions = Arc::new(Sessions::builder(h.ports(), settings).build());

    let expired = h.seed(Seed::expired()).await;
    let r = sessions
        .resolve(expired.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(r.outcome, Outcome::Recovered);
    assert_eq!(h.idenfy.mint_calls(), 1);

    let active = h.seed(Seed::default()).await;
    let r = sessions
        .resolve(active.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(r.view.status, RowStatus::InProgress);
    assert_eq!(
        h.idenfy.status_calls(&active.scan_ref),
        0,
        "an endless poll interval never asks iDenfy"
    );
}
