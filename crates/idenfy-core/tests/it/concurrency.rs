//! Racing pollers: 64 tasks over 8 replicas resolving one expired row with random delays
//! inside the lock and the store end on one new token, minted once, without ever seeing
//! EXPIRED — with the lock working and with the lock down. Within one replica, a herd
//! reaches the store claim once.

use std::time::Duration;

use idenfy_core::{RowStatus, VerificationStatus, memory::delay, resolver::Outcome};
use rand::Rng;

use crate::support::{Harness, Options, Seed, owner};

const TASKS: usize = 64;
/// Service instances sharing the stores, as replicas share MongoDB and Valkey.
const REPLICAS: usize = 8;

fn jitter() -> idenfy_core::memory::Delay {
    delay(|| {
        let micros = rand::rng().random_range(0..400);
        tokio::time::sleep(Duration::from_micros(micros))
    })
}

async fn herd(options: Options) -> (Harness, Vec<String>) {
    let h = Harness::with(options);
    let row = h.seed(Seed::expired()).await;
    let replicas: Vec<_> = (0..REPLICAS).map(|_| h.replica()).collect();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let sessions = replicas[task % REPLICAS].clone();
        let id = row.id.clone();
        tasks.push(tokio::spawn(async move {
            // Poll like a browser tab: until a token is shown.
            for _ in 0..2000 {
                let r = sessions
                    .resolve(id.as_str(), &owner())
                    .await
                    .expect("never an error");
                assert_ne!(
                    r.view.idenfy_verification_status,
                    Some(VerificationStatus::Expired),
                    "EXPIRED flashed"
                );
                assert_ne!(r.outcome, Outcome::GaveUp);
                assert_eq!(r.view.status, RowStatus::InProgress);
                if let Some(token) = r.view.idenfy_auth_token {
                    assert_ne!(token.expose(), "AUTH_OLD", "stale token handed out");
                    return token.expose().to_owned();
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            panic!("no token after 2000 polls");
        }));
    }
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(task.await.expect("task finished"));
    }
    (h, tokens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_pollers_mint_exactly_once_and_converge() {
    let (h, tokens) = herd(Options {
        store_delay: Some(jitter()),
        lock_delay: Some(jitter()),
        mint_delay: Some(jitter()),
        ..Default::default()
    })
    .await;
    assert_eq!(h.idenfy.mint_calls(), 1);
    assert!(
        tokens.iter().all(|t| t == "AUTH_NEW_1"),
        "all converge: {tokens:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_pollers_mint_exactly_once_with_the_lock_down() {
    let (h, tokens) = herd(Options {
        lock_unavailable: true,
        store_delay: Some(jitter()),
        mint_delay: Some(jitter()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        h.idenfy.mint_calls(),
        1,
        "the store claim alone is the guard"
    );
    assert!(
        tokens.iter().all(|t| t == "AUTH_NEW_1"),
        "all converge: {tokens:?}"
    );
}

/// With Valkey down, a herd served by ONE replica reaches the store claim once: the others
/// are turned away in-process while the winner mints, and afterwards find the new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_sends_one_claim_to_the_store_per_herd() {
    let h = Harness::with(Options {
        lock_unavailable: true,
        // The mint outlasts every task's first read by far.
        mint_delay: Some(delay(|| tokio::time::sleep(Duration::from_millis(200)))),
        ..Default::default()
    });
    let row = h.seed(Seed::expired()).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let sessions = h.sessions.clone();
        let id = row.id.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            sessions
                .resolve(id.as_str(), &owner())
                .await
                .expect("never an error")
                .outcome
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task finished"));
    }
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::Recovered)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            Outcome::Recovered | Outcome::Pending | Outcome::RecoveredByPeer
        )),
        "{outcomes:?}"
    );
    assert_eq!(h.idenfy.mint_calls(), 1);
    assert_eq!(
        h.rows.recreation_claims(),
        1,
        "the other {} tasks never reached the store claim",
        TASKS - 1
    );
}
