//! What the client logs: endpoint, status and timing with `client_id`/`scan_ref` spans,
//! never the auth token or the credentials.

use std::{
    io,
    sync::{Arc, Mutex},
};

use idenfy_client::IdenfyApi;
use serde_json::json;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::{
    API_KEY, API_SECRET, AUTH_TOKEN, BASIC, CLIENT_ID, SCAN_REF, client, parent, token_answer,
};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_carry_ids_and_timings_but_no_secrets() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/token"))
        .respond_with(ResponseTemplate::new(201).set_body_json(token_answer()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/status"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "scanRef": SCAN_REF, "status": "ACTIVE" })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test runtime is single-threaded, so the thread-local subscriber sees every call.
    let _guard = tracing::subscriber::set_default(subscriber);

    let client = client(&server.uri());
    let minted = client.mint(&parent()).await.expect("minted");
    client.status(&minted.scan_ref).await.expect("status");

    let logs =
        String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("utf-8 logs");
    assert!(logs.contains(&format!("client_id={CLIENT_ID}")), "{logs}");
    assert!(logs.contains(&format!("scan_ref={SCAN_REF}")), "{logs}");
    assert!(
        logs.contains("endpoint=\"/api/v2/token\"") && logs.contains("status=201"),
        "{logs}"
    );
    assert!(logs.contains("elapsed_ms="), "{logs}");
    for secret in [
        AUTH_TOKEN,
        API_SECRET,
        API_KEY,
        BASIC.trim_start_matches("Basic "),
    ] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
}
