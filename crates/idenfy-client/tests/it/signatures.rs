//! The sim's signed webhooks, verified by idenfy-core's verifier: what idenfy-app checks is
//! exactly what the sim (standing in for iDenfy) sends.

use std::time::Duration;

use idenfy_client::{IdenfyApi, WebhookPayload};
use idenfy_core::webhook::{EventType, SignatureError, verify_signature};
use idenfy_sim::{Outcome, Sim, SimConfig};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

use crate::{client_with, parent};

#[tokio::test]
async fn sim_webhooks_verify_with_the_core_verifier() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let sim = Sim::start(SimConfig {
        webhook_url: Some(format!("{}/idenfy/webhook", receiver.uri())),
        manual_review: true,
        manual_review_delay: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts");
    let client = client_with(
        idenfy_client::ClientConfig::new(
            sim.config().api_key.clone(),
            sim.config().api_secret.clone(),
        )
        .with_base_url(sim.base_url()),
    );
    let minted = client.mint(&parent()).await.expect("minted");
    assert!(sim.decide(minted.scan_ref.as_str(), Outcome::Deny).await);

    // AUTO (final:false) then MANUAL (final:true).
    let mut received = Vec::new();
    for _ in 0..200 {
        received = receiver.received_requests().await.expect("recording on");
        if received.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(received.len(), 2, "two deliveries");
    let key = sim.config().webhook_signing_key.as_bytes();
    let mut events = Vec::new();
    for request in &received {
        let signature = request
            .headers
            .get("idenfy-signature")
            .and_then(|v| v.to_str().ok());
        assert_eq!(verify_signature(key, signature, &request.body), Ok(()));
        // Any change to the body breaks it.
        let mut tampered = request.body.clone();
        tampered.push(b' ');
        assert_eq!(
            verify_signature(key, signature, &tampered),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"another-key", signature, &request.body),
            Err(SignatureError::Mismatch)
        );
        let event = request
            .headers
            .get("idenfy-event-type")
            .and_then(|v| v.to_str().ok())
            .map(EventType::parse);
        let payload = WebhookPayload::from_slice(&request.body).expect("a documented payload");
        assert_eq!(payload.scan_ref, minted.scan_ref);
        events.push((event, payload.final_, payload.status.overall.clone()));
    }
    assert_eq!(
        events,
        vec![
            (
                Some(EventType::AutoFinished),
                false,
                Some("DENIED".to_owned())
            ),
            (
                Some(EventType::ManualFinished),
                true,
                Some("DENIED".to_owned())
            ),
        ]
    );
}
