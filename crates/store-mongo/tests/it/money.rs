//! Billed tokens on the real server: a token call whose answer is lost (idenfy-sim mints,
//! then hangs) is recorded on the row in MongoDB as an unknown outcome, the longer back-off
//! holds, and the bound gives up with the parent failed — counted in tokens the sim billed.

use std::time::Duration;

use chrono::Utc;
use idenfy_client::{ClientConfig, IdenfyClient, RetryPolicy};
use idenfy_core::{
    Environment, Flow, ParentStatus, ParentStore, Ports, RowStore, Sessions, Settings, SystemClock,
    WebhookKey, creation::CreateRequest, resolver::Outcome,
};
use idenfy_sim::{Fault, Sim, SimConfig};
use mongodb::bson::{Document, doc};

use crate::support::{finish, stores};

#[tokio::test]
async fn a_lost_token_answer_is_recorded_backs_off_and_is_bounded() {
    let Some(stores) = stores(
        "store-mongo money::a_lost_token_answer_is_recorded",
        Environment::Live,
    )
    .await
    else {
        return;
    };
    let sim = Sim::start(SimConfig::default()).await.expect("sim");
    let client = IdenfyClient::new(ClientConfig {
        request_timeout: Duration::from_millis(500),
        retry: RetryPolicy::none(),
        ..ClientConfig::new(
            sim.config().api_key.clone(),
            sim.config().api_secret.clone(),
        )
        .with_base_url(sim.base_url())
    })
    .expect("client");
    let mut settings = Settings::new(
        Environment::Live,
        sim.base_url(),
        WebhookKey::new(sim.config().webhook_signing_key.clone()),
    );
    // A token just minted is not polled for an interval: keep it short, so the expiry
    // is found at once.
    settings.poll_interval = Duration::from_millis(50);
    settings.unknown_outcome_backoff = Duration::from_millis(300);
    settings.max_unknown_mint_outcomes = 2;
    settings.pending_retry_after = Duration::from_millis(50);
    let sessions = Sessions::builder(
        Ports {
            rows: stores.rows().clone(),
            parents: stores.parents().clone(),
            intents: stores.intents().clone(),
            lock: idenfy_core::memory::MemoryLock::new(SystemClock),
            idenfy: client,
            clock: SystemClock,
        },
        settings,
    )
    .build();
    let owner = idenfy_core::SigDigest::parse("sig-of-the-lost-answer").expect("sig");
    let created = sessions
        .create_session(CreateRequest {
            sig_digest: owner.clone(),
            flow: Flow::GovId,
            idempotency_key: None,
        })
        .await
        .expect("created");
    let scan_ref = created.idenfy.idenfy_scan_ref.clone().expect("a token");
    assert!(sim.expire_token(scan_ref.as_str()));
    let row_id = created.idenfy_session_id.clone();
    let raw_row = || async {
        stores
            .database()
            .collection::<Document>("idenfysessions")
            .find_one(doc! { "_id": mongodb::bson::oid::ObjectId::parse_str(row_id.as_str()).expect("oid") })
            .await
            .expect("raw read")
            .expect("the row")
    };

    // Every token call from now on is minted, billed and its answer lost.
    sim.script_token(vec![Fault::AnswerLost; 4]);
    let mut polls = 0;
    let resolution = loop {
        polls += 1;
        assert!(polls < 400, "the row never gave up");
        let resolution = sessions
            .resolve(row_id.as_str(), &owner)
            .await
            .expect("resolves");
        if resolution.outcome == Outcome::GaveUp {
            break resolution;
        }
        assert_ne!(
            resolution
                .view
                .idenfy_verification_status
                .as_ref()
                .map(|s| s.as_str()),
            Some("EXPIRED"),
            "never EXPIRED while recovery is possible"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(resolution.view.status, idenfy_core::RowStatus::Failed);

    let raw = raw_row().await;
    assert_eq!(
        raw.get_i64("mintUnknownOutcomes")
            .ok()
            .or_else(|| raw.get_i32("mintUnknownOutcomes").ok().map(i64::from)),
        Some(2),
        "{raw}"
    );
    assert!(raw.get_datetime("lastMintUnknownAt").is_ok(), "{raw}");
    let billed = sim
        .counters()
        .tokens_minted_by_client
        .get(created.session_id.as_str())
        .copied();
    assert_eq!(
        billed,
        Some(3),
        "the creation, plus one billed token per unknown outcome, and no more"
    );
    let row = stores
        .rows()
        .get(&row_id)
        .await
        .expect("read")
        .expect("row");
    let parent = stores
        .parents()
        .get(Flow::GovId, &row.parent_id)
        .await
        .expect("read")
        .expect("parent");
    assert_eq!(
        parent.status,
        ParentStatus::VerificationFailed,
        "refundable"
    );
    let _ = Utc::now();
    sim.shutdown().await;
    finish(stores).await;
}
