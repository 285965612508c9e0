//! Polls worth stopping and polls worth waiting for: a poll whose caller left stops before
//! its first write and changes nothing; a recovery that has begun finishes without its
//! caller; a poll that finds a peer asking iDenfy about its row waits for that answer
//! instead of handing out the token the peer is finding expired.

use std::{sync::Arc, time::Duration};

use idenfy_core::{
    Clock, Interest, Ports, RowId, ScanRef, Sessions, Timestamp, VerificationStatus,
    memory::{MemoryIntentStore, MemoryLock, MemoryParentStore, MemoryRowStore, delay},
    resolver::{Outcome, Resolution, ResolveError},
    testing::ScriptedIdenfy,
};

use crate::support::{Harness, Options, Seed, owner, start_time};

/// The time of a paused tokio runtime: `sleep` waits in virtual time, so concurrent
/// resolutions interleave as they would for real, deterministically.
#[derive(Clone, Debug)]
struct TokioTime {
    base: Timestamp,
    origin: tokio::time::Instant,
}

impl TokioTime {
    fn starting_at(base: Timestamp) -> Self {
        Self {
            base,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioTime {
    fn now(&self) -> Timestamp {
        self.base + chrono::Duration::from_std(self.origin.elapsed()).expect("small")
    }

    fn sleep(&self, duration: Duration) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

type TimedSessions = Sessions<
    Ports<
        MemoryRowStore,
        MemoryParentStore,
        MemoryIntentStore,
        MemoryLock,
        ScriptedIdenfy,
        TokioTime,
    >,
>;

/// A replica over the harness's stores whose iDenfy is `idenfy` and whose time is `time`.
fn replica(h: &Harness, idenfy: ScriptedIdenfy, time: TokioTime) -> Arc<TimedSessions> {
    Arc::new(
        Sessions::builder(
            Ports {
                rows: h.rows.clone(),
                parents: h.parents.clone(),
                intents: h.intents.clone(),
                lock: h.lock.clone(),
                idenfy,
                clock: time,
            },
            h.sessions.settings().clone(),
        )
        .build(),
    )
}

fn token(view: &idenfy_core::SessionView) -> Option<&str> {
    view.idenfy_auth_token.as_ref().map(|t| t.expose())
}

#[tokio::test(start_paused = true)]
async fn a_poll_that_finds_a_peer_asking_idenfy_waits_for_its_answer() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    // The token looks valid to us, but iDenfy is about to answer EXPIRED, slowly.
    h.idenfy
        .set_status(&row.scan_ref, VerificationStatus::Expired);
    let slow = h
        .idenfy
        .clone()
        .with_status_delay(delay(|| tokio::time::sleep(Duration::from_millis(300))));
    let time = TokioTime::starting_at(start_time());
    let holder = replica(&h, slow.clone(), time.clone());
    let peer = replica(&h, slow, time);

    let id = row.id.clone();
    let polling = tokio::spawn(async move { holder.resolve(id.as_str(), &owner()).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = peer
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    let polled = polling.await.expect("no panic").expect("resolves");

    assert_eq!(polled.outcome, Outcome::Recovered, "the holder recovers");
    assert_ne!(
        token(&seen.view),
        Some("AUTH_OLD"),
        "the token iDenfy was finding expired is not handed out"
    );
    assert_eq!(
        token(&seen.view),
        Some("AUTH_NEW_1"),
        "the peer's new token"
    );
    assert_ne!(
        seen.view.idenfy_verification_status,
        Some(VerificationStatus::Expired)
    );
    assert_eq!(h.idenfy.status_calls(&ScanRef::new("SCAN_OLD")), 1);
    assert_eq!(h.idenfy.mint_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_peer_whose_answer_is_late_is_waited_for_a_bounded_time() {
    let h = Harness::new();
    let row = h.seed(Seed::default()).await;
    let stalled = h
        .idenfy
        .clone()
        .with_status_delay(delay(|| tokio::time::sleep(Duration::from_secs(30))));
    let time = TokioTime::starting_at(start_time());
    let holder = replica(&h, stalled.clone(), time.clone());
    let peer = replica(&h, stalled, time.clone());

    let id = row.id.clone();
    let polling = tokio::spawn(async move { holder.resolve(id.as_str(), &owner()).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = peer
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    // Virtual time: the peer gave up waiting one second after the holder's claim, long
    // before the holder's answer.
    assert!(time.now() < start_time() + chrono::Duration::seconds(2));
    assert_eq!(
        seen.outcome,
        Outcome::Cached,
        "the stored state, as last known"
    );
    assert_eq!(token(&seen.view), Some("AUTH_OLD"));
    assert!(
        !polling.is_finished(),
        "the holder is still waiting for iDenfy"
    );
    polling.abort();
}

/// Resolves `row` for its owner, the caller leaving after `leave_after`: what the run gave
/// (`None`: stopped) and its interest.
async fn resolve_leaving_after(
    h: &Harness,
    row: &RowId,
    leave_after: Duration,
) -> (Option<Result<Resolution, ResolveError>>, Interest) {
    let interest = Interest::new();
    let leaver = interest.clone();
    let caller = owner();
    let (result, ()) = futures::join!(
        interest.run(h.sessions.resolve_with(row.as_str(), &caller, &interest)),
        async move {
            tokio::time::sleep(leave_after).await;
            leaver.lose();
        }
    );
    (result, interest)
}

#[tokio::test(start_paused = true)]
async fn a_poll_whose_caller_left_before_its_first_write_changes_nothing() {
    let h = Harness::with(Options {
        store_delay: Some(delay(|| tokio::time::sleep(Duration::from_millis(100)))),
        ..Default::default()
    });
    let row = h.seed(Seed::default()).await;
    let (result, interest) = resolve_leaving_after(&h, &row.id, Duration::from_millis(50)).await;
    assert!(result.is_none(), "stopped while reading the row");
    assert!(!interest.is_committed());
    let stored = h.row(&row.id).await;
    assert_eq!(stored.last_polled_at, None, "no poll claimed");
    assert_eq!(h.idenfy.total_status_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_recovery_whose_caller_left_still_persists_its_token() {
    let h = Harness::with(Options {
        mint_delay: Some(delay(|| tokio::time::sleep(Duration::from_millis(200)))),
        ..Default::default()
    });
    let row = h.seed(Seed::expired()).await;
    // The caller leaves mid-mint: the token is being billed.
    let (result, _) = resolve_leaving_after(&h, &row.id, Duration::from_millis(100)).await;
    let resolution = result
        .expect("committed work runs to its end")
        .expect("resolves");
    assert_eq!(resolution.outcome, Outcome::Recovered);
    assert_eq!(h.idenfy.mint_calls(), 1);
    assert_eq!(h.row(&row.id).await.scan_ref, ScanRef::new("SCAN_NEW_1"));
}

#[tokio::test]
async fn a_token_just_minted_is_not_polled_before_the_interval() {
    let h = Harness::new();
    let row = h.seed(Seed::expired()).await;
    let first = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(first.outcome, Outcome::Recovered);
    let fresh = ScanRef::new("SCAN_NEW_1");
    for _ in 0..3 {
        let r = h
            .sessions
            .resolve(row.id.as_str(), &owner())
            .await
            .expect("resolves");
        assert_eq!(r.outcome, Outcome::Cached, "known from the mint");
    }
    assert_eq!(
        h.idenfy.status_calls(&fresh),
        0,
        "the herd after a recovery costs no call"
    );
    h.clock
        .advance(h.sessions.settings().poll_interval + Duration::from_secs(1));
    let r = h
        .sessions
        .resolve(row.id.as_str(), &owner())
        .await
        .expect("resolves");
    assert_eq!(r.outcome, Outcome::Polled);
    assert_eq!(h.idenfy.status_calls(&fresh), 1);
}
