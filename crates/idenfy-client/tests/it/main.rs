//! Integration tests of idenfy-client: the wire protocol and error mapping against wiremock,
//! the webhook types, and the contract against idenfy-sim. Set `TEST_LOG=1` to see logs.

mod config;
mod contract;
mod errors;
mod logs;
mod mint;
mod reads;
mod signatures;
mod webhook;

use std::time::Duration;

use idenfy_client::{ClientConfig, IdenfyClient, RetryPolicy};
use idenfy_core::ParentId;
use serde_json::{Value, json};
use wiremock::MockServer;

pub const API_KEY: &str = "test-key";
pub const API_SECRET: &str = "test-secret";
/// `Basic base64("test-key:test-secret")`.
pub const BASIC: &str = "Basic dGVzdC1rZXk6dGVzdC1zZWNyZXQ=";
pub const CLIENT_ID: &str = "65a1b2c3d4e5f60718293a4b";
pub const SCAN_REF: &str = "0b6f4a4e-1c1d-4f5e-9f0a-1a2b3c4d5e6f";
pub const AUTH_TOKEN: &str = "Tok3nValue0123456789abcdefABCDEF01234567";

/// Test settings: short timeouts and near-instant retries.
pub fn config(base_url: &str) -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            budget: Duration::from_secs(8),
        },
        ..ClientConfig::new(API_KEY, API_SECRET).with_base_url(base_url)
    }
}

pub fn client_with(config: ClientConfig) -> IdenfyClient {
    init_logs();
    IdenfyClient::new(config).expect("valid test configuration")
}

pub fn client(base_url: &str) -> IdenfyClient {
    client_with(config(base_url))
}

pub fn parent() -> ParentId {
    ParentId::parse(CLIENT_ID).expect("valid id")
}

/// A token answer as iDenfy documents it (trimmed).
pub fn token_answer() -> Value {
    json!({
        "message": "Token created successfully",
        "authToken": AUTH_TOKEN,
        "scanRef": SCAN_REF,
        "clientId": CLIENT_ID,
        "redirectUrl": format!("https://ivs.idenfy.com/api/v2/redirect?authToken={AUTH_TOKEN}"),
        "expiryTime": 3600,
        "sessionLength": 600,
        "digitString": null
    })
}

/// The single request the server received, with its exact Basic auth checked and then
/// redacted, ready for a snapshot.
pub async fn recorded_request(server: &MockServer) -> Value {
    let requests = server
        .received_requests()
        .await
        .expect("request recording is on");
    assert_eq!(requests.len(), 1, "exactly one request expected");
    let request = &requests[0];
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(header("authorization"), Some(BASIC));
    json!({
        "method": request.method.as_str(),
        "path": request.url.path(),
        "headers": {
            "content-type": header("content-type"),
            "authorization": "[basic]",
        },
        "body": request.body_json::<Value>().expect("a JSON body"),
    })
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("idenfy_client=debug")
            .with_test_writer()
            .try_init();
    }
}
