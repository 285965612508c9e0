//! The client against `idenfy-sim`: the happy path, every scripted fault mapped to the
//! expected `IdenfyErrorKind`, credentials, expiry and decisions.

use std::time::Duration;

use idenfy_client::{ClientConfig, IdenfyApi, IdenfyClient, IdenfyErrorKind, RetryPolicy};
use idenfy_core::{ParentId, ScanRef, VerificationStatus};
use idenfy_sim::{Fault, Outcome, Sim, SimConfig, SimHandle};

use crate::{CLIENT_ID, client_with};

async fn start_sim() -> SimHandle {
    Sim::start(SimConfig::default())
        .await
        .expect("the simulator starts")
}

fn sim_config(sim: &SimHandle) -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            budget: Duration::from_secs(8),
        },
        ..ClientConfig::new(
            sim.config().api_key.clone(),
            sim.config().api_secret.clone(),
        )
        .with_base_url(sim.base_url())
    }
}

fn sim_client(sim: &SimHandle) -> IdenfyClient {
    client_with(sim_config(sim))
}

fn parent() -> ParentId {
    ParentId::parse(CLIENT_ID).expect("valid id")
}

#[tokio::test]
async fn contract_mint_then_status_active_then_data() {
    let sim = start_sim().await;
    let client = sim_client(&sim);

    let minted = client.mint(&parent()).await.expect("minted");
    let report = client.status(&minted.scan_ref).await.expect("status");
    let data = client.data(&minted.scan_ref).await.expect("data");

    assert_eq!(report.status, VerificationStatus::Active);
    assert_eq!(report.scan_ref, minted.scan_ref);
    assert_eq!(
        data.get("scanRef").and_then(|v| v.as_str()),
        Some(minted.scan_ref.as_str())
    );
    assert!(data.contains_key("docFirstName"));
    assert!(
        minted.redirect_url.starts_with(&sim.base_url()),
        "{}",
        minted.redirect_url
    );
    let lifetime = minted.expires_at.expect("expiry known") - minted.minted_at;
    assert_eq!(lifetime.num_seconds(), 3600);
    let counters = sim.counters();
    assert_eq!(counters.tokens_minted_by_client.get(CLIENT_ID), Some(&1));
    assert_eq!(counters.token_calls, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn contract_configured_token_options_are_honoured() {
    let sim = start_sim().await;
    let mut cfg = sim_config(&sim);
    cfg.token_options.expiry_time_secs = Some(900);
    cfg.token_options.session_length_secs = Some(300);
    let client = client_with(cfg);

    let minted = client.mint(&parent()).await.expect("minted");

    assert_eq!(
        (minted.expires_at.expect("expiry known") - minted.minted_at).num_seconds(),
        900
    );
    let session = sim
        .session(minted.scan_ref.as_str())
        .expect("the sim knows the session");
    assert_eq!((session.expiry_time, session.session_length), (900, 300));
    sim.shutdown().await;
}

#[tokio::test]
async fn contract_token_faults_map_to_kinds_without_retry() {
    let sim = start_sim().await;
    let client = sim_client(&sim);
    let cases = [
        (Fault::ServerError, IdenfyErrorKind::Server),
        (Fault::PaymentRequired, IdenfyErrorKind::Money),
        (Fault::TokenLimit, IdenfyErrorKind::Money),
        (Fault::TooManyRequests, IdenfyErrorKind::RateLimited),
        (Fault::Unauthorized, IdenfyErrorKind::Unauthorized),
        (Fault::Conflict, IdenfyErrorKind::Conflict),
        (Fault::BadPayload, IdenfyErrorKind::UnexpectedPayload),
    ];

    for (fault, kind) in &cases {
        sim.script_token(vec![fault.clone()]);
        let err = client.mint(&parent()).await.expect_err("scripted fault");
        assert_eq!(err.kind, *kind, "{fault:?}: {err}");
    }

    let counters = sim.counters();
    assert_eq!(
        counters.token_calls,
        cases.len() as u64,
        "one call per mint: never retried"
    );
    assert_eq!(counters.tokens_minted_by_client.get(CLIENT_ID), None);
    sim.shutdown().await;
}

#[tokio::test]
async fn contract_token_timeout_is_timeout_and_not_retried() {
    let sim = start_sim().await;
    let mut cfg = sim_config(&sim);
    cfg.request_timeout = Duration::from_millis(300);
    let client = client_with(cfg);
    sim.script_token(vec![Fault::Timeout]);

    let err = client.mint(&parent()).await.expect_err("the sim hangs");

    assert_eq!(err.kind, IdenfyErrorKind::Timeout);
    assert_eq!(sim.counters().token_calls, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn contract_status_faults_map_to_kinds() {
    let sim = start_sim().await;
    let minted = sim_client(&sim).mint(&parent()).await.expect("minted");
    let mut cfg = sim_config(&sim);
    cfg.retry = RetryPolicy::none();
    cfg.request_timeout = Duration::from_millis(300);
    let client = client_with(cfg);
    let cases = [
        (Fault::ServerError, IdenfyErrorKind::Server),
        (Fault::TooManyRequests, IdenfyErrorKind::RateLimited),
        (Fault::Unauthorized, IdenfyErrorKind::Unauthorized),
        (Fault::BadPayload, IdenfyErrorKind::UnexpectedPayload),
        (Fault::Timeout, IdenfyErrorKind::Timeout),
    ];

    for (fault, kind) in cases {
        sim.script_status(vec![fault.clone()]);
        let err = client
            .status(&minted.scan_ref)
            .await
            .expect_err("scripted fault");
        assert_eq!(err.kind, kind, "{fault:?}: {err}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn contract_status_is_retried_through_transient_faults() {
    let sim = start_sim().await;
    let client = sim_client(&sim);
    let minted = client.mint(&parent()).await.expect("minted");
    sim.script_status(vec![Fault::ServerError, Fault::TooManyRequests]);

    let report = client
        .status(&minted.scan_ref)
        .await
        .expect("third attempt succeeds");

    assert_eq!(report.status, VerificationStatus::Active);
    let calls = sim.counters().status_calls_by_scan_ref;
    assert_eq!(calls.get(minted.scan_ref.as_str()), Some(&3));
    sim.shutdown().await;
}

#[tokio::test]
async fn contract_wrong_credentials_are_unauthorized() {
    let sim = start_sim().await;
    let mut cfg = sim_config(&sim);
    cfg.api_secret = "not-the-secret".into();
    let client = client_with(cfg);

    let err = client.mint(&parent()).await.expect_err("wrong secret");
    let status_err = client
        .status(&ScanRef::new("any"))
        .await
        .expect_err("wrong secret");

    assert_eq!(err.kind, IdenfyErrorKind::Unauthorized);
    assert_eq!(err.http_status, Some(401));
    assert_eq!(status_err.kind, IdenfyErrorKind::Unauthorized);
    assert_eq!(
        sim.counters().status_calls,
        1,
        "unauthorized is not retried"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn contract_unknown_scan_ref_is_not_found() {
    let sim = start_sim().await;

    let err = sim_client(&sim)
        .status(&ScanRef::new("no-such-scan-ref"))
        .await
        .expect_err("unknown");

    assert_eq!(err.kind, IdenfyErrorKind::NotFound);
    sim.shutdown().await;
}

#[tokio::test]
async fn contract_expired_token_reads_expired() {
    let sim = start_sim().await;
    let client = sim_client(&sim);
    let minted = client.mint(&parent()).await.expect("minted");

    assert!(sim.expire_token(minted.scan_ref.as_str()));
    let report = client.status(&minted.scan_ref).await.expect("status");

    assert_eq!(report.status, VerificationStatus::Expired);
    sim.shutdown().await;
}

#[tokio::test]
async fn contract_approved_verification_reads_approved_with_document_data() {
    let sim = start_sim().await;
    let client = sim_client(&sim);
    let minted = client.mint(&parent()).await.expect("minted");

    assert!(sim.decide(minted.scan_ref.as_str(), Outcome::Approve).await);
    let report = client.status(&minted.scan_ref).await.expect("status");
    let data = client.data(&minted.scan_ref).await.expect("data");

    assert_eq!(report.status, VerificationStatus::Approved);
    assert!(
        data.get("docFirstName").is_some_and(|v| v.is_string()),
        "a document was read"
    );
    sim.shutdown().await;
}
