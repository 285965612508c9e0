//! Webhooks: signature, headers, body shape, retries, manual review sequence, callbackUrl.

use hmac::{Hmac, Mac};
use idenfy_sim::{Outcome, SimConfig};
use serde_json::json;
use sha2::Sha256;

use crate::support::{Receiver, config, eventually, mint, mint_for, start, status_of, str_of};

fn expected_signature(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn result_webhook_is_signed_and_shaped_like_idenfys() {
    let mut hooks = Receiver::start(0).await;
    let sim = start(SimConfig {
        webhook_url: Some(hooks.url.clone()),
        webhook_signing_key: "test-signing-key".into(),
        ..config()
    })
    .await;
    let token = mint(
        &sim,
        json!({ "clientId": "user-7", "externalRef": "ref-7" }),
    )
    .await;
    let scan_ref = str_of(&token, "scanRef");
    assert!(sim.decide(&scan_ref, Outcome::Approve).await);
    let hook = hooks.next().await;
    assert_eq!(hook.event, "IDENTIFICATION_AUTO_FINISHED");
    assert_eq!(hook.content_type, "application/json");
    assert_eq!(
        hook.signature,
        expected_signature("test-signing-key", &hook.raw)
    );
    assert!(idenfy_sim::verify(
        b"test-signing-key",
        &hook.raw,
        &hook.signature
    ));
    assert_eq!(
        idenfy_sim::sign(b"test-signing-key", &hook.raw),
        hook.signature
    );
    let body = &hook.json;
    assert_eq!(body["final"], true);
    assert_eq!(body["scanRef"], scan_ref.as_str());
    assert_eq!(body["clientId"], "user-7");
    assert_eq!(body["externalRef"], "ref-7");
    assert_eq!(body["platform"], "PC");
    assert_eq!(body["status"]["overall"], "APPROVED");
    assert_eq!(body["status"]["autoDocument"], "DOC_VALIDATED");
    assert_eq!(body["status"]["autoFace"], "FACE_MATCH");
    assert!(body["status"]["fraudTags"].is_array() && body["status"]["mismatchTags"].is_array());
    assert!(body["status"]["suspicionReasons"].is_array());
    assert!(body["data"]["docFirstName"].is_string());
    assert!(body["fileUrls"]["FRONT"].is_string());
    assert!(body["startTime"].is_i64() && body["finishTime"].is_i64());
    for field in [
        "clientIp",
        "clientIpCountry",
        "clientLocation",
        "companyId",
        "beneficiaryId",
    ] {
        assert!(body[field].is_string(), "{field}");
    }
    assert!(body.get("AML").is_some() && body.get("LID").is_some());
    eventually(|| sim.counters().webhooks_delivered == 1).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_refused_webhook_is_retried_until_delivered() {
    let mut hooks = Receiver::start(2).await;
    let sim = start(SimConfig {
        webhook_url: Some(hooks.url.clone()),
        ..config()
    })
    .await;
    let (scan_ref, _) = mint_for(&sim, "u").await;
    assert!(sim.decide(&scan_ref, Outcome::Deny).await);
    let hook = hooks.next().await;
    assert_eq!(hook.json["status"]["overall"], "DENIED");
    assert_eq!(hooks.requests(), 3);
    eventually(|| sim.counters().webhooks_delivered == 1).await;
    let counters = sim.counters();
    assert_eq!(counters.webhook_attempts, 3);
    assert_eq!(counters.webhooks_failed, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_webhook_is_given_up_after_max_attempts() {
    let hooks = Receiver::start(u32::MAX).await;
    let sim = start(SimConfig {
        webhook_url: Some(hooks.url.clone()),
        webhook_max_attempts: 3,
        ..config()
    })
    .await;
    let (scan_ref, _) = mint_for(&sim, "u").await;
    assert!(sim.decide(&scan_ref, Outcome::Approve).await);
    eventually(|| sim.counters().webhooks_failed == 1).await;
    assert_eq!(hooks.requests(), 3);
    assert_eq!(sim.counters().webhooks_delivered, 0);
    // The verification's status does not depend on the receiver.
    assert_eq!(status_of(&sim, &scan_ref).await["status"], "APPROVED");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_connection_error_counts_as_a_failed_attempt() {
    // Bind then drop a listener so that the port refuses connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let sim = start(SimConfig {
        webhook_url: Some(format!("http://{addr}/hook")),
        webhook_max_attempts: 2,
        ..config()
    })
    .await;
    let (scan_ref, _) = mint_for(&sim, "u").await;
    assert!(sim.expire_token(&scan_ref));
    eventually(|| sim.counters().webhooks_failed == 1).await;
    assert_eq!(sim.counters().webhook_attempts, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn manual_review_sends_auto_not_final_then_manual_final() {
    let mut hooks = Receiver::start(0).await;
    let sim = start(SimConfig {
        webhook_url: Some(hooks.url.clone()),
        manual_review: true,
        ..config()
    })
    .await;
    let (scan_ref, _) = mint_for(&sim, "u").await;
    assert!(sim.decide(&scan_ref, Outcome::Suspect).await);
    assert_eq!(status_of(&sim, &scan_ref).await["status"], "REVIEWING");
    let auto = hooks.next().await;
    assert_eq!(auto.event, "IDENTIFICATION_AUTO_FINISHED");
    assert_eq!(auto.json["final"], false);
    assert_eq!(auto.json["status"]["overall"], "SUSPECTED");
    assert_eq!(
        auto.json["status"]["manualDocument"],
        serde_json::Value::Null
    );
    let manual = hooks.next().await;
    assert_eq!(manual.event, "IDENTIFICATION_MANUAL_FINISHED");
    assert_eq!(manual.json["final"], true);
    assert_eq!(manual.json["status"]["overall"], "SUSPECTED");
    assert_eq!(manual.json["status"]["manualDocument"], "DOC_VALIDATED");
    assert_eq!(manual.json["status"]["manualFace"], "FACE_MATCH");
    let status = status_of(&sim, &scan_ref).await;
    assert_eq!(status["status"], "SUSPECTED");
    assert_eq!(status["manualFace"], "FACE_MATCH");
    // REVIEWING does not expire.
    let (other, _) = mint_for(&sim, "v").await;
    assert!(sim.decide(&other, Outcome::Approve).await);
    sim.advance_clock(std::time::Duration::from_secs(7200));
    assert_eq!(status_of(&sim, &other).await["status"], "REVIEWING");
    hooks.next().await;
    hooks.next().await;
    assert_eq!(status_of(&sim, &other).await["status"], "APPROVED");
    sim.shutdown().await;
}

#[tokio::test]
async fn callback_url_overrides_the_webhook_url_and_set_webhook_url_switches_it() {
    let mut global = Receiver::start(0).await;
    let mut own = Receiver::start(0).await;
    let sim = start(config()).await;
    let token = mint(&sim, json!({ "clientId": "u", "callbackUrl": own.url })).await;
    assert!(
        sim.decide(&str_of(&token, "scanRef"), Outcome::Approve)
            .await
    );
    assert_eq!(own.next().await.json["clientId"], "u");

    let (silent, _) = mint_for(&sim, "nobody-listens").await;
    assert!(sim.decide(&silent, Outcome::Approve).await);
    sim.set_webhook_url(Some(global.url.clone()));
    let (heard, _) = mint_for(&sim, "heard").await;
    assert!(sim.decide(&heard, Outcome::Approve).await);
    assert_eq!(global.next().await.json["clientId"], "heard");
    global.assert_quiet(100).await;
    sim.shutdown().await;
}
