//! Building a client: validation, defaults, and `Debug` that never shows credentials.

use std::time::Duration;

use idenfy_client::{
    BuildError, ClientConfig, DEFAULT_BASE_URL, IdenfyClient, RetryPolicy, Secret,
};

#[test]
fn defaults_match_the_documented_ones() {
    let cfg = ClientConfig::new("k", "s");
    assert_eq!(cfg.base_url, DEFAULT_BASE_URL);
    assert_eq!(cfg.connect_timeout, Duration::from_secs(3));
    assert_eq!(cfg.request_timeout, Duration::from_secs(10));
    assert_eq!(
        cfg.retry,
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            budget: Duration::from_secs(8),
        }
    );
    assert_eq!(cfg.token_options, Default::default());
}

#[test]
fn debug_never_shows_the_key_or_the_secret() {
    let cfg = ClientConfig::new("my-api-key-123", Secret::new("my-api-secret-456"));
    let client = IdenfyClient::new(cfg.clone()).expect("valid");
    for printed in [
        format!("{cfg:?}"),
        format!("{cfg:#?}"),
        format!("{client:?}"),
        format!("{:?}", cfg.api_secret),
    ] {
        assert!(!printed.contains("my-api-key-123"), "{printed}");
        assert!(!printed.contains("my-api-secret-456"), "{printed}");
    }
    assert!(format!("{client:?}").contains(DEFAULT_BASE_URL));
}

#[test]
fn new_rejects_missing_credentials_and_bad_settings() {
    assert!(matches!(
        IdenfyClient::new(ClientConfig::new("", "s")),
        Err(BuildError::MissingCredentials)
    ));
    assert!(matches!(
        IdenfyClient::new(ClientConfig::new("k", "")),
        Err(BuildError::MissingCredentials)
    ));
    for bad in [
        "not a url",
        "ftp://ivs.idenfy.com",
        "https://user:pw@ivs.idenfy.com",
        "https://ivs.idenfy.com/?x=1",
    ] {
        let err = IdenfyClient::new(ClientConfig::new("k", "s").with_base_url(bad)).expect_err(bad);
        assert!(matches!(err, BuildError::InvalidBaseUrl(_)), "{bad}: {err}");
        assert!(!err.to_string().contains("pw"), "the URL is not echoed");
    }
    let mut cfg = ClientConfig::new("k", "s");
    cfg.retry.max_attempts = 0;
    assert!(matches!(
        IdenfyClient::new(cfg),
        Err(BuildError::InvalidSetting(_))
    ));
}

#[test]
fn base_url_is_normalised() {
    let client =
        IdenfyClient::new(ClientConfig::new("k", "s").with_base_url("http://127.0.0.1:8080/"))
            .expect("valid");
    assert_eq!(client.base_url(), "http://127.0.0.1:8080");
    let client = client.clone();
    assert_eq!(
        client.redirect_url(&idenfy_core::AuthToken::new("abc")),
        "http://127.0.0.1:8080/api/v2/redirect?authToken=abc"
    );
}
