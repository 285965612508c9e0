//! Status lifecycle against the sim clock: expiryTime, sessionLength after opening, decisions.

use std::time::Duration;

use idenfy_sim::{Outcome, SimStatus};
use serde_json::json;

use crate::support::{Receiver, config, mint, mint_for, start, status_of, str_of};

#[tokio::test]
async fn an_unopened_token_expires_after_expiry_time_with_a_webhook() {
    let mut hooks = Receiver::start(0).await;
    let sim = start(idenfy_sim::SimConfig {
        webhook_url: Some(hooks.url.clone()),
        ..config()
    })
    .await;
    let token = mint(&sim, json!({ "clientId": "u", "expiryTime": 120 })).await;
    let scan_ref = str_of(&token, "scanRef");
    let before = sim.now();
    sim.advance_clock(Duration::from_secs(119));
    assert!(sim.now() - before >= chrono::TimeDelta::seconds(119));
    assert_eq!(status_of(&sim, &scan_ref).await["status"], "ACTIVE");
    sim.advance_clock(Duration::from_secs(2));
    let hook = hooks.next().await;
    assert_eq!(hook.event, "IDENTIFICATION_EXPIRED");
    assert_eq!(hook.json["scanRef"], scan_ref.as_str());
    assert_eq!(hook.json["status"]["overall"], "EXPIRED");
    assert_eq!(hook.json["final"], true);
    assert_eq!(status_of(&sim, &scan_ref).await["status"], "EXPIRED");
    // Expiry is notified once, however often it is read afterwards.
    sim.advance_clock(Duration::from_secs(3600));
    status_of(&sim, &scan_ref).await;
    hooks.assert_quiet(150).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn expiry_is_noticed_lazily_on_read_without_a_clock_sweep() {
    let sim = start(config()).await;
    let token = mint(&sim, json!({ "clientId": "u", "expiryTime": 0 })).await;
    assert_eq!(
        status_of(&sim, &str_of(&token, "scanRef")).await["status"],
        "EXPIRED"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn an_opened_token_lives_for_session_length_from_opening() {
    let sim = start(config()).await;
    // Opened before expiryTime: sessionLength counts from opening, past expiryTime.
    let token = mint(
        &sim,
        json!({ "clientId": "u", "expiryTime": 60, "sessionLength": 600 }),
    )
    .await;
    let scan_ref = str_of(&token, "scanRef");
    sim.advance_clock(Duration::from_secs(30));
    assert!(sim.open(&str_of(&token, "authToken")));
    sim.advance_clock(Duration::from_secs(100));
    assert_eq!(status_of(&sim, &scan_ref).await["status"], "ACTIVE");
    // Reopening does not restart the countdown.
    assert!(sim.open(&str_of(&token, "authToken")));
    sim.advance_clock(Duration::from_secs(499));
    assert_eq!(status_of(&sim, &scan_ref).await["status"], "ACTIVE");
    sim.advance_clock(Duration::from_secs(2));
    assert_eq!(status_of(&sim, &scan_ref).await["status"], "EXPIRED");
    assert!(!sim.open(&str_of(&token, "authToken")));

    // A short session ends well before expiryTime.
    let short = mint(&sim, json!({ "clientId": "u", "sessionLength": 60 })).await;
    let short_ref = str_of(&short, "scanRef");
    assert!(sim.open(&str_of(&short, "authToken")));
    sim.advance_clock(Duration::from_secs(61));
    assert_eq!(
        sim.session(&short_ref).expect("session").status,
        SimStatus::Expired
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn expire_token_expires_an_active_session_once() {
    let mut hooks = Receiver::start(0).await;
    let sim = start(idenfy_sim::SimConfig {
        webhook_url: Some(hooks.url.clone()),
        ..config()
    })
    .await;
    let (scan_ref, _) = mint_for(&sim, "u").await;
    assert!(sim.expire_token(&scan_ref));
    assert!(!sim.expire_token(&scan_ref));
    assert!(!sim.expire_token("unknown"));
    assert_eq!(status_of(&sim, &scan_ref).await["status"], "EXPIRED");
    assert_eq!(hooks.next().await.event, "IDENTIFICATION_EXPIRED");
    assert!(
        !sim.decide(&scan_ref, Outcome::Approve).await,
        "no decision after expiry"
    );
    hooks.assert_quiet(100).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn decisions_set_status_and_check_fields() {
    let sim = start(config()).await;
    let cases = [
        (Outcome::Approve, "APPROVED", "FACE_MATCH", 0),
        (Outcome::Deny, "DENIED", "FACE_MISMATCH", 0),
        (Outcome::Suspect, "SUSPECTED", "FACE_MATCH", 1),
    ];
    for (outcome, expected, face, fraud_tags) in cases {
        let (scan_ref, _) = mint_for(&sim, "u").await;
        assert!(sim.decide(&scan_ref, outcome).await);
        let status = status_of(&sim, &scan_ref).await;
        assert_eq!(status["status"], expected);
        assert_eq!(status["autoDocument"], "DOC_VALIDATED");
        assert_eq!(status["autoFace"], face);
        assert_eq!(status["manualFace"], serde_json::Value::Null);
        assert_eq!(
            status["fraudTags"].as_array().map(Vec::len),
            Some(fraud_tags)
        );
        assert!(
            !sim.decide(&scan_ref, Outcome::Deny).await,
            "a result is final"
        );
        // Decided sessions never expire.
        sim.advance_clock(Duration::from_secs(7200));
        assert_eq!(status_of(&sim, &scan_ref).await["status"], expected);
    }
    assert!(!sim.decide("unknown", Outcome::Approve).await);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_abandoned_session_stays_active_until_session_length_runs_out() {
    let sim = start(config()).await;
    let token = mint(&sim, json!({ "clientId": "u", "sessionLength": 300 })).await;
    let scan_ref = str_of(&token, "scanRef");
    assert!(sim.open(&str_of(&token, "authToken")));
    assert!(sim.decide(&scan_ref, Outcome::Abandon).await);
    assert_eq!(status_of(&sim, &scan_ref).await["status"], "ACTIVE");
    assert!(sim.session(&scan_ref).expect("session").abandoned);
    sim.advance_clock(Duration::from_secs(301));
    assert_eq!(status_of(&sim, &scan_ref).await["status"], "EXPIRED");
    sim.shutdown().await;
}
